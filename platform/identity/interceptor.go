package identity

import (
	"context"
	"net/http"

	"connectrpc.com/connect"
)

// Interceptor verifies the identity header on every incoming call and puts
// the user into the context (see Actor). A call without the header proceeds
// anonymously; a call with a forged or stale header fails Unauthenticated.
type Interceptor struct{ signer *Signer }

// NewInterceptor returns an Interceptor verifying with signer.
func NewInterceptor(signer *Signer) *Interceptor { return &Interceptor{signer: signer} }

func (i *Interceptor) authenticate(ctx context.Context, procedure string, h http.Header) (context.Context, error) {
	v := h.Get(Header)
	if v == "" {
		return ctx, nil
	}
	user, err := i.signer.Verify(v, procedure)
	if err != nil {
		return ctx, connect.NewError(connect.CodeUnauthenticated, err)
	}
	return WithActor(ctx, user), nil
}

// WrapUnary implements connect.Interceptor.
func (i *Interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		ctx, err := i.authenticate(ctx, req.Spec().Procedure, req.Header())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

// WrapStreamingClient implements connect.Interceptor.
func (i *Interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler implements connect.Interceptor.
func (i *Interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := i.authenticate(ctx, conn.Spec().Procedure, conn.RequestHeader())
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}
