package entra

import (
	"context"
	"runtime"
	"sync"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
)

// benchPool is a set of distinct valid tokens, minted once for all
// benchmarks because RSA signing costs far more than verifying.
var benchPool struct {
	once   sync.Once
	env    *env
	tokens []string
}

const benchPoolSize = 2048

func benchEnv(b *testing.B) (*env, []string) {
	benchPool.once.Do(func() {
		// The issuer must outlive any one benchmark, so it is not tied to b's
		// cleanup (the process exit closes it).
		e := &env{t: b, clock: newClock(), logs: &testkit.SyncBuffer{}}
		idp, err := devidp.Start(devidp.Options{Now: e.clock.Now})
		if err != nil {
			b.Fatal(err)
		}
		e.idp = idp
		u := user(b, "all")
		tokens := make([]string, benchPoolSize)
		var wg sync.WaitGroup
		workers := runtime.GOMAXPROCS(0)
		for w := range workers {
			wg.Go(func() {
				for i := w; i < benchPoolSize; i += workers {
					tok, err := idp.Mint(u, devidp.WithScopes("access_as_user"))
					if err != nil {
						panic(err)
					}
					tokens[i] = tok
				}
			})
		}
		wg.Wait()
		benchPool.env, benchPool.tokens = e, tokens
	})
	e := benchPool.env
	e.t = b
	return e, benchPool.tokens
}

func benchVerifier(b *testing.B, e *env) *Verifier {
	cfg := e.config()
	cfg.Logger = nil
	v, err := NewVerifier(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := v.Warm(context.Background()); err != nil {
		b.Fatal(err)
	}
	return v
}

// BenchmarkVerifyFirstSeen measures a token the verifier has not seen: the
// full parse, RSA check and claim checks. Tokens come from a pool of distinct
// tokens; when the pool is used up the token cache is emptied (with the
// timer stopped), so every measured call is a cache miss.
func BenchmarkVerifyFirstSeen(b *testing.B) {
	e, tokens := benchEnv(b)
	v := benchVerifier(b, e)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%len(tokens) == 0 && i > 0 {
			b.StopTimer()
			v.cache.reset()
			b.StartTimer()
		}
		if _, err := v.Verify(ctx, tokens[i%len(tokens)]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if st := v.Stats(); st.CachedTokens == 0 {
		b.Fatal("nothing was cached")
	}
}

// BenchmarkVerifyCached measures a token seen before: hash and cache lookup.
func BenchmarkVerifyCached(b *testing.B) {
	e, tokens := benchEnv(b)
	v := benchVerifier(b, e)
	ctx := context.Background()
	want, err := v.Verify(ctx, tokens[0])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		p, err := v.Verify(ctx, tokens[0])
		if err != nil || p != want {
			b.Fatal("cache miss", err)
		}
	}
}

// BenchmarkVerifyCachedParallel is the cached path under concurrent callers.
func BenchmarkVerifyCachedParallel(b *testing.B) {
	e, tokens := benchEnv(b)
	v := benchVerifier(b, e)
	ctx := context.Background()
	for _, tok := range tokens[:64] {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := v.Verify(ctx, tokens[i%64]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
