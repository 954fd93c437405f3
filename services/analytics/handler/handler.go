// Package handler is the Connect port of the analytics service: it turns
// requests into store and hub calls and domain errors into Connect codes.
package handler

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	analyticsv1 "github.com/highgopress/highgopress/gen/highgopress/analytics/v1"
	"github.com/highgopress/highgopress/gen/highgopress/analytics/v1/analyticsv1connect"
	"github.com/highgopress/highgopress/services/analytics/domain"
	"github.com/highgopress/highgopress/services/analytics/redisstore"
	"github.com/highgopress/highgopress/services/analytics/watch"
)

// Store is what the handler reads.
type Store interface {
	Top(ctx context.Context, ns string, w analyticsv1.Window, limit int32, token string) (domain.Page, error)
	Stats(ctx context.Context, w analyticsv1.StatsWindow, procedure string) ([]domain.ProcedureStats, time.Time, error)
}

// Handler implements analyticsv1connect.AnalyticsServiceHandler.
type Handler struct {
	logger      *slog.Logger
	store       Store
	hub         *watch.Hub
	sendTimeout time.Duration
}

var _ analyticsv1connect.AnalyticsServiceHandler = (*Handler)(nil)

// New returns a Handler. sendTimeout bounds each message sent on a stream:
// a client that does not take it in time loses the stream.
func New(logger *slog.Logger, store Store, hub *watch.Hub, sendTimeout time.Duration) *Handler {
	return &Handler{logger: logger, store: store, hub: hub, sendTimeout: sendTimeout}
}

// TopItems implements the RPC.
func (h *Handler) TopItems(ctx context.Context, req *connect.Request[analyticsv1.TopItemsRequest]) (*connect.Response[analyticsv1.TopItemsResponse], error) {
	m := req.Msg
	page, err := h.store.Top(ctx, m.GetNamespace(), m.GetWindow(), m.GetLimit(), m.GetPageToken())
	if err != nil {
		return nil, h.toConnect(err)
	}
	return connect.NewResponse(&analyticsv1.TopItemsResponse{
		Items: ranked(page.Items), NextPageToken: page.Next, AsOf: timestamppb.New(page.AsOf),
	}), nil
}

// ApiStats implements the RPC.
func (h *Handler) ApiStats(ctx context.Context, req *connect.Request[analyticsv1.ApiStatsRequest]) (*connect.Response[analyticsv1.ApiStatsResponse], error) {
	stats, asOf, err := h.store.Stats(ctx, req.Msg.GetWindow(), req.Msg.GetProcedure())
	if err != nil {
		return nil, h.toConnect(err)
	}
	out := &analyticsv1.ApiStatsResponse{AsOf: timestamppb.New(asOf), Procedures: make([]*analyticsv1.ProcedureStats, 0, len(stats))}
	for _, st := range stats {
		ps := &analyticsv1.ProcedureStats{Procedure: st.Procedure, Calls: st.Calls}
		for _, code := range sortedKeys(st.Codes) {
			ps.Codes = append(ps.Codes, &analyticsv1.CodeCount{Code: code, Calls: st.Codes[code]})
		}
		if l := st.Latency; l != nil {
			ps.Latency = &analyticsv1.Latency{P50Ms: l.P50 / 1000, P90Ms: l.P90 / 1000, P99Ms: l.P99 / 1000, MaxMs: l.Max / 1000}
		}
		out.Procedures = append(out.Procedures, ps)
	}
	return connect.NewResponse(out), nil
}

// WatchTopItems implements the RPC: the current ranking, then every change.
func (h *Handler) WatchTopItems(ctx context.Context, req *connect.Request[analyticsv1.WatchTopItemsRequest], stream *connect.ServerStream[analyticsv1.WatchTopItemsResponse]) error {
	m := req.Msg
	limit, err := redisstore.CheckRanking(m.GetNamespace(), m.GetWindow(), m.GetLimit())
	if err != nil {
		return h.toConnect(err)
	}
	sub, err := h.hub.Subscribe(ClientOf(req.Peer().Addr, req.Header()), watch.Key{Namespace: m.GetNamespace(), Window: m.GetWindow(), Limit: limit})
	if err != nil {
		return h.toConnect(err)
	}
	defer sub.Close()
	rc := responseController(ctx)
	for {
		select {
		case <-ctx.Done():
			return connect.NewError(connect.CodeCanceled, ctx.Err())
		case <-sub.Done():
			return h.toConnect(sub.Err())
		case r := <-sub.C:
			if rc != nil && h.sendTimeout > 0 {
				_ = rc.SetWriteDeadline(time.Now().Add(h.sendTimeout))
			}
			if err := stream.Send(&analyticsv1.WatchTopItemsResponse{Items: ranked(r.Items), AsOf: timestamppb.New(r.AsOf)}); err != nil {
				return err
			}
			if rc != nil && h.sendTimeout > 0 {
				_ = rc.SetWriteDeadline(time.Time{})
			}
		}
	}
}

func ranked(items []domain.RankedItem) []*analyticsv1.RankedItem {
	out := make([]*analyticsv1.RankedItem, len(items))
	for i, it := range items {
		out[i] = &analyticsv1.RankedItem{ItemId: it.Item, Score: it.Score, Rank: it.Rank}
	}
	return out
}

// toConnect maps domain errors to Connect codes.
func (h *Handler) toConnect(err error) error {
	var fe *domain.FieldError
	switch {
	case errors.As(err, &fe):
		return connect.NewError(connect.CodeInvalidArgument, fe)
	case errors.Is(err, domain.ErrTooManySubscriptions), errors.Is(err, domain.ErrSlowSubscriber):
		return connect.NewError(connect.CodeResourceExhausted, err)
	case errors.Is(err, watch.ErrClosed):
		return connect.NewError(connect.CodeUnavailable, err)
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	case errors.Is(err, domain.ErrUnavailable):
		h.logger.Warn("analytics store unavailable", "err", err)
		return connect.NewError(connect.CodeUnavailable, err)
	}
	h.logger.Error("analytics internal error", "err", err)
	return connect.NewError(connect.CodeInternal, err)
}

// ClientOf names the client a stream counts against: the right-most
// X-Forwarded-For entry (the address the gateway saw; backend ports are
// never the public door), otherwise the peer's host.
func ClientOf(peer string, h http.Header) string {
	if vs := h.Values("X-Forwarded-For"); len(vs) > 0 {
		last := vs[len(vs)-1]
		if i := strings.LastIndexByte(last, ','); i >= 0 {
			last = last[i+1:]
		}
		if s := strings.TrimSpace(last); s != "" {
			return s
		}
	}
	if host, _, err := net.SplitHostPort(peer); err == nil {
		return host
	}
	return peer
}

type rcKey struct{}

// WithResponseController wraps h so streams can bound each write (the
// per-message send timeout): without it a client that stops reading would
// hold its stream's goroutine until the connection dies.
func WithResponseController(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), rcKey{}, http.NewResponseController(w))
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

func responseController(ctx context.Context) *http.ResponseController {
	rc, _ := ctx.Value(rcKey{}).(*http.ResponseController)
	return rc
}

func sortedKeys(m map[string]int64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
