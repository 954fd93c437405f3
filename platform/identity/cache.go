package identity

import (
	"hash/maphash"
	"sync"
)

// memo remembers strings computed from a pair of strings and a stamp (unix
// seconds): signatures handed out (Sign) and values found valid (Verify).
// It only saves work — an entry is never the reason a value is accepted
// that Verify would refuse — and it is bounded: entries older than keep
// seconds are swept as it is written, and a full shard stores nothing more.
type memo struct {
	seed   maphash.Seed
	keep   int64
	shards [memoShards]memoShard
}

const (
	memoShards   = 16
	memoShardMax = 4096 // ≈ 65k entries in all
)

type memoKey struct{ a, b string }

type memoEntry struct {
	value string
	stamp int64
}

type memoShard struct {
	mu        sync.Mutex
	m         map[memoKey]memoEntry
	nextSweep int64
}

func newMemo(keep int64) *memo { return &memo{seed: maphash.MakeSeed(), keep: keep} }

func (c *memo) shard(k memoKey) *memoShard {
	return &c.shards[maphash.String(c.seed, k.b)%memoShards]
}

func (c *memo) get(k memoKey) (memoEntry, bool) {
	s := c.shard(k)
	s.mu.Lock()
	e, ok := s.m[k]
	s.mu.Unlock()
	return e, ok
}

func (c *memo) put(k memoKey, e memoEntry, now int64) {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[memoKey]memoEntry)
	}
	if now >= s.nextSweep {
		for k, e := range s.m {
			if now-e.stamp > c.keep || e.stamp-now > c.keep {
				delete(s.m, k)
			}
		}
		s.nextSweep = now + c.keep
	}
	if _, ok := s.m[k]; !ok && len(s.m) >= memoShardMax {
		return
	}
	s.m[k] = e
}
