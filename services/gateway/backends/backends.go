// Package backends chooses the instance of a backend service that serves
// each forwarded call, from Consul's catalog: one discovery.Watcher per
// backend service (blocking queries on the passing instances; the last
// known set is kept while Consul is unreachable) and a discovery.Balancer
// (power of two choices on in-flight requests, an instance ejected at once
// after a connection error), adapted to the proxy's Balancer.
package backends

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/consul/api"

	"github.com/highgopress/highgopress/platform/discovery"
	"github.com/highgopress/highgopress/services/gateway/proxy"
)

// Consul routes to the healthy instances Consul lists. It implements
// proxy.Balancer and proxy.ExcludingBalancer. Run must be running (a
// bootstrap worker) for it to learn instances.
type Consul struct {
	logger   *slog.Logger
	watchers map[string]*discovery.Watcher
	bal      *discovery.Balancer
}

// NewConsul returns a Consul balancer for the given backend services
// (service-discovery names, e.g. "counter").
func NewConsul(logger *slog.Logger, client *api.Client, services []string, opts ...Option) (*Consul, error) {
	if client == nil {
		return nil, errors.New("backends: nil consul client")
	}
	if len(services) == 0 {
		return nil, errors.New("backends: no backend service to watch")
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	watchOpts := append([]discovery.WatchOption(nil), o.watchOpts...)
	if o.tag != "" {
		watchOpts = append(watchOpts, discovery.WithTag(o.tag))
	}
	c := &Consul{logger: logger, watchers: map[string]*discovery.Watcher{}}
	sources := map[string]discovery.Source{}
	for _, s := range services {
		if _, dup := c.watchers[s]; dup {
			continue
		}
		w := discovery.NewWatcher(logger, client, s, watchOpts...)
		c.watchers[s] = w
		sources[s] = w
	}
	balOpts := append([]discovery.BalancerOption{discovery.WithEjectOn(IsInstanceFailure)}, o.balancerOpts...)
	c.bal = discovery.NewBalancer(logger, sources, balOpts...)
	return c, nil
}

// Pick implements proxy.Balancer.
func (c *Consul) Pick(ctx context.Context, service string) (proxy.Backend, error) {
	return adapt(c.bal.Pick(ctx, service))
}

// PickExcluding implements proxy.ExcludingBalancer: a retried read goes to
// another instance than the one that just failed.
func (c *Consul) PickExcluding(ctx context.Context, service, hostPort string) (proxy.Backend, error) {
	return adapt(c.bal.PickExcluding(ctx, service, hostPort))
}

func adapt(b discovery.Backend, err error) (proxy.Backend, error) {
	if err != nil {
		if errors.Is(err, discovery.ErrNoInstances) || errors.Is(err, discovery.ErrUnknownService) {
			return proxy.Backend{}, fmt.Errorf("%w: %w", proxy.ErrNoBackend, err)
		}
		return proxy.Backend{}, err
	}
	return proxy.Backend{URL: b.URL, Done: b.Done}, nil
}

// Run follows Consul for every backend service until ctx is done (use it as
// a bootstrap worker). It returns nil then; Consul errors never stop it.
func (c *Consul) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, w := range c.watchers {
		wg.Go(func() { _ = w.Run(ctx) })
	}
	wg.Wait()
	return nil
}

// Ready is closed once Consul answered the first query of every watcher.
func (c *Consul) Ready() <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, w := range c.watchers {
			<-w.Ready()
		}
	}()
	return done
}

// Instances returns the healthy instances last learned for service
// ("host:port", sorted).
func (c *Consul) Instances(service string) []string {
	w, ok := c.watchers[service]
	if !ok {
		return nil
	}
	var out []string
	for _, in := range w.Instances() {
		out = append(out, in.HostPort())
	}
	sort.Strings(out)
	return out
}

// Stats are the watchers' and the balancer's counters, for metrics.
type Stats struct {
	Watchers []discovery.WatchStats
	Balancer discovery.BalancerStats
}

// Stats returns the counters.
func (c *Consul) Stats() Stats {
	st := Stats{Balancer: c.bal.Stats()}
	for _, w := range c.watchers {
		st.Watchers = append(st.Watchers, w.Stats())
	}
	sort.Slice(st.Watchers, func(i, j int) bool { return st.Watchers[i].Service < st.Watchers[j].Service })
	return st
}

// IsInstanceFailure reports whether an error passed to Backend.Done means
// the instance itself failed, so it is ejected at once: the connection
// errors of discovery.IsConnectionError (refused, reset, cut off, HTTP/2
// connection lost or force-closed — how requests in flight on a killed
// process fail), an HTTP/2 GOAWAY that closed the connection, and
// proxy.ErrAttemptTimeout (no answer within the per-attempt timeout: a
// frozen or stalled process). The client's own cancellation and deadlines
// are not the instance's fault.
func IsInstanceFailure(err error) bool {
	if errors.Is(err, proxy.ErrAttemptTimeout) {
		return true
	}
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	return discovery.IsConnectionError(err) ||
		strings.Contains(err.Error(), "http2: server sent GOAWAY and closed the connection")
}
