package discovery

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/highgopress/highgopress/platform/config"
)

// Config is the Consul configuration shared by every service, read from:
//
//	HGP_CONSUL_ADDR              agent HTTP address, e.g. 127.0.0.1:8500 (empty: no Consul)
//	HGP_CONSUL_TOKEN             ACL token (optional)
//	HGP_ADVERTISE_HOST           host registered for this instance (default: the listen host,
//	                             127.0.0.1 when listening on all interfaces)
//	HGP_CONSUL_CHECK_INTERVAL    health check interval (default 1s)
//	HGP_CONSUL_DEREGISTER_AFTER  DeregisterCriticalServiceAfter (default 1m)
//	HGP_CONSUL_TAGS              comma list of tags added to this instance's registration
//	                             (default none), e.g. a deployment or test-run label that
//	                             callers select with a tag filter (WithTag)
type Config struct {
	Addr            string
	Token           string
	AdvertiseHost   string
	CheckInterval   time.Duration
	DeregisterAfter time.Duration
	// Tags are added to every Registration made from this Config.
	Tags []string
}

// ConfigFrom reads Config; errors are recorded on cfg and name the variable.
func ConfigFrom(cfg *config.Reader) Config {
	return Config{
		Addr:            cfg.String("HGP_CONSUL_ADDR", ""),
		Token:           cfg.String("HGP_CONSUL_TOKEN", ""),
		AdvertiseHost:   cfg.String("HGP_ADVERTISE_HOST", ""),
		CheckInterval:   cfg.Duration("HGP_CONSUL_CHECK_INTERVAL", time.Second, 100*time.Millisecond, time.Minute),
		DeregisterAfter: cfg.Duration("HGP_CONSUL_DEREGISTER_AFTER", time.Minute, time.Minute, 24*time.Hour),
		Tags:            cfg.List("HGP_CONSUL_TAGS", nil),
	}
}

// Enabled reports whether a Consul agent is configured.
func (c Config) Enabled() bool { return c.Addr != "" }

// Client returns an API client for the configured agent.
func (c Config) Client() (*api.Client, error) { return NewClient(c.Addr, c.Token) }

// Registration describes the instance listening on listenAddr ("host:port")
// as service, with a gRPC health check on it. Its tags are Config.Tags
// followed by tags.
func (c Config) Registration(service, listenAddr string, tags ...string) (Registration, error) {
	host, portStr, err := net.SplitHostPort(listenAddr)
	if err != nil {
		return Registration{}, fmt.Errorf("discovery: listen address %q: %w", listenAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 {
		return Registration{}, fmt.Errorf("discovery: listen address %q: port must be a fixed number", listenAddr)
	}
	if c.AdvertiseHost != "" {
		host = c.AdvertiseHost
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	hp := net.JoinHostPort(host, strconv.Itoa(port))
	return Registration{
		Service:                        service,
		Address:                        host,
		Port:                           port,
		Tags:                           append(slices.Clone(c.Tags), tags...),
		HealthCheck:                    GRPCCheck(hp),
		Interval:                       c.CheckInterval,
		DeregisterCriticalServiceAfter: c.DeregisterAfter,
	}, nil
}

// NewClient returns a Consul API client for the agent at addr
// ("127.0.0.1:8500" or "http://127.0.0.1:8500").
func NewClient(addr, token string) (*api.Client, error) {
	if addr == "" {
		return nil, fmt.Errorf("discovery: empty consul address")
	}
	cfg := api.DefaultConfig()
	cfg.Scheme = "http"
	if rest, ok := strings.CutPrefix(addr, "https://"); ok {
		cfg.Scheme, addr = "https", rest
	} else {
		addr = strings.TrimPrefix(addr, "http://")
	}
	cfg.Address = addr
	if token != "" {
		cfg.Token = token
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovery: consul client for %s: %w", addr, err)
	}
	return c, nil
}
