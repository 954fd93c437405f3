package redisstore

import (
	"time"

	"github.com/highgopress/highgopress/services/analytics/window"
)

// Option configures a Store.
type Option func(*options)

type options struct {
	prefix      string
	clock       window.Clock
	snapshotTTL time.Duration
	freshness   time.Duration
	chunk       int
}

// Defaults.
const (
	// DefaultSnapshotTTL is how long a ranking snapshot (and the page
	// tokens cut from it) lives.
	DefaultSnapshotTTL = 5 * time.Minute
	// DefaultFreshness is how long a snapshot is reused for new first
	// pages after events changed the ranking.
	DefaultFreshness = 250 * time.Millisecond
	// DefaultChunk is the most events one Lua call applies.
	DefaultChunk = 1000
)

func defaultOptions() options {
	return options{
		prefix: DefaultPrefix, clock: window.System, snapshotTTL: DefaultSnapshotTTL,
		freshness: DefaultFreshness, chunk: DefaultChunk,
	}
}

// WithPrefix sets the prefix of every key (default "hgp:an:"); tests use
// their own.
func WithPrefix(p string) Option { return func(o *options) { o.prefix = p } }

// WithClock sets the clock that places events in buckets and windows on
// the time line (default the system clock).
func WithClock(c window.Clock) Option {
	return func(o *options) {
		if c != nil {
			o.clock = c
		}
	}
}

// WithSnapshotTTL sets how long ranking snapshots and their page tokens
// live (HGP_ANALYTICS_SNAPSHOT_TTL, default 5m).
func WithSnapshotTTL(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.snapshotTTL = d
		}
	}
}

// WithFreshness sets how long a snapshot answers first pages after the
// ranking changed (HGP_ANALYTICS_FRESHNESS, default 250ms; 0: a change is
// visible to the next request). While nothing changes a snapshot is reused
// for as long as it lives.
func WithFreshness(d time.Duration) Option {
	return func(o *options) {
		if d >= 0 {
			o.freshness = d
		}
	}
}

// WithChunk sets the most events one Lua call applies (default 1000).
func WithChunk(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.chunk = n
		}
	}
}
