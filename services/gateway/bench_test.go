package gateway_test

import (
	"context"
	"net/http"
	"testing"

	"connectrpc.com/connect"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/identity"
	"github.com/highgopress/highgopress/platform/server"
)

// BenchmarkGatewayForward: unary Like over Connect with binary protobuf,
// client → gateway (JWT check, identity signing, forwarding) → fake backend,
// all on loopback h2c. BenchmarkDirect is the same call straight to the
// backend; the difference is the gateway's cost.
func BenchmarkGatewayForward(b *testing.B) {
	e := newEnv(b)
	benchLike(b, e.client, e.url, withHeaders(bearer(token(b, "bench-user"))))
}

func BenchmarkDirect(b *testing.B) {
	fb := newFakeBackend()
	base := fb.serve(b)
	signer, err := identity.NewSigner([]byte(identitySecret))
	if err != nil {
		b.Fatal(err)
	}
	client := server.NewH2CClient()
	b.Cleanup(client.CloseIdleConnections)
	// What the gateway adds: a freshly signed identity per call.
	sign := connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set(identity.Header, signer.Sign("bench-user", req.Spec().Procedure))
			return next(ctx, req)
		}
	}))
	benchLike(b, client, base, sign)
}

func benchLike(b *testing.B, hc *http.Client, base string, opt connect.ClientOption) {
	cs := counterv1connect.NewCounterServiceClient(hc, base, opt)
	req := connect.NewRequest(&counterv1.LikeRequest{Item: item("bench")})
	ctx := context.Background()
	if _, err := cs.Like(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cs.Like(ctx, connect.NewRequest(&counterv1.LikeRequest{Item: item("bench")})); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := cs.Like(ctx, connect.NewRequest(&counterv1.LikeRequest{Item: item("bench")})); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
