package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync/atomic"
	"time"
)

// RoundRobin is a static Balancer: a fixed list of instances per service,
// used in turn. An instance that refuses connections, or does not answer
// within the attempt timeout (a stalled or frozen process), is skipped for a
// cooldown period while others remain.
type RoundRobin struct {
	pools    map[string]*pool
	cooldown time.Duration
	now      func() time.Time
	onEject  func(service string)
}

type pool struct {
	next      atomic.Uint64
	instances []*instance
}

type instance struct {
	service   string
	url       *url.URL
	downUntil atomic.Int64 // unix nanoseconds; 0 when healthy
	done      func(error)
}

// NewRoundRobin returns a RoundRobin over the instances of each service.
func NewRoundRobin(services map[string][]*url.URL, opts ...RoundRobinOption) (*RoundRobin, error) {
	o := rrOptions{cooldown: 5 * time.Second, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	rr := &RoundRobin{pools: make(map[string]*pool, len(services)), cooldown: o.cooldown, now: o.now, onEject: o.onEject}
	for svc, urls := range services {
		if len(urls) == 0 {
			return nil, fmt.Errorf("service %q: no instances", svc)
		}
		p := &pool{}
		for _, u := range urls {
			if err := CheckBackendURL(u); err != nil {
				return nil, fmt.Errorf("service %q: %w", svc, err)
			}
			in := &instance{service: svc, url: u}
			in.done = func(err error) { rr.report(in, err) }
			p.instances = append(p.instances, in)
		}
		rr.pools[svc] = p
	}
	return rr, nil
}

// Pick implements Balancer.
func (rr *RoundRobin) Pick(_ context.Context, service string) (Backend, error) {
	p := rr.pools[service]
	if p == nil {
		return Backend{}, fmt.Errorf("%w: unknown service %q", ErrNoBackend, service)
	}
	n := uint64(len(p.instances))
	start := p.next.Add(1) - 1
	now := rr.now().UnixNano()
	for i := uint64(0); i < n; i++ {
		in := p.instances[(start+i)%n]
		if in.downUntil.Load() <= now {
			return Backend{URL: in.url, Done: in.done}, nil
		}
	}
	// Every instance failed recently: trying one beats failing outright.
	in := p.instances[start%n]
	return Backend{URL: in.url, Done: in.done}, nil
}

func (rr *RoundRobin) report(in *instance, err error) {
	switch {
	case err == nil:
		if in.downUntil.Load() != 0 {
			in.downUntil.Store(0)
		}
	case IsDialError(err), errors.Is(err, ErrAttemptTimeout):
		now := rr.now()
		if prev := in.downUntil.Swap(now.Add(rr.cooldown).UnixNano()); prev <= now.UnixNano() && rr.onEject != nil {
			rr.onEject(in.service)
		}
	}
}

// ParseBackendURLs parses and checks instance base URLs.
func ParseBackendURLs(raw []string) ([]*url.URL, error) {
	if len(raw) == 0 {
		return nil, errors.New("no backend URL given")
	}
	out := make([]*url.URL, 0, len(raw))
	for _, s := range raw {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("backend URL %q: %w", s, err)
		}
		if err := CheckBackendURL(u); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// CheckBackendURL accepts http://host:port with nothing else: backends speak
// h2c, and the RPC path comes from the request.
func CheckBackendURL(u *url.URL) error {
	switch {
	case u == nil:
		return errors.New("backend URL is empty")
	case u.Scheme != "http":
		return fmt.Errorf("backend URL %q: scheme must be http (h2c)", u.String())
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/"):
		return fmt.Errorf("backend URL %q: must be http://host:port without path, query or credentials", u.String())
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("backend URL %q: host must be host:port", u.String())
	}
	return nil
}
