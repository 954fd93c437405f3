package auth

import (
	"crypto/sha256"
	"sync"
	"time"
)

// DefaultCacheSize is how many verified tokens a Verifier remembers.
const DefaultCacheSize = 10_000

// verifiedTokens remembers tokens that passed verification, keyed by their
// SHA-256, until they expire: a client sends the same token with every
// request, and parsing and checking it again costs more than hashing it.
// A token is only ever found under its exact bytes, so a changed token is
// verified in full; a cached one is refused from its expiry on (without the
// leeway, which only widens acceptance).
type verifiedTokens struct {
	mu  sync.RWMutex
	m   map[[sha256.Size]byte]Claims
	max int
}

func newVerifiedTokens(max int) *verifiedTokens {
	if max <= 0 {
		return nil
	}
	return &verifiedTokens{m: make(map[[sha256.Size]byte]Claims), max: max}
}

func (c *verifiedTokens) get(token string, now time.Time) (Claims, bool) {
	if c == nil {
		return Claims{}, false
	}
	k := sha256.Sum256([]byte(token))
	c.mu.RLock()
	cl, ok := c.m[k]
	c.mu.RUnlock()
	if !ok || !now.Before(cl.ExpiresAt) {
		return Claims{}, false
	}
	return cl, true
}

func (c *verifiedTokens) put(token string, cl Claims, now time.Time) {
	if c == nil {
		return
	}
	k := sha256.Sum256([]byte(token))
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		// Full: drop the expired entries, and if that is not enough, a
		// tenth of the others (map order is random).
		for key, v := range c.m {
			if !now.Before(v.ExpiresAt) {
				delete(c.m, key)
			}
		}
		for key := range c.m {
			if len(c.m) < c.max-c.max/10 {
				break
			}
			delete(c.m, key)
		}
	}
	c.m[k] = cl
}

func (c *verifiedTokens) len() int {
	if c == nil {
		return 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
