package handler

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/validate"
	"github.com/highgopress/highgopress/services/counter/watch"
)

// Watches opens WatchCounts streams (watch.Hub).
type Watches interface {
	Watch(ctx context.Context, client string, items []domain.ItemRef) (*watch.Watcher, []domain.ItemCounts, error)
}

// ErrSlowWatcher reports a stream dropped because one of its messages
// could not be written within the send timeout: a client that does not
// read (or reads too slowly) loses its stream rather than holding the
// counter's memory or anyone else's updates.
var ErrSlowWatcher = errors.New("watcher too slow")

// WatchCounts implements CounterServiceHandler: the items' current counts,
// then the counts of each item that changes, coalesced per item (see
// package watch). The stream runs until the client cancels it, the server
// shuts down (Unavailable) or the client stops reading: a message not
// written within the send timeout ends it with ResourceExhausted.
func (h *Handler) WatchCounts(ctx context.Context, req *connect.Request[counterv1.WatchCountsRequest], stream *connect.ServerStream[counterv1.WatchCountsResponse]) error {
	proc := req.Spec().Procedure
	if h.watches == nil {
		return connect.NewError(connect.CodeUnimplemented, errors.New("WatchCounts is not enabled on this instance"))
	}
	refs := make([]domain.ItemRef, len(req.Msg.GetItems()))
	for i, it := range req.Msg.GetItems() {
		refs[i] = itemRef(it)
	}
	if err := validate.Watch(refs, watch.MaxItems); err != nil {
		return h.toConnect(ctx, proc, err)
	}
	rc, _ := ctx.Value(responseControllerKey{}).(*http.ResponseController)
	if rc != nil {
		// The request is read: the server's read timeout must not end
		// the stream (over HTTP/1.1 its expiry cancels the request).
		_ = rc.SetReadDeadline(time.Time{})
	}
	w, counts, err := h.watches.Watch(ctx, watchClient(ctx, req), refs)
	if err != nil {
		return h.watchError(ctx, proc, err)
	}
	defer w.Close()

	send := func(msg *counterv1.WatchCountsResponse) error {
		if rc != nil && h.sendTimeout > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(h.sendTimeout))
		}
		start := time.Now()
		err := stream.Send(msg)
		if rc != nil && h.sendTimeout > 0 {
			_ = rc.SetWriteDeadline(time.Time{})
		}
		if err != nil && h.sendTimeout > 0 && time.Since(start) >= h.sendTimeout {
			h.logger.InfoContext(ctx, "dropping a slow watcher", "procedure", proc, "send_timeout", h.sendTimeout)
			return connect.NewError(connect.CodeResourceExhausted,
				fmt.Errorf("%w: a message could not be delivered within %s", ErrSlowWatcher, h.sendTimeout))
		}
		return err
	}
	first := make([]*counterv1.ItemCount, len(refs))
	for i := range refs {
		first[i] = itemCount(req.Msg.GetItems()[i], counts[i])
	}
	if err := send(&counterv1.WatchCountsResponse{Counts: first}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return h.toConnect(ctx, proc, ctx.Err())
		case <-w.Done():
			return h.watchError(ctx, proc, w.Err())
		case <-w.Ready():
		}
		changes := w.Take()
		if len(changes) == 0 {
			continue
		}
		out := make([]*counterv1.ItemCount, len(changes))
		for i, c := range changes {
			out[i] = itemCount(req.Msg.GetItems()[c.Index], c.Counts)
		}
		if err := send(&counterv1.WatchCountsResponse{Counts: out}); err != nil {
			return err
		}
	}
}

// watchError maps the hub's errors: a stream cap or a shutdown carries its
// own message (the store's errors go through toConnect).
func (h *Handler) watchError(ctx context.Context, proc string, err error) error {
	switch {
	case errors.Is(err, watch.ErrTooManyStreams):
		return connect.NewError(connect.CodeResourceExhausted, err)
	case errors.Is(err, watch.ErrClosed):
		return connect.NewError(connect.CodeUnavailable, errors.New("this counter instance is shutting down; watch again"))
	}
	return h.toConnect(ctx, proc, err)
}

func itemCount(ref *counterv1.ItemRef, c domain.ItemCounts) *counterv1.ItemCount {
	var metrics map[string]int64
	if len(c.Metrics) > 0 {
		metrics = make(map[string]int64, len(c.Metrics))
		for k, n := range c.Metrics {
			metrics[k] = n
		}
	}
	return &counterv1.ItemCount{Item: ref, Likes: c.Likes, Metrics: metrics}
}

// watchClient names the caller for the per-client cap: the verified user,
// else the address the gateway saw (the last X-Forwarded-For entry, which
// the gateway appends), else the peer's address.
func watchClient(ctx context.Context, req connect.AnyRequest) string {
	if u := actor(ctx); u != "" {
		return "user:" + u
	}
	if xff := req.Header().Values("X-Forwarded-For"); len(xff) > 0 {
		last := xff[len(xff)-1]
		if i := strings.LastIndexByte(last, ','); i >= 0 {
			last = last[i+1:]
		}
		if ip := strings.TrimSpace(last); ip != "" {
			return "ip:" + ip
		}
	}
	addr := req.Peer().Addr
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	return "ip:" + addr
}

type responseControllerKey struct{}

// WithResponseController gives the handlers the http.ResponseController of
// their request (WatchCounts sets read and write deadlines with it).
func WithResponseController(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), responseControllerKey{}, http.NewResponseController(w))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
