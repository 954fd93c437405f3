package events

import "time"

// LagOption configures a LagMonitor.
type LagOption func(*LagMonitor)

// WithLagInterval sets how often the lag is sampled (default
// DefaultLagInterval).
func WithLagInterval(d time.Duration) LagOption {
	return func(m *LagMonitor) {
		if d > 0 {
			m.interval = d
		}
	}
}
