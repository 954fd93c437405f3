// Package route is the gateway's procedure table: which backend serves a
// public RPC and whether the RPC reads or writes.
package route

import (
	"fmt"
	"sort"
	"strings"

	"github.com/highgopress/highgopress/gen/highgopress/analytics/v1/analyticsv1connect"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
)

// Class says what an RPC does to state.
type Class int

const (
	// Read has no side effects: anonymous callers may use it, Connect GET is
	// allowed, and it may be retried on another backend.
	Read Class = iota + 1
	// Write changes state: it requires an authenticated caller.
	Write
)

func (c Class) String() string {
	switch c {
	case Read:
		return "read"
	case Write:
		return "write"
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// Backend services, as named in service discovery (each its own Consul
// catalog entry).
const (
	// CounterBackend serves CounterService and FollowService.
	CounterBackend = "counter"
	// AnalyticsBackend serves AnalyticsService.
	AnalyticsBackend = "analytics"
)

// Route is one public procedure.
type Route struct {
	// Procedure is the HTTP path, "/package.Service/Method".
	Procedure string
	// Backend names the backend service handed to the balancer.
	Backend string
	// Class is Read or Write.
	Class Class
	// Streaming is set for server-streaming RPCs (WatchCounts,
	// WatchTopItems): unary responses are buffered by the proxy (see
	// proxy.Target.Unary), streamed ones are forwarded message by message;
	// HGP_GATEWAY_MAX_TIMEOUT caps unary calls only (see docs/gateway.md).
	Streaming bool
}

// Service returns the fully-qualified protobuf service of the procedure.
func (r Route) Service() string {
	s, _, _ := strings.Cut(strings.TrimPrefix(r.Procedure, "/"), "/")
	return s
}

// Table maps procedures to routes. It is immutable and safe for concurrent
// use.
type Table struct {
	routes map[string]Route
}

// New returns a table of routes, refusing malformed or duplicate entries.
func New(routes ...Route) (*Table, error) {
	t := &Table{routes: make(map[string]Route, len(routes))}
	for _, r := range routes {
		svc, method, ok := strings.Cut(strings.TrimPrefix(r.Procedure, "/"), "/")
		if !strings.HasPrefix(r.Procedure, "/") || !ok || svc == "" || method == "" || strings.Contains(method, "/") {
			return nil, fmt.Errorf("route %q: procedure must be /package.Service/Method", r.Procedure)
		}
		if r.Backend == "" {
			return nil, fmt.Errorf("route %q: no backend", r.Procedure)
		}
		if r.Class != Read && r.Class != Write {
			return nil, fmt.Errorf("route %q: class must be read or write", r.Procedure)
		}
		if _, dup := t.routes[r.Procedure]; dup {
			return nil, fmt.Errorf("route %q: duplicate", r.Procedure)
		}
		t.routes[r.Procedure] = r
	}
	return t, nil
}

// Default returns the public API: CounterService and FollowService on the
// counter backend, AnalyticsService on the analytics backend. Every read,
// streams included, is anonymous-readable and rate-limited as a read.
func Default() *Table {
	routes := []Route{
		{Procedure: counterv1connect.CounterServiceLikeProcedure, Backend: CounterBackend, Class: Write},
		{Procedure: counterv1connect.CounterServiceUnlikeProcedure, Backend: CounterBackend, Class: Write},
		{Procedure: counterv1connect.CounterServiceIncrementProcedure, Backend: CounterBackend, Class: Write},
		{Procedure: counterv1connect.CounterServiceGetCountsProcedure, Backend: CounterBackend, Class: Read},
		{Procedure: counterv1connect.FollowServiceFollowProcedure, Backend: CounterBackend, Class: Write},
		{Procedure: counterv1connect.FollowServiceUnfollowProcedure, Backend: CounterBackend, Class: Write},
		{Procedure: counterv1connect.FollowServiceGetUserStatsProcedure, Backend: CounterBackend, Class: Read},
		{Procedure: counterv1connect.CounterServiceWatchCountsProcedure, Backend: CounterBackend, Class: Read, Streaming: true},
		{Procedure: analyticsv1connect.AnalyticsServiceTopItemsProcedure, Backend: AnalyticsBackend, Class: Read},
		{Procedure: analyticsv1connect.AnalyticsServiceApiStatsProcedure, Backend: AnalyticsBackend, Class: Read},
		{Procedure: analyticsv1connect.AnalyticsServiceWatchTopItemsProcedure, Backend: AnalyticsBackend, Class: Read, Streaming: true},
	}
	t := &Table{routes: make(map[string]Route, len(routes))}
	for _, r := range routes {
		t.routes[r.Procedure] = r
	}
	return t
}

// Lookup returns the route of an HTTP path.
func (t *Table) Lookup(path string) (Route, bool) {
	r, ok := t.routes[path]
	return r, ok
}

// Routes returns every route, sorted by procedure.
func (t *Table) Routes() []Route {
	out := make([]Route, 0, len(t.routes))
	for _, r := range t.routes {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Procedure < out[j].Procedure })
	return out
}

// Services returns the protobuf services the table exposes, sorted: what the
// gateway reports in health checks and reflection.
func (t *Table) Services() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range t.routes {
		if s := r.Service(); !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
