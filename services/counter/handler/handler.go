// Package handler is the Connect port of the counter service: it turns
// CounterService and FollowService requests into use-case calls, taking the
// acting user only from the verified identity header, and maps domain errors
// to Connect codes.
package handler

import (
	"context"
	"log/slog"
	"time"

	"connectrpc.com/connect"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/identity"
	"github.com/highgopress/highgopress/services/counter/domain"
)

// Counters are the use cases behind the handlers; actor is "" for an
// anonymous caller.
type Counters interface {
	Like(ctx context.Context, actor string, item domain.ItemRef) (domain.LikeResult, error)
	Unlike(ctx context.Context, actor string, item domain.ItemRef) (domain.LikeResult, error)
	Increment(ctx context.Context, actor string, in domain.Increment) (int64, error)
	GetCounts(ctx context.Context, viewer string, items []domain.ItemRef) ([]domain.ItemView, error)
	Follow(ctx context.Context, actor, target string) (domain.FollowResult, error)
	Unfollow(ctx context.Context, actor, target string) (domain.FollowResult, error)
	GetUserStats(ctx context.Context, viewer string, users []string) ([]domain.UserView, error)
}

// Handler implements counterv1connect.CounterServiceHandler and
// counterv1connect.FollowServiceHandler.
type Handler struct {
	logger *slog.Logger
	app    Counters
	// watches serves WatchCounts (nil: Unimplemented); sendTimeout bounds
	// each message's write (0: unbounded).
	watches     Watches
	sendTimeout time.Duration
}

var (
	_ counterv1connect.CounterServiceHandler = (*Handler)(nil)
	_ counterv1connect.FollowServiceHandler  = (*Handler)(nil)
)

// New returns a Handler calling app.
func New(logger *slog.Logger, app Counters, opts ...Option) *Handler {
	h := &Handler{logger: logger, app: app}
	for _, opt := range opts {
		opt(h)
	}
	return h
}

// Option configures a Handler.
type Option func(*Handler)

// WithWatches serves WatchCounts through w; a message not written within
// sendTimeout (0: no bound) ends its stream with ResourceExhausted.
func WithWatches(w Watches, sendTimeout time.Duration) Option {
	return func(h *Handler) { h.watches, h.sendTimeout = w, sendTimeout }
}

// actor is the verified acting user put into ctx by identity.Interceptor,
// or "" for an anonymous call. No request field can name it.
func actor(ctx context.Context) string {
	u, _ := identity.Actor(ctx)
	return u
}

func itemRef(it *counterv1.ItemRef) domain.ItemRef {
	return domain.ItemRef{Namespace: it.GetNamespace(), ID: it.GetId()}
}

// Like implements CounterServiceHandler.
func (h *Handler) Like(ctx context.Context, req *connect.Request[counterv1.LikeRequest]) (*connect.Response[counterv1.LikeResponse], error) {
	res, err := h.app.Like(ctx, actor(ctx), itemRef(req.Msg.GetItem()))
	if err != nil {
		return nil, h.toConnect(ctx, req.Spec().Procedure, err)
	}
	return connect.NewResponse(&counterv1.LikeResponse{Changed: res.Changed, Count: res.Count}), nil
}

// Unlike implements CounterServiceHandler.
func (h *Handler) Unlike(ctx context.Context, req *connect.Request[counterv1.UnlikeRequest]) (*connect.Response[counterv1.UnlikeResponse], error) {
	res, err := h.app.Unlike(ctx, actor(ctx), itemRef(req.Msg.GetItem()))
	if err != nil {
		return nil, h.toConnect(ctx, req.Spec().Procedure, err)
	}
	return connect.NewResponse(&counterv1.UnlikeResponse{Changed: res.Changed, Count: res.Count}), nil
}

// Increment implements CounterServiceHandler.
func (h *Handler) Increment(ctx context.Context, req *connect.Request[counterv1.IncrementRequest]) (*connect.Response[counterv1.IncrementResponse], error) {
	v, err := h.app.Increment(ctx, actor(ctx), domain.Increment{
		Item:           itemRef(req.Msg.GetItem()),
		Metric:         req.Msg.GetMetric(),
		Delta:          req.Msg.GetDelta(),
		IdempotencyKey: req.Msg.GetIdempotencyKey(),
	})
	if err != nil {
		return nil, h.toConnect(ctx, req.Spec().Procedure, err)
	}
	return connect.NewResponse(&counterv1.IncrementResponse{Value: v}), nil
}

// GetCounts implements CounterServiceHandler.
func (h *Handler) GetCounts(ctx context.Context, req *connect.Request[counterv1.GetCountsRequest]) (*connect.Response[counterv1.GetCountsResponse], error) {
	items := make([]domain.ItemRef, len(req.Msg.GetItems()))
	for i, it := range req.Msg.GetItems() {
		items[i] = itemRef(it)
	}
	views, err := h.app.GetCounts(ctx, actor(ctx), items)
	if err != nil {
		return nil, h.toConnect(ctx, req.Spec().Procedure, err)
	}
	out := make([]*counterv1.ItemCount, len(views))
	for i, v := range views {
		var metrics map[string]int64
		if len(v.Counts.Metrics) > 0 {
			metrics = make(map[string]int64, len(v.Counts.Metrics))
			for k, n := range v.Counts.Metrics {
				metrics[k] = n
			}
		}
		out[i] = &counterv1.ItemCount{
			Item:        req.Msg.GetItems()[i],
			Likes:       v.Counts.Likes,
			ViewerLiked: v.ViewerLiked,
			Metrics:     metrics,
		}
	}
	return connect.NewResponse(&counterv1.GetCountsResponse{Counts: out}), nil
}

// Follow implements FollowServiceHandler.
func (h *Handler) Follow(ctx context.Context, req *connect.Request[counterv1.FollowRequest]) (*connect.Response[counterv1.FollowResponse], error) {
	res, err := h.app.Follow(ctx, actor(ctx), req.Msg.GetUserId())
	if err != nil {
		return nil, h.toConnect(ctx, req.Spec().Procedure, err)
	}
	return connect.NewResponse(&counterv1.FollowResponse{
		Changed: res.Changed, Following: res.Following, Followers: res.Followers,
	}), nil
}

// Unfollow implements FollowServiceHandler.
func (h *Handler) Unfollow(ctx context.Context, req *connect.Request[counterv1.UnfollowRequest]) (*connect.Response[counterv1.UnfollowResponse], error) {
	res, err := h.app.Unfollow(ctx, actor(ctx), req.Msg.GetUserId())
	if err != nil {
		return nil, h.toConnect(ctx, req.Spec().Procedure, err)
	}
	return connect.NewResponse(&counterv1.UnfollowResponse{
		Changed: res.Changed, Following: res.Following, Followers: res.Followers,
	}), nil
}

// GetUserStats implements FollowServiceHandler.
func (h *Handler) GetUserStats(ctx context.Context, req *connect.Request[counterv1.GetUserStatsRequest]) (*connect.Response[counterv1.GetUserStatsResponse], error) {
	views, err := h.app.GetUserStats(ctx, actor(ctx), req.Msg.GetUserIds())
	if err != nil {
		return nil, h.toConnect(ctx, req.Spec().Procedure, err)
	}
	out := make([]*counterv1.UserStats, len(views))
	for i, v := range views {
		out[i] = &counterv1.UserStats{
			UserId:        v.UserID,
			Followers:     v.Counts.Followers,
			Following:     v.Counts.Following,
			ViewerFollows: v.ViewerFollows,
		}
	}
	return connect.NewResponse(&counterv1.GetUserStatsResponse{Stats: out}), nil
}
