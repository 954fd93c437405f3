// Package redisstore keeps the analytics windows in Redis: the per-pair
// like state that makes applying an event twice harmless, the time buckets
// of the rankings and of the API statistics, and the ranking snapshots
// that pages are cut from. Every batch of events is applied by one Lua
// script, so dedupe and bucket updates are one atomic step.
package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/highgopress/highgopress/services/analytics/window"
)

// DefaultPrefix starts every key of the store.
const DefaultPrefix = "hgp:an:"

// Store is the analytics state in Redis. It is safe for concurrent use.
type Store struct {
	logger *slog.Logger
	rdb    redis.Cmdable
	o      options
	k      keys

	mu    sync.Mutex
	snaps map[snapKey]*snapEntry
}

// New returns a Store over rdb (which the caller keeps and closes).
func New(logger *slog.Logger, rdb redis.Cmdable, opts ...Option) *Store {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	return &Store{logger: logger, rdb: rdb, o: o, k: keys{o.prefix}, snaps: map[snapKey]*snapEntry{}}
}

// Channel is the Redis pub/sub channel a batch that changed a ranking of a
// namespace publishes the namespace on.
func (s *Store) Channel() string { return s.k.channel() }

// Clock returns the store's clock.
func (s *Store) Clock() window.Clock { return s.o.clock }

// LoadScripts loads the Lua scripts (and checks that Redis answers).
func (s *Store) LoadScripts(ctx context.Context) error {
	for _, sc := range []*redis.Script{applyScript, snapshotScript, pageScript} {
		if err := sc.Load(ctx, s.rdb).Err(); err != nil {
			return fmt.Errorf("load analytics scripts: %w", err)
		}
	}
	return nil
}

// keys names every key of the store.
type keys struct{ p string }

// pair is the hash of an item's like state: user → "+"/"-" and version.
func (k keys) pair(ns, item string) string { return k.p + "p:" + ns + ":" + item }
func (k keys) all(ns string) string        { return k.p + "all:" + ns }
func (k keys) bucket(ns string, g window.Grain, i int64) string {
	return k.p + g.Name + ":" + ns + ":" + strconv.FormatInt(i, 10)
}
func (k keys) genPrefix() string     { return k.p + "gen:" }
func (k keys) gen(ns string) string  { return k.genPrefix() + ns }
func (k keys) channel() string       { return k.p + "changed" }
func (k keys) snap(id string) string { return k.p + "snap:" + id }
func (k keys) meta(id string) string { return k.p + "snapm:" + id }
func (k keys) apiBucket(g window.Grain, i int64) string {
	return k.p + "api:" + g.Name + ":" + strconv.FormatInt(i, 10)
}
func (k keys) apiSeen(minute int64) string { return k.p + "api:seen:" + strconv.FormatInt(minute, 10) }

// Reset deletes every key of the store (a rebuild starts from nothing).
func (s *Store) Reset(ctx context.Context) (int, error) {
	n := 0
	iter := s.rdb.Scan(ctx, 0, s.k.p+"*", 1000).Iterator()
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := s.rdb.Unlink(ctx, batch...).Err(); err != nil {
			return fmt.Errorf("%w: reset: %w", errUnavailable, err)
		}
		n += len(batch)
		batch = batch[:0]
		return nil
	}
	for key := range iter.Vals(ctx) {
		batch = append(batch, key)
		if len(batch) == 500 {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return n, fmt.Errorf("%w: reset: %w", errUnavailable, err)
	}
	s.mu.Lock()
	s.snaps = map[snapKey]*snapEntry{}
	s.mu.Unlock()
	return n, flush()
}

func ms(d time.Duration) string { return strconv.FormatInt(max(d.Milliseconds(), 1), 10) }
