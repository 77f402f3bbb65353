package store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/seal"
	"github.com/entra-mcp/functions-mcp/handler/store"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
)

const (
	oidAlice = "11111111-1111-1111-1111-111111111111"
	oidBob   = "22222222-2222-2222-2222-222222222222"
)

func testRing(t testing.TB) *seal.Ring {
	t.Helper()
	k, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	r, err := seal.ParseKeys(k)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newSessions(t *testing.T, opts ...store.SessionsOption) (*store.Sessions, *redis.Client) {
	t.Helper()
	rdb := storetest.Redis(t)
	return store.NewSessions(rdb, testRing(t), opts...), rdb
}

func record(oid string) store.HandleRecord {
	return store.HandleRecord{TenantID: tenantA, ObjectID: oid, HomeAccountID: oid + "." + tenantA, Scope: "api://x/.default offline_access"}
}

func TestFlowSingleUse(t *testing.T) {
	ctx := context.Background()
	s, _ := newSessions(t)
	state := rand.Text()
	f := store.Flow{
		Verifier: "verifier-" + rand.Text(), Nonce: "n", ReturnTo: "https://client.example/cb",
		ClientID: "client", ClientState: "cs", ClientChallenge: "ch", Scope: "s",
		Created: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), Binding: "b",
	}
	if err := s.SaveFlow(ctx, state, f, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveFlow(ctx, state, f, time.Minute); err == nil {
		t.Error("saved a second flow under the same state")
	}
	got, err := s.TakeFlow(ctx, state)
	if err != nil {
		t.Fatal(err)
	}
	if got != f {
		t.Errorf("took %+v, want %+v", got, f)
	}
	if _, err := s.TakeFlow(ctx, state); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second take: %v, want ErrNotFound", err)
	}
	if _, err := s.TakeFlow(ctx, "short"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("take short state: %v, want ErrNotFound", err)
	}
	if err := s.SaveFlow(ctx, "short", f, time.Minute); err == nil {
		t.Error("saved a flow under a short state")
	}
	if err := s.SaveFlow(ctx, rand.Text(), f, 0); err == nil {
		t.Error("saved a flow without a TTL")
	}

	// Concurrent callbacks with one state: exactly one gets the flow.
	state = rand.Text()
	if err := s.SaveFlow(ctx, state, f, time.Minute); err != nil {
		t.Fatal(err)
	}
	var wins, misses atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			_, err := s.TakeFlow(ctx, state)
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, store.ErrNotFound):
				misses.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 || misses.Load() != 49 {
		t.Errorf("%d took the flow, %d missed; want 1 and 49", wins.Load(), misses.Load())
	}
}

func TestCodeRedeemOnce(t *testing.T) {
	ctx := context.Background()
	s, _ := newSessions(t)
	code := rand.Text()
	rec := store.CodeRecord{TenantID: tenantA, ObjectID: oidAlice, HomeAccountID: "h", Scope: "s",
		ClientID: "c", RedirectURI: "https://client.example/cb", ClientChallenge: "ch"}
	if err := s.SaveCode(ctx, code, rec, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, err := s.RedeemCode(ctx, code)
	if err != nil || got != rec {
		t.Fatalf("redeem: %+v, %v; want %+v", got, err, rec)
	}
	_, err = s.RedeemCode(ctx, code)
	var reused *store.CodeReusedError
	if !errors.Is(err, store.ErrCodeReused) || !errors.As(err, &reused) || reused.ChainID != "" {
		t.Errorf("second redemption: %v, want ErrCodeReused without a chain", err)
	}
	if _, err := s.RedeemCode(ctx, rand.Text()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown code: %v, want ErrNotFound", err)
	}
	if err := s.SaveCode(ctx, "short", rec, time.Minute); err == nil {
		t.Error("saved a short code")
	}
}

func TestCodeConcurrentRedeem(t *testing.T) {
	ctx := context.Background()
	s, _ := newSessions(t)
	code := rand.Text()
	if err := s.SaveCode(ctx, code, store.CodeRecord{TenantID: tenantA, ObjectID: oidAlice}, time.Minute); err != nil {
		t.Fatal(err)
	}
	var wins, reused atomic.Int32
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			_, err := s.RedeemCode(ctx, code)
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, store.ErrCodeReused):
				reused.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 || reused.Load() != 99 {
		t.Errorf("%d redeemed, %d reused; want 1 and 99", wins.Load(), reused.Load())
	}
}

func TestIssueForCode(t *testing.T) {
	ctx := context.Background()
	s, _ := newSessions(t)
	code := rand.Text()
	if err := s.SaveCode(ctx, code, store.CodeRecord{TenantID: tenantA, ObjectID: oidAlice}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RedeemCode(ctx, code); err != nil {
		t.Fatal(err)
	}
	handle, chainID, err := s.IssueForCode(ctx, code, record(oidAlice))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(handle, chainID+".") || len(handle) < 40 {
		t.Errorf("handle %q of chain %q", handle, chainID)
	}

	// The code comes back: the caller learns which chain to revoke.
	_, err = s.RedeemCode(ctx, code)
	var reused *store.CodeReusedError
	if !errors.As(err, &reused) || reused.ChainID != chainID {
		t.Fatalf("reuse: %v, want CodeReusedError for chain %s", err, chainID)
	}
	if err := s.RevokeChain(ctx, reused.ChainID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Rotate(ctx, handle); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rotate after revocation: %v, want ErrNotFound", err)
	}
	if err := s.SetCodeChain(ctx, code, chainID); !errors.Is(err, store.ErrCodeReused) {
		t.Errorf("set chain twice: %v, want ErrCodeReused", err)
	}
	if err := s.SetCodeChain(ctx, rand.Text(), chainID); err == nil || errors.Is(err, store.ErrCodeReused) {
		t.Errorf("set chain of an unredeemed code: %v, want an error", err)
	}
}

func TestIssueForCodeAfterReuse(t *testing.T) {
	// The attacker redeems the code between the first redemption and its
	// issue: nothing may be issued.
	ctx := context.Background()
	s, rdb := newSessions(t)
	code := rand.Text()
	if err := s.SaveCode(ctx, code, store.CodeRecord{TenantID: tenantA, ObjectID: oidAlice}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RedeemCode(ctx, code); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RedeemCode(ctx, code); !errors.Is(err, store.ErrCodeReused) {
		t.Fatalf("second redemption: %v", err)
	}
	if _, _, err := s.IssueForCode(ctx, code, record(oidAlice)); !errors.Is(err, store.ErrCodeReused) {
		t.Fatalf("issue after reuse: %v, want ErrCodeReused", err)
	}
	if chains := keys(t, rdb, "rt:*"); len(chains) != 0 {
		t.Errorf("chains left behind: %v", chains)
	}
	// Without a redemption there is no issue either.
	if _, _, err := s.IssueForCode(ctx, rand.Text(), record(oidAlice)); err == nil {
		t.Error("issued for a code that was never redeemed")
	}
}

func TestMSAL(t *testing.T) {
	ctx := context.Background()
	s, _ := newSessions(t)
	if _, ok, err := s.LoadMSAL(ctx, tenantA, oidAlice); ok || err != nil {
		t.Fatalf("load before save: %v, %v", ok, err)
	}
	data := []byte(`{"RefreshToken":{"x":{"secret":"marker"}}}`)
	if err := s.SaveMSAL(ctx, tenantA, oidAlice, data, time.Hour); err != nil {
		t.Fatal(err)
	}
	// Ids are GUIDs in any case; one user has one cache.
	got, ok, err := s.LoadMSAL(ctx, strings.ToUpper(tenantA), strings.ToUpper(oidAlice))
	if err != nil || !ok || !bytes.Equal(got, data) {
		t.Fatalf("load: %q, %v, %v", got, ok, err)
	}
	if _, ok, _ := s.LoadMSAL(ctx, tenantA, oidBob); ok {
		t.Error("bob sees alice's cache")
	}
	if err := s.DeleteMSAL(ctx, tenantA, oidAlice); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.LoadMSAL(ctx, tenantA, oidAlice); ok || err != nil {
		t.Errorf("load after delete: %v, %v", ok, err)
	}
	for _, ids := range [][2]string{{"tenant", oidAlice}, {tenantA, "*"}, {tenantA, oidAlice + ":x"}} {
		if err := s.SaveMSAL(ctx, ids[0], ids[1], data, time.Hour); err == nil {
			t.Errorf("saved under tid %q oid %q", ids[0], ids[1])
		}
	}
	if err := s.SaveMSAL(ctx, tenantA, oidAlice, data, 0); err == nil {
		t.Error("saved without a TTL")
	}
}

func TestRotate(t *testing.T) {
	ctx := context.Background()
	s, _ := newSessions(t)
	rec := record(oidAlice)
	rec.Created = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	h0, chainID, err := s.NewHandle(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	h1, got, err := s.Rotate(ctx, h0)
	if err != nil {
		t.Fatal(err)
	}
	if got != rec || h1 == h0 || !strings.HasPrefix(h1, chainID+".") {
		t.Fatalf("rotated to %q with %+v", h1, got)
	}
	h2, _, err := s.Rotate(ctx, h1)
	if err != nil {
		t.Fatal(err)
	}

	// Someone presents h0 again: the chain is revoked and h2 stops working.
	if _, _, err := s.Rotate(ctx, h0); !errors.Is(err, store.ErrHandleReused) {
		t.Fatalf("reuse: %v, want ErrHandleReused", err)
	}
	if _, _, err := s.Rotate(ctx, h2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("current handle after reuse: %v, want ErrNotFound", err)
	}

	for _, bad := range []string{"", "x", chainID, chainID + "." + rand.Text()[:20], h2 + "x"} {
		if _, _, err := s.Rotate(ctx, bad); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("rotate %q: %v, want ErrNotFound", bad, err)
		}
	}
}

func TestPeekHandle(t *testing.T) {
	ctx := context.Background()
	s, _ := newSessions(t)
	rec := record(oidAlice)
	rec.Created = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	h0, _, err := s.NewHandle(ctx, rec)
	must(t, err)
	for range 2 {
		if got, err := s.PeekHandle(ctx, h0); err != nil || got != rec {
			t.Fatalf("peek: %+v, %v; want %+v", got, err, rec)
		}
	}
	h1, _, err := s.Rotate(ctx, h0) // peeking did not use the handle up
	must(t, err)
	if _, err := s.PeekHandle(ctx, rand.Text()+"."+rand.Text()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("peek unknown: %v, want ErrNotFound", err)
	}
	// Peeking at a rotated handle is reuse too.
	if _, err := s.PeekHandle(ctx, h0); !errors.Is(err, store.ErrHandleReused) {
		t.Fatalf("peek rotated: %v, want ErrHandleReused", err)
	}
	if _, err := s.PeekHandle(ctx, h1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("peek current after reuse: %v, want ErrNotFound", err)
	}
}

func TestGuessedHandleDoesNotRevoke(t *testing.T) {
	// The chain id is visible in a handle; it must not be enough to revoke.
	ctx := context.Background()
	s, _ := newSessions(t)
	h, chainID, err := s.NewHandle(ctx, record(oidAlice))
	if err != nil {
		t.Fatal(err)
	}
	guess := chainID + "." + rand.Text()
	if _, _, err := s.Rotate(ctx, guess); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rotate a guess: %v, want ErrNotFound", err)
	}
	if err := s.Revoke(ctx, guess); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("revoke a guess: %v, want ErrNotFound", err)
	}
	if _, _, err := s.Rotate(ctx, h); err != nil {
		t.Errorf("real handle after guesses: %v", err)
	}
}

func TestRevoke(t *testing.T) {
	ctx := context.Background()
	s, _ := newSessions(t)
	h, _, err := s.NewHandle(ctx, record(oidAlice))
	if err != nil {
		t.Fatal(err)
	}
	h1, _, err := s.Rotate(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, h1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Rotate(ctx, h1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rotate after logout: %v, want ErrNotFound", err)
	}
	if err := s.Revoke(ctx, h1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second logout: %v, want ErrNotFound", err)
	}
	if err := s.RevokeChain(ctx, "not a chain"); err == nil {
		t.Error("revoked a malformed chain id")
	}
}

func TestConcurrentRotate(t *testing.T) {
	// A handle used twice at once is reuse: at most one rotation succeeds,
	// and then the chain is revoked.
	ctx := context.Background()
	s, _ := newSessions(t)
	h, _, err := s.NewHandle(ctx, record(oidAlice))
	if err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int32
	var mu sync.Mutex
	var next string
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			n, _, err := s.Rotate(ctx, h)
			switch {
			case err == nil:
				wins.Add(1)
				mu.Lock()
				next = n
				mu.Unlock()
			case errors.Is(err, store.ErrHandleReused), errors.Is(err, store.ErrNotFound):
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d rotations succeeded, want 1", wins.Load())
	}
	if _, _, err := s.Rotate(ctx, next); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("winner's handle after reuse: %v, want ErrNotFound", err)
	}
}

func TestHandleLifetimes(t *testing.T) {
	ctx := context.Background()
	clock := testkit.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	s, rdb := newSessions(t, store.WithSessionsClock(clock.Now),
		store.WithHandleIdleTTL(time.Hour), store.WithChainLifetime(3*time.Hour))
	h, chainID, err := s.NewHandle(ctx, record(oidAlice))
	if err != nil {
		t.Fatal(err)
	}
	chain := "rt:{" + chainID + "}"
	ttl := func() time.Duration { return rdb.PTTL(ctx, chain).Val() }
	if d := ttl(); d <= 59*time.Minute || d > time.Hour {
		t.Errorf("new chain TTL %v, want the idle TTL", d)
	}
	// Rotation renews the idle TTL...
	clock.Add(150 * time.Minute)
	h, _, err = s.Rotate(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	// ...but never past the chain's absolute end, 30 minutes away.
	if d := ttl(); d <= 29*time.Minute || d > 30*time.Minute {
		t.Errorf("chain TTL near its end %v, want 30m", d)
	}
	clock.Add(31 * time.Minute)
	if _, err := s.PeekHandle(ctx, h); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("peek past the chain's end: %v, want ErrNotFound", err)
	}
	if _, _, err := s.Rotate(ctx, h); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rotate past the chain's end: %v, want ErrNotFound", err)
	}
}

func TestHandleIdleExpiry(t *testing.T) {
	ctx := context.Background()
	rdb, srv := storetest.MiniServer(t)
	s := store.NewSessions(rdb, testRing(t), store.WithHandleIdleTTL(time.Hour))
	h, _, err := s.NewHandle(ctx, record(oidAlice))
	if err != nil {
		t.Fatal(err)
	}
	srv.FastForward(61 * time.Minute)
	if _, _, err := s.Rotate(ctx, h); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rotate an idle handle: %v, want ErrNotFound", err)
	}
}

func TestRevokeUser(t *testing.T) {
	ctx := context.Background()
	s, _ := newSessions(t)
	a1, _, err1 := s.NewHandle(ctx, record(oidAlice))
	a2, _, err2 := s.NewHandle(ctx, record(oidAlice))
	b, _, err3 := s.NewHandle(ctx, record(oidBob))
	err4 := s.SaveMSAL(ctx, tenantA, oidAlice, []byte("cache"), time.Hour)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		t.Fatal(err)
	}
	a2, _, err := s.Rotate(ctx, a2)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.RevokeUser(ctx, tenantA, oidAlice)
	if err != nil || n != 2 {
		t.Fatalf("revoke user: %d, %v; want 2", n, err)
	}
	for _, h := range []string{a1, a2} {
		if _, _, err := s.Rotate(ctx, h); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("alice's handle after revocation: %v, want ErrNotFound", err)
		}
	}
	if _, ok, _ := s.LoadMSAL(ctx, tenantA, oidAlice); ok {
		t.Error("alice's MSAL cache survived")
	}
	if _, _, err := s.Rotate(ctx, b); err != nil {
		t.Errorf("bob's handle after alice's revocation: %v", err)
	}
	if n, err := s.RevokeUser(ctx, tenantA, oidAlice); n != 0 || err != nil {
		t.Errorf("second revoke: %d, %v", n, err)
	}
	if _, err := s.RevokeUser(ctx, tenantA, "bob"); err == nil {
		t.Error("revoked a user with a malformed oid")
	}
}

// keys lists the test database's keys that match pattern.
func keys(t *testing.T, rdb *redis.Client, pattern string) []string {
	t.Helper()
	var out []string
	iter := rdb.Scan(context.Background(), 0, pattern, 100).Iterator()
	for iter.Next(context.Background()) {
		out = append(out, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// rawValue returns everything stored under key, whatever its type.
func rawValue(t *testing.T, rdb *redis.Client, key string) string {
	t.Helper()
	ctx := context.Background()
	switch typ := rdb.Type(ctx, key).Val(); typ {
	case "string":
		return rdb.Get(ctx, key).Val()
	case "hash":
		var b strings.Builder
		for f, v := range rdb.HGetAll(ctx, key).Val() {
			b.WriteString(f + "=" + v + "\n")
		}
		return b.String()
	case "zset":
		return strings.Join(rdb.ZRange(ctx, key, 0, -1).Val(), "\n")
	default:
		t.Fatalf("key %s has unexpected type %q", key, typ)
		return ""
	}
}

func TestKeysHaveTTLsAndNoSecrets(t *testing.T) {
	ctx := context.Background()
	s, rdb := newSessions(t)
	var secrets []string
	secret := func(s string) string { secrets = append(secrets, s); return s }
	// A handle's chain id is meant to be in key names; its secret part and
	// the whole handle must not be anywhere.
	handle := func(h string) {
		_, part, _ := strings.Cut(h, ".")
		secrets = append(secrets, h, part)
	}

	// A full sign-in, exchange, refreshes, a reuse and a logout.
	state := secret(rand.Text())
	flow := store.Flow{Verifier: secret("VERIFIER" + rand.Text()), Nonce: secret("NONCE" + rand.Text()),
		ReturnTo: "https://client.example/cb", ClientChallenge: secret("CHALLENGE" + rand.Text())}
	must(t, s.SaveFlow(ctx, state, flow, 10*time.Minute))
	_, err := s.TakeFlow(ctx, state)
	must(t, err)
	must(t, s.SaveFlow(ctx, secret(rand.Text()), flow, 10*time.Minute)) // abandoned sign-in

	code := secret(rand.Text())
	must(t, s.SaveCode(ctx, code, store.CodeRecord{TenantID: tenantA, ObjectID: oidAlice,
		HomeAccountID: secret("HOMEACCOUNT" + rand.Text())}, 2*time.Minute))
	must(t, s.SaveCode(ctx, secret(rand.Text()), store.CodeRecord{TenantID: tenantA, ObjectID: oidAlice}, 2*time.Minute))
	_, err = s.RedeemCode(ctx, code)
	must(t, err)
	must(t, s.SaveMSAL(ctx, tenantA, oidAlice, []byte(`{"RefreshToken":"`+secret("REFRESHTOKEN"+rand.Text())+`"}`), time.Hour))
	h, _, err := s.IssueForCode(ctx, code, record(oidAlice))
	must(t, err)
	handle(h)
	_, err = s.RedeemCode(ctx, code) // reuse leaves the chain id on the tombstone
	if !errors.Is(err, store.ErrCodeReused) {
		t.Fatal(err)
	}
	h2, _, err := s.NewHandle(ctx, record(oidAlice))
	must(t, err)
	handle(h2)
	for range 3 {
		h2, _, err = s.Rotate(ctx, h2)
		must(t, err)
		handle(h2)
	}
	h3, _, err := s.NewHandle(ctx, record(oidBob))
	must(t, err)
	handle(h3)
	h4, _, err := s.Rotate(ctx, h3)
	must(t, err)
	handle(h4)
	_, _, err = s.Rotate(ctx, h3) // reuse
	if !errors.Is(err, store.ErrHandleReused) {
		t.Fatal(err)
	}
	h5, _, err := s.NewHandle(ctx, record(oidBob))
	must(t, err)
	handle(h5)
	must(t, s.Revoke(ctx, h5))
	lim := store.NewLimiter(rdb, "token", 10, time.Minute, 5)
	_, _, err = lim.Allow(ctx, secret("203.0.113.77"))
	must(t, err)

	all := keys(t, rdb, "*")
	if len(all) < 10 {
		t.Fatalf("only %d keys: %v", len(all), all)
	}
	for _, key := range all {
		if d := rdb.PTTL(ctx, key).Val(); d <= 0 {
			t.Errorf("key %s has no TTL (%v)", key, d)
		}
		value := rawValue(t, rdb, key)
		for _, sec := range secrets {
			if strings.Contains(key, sec) || strings.Contains(value, sec) {
				t.Errorf("key %s holds secret %q", key, sec)
			}
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestCopiedValuesDoNotOpen(t *testing.T) {
	ctx := context.Background()
	s, rdb := newSessions(t)
	copyKey := func(from, to string) {
		t.Helper()
		v, err := rdb.Get(ctx, from).Bytes()
		must(t, err)
		must(t, rdb.Set(ctx, to, v, time.Minute).Err())
	}
	only := func(pattern string) string {
		t.Helper()
		k := keys(t, rdb, pattern)
		if len(k) != 1 {
			t.Fatalf("keys %s: %v", pattern, k)
		}
		return k[0]
	}

	// A flow copied to an attacker's state.
	must(t, s.SaveFlow(ctx, rand.Text(), store.Flow{Verifier: "v"}, time.Minute))
	victimFlow := only("flow:*")
	attacker := rand.Text()
	must(t, s.SaveFlow(ctx, attacker, store.Flow{Verifier: "mine"}, time.Minute))
	for _, k := range keys(t, rdb, "flow:*") {
		if k != victimFlow {
			copyKey(victimFlow, k)
		}
	}
	if _, err := s.TakeFlow(ctx, attacker); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("copied flow: %v, want seal.ErrOpen", err)
	}

	// A code's record copied to another code.
	must(t, s.SaveCode(ctx, rand.Text(), store.CodeRecord{TenantID: tenantA, ObjectID: oidAlice}, time.Minute))
	victimCode := only("code:*")
	other := rand.Text()
	must(t, s.SaveCode(ctx, other, store.CodeRecord{TenantID: tenantA, ObjectID: oidBob}, time.Minute))
	for _, k := range keys(t, rdb, "code:*") {
		if k != victimCode {
			copyKey(victimCode, k)
		}
	}
	if _, err := s.RedeemCode(ctx, other); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("copied code: %v, want seal.ErrOpen", err)
	}

	// Alice's MSAL cache copied to Bob.
	must(t, s.SaveMSAL(ctx, tenantA, oidAlice, []byte("alice"), time.Hour))
	copyKey("msal:"+tenantA+"."+oidAlice, "msal:"+tenantA+"."+oidBob)
	if _, _, err := s.LoadMSAL(ctx, tenantA, oidBob); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("copied MSAL cache: %v, want seal.ErrOpen", err)
	}

	// Alice's chain record copied into Bob's chain.
	_, aliceChain, err := s.NewHandle(ctx, record(oidAlice))
	must(t, err)
	bobHandle, bobChain, err := s.NewHandle(ctx, record(oidBob))
	must(t, err)
	data := rdb.HGet(ctx, "rt:{"+aliceChain+"}", "data").Val()
	must(t, rdb.HSet(ctx, "rt:{"+bobChain+"}", "data", data).Err())
	if _, _, err := s.Rotate(ctx, bobHandle); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("copied chain record: %v, want seal.ErrOpen", err)
	}
}

func TestSessionsRedisDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := store.NewSessions(storetest.Down(t), testRing(t))
	h := rand.Text() + "." + rand.Text()
	ops := map[string]func() error{
		"save flow": func() error { return s.SaveFlow(ctx, rand.Text(), store.Flow{}, time.Minute) },
		"take flow": func() error { _, err := s.TakeFlow(ctx, rand.Text()); return err },
		"save code": func() error { return s.SaveCode(ctx, rand.Text(), store.CodeRecord{}, time.Minute) },
		"redeem":    func() error { _, err := s.RedeemCode(ctx, rand.Text()); return err },
		"set chain": func() error { return s.SetCodeChain(ctx, rand.Text(), rand.Text()) },
		"load msal": func() error { _, _, err := s.LoadMSAL(ctx, tenantA, oidAlice); return err },
		"save msal": func() error { return s.SaveMSAL(ctx, tenantA, oidAlice, nil, time.Hour) },
		"del msal":  func() error { return s.DeleteMSAL(ctx, tenantA, oidAlice) },
		"new":       func() error { _, _, err := s.NewHandle(ctx, record(oidAlice)); return err },
		"issue":     func() error { _, _, err := s.IssueForCode(ctx, rand.Text(), record(oidAlice)); return err },
		"rotate":    func() error { _, _, err := s.Rotate(ctx, h); return err },
		"peek":      func() error { _, err := s.PeekHandle(ctx, h); return err },
		"revoke":    func() error { return s.Revoke(ctx, h) },
		"chain":     func() error { return s.RevokeChain(ctx, rand.Text()) },
		"user":      func() error { _, err := s.RevokeUser(ctx, tenantA, oidAlice); return err },
	}
	for op, run := range ops {
		if err := run(); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", op, err)
		}
	}
}

func TestRememberedConsent(t *testing.T) {
	ctx := context.Background()
	clock := testkit.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s, rdb := newSessions(t, store.WithSessionsClock(clock.Now))
	browser, other := rand.Text(), rand.Text()

	if _, err := s.ConsentedUser(ctx, browser, "client-a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("before any approval: %v", err)
	}
	if err := s.RememberConsent(ctx, browser, "client-a", tenantA, oidAlice, time.Hour); err != nil {
		t.Fatal(err)
	}
	clock.Add(30 * time.Minute)
	if err := s.RememberConsent(ctx, browser, "client-b", tenantA, oidBob, time.Hour); err != nil {
		t.Fatal(err)
	}
	if u, err := s.ConsentedUser(ctx, browser, "client-a"); err != nil || u != tenantA+"."+oidAlice {
		t.Errorf("client-a: %q %v", u, err)
	}
	for name, tc := range map[string][2]string{
		"another client":  {browser, "client-c"},
		"another browser": {other, "client-a"},
		"short id":        {"short", "client-a"},
	} {
		if _, err := s.ConsentedUser(ctx, tc[0], tc[1]); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// client-a's approval ends at its own expiry although the key lives on
	// for client-b's.
	clock.Add(31 * time.Minute)
	if _, err := s.ConsentedUser(ctx, browser, "client-a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("client-a after its expiry: %v", err)
	}
	if u, err := s.ConsentedUser(ctx, browser, "client-b"); err != nil || u != tenantA+"."+oidBob {
		t.Errorf("client-b: %q %v", u, err)
	}
	keys, _ := rdb.Keys(ctx, "consent:*").Result()
	for _, k := range keys {
		if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 {
			t.Errorf("%s has no TTL", k)
		}
		if strings.Contains(k, browser) {
			t.Errorf("%s holds the browser id as it is", k)
		}
	}
	if err := s.RememberConsent(ctx, browser, "client-a", "not-a-guid", oidAlice, time.Hour); err == nil {
		t.Error("a tenant id that is not a GUID was accepted")
	}

	// An admin's revocation of Bob voids his approvals up to now; a new
	// approval after it counts again.
	clock.Add(time.Second)
	if _, err := s.RevokeUser(ctx, tenantA, oidBob); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsentedUser(ctx, browser, "client-b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("client-b after RevokeUser: %v", err)
	}
	clock.Add(time.Second)
	if err := s.RememberConsent(ctx, browser, "client-b", tenantA, oidBob, time.Hour); err != nil {
		t.Fatal(err)
	}
	if u, err := s.ConsentedUser(ctx, browser, "client-b"); err != nil || u != tenantA+"."+oidBob {
		t.Errorf("client-b approved again after RevokeUser: %q %v", u, err)
	}
	if ttl := rdb.PTTL(ctx, "consentepoch:"+tenantA+"."+oidBob).Val(); ttl <= 0 {
		t.Errorf("consent epoch TTL %v", ttl)
	}
	if err := s.RememberConsent(ctx, browser, "client-a", tenantA, oidAlice, store.DefaultChainLifetime+time.Hour); err == nil {
		t.Error("a consent outliving RevokeUser's mark was accepted")
	}
}

// TestConsentRequestsAreNotFlows: a consent request and a sign-in flow live
// under different keys, so the callback can never take a request that was
// never sent to Entra, nor the consent form a sign-in flow.
func TestConsentRequestsAreNotFlows(t *testing.T) {
	ctx := context.Background()
	s, _ := newSessions(t)
	id := rand.Text()
	if err := s.SaveConsentRequest(ctx, id, store.Flow{ClientID: "c", CSRF: "h"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakeFlow(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a consent request taken as a flow: %v", err)
	}
	f, err := s.TakeConsentRequest(ctx, id)
	if err != nil || f.ClientID != "c" || f.CSRF != "h" {
		t.Fatalf("TakeConsentRequest: %+v %v", f, err)
	}
	if _, err := s.TakeConsentRequest(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a consent request taken twice: %v", err)
	}
	state := rand.Text()
	if err := s.SaveFlow(ctx, state, store.Flow{Verifier: "v"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakeConsentRequest(ctx, state); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a flow taken as a consent request: %v", err)
	}
}
