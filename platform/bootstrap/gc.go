package bootstrap

import (
	"log/slog"
	"math"
	"runtime/debug"
)

// Garbage-collector defaults of every service process, used when the
// standard GOGC and GOMEMLIMIT variables are not set (either one set
// keeps Go's own handling of both).
//
// The request paths allocate a few tens of KiB per call and keep little
// alive (live heaps of 10–30 MiB under load): with Go's default (GOGC=100)
// the collector ran every few milliseconds and its marking, sweeping and
// assists took 5–9 % of the gateway's and the counter's CPU in profiles of
// the like path (docs/performance.md). GOGC=400 lets the heap grow to five
// times the live data between cycles, a quarter of the collections; the
// soft memory limit keeps that growth bounded, so a process whose live
// data grows collects more often instead of growing past it. 160 MiB keeps
// the resident size of every service under 200 MiB: with a 256 MiB limit
// the gateway reached 266 MiB under 2,000 concurrent requests (an open
// loop beyond what the path sustains), its heap target pinned at the limit.
// A process whose live data alone nears the limit spends more CPU on
// collections (at most about half of it, Go's own cap): give it GOMEMLIMIT.
const (
	DefaultGCPercent   = 400
	DefaultMemoryLimit = 160 << 20
)

// tuneGC applies the defaults unless the environment configures the
// collector (getenv reads it), and reports whether it did.
func tuneGC(logger *slog.Logger, getenv func(string) string) bool {
	if getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return false
	}
	debug.SetGCPercent(DefaultGCPercent)
	// A negative limit only reads the current one.
	if debug.SetMemoryLimit(-1) == math.MaxInt64 {
		debug.SetMemoryLimit(DefaultMemoryLimit)
	}
	logger.Debug("garbage collector defaults applied", "gogc", DefaultGCPercent, "gomemlimit_bytes", int64(DefaultMemoryLimit))
	return true
}
