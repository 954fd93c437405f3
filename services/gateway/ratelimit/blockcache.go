package ratelimit

import (
	"hash/maphash"
	"sync"
	"time"
)

const blockShards = 32

// blockCache maps budget keys to the time their exhausted window ends. It is
// sharded to keep lock contention low, and swept as it is written.
type blockCache struct {
	seed   maphash.Seed
	once   sync.Once
	shards [blockShards]blockShard
}

type blockShard struct {
	mu        sync.Mutex
	until     map[string]time.Time
	nextSweep time.Time
}

func (c *blockCache) shard(key string) *blockShard {
	c.once.Do(func() { c.seed = maphash.MakeSeed() })
	return &c.shards[maphash.String(c.seed, key)%blockShards]
}

// get reports whether key is blocked at now, and until when.
func (c *blockCache) get(key string, now time.Time) (time.Time, bool) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	until, ok := s.until[key]
	if !ok {
		return time.Time{}, false
	}
	if !now.Before(until) {
		delete(s.until, key)
		return time.Time{}, false
	}
	return until, true
}

// put blocks key until until (ignored when already past).
func (c *blockCache) put(key string, until, now time.Time) {
	if !now.Before(until) {
		return
	}
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.until == nil {
		s.until = make(map[string]time.Time)
	}
	s.until[key] = until
	if now.After(s.nextSweep) {
		for k, u := range s.until {
			if !now.Before(u) {
				delete(s.until, k)
			}
		}
		s.nextSweep = now.Add(10 * time.Second)
	}
}

// clear forgets every blocked key.
func (c *blockCache) clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.until = nil
		s.mu.Unlock()
	}
}
