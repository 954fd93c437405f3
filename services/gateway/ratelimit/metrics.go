package ratelimit

import (
	"errors"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	platformmetrics "github.com/highgopress/highgopress/platform/metrics"
)

var (
	// decisions counts the limiter's answers by class (read, write; none
	// when no budget applied), key kind (ip, user; none) and decision
	// (allowed, rejected, unavailable: Redis down in fail-closed mode).
	decisions = platformmetrics.Register(prometheus.DefaultRegisterer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hgp_ratelimit_decisions_total",
		Help: "Rate-limit decisions by class (read, write, none), key kind (ip, user, none) and decision (allowed, rejected, unavailable).",
	}, []string{"class", "key", "decision"}))
	// redisDown counts budget takes decided without Redis because it was
	// unreachable, by mode: fail_open (decided by the local store) or
	// fail_closed (refused).
	redisDown = platformmetrics.Register(prometheus.DefaultRegisterer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hgp_ratelimit_redis_down_total",
		Help: "Budget takes decided while Redis was unreachable, by mode: fail_open (local store) or fail_closed (refused).",
	}, []string{"mode"}))
)

func init() {
	// Present from the start so dashboards and rates show 0, not nothing.
	redisDown.WithLabelValues("fail_open")
	redisDown.WithLabelValues("fail_closed")
}

// observe counts one decision of respond.
func observe(d Decision, err error) {
	switch {
	case errors.Is(err, ErrRedisUnavailable):
		decisions.WithLabelValues("none", "none", "unavailable").Inc()
	case err != nil:
		// the request ended first: not a decision
	case d.Limit == 0:
		decisions.WithLabelValues("none", "none", "allowed").Inc()
	default:
		key, class, _ := strings.Cut(d.Budget, ":") // "user:w"
		switch class {
		case "r":
			class = "read"
		case "w":
			class = "write"
		}
		result := "rejected"
		if d.Allowed {
			result = "allowed"
		}
		decisions.WithLabelValues(class, key, result).Inc()
	}
}
