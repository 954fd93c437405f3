package discovery

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Static is a fixed Source, for configurations without Consul (the
// standalone mode, HGP_GATEWAY_COUNTER_URLS).
type Static struct {
	set *Set
}

// NewStatic returns a Source over fixed base URLs such as
// "http://127.0.0.1:8081". At least one URL is required.
func NewStatic(urls ...string) (*Static, error) {
	var instances []Instance
	for _, raw := range urls {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("discovery: static URL %q: %w", raw, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("discovery: static URL %q: want http(s)://host:port", raw)
		}
		host, portStr, err := net.SplitHostPort(u.Host)
		if err != nil {
			host, portStr = u.Host, "80"
			if u.Scheme == "https" {
				portStr = "443"
			}
			u.Host = net.JoinHostPort(host, portStr)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil || port <= 0 || port > 65535 {
			return nil, fmt.Errorf("discovery: static URL %q: invalid port", raw)
		}
		base := &url.URL{Scheme: u.Scheme, Host: u.Host, Path: strings.TrimSuffix(u.Path, "/")}
		instances = append(instances, Instance{ID: base.String(), Address: host, Port: port, URL: base})
	}
	if len(instances) == 0 {
		return nil, fmt.Errorf("discovery: static source: %w", ErrNoInstances)
	}
	return &Static{set: &Set{Version: 1, Instances: instances}}, nil
}

// Current returns the fixed set.
func (s *Static) Current() *Set { return s.set }
