package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// ErrNoInstances is returned by Pick when a service has no known instance;
// the gateway maps it to connect.CodeUnavailable.
var ErrNoInstances = errors.New("no instances available")

// ErrUnknownService is returned by Pick for a service the Balancer was not
// given a Source for (a wiring mistake).
var ErrUnknownService = errors.New("unknown service")

// Backend is the instance chosen for one request. Done must be called exactly
// once when the request finished, with the transport error if any (nil on
// success or on an application-level error): a connection error ejects the
// instance at once.
type Backend struct {
	URL  *url.URL
	Done func(err error)
}

// Balancer picks an instance per request: power of two random choices on the
// number of in-flight requests. An instance whose request failed with a
// connection error is ejected for a cooldown (5s, doubling on repeated
// failures up to 30s) without waiting for Consul; when every instance is
// ejected it falls back to choosing among all of them rather than failing.
type Balancer struct {
	logger  *slog.Logger
	opts    balancerOptions
	sources map[string]Source

	mu sync.Mutex // serialises pool rebuilds
	// pools has one entry per service, fixed at construction (read
	// concurrently without locking); the pointer changes when the
	// service's instance set does.
	pools map[string]*atomic.Pointer[pool]

	picks     atomic.Uint64
	ejections atomic.Uint64
	fallbacks atomic.Uint64
}

// BalancerStats are the balancer's counters, for metrics.
type BalancerStats struct {
	// Picks is the number of instances handed out.
	Picks uint64
	// Ejections counts instances ejected after a connection error.
	Ejections uint64
	// Fallbacks counts picks made while every instance was ejected.
	Fallbacks uint64
}

type endpoint struct {
	inst     Instance
	inflight atomic.Int64
	// ejectedUntil is unix nanos; 0 when the endpoint is in rotation.
	ejectedUntil atomic.Int64
	// ejectedAt is when the last ejection happened (unix nanos).
	ejectedAt atomic.Int64
	// failures counts consecutive connection failures (sets the cooldown).
	failures atomic.Int64
}

type pool struct {
	version   uint64
	set       *Set
	endpoints []*endpoint
}

// NewBalancer returns a Balancer over one Source per service name.
func NewBalancer(logger *slog.Logger, sources map[string]Source, opts ...BalancerOption) *Balancer {
	o := defaultBalancerOptions()
	for _, opt := range opts {
		opt(&o)
	}
	src := make(map[string]Source, len(sources))
	pools := make(map[string]*atomic.Pointer[pool], len(sources))
	for k, v := range sources {
		src[k] = v
		pools[k] = new(atomic.Pointer[pool])
	}
	return &Balancer{logger: logger, opts: o, sources: src, pools: pools}
}

// Stats returns the balancer's counters.
func (b *Balancer) Stats() BalancerStats {
	return BalancerStats{Picks: b.picks.Load(), Ejections: b.ejections.Load(), Fallbacks: b.fallbacks.Load()}
}

// Pick chooses an instance of service. It returns an error wrapping
// ErrNoInstances when none is known, ErrUnknownService for a service it has no
// Source for.
func (b *Balancer) Pick(ctx context.Context, service string) (Backend, error) {
	return b.pick(ctx, service, "")
}

// PickExcluding is Pick that avoids the instance at hostPort when another one
// is available: what a retry of a side-effect-free call uses to go elsewhere.
func (b *Balancer) PickExcluding(ctx context.Context, service, hostPort string) (Backend, error) {
	return b.pick(ctx, service, hostPort)
}

func (b *Balancer) pick(ctx context.Context, service, exclude string) (Backend, error) {
	if err := ctx.Err(); err != nil {
		return Backend{}, err
	}
	eps, err := b.endpoints(service)
	if err != nil {
		return Backend{}, err
	}
	now := b.opts.now().UnixNano()
	// Candidates: in rotation and not excluded. Small slices: stack buffer.
	var buf [16]*endpoint
	cands := buf[:0]
	for _, e := range eps {
		if until := e.ejectedUntil.Load(); until != 0 && until > now {
			continue
		}
		if exclude != "" && e.inst.URL.Host == exclude {
			continue
		}
		cands = append(cands, e)
	}
	if len(cands) == 0 {
		// Everything ejected (or excluded): try them all rather than fail.
		for _, e := range eps {
			if exclude != "" && e.inst.URL.Host == exclude && len(eps) > 1 {
				continue
			}
			cands = append(cands, e)
		}
		b.fallbacks.Add(1)
	}
	var e *endpoint
	switch len(cands) {
	case 1:
		e = cands[0]
	default:
		i := rand.IntN(len(cands))
		j := rand.IntN(len(cands) - 1)
		if j >= i {
			j++
		}
		e = cands[i]
		if cands[j].inflight.Load() < e.inflight.Load() {
			e = cands[j]
		}
	}
	e.inflight.Add(1)
	b.picks.Add(1)
	var once atomic.Bool
	return Backend{
		URL: e.inst.URL,
		Done: func(err error) {
			if !once.CompareAndSwap(false, true) {
				return
			}
			e.inflight.Add(-1)
			if err != nil && b.opts.ejectOn(err) {
				b.eject(service, e, err)
				return
			}
			// A success readmits the instance only if the request was sent
			// after the ejection: one that was already in flight proves
			// nothing about the instance now.
			if err == nil && e.failures.Load() != 0 && now >= e.ejectedAt.Load() {
				e.failures.Store(0)
				e.ejectedUntil.Store(0)
			}
		},
	}, nil
}

func (b *Balancer) eject(service string, e *endpoint, cause error) {
	now := b.opts.now()
	prev := e.ejectedUntil.Load()
	if prev > now.UnixNano() {
		return // already ejected: several requests in flight failed together
	}
	n := e.failures.Add(1)
	cool := b.opts.cooldown
	for i := int64(1); i < n && cool < b.opts.maxCooldown; i++ {
		cool *= 2
	}
	cool = min(cool, b.opts.maxCooldown)
	if !e.ejectedUntil.CompareAndSwap(prev, now.Add(cool).UnixNano()) {
		e.failures.Add(-1) // another request ejected it first
		return
	}
	e.ejectedAt.Store(now.UnixNano())
	b.ejections.Add(1)
	if b.opts.onEject != nil {
		b.opts.onEject(service)
	}
	b.logger.Warn("instance ejected after connection error", "backend", service, "instance", e.inst.ID,
		"addr", e.inst.URL.Host, "cooldown", cool, "err", cause)
}

// endpoints returns the endpoint list for the service's current set,
// rebuilding it (keeping per-instance state) when the set changed.
func (b *Balancer) endpoints(service string) ([]*endpoint, error) {
	src, ok := b.sources[service]
	if !ok {
		return nil, fmt.Errorf("discovery: %w %q", ErrUnknownService, service)
	}
	set := src.Current()
	if set == nil || len(set.Instances) == 0 {
		return nil, fmt.Errorf("discovery: service %q: %w", service, ErrNoInstances)
	}
	ptr := b.pools[service]
	if p := ptr.Load(); p != nil && p.set == set {
		return p.endpoints, nil // fast path: no lock
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	p := ptr.Load()
	if p != nil && p.set == set {
		return p.endpoints, nil
	}
	old := map[string]*endpoint{}
	if p != nil {
		for _, e := range p.endpoints {
			old[e.inst.URL.Host] = e
		}
	}
	eps := make([]*endpoint, 0, len(set.Instances))
	for _, in := range set.Instances {
		if e, ok := old[in.URL.Host]; ok && e.inst.ID == in.ID {
			eps = append(eps, e)
			continue
		}
		eps = append(eps, &endpoint{inst: in})
	}
	ptr.Store(&pool{version: set.Version, set: set, endpoints: eps})
	return eps, nil
}

// IsConnectionError reports whether err means the instance could not be
// reached or dropped the connection (refused, reset, unreachable, dial
// failure, broken pipe, connection closed before a response, HTTP/2
// connection force-closed or lost): the errors that eject an instance. It
// looks through wrapping, including *connect.Error.
func IsConnectionError(err error) bool {
	if err == nil {
		return false
	}
	for _, errno := range []syscall.Errno{
		syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED,
		syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EPIPE, syscall.EHOSTDOWN,
	} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	// HTTP/2 connection failures, which net/http's bundled http2 does not
	// export: the client closed the connection after a write to it failed
	// (the peer died; the other requests in flight get "force closed"), or
	// pings went unanswered ("lost").
	msg := err.Error()
	return strings.Contains(msg, "http2: client connection force closed") ||
		strings.Contains(msg, "http2: client connection lost")
}
