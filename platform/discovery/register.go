package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// HealthCheck is how Consul checks an instance: exactly one of GRPC and HTTP
// is set.
type HealthCheck struct {
	// GRPC is "address:port" (optionally "address:port/service") of a gRPC
	// health endpoint served in cleartext (h2c); Consul calls
	// grpc.health.v1.Health/Check on it without TLS.
	GRPC string
	// HTTP is a URL that answers 2xx while the instance is healthy.
	HTTP string
}

// GRPCCheck returns a gRPC health check on hostPort (cleartext).
func GRPCCheck(hostPort string) HealthCheck { return HealthCheck{GRPC: hostPort} }

// HTTPCheck returns an HTTP health check on url.
func HTTPCheck(url string) HealthCheck { return HealthCheck{HTTP: url} }

// Registration describes one instance of a service.
type Registration struct {
	// Service is the service name callers watch (e.g. "counter").
	Service string
	// ID is unique per instance; default "<service>-<address>-<port>".
	ID      string
	Address string
	Port    int
	Tags    []string
	Meta    map[string]string
	// HealthCheck defaults to a gRPC check on Address:Port.
	HealthCheck HealthCheck
	// Interval between health checks; default 1s. It bounds how fast a dead
	// instance turns critical (see docs/discovery.md).
	Interval time.Duration
	// Timeout of one health check; default Interval (at most 5s).
	Timeout time.Duration
	// DeregisterCriticalServiceAfter removes an instance whose check stayed
	// critical this long (a crashed process never deregisters itself);
	// default 1m. Consul enforces a minimum of one minute.
	DeregisterCriticalServiceAfter time.Duration
}

func (r Registration) normalized() (Registration, error) {
	if r.Service == "" {
		return r, errors.New("discovery: registration without a service name")
	}
	if r.Port <= 0 || r.Port > 65535 {
		return r, fmt.Errorf("discovery: registration of %q: invalid port %d", r.Service, r.Port)
	}
	if r.ID == "" {
		host := r.Address
		if host == "" {
			host = "node"
		}
		r.ID = fmt.Sprintf("%s-%s-%d", r.Service, host, r.Port)
	}
	if r.HealthCheck.GRPC != "" && r.HealthCheck.HTTP != "" {
		return r, fmt.Errorf("discovery: registration of %q: set only one of GRPC and HTTP health checks", r.Service)
	}
	if r.HealthCheck.GRPC == "" && r.HealthCheck.HTTP == "" {
		host := r.Address
		if host == "" {
			host = "127.0.0.1"
		}
		r.HealthCheck.GRPC = net.JoinHostPort(host, strconv.Itoa(r.Port))
	}
	if r.Interval <= 0 {
		r.Interval = time.Second
	}
	if r.Timeout <= 0 {
		r.Timeout = min(r.Interval, 5*time.Second)
	}
	if r.DeregisterCriticalServiceAfter <= 0 {
		r.DeregisterCriticalServiceAfter = time.Minute
	}
	return r, nil
}

func (r Registration) agentRegistration() *api.AgentServiceRegistration {
	check := &api.AgentServiceCheck{
		CheckID:                        "service:" + r.ID,
		Name:                           r.Service + " health",
		Interval:                       r.Interval.String(),
		Timeout:                        r.Timeout.String(),
		DeregisterCriticalServiceAfter: r.DeregisterCriticalServiceAfter.String(),
	}
	if r.HealthCheck.GRPC != "" {
		check.GRPC = r.HealthCheck.GRPC
		check.GRPCUseTLS = false
	} else {
		check.HTTP = r.HealthCheck.HTTP
		check.Method = "GET"
	}
	return &api.AgentServiceRegistration{
		ID:      r.ID,
		Name:    r.Service,
		Address: r.Address,
		Port:    r.Port,
		Tags:    r.Tags,
		Meta:    r.Meta,
		Check:   check,
	}
}

// registrar keeps one registration alive on the local agent.
type registrar struct {
	logger *slog.Logger
	client *api.Client
	reg    Registration
	opts   registerOptions
}

// ensure registers the instance unless the agent already knows it.
func (r *registrar) ensure(ctx context.Context, force bool) (registered bool, err error) {
	if !force {
		q := (&api.QueryOptions{}).WithContext(ctx)
		svc, _, err := r.client.Agent().Service(r.reg.ID, q)
		if err == nil && svc != nil {
			return false, nil
		}
		var se api.StatusError
		if err != nil && !(errors.As(err, &se) && se.Code == 404) {
			return false, fmt.Errorf("discovery: look up %s on agent: %w", r.reg.ID, err)
		}
	}
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	if err := r.client.Agent().ServiceRegisterOpts(r.reg.agentRegistration(), opts); err != nil {
		return false, fmt.Errorf("discovery: register %s: %w", r.reg.ID, err)
	}
	return true, nil
}

func (r *registrar) deregister(ctx context.Context) error {
	q := (&api.QueryOptions{}).WithContext(ctx)
	if err := r.client.Agent().ServiceDeregisterOpts(r.reg.ID, q); err != nil {
		return fmt.Errorf("discovery: deregister %s: %w", r.reg.ID, err)
	}
	r.logger.Info("deregistered from consul", "registered_service", r.reg.Service, "id", r.reg.ID)
	return nil
}

// keep re-registers the instance whenever the agent has forgotten it (an
// agent restart wipes a -dev agent), until ctx is done.
func (r *registrar) keep(ctx context.Context) {
	t := time.NewTimer(r.opts.resync)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, r.opts.callTimeout)
		registered, err := r.ensure(cctx, false)
		cancel()
		next := r.opts.resync
		switch {
		case err != nil && ctx.Err() == nil:
			failures++
			next = backoff(failures, r.opts.resync)
			r.logger.Warn("consul registration check failed", "registered_service", r.reg.Service, "id", r.reg.ID,
				"err", err, "retry_in", next)
		case registered:
			failures = 0
			r.logger.Info("re-registered with consul (agent had forgotten this instance)",
				"registered_service", r.reg.Service, "id", r.reg.ID)
		default:
			failures = 0
		}
		t.Reset(next)
	}
}

// Register registers reg with the local Consul agent and keeps it registered
// (checking every resync interval, 10s by default) until the returned
// deregister func is called; call that on graceful shutdown, before the
// server stops accepting requests. The registration itself must succeed.
func Register(ctx context.Context, logger *slog.Logger, client *api.Client, reg Registration, opts ...RegisterOption) (deregister func(context.Context) error, err error) {
	reg, err = reg.normalized()
	if err != nil {
		return nil, err
	}
	r := &registrar{logger: logger, client: client, reg: reg, opts: newRegisterOptions(opts)}
	cctx, cancel := context.WithTimeout(ctx, r.opts.callTimeout)
	_, err = r.ensure(cctx, true)
	cancel()
	if err != nil {
		return nil, err
	}
	logger.Info("registered with consul", "registered_service", reg.Service, "id", reg.ID,
		"address", reg.Address, "port", reg.Port, "check_grpc", reg.HealthCheck.GRPC, "check_http", reg.HealthCheck.HTTP)
	keepCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.keep(keepCtx)
	}()
	var once sync.Once
	var derr error
	return func(ctx context.Context) error {
		once.Do(func() {
			stop()
			<-done
			derr = r.deregister(ctx)
		})
		return derr
	}, nil
}

// RegistrationWorker returns a worker for bootstrap.Component.Workers: it
// registers reg (retrying with backoff while the agent is unreachable, so a
// service starts even when Consul is late), keeps it registered, and
// deregisters when ctx is cancelled (graceful shutdown).
func RegistrationWorker(logger *slog.Logger, client *api.Client, reg Registration, opts ...RegisterOption) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		reg, err := reg.normalized()
		if err != nil {
			return err
		}
		o := newRegisterOptions(opts)
		r := &registrar{logger: logger, client: client, reg: reg, opts: o}
		for attempt := 1; ; attempt++ {
			cctx, cancel := context.WithTimeout(ctx, o.callTimeout)
			_, err := r.ensure(cctx, true)
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			wait := backoff(attempt, o.resync)
			logger.Warn("consul registration failed, retrying", "registered_service", reg.Service, "id", reg.ID, "err", err, "retry_in", wait)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		logger.Info("registered with consul", "registered_service", reg.Service, "id", reg.ID,
			"address", reg.Address, "port", reg.Port, "check_grpc", reg.HealthCheck.GRPC, "check_http", reg.HealthCheck.HTTP)
		r.keep(ctx)
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.callTimeout)
		defer cancel()
		if err := r.deregister(dctx); err != nil {
			logger.Warn("consul deregistration failed", "registered_service", reg.Service, "id", reg.ID, "err", err)
		}
		return nil
	}
}

// backoff returns an exponential delay with jitter: 100ms doubling per
// attempt, capped at limit.
func backoff(attempt int, limit time.Duration) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < attempt && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	// full jitter on the upper half: [d/2, d)
	return d/2 + rand.N(d/2+1)
}
