package handler

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
)

// WatchCounts implements CounterServiceHandler. Until the fan-out lands it
// answers unimplemented.
func (h *Handler) WatchCounts(context.Context, *connect.Request[counterv1.WatchCountsRequest], *connect.ServerStream[counterv1.WatchCountsResponse]) error {
	return connect.NewError(connect.CodeUnimplemented, errors.New("WatchCounts is not served yet"))
}
