// Package discovery registers services with Consul, watches the healthy
// instances of the services a caller depends on, and balances requests over
// them.
//
//   - Register / RegistrationWorker: a service announces itself to the local
//     Consul agent with a health check, stays registered if the agent forgets
//     it (agent restart), and deregisters on graceful shutdown.
//   - Watcher: blocking queries on the passing instances of one service,
//     rate-limited, with backoff; it keeps the last known instances while
//     Consul is unreachable.
//   - Balancer: power-of-two-choices on in-flight requests over a Source (a
//     Watcher or a Static list), ejecting an instance at once when a request
//     to it fails with a connection error.
package discovery

import (
	"net"
	"net/url"
	"slices"
	"strconv"
)

// Instance is one healthy instance of a service.
type Instance struct {
	// ID is the Consul service ID (or the URL for static instances).
	ID      string
	Address string
	Port    int
	Tags    []string
	Meta    map[string]string
	// URL is the base URL requests are sent to (http://address:port).
	URL *url.URL
}

// HostPort returns "address:port".
func (i Instance) HostPort() string { return net.JoinHostPort(i.Address, strconv.Itoa(i.Port)) }

// Set is an immutable snapshot of a service's instances. Version changes
// whenever the membership changes.
type Set struct {
	Version   uint64
	Instances []Instance
}

// Source yields the current instances of one service. Current never blocks
// and may return nil before anything is known. Watcher and Static implement it.
type Source interface {
	Current() *Set
}

func sameInstances(a, b []Instance) bool {
	return slices.EqualFunc(a, b, func(x, y Instance) bool {
		return x.ID == y.ID && x.URL.String() == y.URL.String() && slices.Equal(x.Tags, y.Tags)
	})
}
