package analytics_test

import (
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/highgopress/highgopress/services/analytics"
	"github.com/highgopress/highgopress/services/analytics/watch"
)

func connectRequest[T any](m *T) *connect.Request[T] { return connect.NewRequest(m) }

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func analyticsWatch(opts ...watch.Option) analytics.Option {
	return analytics.WithWatchOptions(opts...)
}
