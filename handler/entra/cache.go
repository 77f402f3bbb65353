package entra

import (
	"crypto/rsa"
	"sync"
	"time"
)

// tokenCache remembers verified tokens so that a client repeating its token
// on every request pays for the RSA check once. It is keyed by the SHA-256 of
// the token, so it holds no bearer credential, and it is bounded: when full
// it first drops expired entries, then arbitrary ones (Go's map order is
// random, so a flood of fresh tokens cannot pin chosen entries).
type tokenCache struct {
	mu        sync.RWMutex
	max       int
	entries   map[[32]byte]cacheEntry
	lastSweep time.Time
}

type cacheEntry struct {
	principal *Principal
	exp       int64          // unix seconds: the entry is dead from then on
	kid       string         // the key that verified the token...
	key       *rsa.PublicKey // ...and which key object it was at the time
}

// sweepEvery bounds how often a full cache is scanned for expired entries,
// so that inserting into a full cache stays cheap.
const sweepEvery = time.Minute

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, entries: make(map[[32]byte]cacheEntry)}
}

// get returns the principal cached under sum, if the entry has not expired
// and the key that verified it is still in the key set ks.
func (c *tokenCache) get(sum [32]byte, now time.Time, ks KeySet) (*Principal, bool) {
	c.mu.RLock()
	e, ok := c.entries[sum]
	c.mu.RUnlock()
	if !ok {
		return nil, false
	}
	if now.Unix() >= e.exp || !ks.Holds(e.kid, e.key, now) {
		c.mu.Lock()
		delete(c.entries, sum)
		c.mu.Unlock()
		return nil, false
	}
	return e.principal, true
}

func (c *tokenCache) put(sum [32]byte, e cacheEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[sum]; !ok && len(c.entries) >= c.max {
		if now.Sub(c.lastSweep) >= sweepEvery {
			c.lastSweep = now
			for k, old := range c.entries {
				if now.Unix() >= old.exp {
					delete(c.entries, k)
				}
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[sum] = e
}

func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// reset empties the cache.
func (c *tokenCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
}
