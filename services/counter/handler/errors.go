package handler

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	"github.com/highgopress/highgopress/services/counter/domain"
	"github.com/highgopress/highgopress/services/counter/watch"
)

// Messages sent instead of errors whose details must not leak.
const (
	msgUnavailable = "counter storage is temporarily unavailable; retry later"
	msgInternal    = "internal error"
)

// Code returns the Connect code a domain error maps to:
//
//	domain.ErrInvalid, domain.ErrSelfFollow -> InvalidArgument
//	domain.ErrUnauthenticated               -> Unauthenticated
//	domain.ErrIdempotencyConflict           -> AlreadyExists
//	domain.ErrTooManyMetrics                -> ResourceExhausted
//	watch.ErrTooManyStreams                 -> ResourceExhausted
//	domain.ErrUnavailable, watch.ErrClosed  -> Unavailable
//	domain.ErrUnsupported                   -> Unimplemented
//	context.Canceled / DeadlineExceeded     -> Canceled / DeadlineExceeded
//	anything else                           -> Internal
func Code(err error) connect.Code {
	switch {
	case errors.Is(err, domain.ErrInvalid), errors.Is(err, domain.ErrSelfFollow):
		return connect.CodeInvalidArgument
	case errors.Is(err, domain.ErrUnauthenticated):
		return connect.CodeUnauthenticated
	case errors.Is(err, domain.ErrIdempotencyConflict):
		return connect.CodeAlreadyExists
	case errors.Is(err, domain.ErrTooManyMetrics), errors.Is(err, watch.ErrTooManyStreams):
		return connect.CodeResourceExhausted
	case errors.Is(err, domain.ErrUnavailable), errors.Is(err, watch.ErrClosed):
		return connect.CodeUnavailable
	case errors.Is(err, domain.ErrUnsupported):
		return connect.CodeUnimplemented
	case errors.Is(err, context.Canceled):
		return connect.CodeCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return connect.CodeDeadlineExceeded
	}
	return connect.CodeInternal
}

// toConnect maps err to a Connect error. Client mistakes carry their
// message (which names the field); storage failures and internal errors are
// logged and answered with a generic message.
func (h *Handler) toConnect(ctx context.Context, procedure string, err error) error {
	code := Code(err)
	switch code {
	case connect.CodeInvalidArgument, connect.CodeUnauthenticated, connect.CodeAlreadyExists,
		connect.CodeResourceExhausted, connect.CodeCanceled, connect.CodeDeadlineExceeded, connect.CodeUnimplemented:
		return connect.NewError(code, err)
	case connect.CodeUnavailable:
		h.logger.WarnContext(ctx, "storage unavailable", "procedure", procedure, "err", err)
		return connect.NewError(code, errors.New(msgUnavailable))
	}
	h.logger.ErrorContext(ctx, "request failed", "procedure", procedure, "err", err)
	return connect.NewError(connect.CodeInternal, errors.New(msgInternal))
}
