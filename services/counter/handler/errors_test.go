package handler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/highgopress/highgopress/platform/logging"
	"github.com/highgopress/highgopress/services/counter/domain"
)

func TestErrorMapping(t *testing.T) {
	h := New(logging.Discard(), nil)
	secret := "dial tcp 10.1.2.3:6379: connection refused"
	cases := []struct {
		err  error
		code connect.Code
		msg  string // must appear in the client's message
		hide string // must not
	}{
		{fmt.Errorf("%w: item.id: required", domain.ErrInvalid), connect.CodeInvalidArgument, "item.id: required", ""},
		{domain.ErrSelfFollow, connect.CodeInvalidArgument, "themselves", ""},
		{domain.ErrUnauthenticated, connect.CodeUnauthenticated, "acting user", ""},
		{domain.ErrIdempotencyConflict, connect.CodeAlreadyExists, "different parameters", ""},
		{fmt.Errorf("%w: item a/b already has 32 metrics", domain.ErrTooManyMetrics), connect.CodeResourceExhausted, "already has 32 metrics", ""},
		{fmt.Errorf("%w: %s", domain.ErrUnavailable, secret), connect.CodeUnavailable, "retry later", "10.1.2.3"},
		{fmt.Errorf("redis: %s", "ERR Error running script (call to f_abc): WRONGTYPE"), connect.CodeInternal, "internal error", "WRONGTYPE"},
		{context.Canceled, connect.CodeCanceled, "", ""},
		{fmt.Errorf("wait: %w", context.DeadlineExceeded), connect.CodeDeadlineExceeded, "", ""},
	}
	for _, c := range cases {
		err := h.toConnect(context.Background(), "/p", c.err)
		var ce *connect.Error
		if !errors.As(err, &ce) || ce.Code() != c.code {
			t.Errorf("%v: mapped to %v; want %v", c.err, err, c.code)
			continue
		}
		if !strings.Contains(ce.Message(), c.msg) || (c.hide != "" && strings.Contains(ce.Message(), c.hide)) {
			t.Errorf("%v: client message %q (want %q, without %q)", c.err, ce.Message(), c.msg, c.hide)
		}
	}
}
