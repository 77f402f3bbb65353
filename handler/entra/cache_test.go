package entra

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/devidp"
)

func TestCacheHitReturnsSamePrincipal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	tok := e.mint()
	p1, err := e.v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := e.v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if p1 != p2 {
		t.Error("second Verify did not come from the cache")
	}
	if n := e.v.Stats().CachedTokens; n != 1 {
		t.Errorf("CachedTokens = %d, want 1", n)
	}
	// A different token of the same user is a different entry.
	if p3, err := e.v.Verify(ctx, e.mint()); err != nil || p3 == p1 {
		t.Errorf("other token: %v, shared principal %v", err, p3 == p1)
	}
}

func TestCacheEntryExpiresAtExp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	tok := e.mint(devidp.WithLifetime(10 * time.Minute))
	p1, err := e.v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Add(10*time.Minute - time.Second)
	if p, err := e.v.Verify(ctx, tok); err != nil || p != p1 {
		t.Fatalf("one second before exp: %v, cached %v", err, p == p1)
	}
	// At exp the entry is gone; the token is verified afresh (and accepted
	// within the leeway) but not cached again.
	e.clock.Add(time.Second)
	p2, err := e.v.Verify(ctx, tok)
	if err != nil || p2 == p1 {
		t.Fatalf("at exp: %v, served from cache %v", err, p2 == p1)
	}
	if n := e.v.Stats().CachedTokens; n != 0 {
		t.Errorf("CachedTokens = %d after exp, want 0", n)
	}
	e.clock.Add(Leeway)
	if _, err := e.v.verify(ctx, tok); !errors.Is(err, errExpired) {
		t.Fatalf("past exp + leeway: %v", err)
	}
}

func TestCacheBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.CacheSize = 3 })
	ctx := context.Background()
	for range 6 {
		if _, err := e.v.Verify(ctx, e.mint()); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.v.Stats().CachedTokens; n != 3 {
		t.Errorf("CachedTokens = %d, want 3", n)
	}
	// Expired entries go first when the cache is full.
	e.clock.Add(2 * time.Hour)
	if _, err := e.v.Verify(ctx, e.mint()); err != nil {
		t.Fatal(err)
	}
	if n := e.v.Stats().CachedTokens; n != 1 {
		t.Errorf("CachedTokens = %d after sweep, want 1", n)
	}
}

func TestCacheDisabled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.CacheSize = -1 })
	ctx := context.Background()
	tok := e.mint()
	p1, err1 := e.v.Verify(ctx, tok)
	p2, err2 := e.v.Verify(ctx, tok)
	if err1 != nil || err2 != nil || p1 == p2 {
		t.Errorf("disabled cache: %v %v, shared %v", err1, err2, p1 == p2)
	}
	if n := e.v.Stats().CachedTokens; n != 0 {
		t.Errorf("CachedTokens = %d", n)
	}
}

// TestConcurrentVerify runs many callers with different users at once; under
// -race it checks that no state leaks between them.
func TestConcurrentVerify(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	type job struct {
		tok string
		oid string
	}
	var jobs []job
	for _, u := range devidp.DemoUsers() {
		tok, err := e.idp.Mint(u)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, job{tok, u.ObjectID})
	}
	var wg sync.WaitGroup
	for i := range 8 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for j := range 200 {
				jb := jobs[(i+j)%len(jobs)]
				p, err := e.v.Verify(ctx, jb.tok)
				if err != nil || p.ObjectID != jb.oid {
					t.Errorf("got %v / %v, want oid %s", p, err, jb.oid)
					return
				}
			}
		})
	}
	wg.Wait()
}
