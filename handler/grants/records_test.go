package grants_test

import (
	"context"
	"crypto/rand"
	"errors"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/grants"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/outage"
	"github.com/entra-mcp/functions-mcp/handler/ratelimit"
	"github.com/entra-mcp/functions-mcp/handler/seal"
	"github.com/entra-mcp/functions-mcp/handler/store"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
)

const (
	tenantA  = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	oidAlice = "11111111-1111-1111-1111-111111111111"
	oidBob   = "22222222-2222-2222-2222-222222222222"
)

// sessions is a user's state and the grants' records over one Redis, as
// the handler wires them: the records' scripts share each user's keyspace
// and epoch with the store.
type sessions struct {
	*store.Sessions
	*grants.Records
}

func newSessions(t *testing.T, opts ...grants.RecordsOption) (sessions, *redis.Client) {
	t.Helper()
	rdb := storetest.Redis(t)
	storetest.Watch(t, rdb)
	return over(t, rdb, opts...), rdb
}

// over is sessions over rdb.
func over(t *testing.T, rdb *redis.Client, opts ...grants.RecordsOption) sessions {
	ring := testkit.Ring(t)
	return sessions{store.NewSessions(rdb, ring), grants.NewRecords(rdb, ring, opts...)}
}

// userTag is the hash tag of a user's keys.
func userTag(t *testing.T, tid, oid string) string {
	u, err := store.KeysOf(tid, oid)
	if err != nil {
		t.Fatal(err)
	}
	return u.Tag
}

func record(oid string) grants.HandleRecord {
	return grants.HandleRecord{TenantID: tenantA, ObjectID: oid, HomeAccountID: oid + "." + tenantA, Scope: "api://x/.default offline_access"}
}

func newCode(t *testing.T, s sessions, rec grants.CodeRecord) string {
	t.Helper()
	code, err := s.NewCode(context.Background(), rec, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func TestCodeRedeemOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newSessions(t)
	rec := grants.CodeRecord{TenantID: tenantA, ObjectID: oidAlice, HomeAccountID: "h", Scope: "s",
		ClientID: "c", RedirectURI: "https://client.example/cb", ClientChallenge: "ch"}
	code := newCode(t, s, rec)
	got, err := s.RedeemCode(ctx, code)
	if err != nil || got != rec {
		t.Fatalf("redeem: %+v, %v; want %+v", got, err, rec)
	}
	_, err = s.RedeemCode(ctx, code)
	var reused *grants.CodeReusedError
	if !errors.Is(err, grants.ErrCodeReused) || !errors.As(err, &reused) || reused.Chain != "" {
		t.Errorf("second redemption: %v, want ErrCodeReused without a chain", err)
	}
	tag, _, _ := strings.Cut(code, ".")
	for _, unknown := range []string{rand.Text(), tag + "." + rand.Text(), tag + ".short", "0123456789abcdeg." + rand.Text()} {
		if _, err := s.RedeemCode(ctx, unknown); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("unknown code %q: %v, want ErrNotFound", unknown, err)
		}
	}
	if _, err := s.NewCode(ctx, grants.CodeRecord{TenantID: tenantA, ObjectID: "x"}, time.Minute); err == nil {
		t.Error("minted a code for an oid that is not a GUID")
	}
}

func TestCodeConcurrentRedeem(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newSessions(t)
	code := newCode(t, s, grants.CodeRecord{TenantID: tenantA, ObjectID: oidAlice})
	var wins, reused atomic.Int32
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			_, err := s.RedeemCode(ctx, code)
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, grants.ErrCodeReused):
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
	t.Parallel()
	ctx := context.Background()
	s, _ := newSessions(t)
	code := newCode(t, s, grants.CodeRecord{TenantID: tenantA, ObjectID: oidAlice})
	if _, err := s.RedeemCode(ctx, code); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.IssueForCode(ctx, code, record(oidBob)); err == nil {
		t.Fatal("issued a chain for Bob from Alice's code")
	}
	handle, chainID, err := s.IssueForCode(ctx, code, record(oidAlice))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(handle, chainID+".") || len(handle) < 60 {
		t.Errorf("handle %q of chain %q", handle, chainID)
	}

	// The code comes back: the caller learns which chain to revoke.
	_, err = s.RedeemCode(ctx, code)
	var reused *grants.CodeReusedError
	if !errors.As(err, &reused) || reused.Chain != chainID {
		t.Fatalf("reuse: %v, want CodeReusedError for chain %s", err, chainID)
	}
	if err := s.RevokeChain(ctx, reused.Chain); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Rotate(ctx, handle); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rotate after revocation: %v, want ErrNotFound", err)
	}
	if _, _, err := s.IssueForCode(ctx, code, record(oidAlice)); !errors.Is(err, grants.ErrCodeReused) {
		t.Errorf("issue twice: %v, want ErrCodeReused", err)
	}
}

func TestIssueForCodeAfterReuse(t *testing.T) {
	t.Parallel()
	// The attacker redeems the code between the first redemption and its
	// issue: nothing may be issued.
	ctx := context.Background()
	s, rdb := newSessions(t)
	code := newCode(t, s, grants.CodeRecord{TenantID: tenantA, ObjectID: oidAlice})
	if _, err := s.RedeemCode(ctx, code); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RedeemCode(ctx, code); !errors.Is(err, grants.ErrCodeReused) {
		t.Fatalf("second redemption: %v", err)
	}
	if _, _, err := s.IssueForCode(ctx, code, record(oidAlice)); !errors.Is(err, grants.ErrCodeReused) {
		t.Fatalf("issue after reuse: %v, want ErrCodeReused", err)
	}
	if chains := storetest.Keys(t, rdb, "rt:*"); len(chains) != 0 {
		t.Errorf("chains left behind: %v", chains)
	}
	// Without a redemption there is no issue either.
	unredeemed := newCode(t, s, grants.CodeRecord{TenantID: tenantA, ObjectID: oidAlice})
	if _, _, err := s.IssueForCode(ctx, unredeemed, record(oidAlice)); err == nil {
		t.Error("issued for a code that was never redeemed")
	}
}

func TestRotate(t *testing.T) {
	t.Parallel()
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
	if !sameRecord(got, rec) || h1 == h0 || !strings.HasPrefix(h1, chainID+".") {
		t.Fatalf("rotated to %q with %+v", h1, got)
	}
	h2, _, err := s.Rotate(ctx, h1)
	if err != nil {
		t.Fatal(err)
	}

	// Someone presents h0 again: the chain is revoked and h2 stops working.
	if _, _, err := s.Rotate(ctx, h0); !errors.Is(err, grants.ErrHandleReused) {
		t.Fatalf("reuse: %v, want ErrHandleReused", err)
	}
	if _, _, err := s.Rotate(ctx, h2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("current handle after reuse: %v, want ErrNotFound", err)
	}

	for _, bad := range []string{"", "x", chainID, chainID + "." + rand.Text()[:20], h2 + "x", rand.Text() + "." + rand.Text()} {
		if _, _, err := s.Rotate(ctx, bad); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("rotate %q: %v, want ErrNotFound", bad, err)
		}
	}
}

func TestPeekHandle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newSessions(t, grants.WithReuseGrace(0))
	rec := record(oidAlice)
	rec.Created = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	h0, _, err := s.NewHandle(ctx, rec)
	must(t, err)
	for range 2 {
		if got, err := s.PeekHandle(ctx, h0); err != nil || !sameRecord(got, rec) {
			t.Fatalf("peek: %+v, %v; want %+v", got, err, rec)
		}
	}
	h1, _, err := s.Rotate(ctx, h0) // peeking did not use the handle up
	must(t, err)
	if _, err := s.PeekHandle(ctx, chainOf(h0)+"."+rand.Text()+"."+rand.Text()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("peek unknown: %v, want ErrNotFound", err)
	}
	// Peeking at a rotated handle is reuse too (outside the grace).
	if _, err := s.PeekHandle(ctx, h0); !errors.Is(err, grants.ErrHandleReused) {
		t.Fatalf("peek rotated: %v, want ErrHandleReused", err)
	}
	if _, err := s.PeekHandle(ctx, h1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("peek current after reuse: %v, want ErrNotFound", err)
	}
}

func TestGuessedHandleDoesNotRevoke(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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
	t.Parallel()
	// A handle used many times at once leads to one successor whatever
	// the interleaving: each use either gets that successor or (without a
	// grace, once the handle was rotated) revokes the chain. There are
	// never two live successors.
	ctx := context.Background()
	for _, grace := range []time.Duration{0, 30 * time.Second} {
		s, _ := newSessions(t, grants.WithReuseGrace(grace))
		h, _, err := s.NewHandle(ctx, record(oidAlice))
		must(t, err)
		var mu sync.Mutex
		got := map[string]bool{}
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				n, _, err := s.Rotate(ctx, h)
				switch {
				case err == nil:
					mu.Lock()
					got[n] = true
					mu.Unlock()
				case errors.Is(err, grants.ErrHandleReused), errors.Is(err, store.ErrNotFound):
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if len(got) > 1 {
			t.Fatalf("grace %v: %d different successors of one handle", grace, len(got))
		}
		if grace > 0 && len(got) != 1 {
			t.Fatalf("grace %v: no use of the handle got its successor", grace)
		}
	}
}

func TestHandleLifetimes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := testkit.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	s, rdb := newSessions(t, grants.WithClock(clock.Now),
		grants.WithHandleIdleTTL(time.Hour), grants.WithChainLifetime(3*time.Hour))
	h, chainID, err := s.NewHandle(ctx, record(oidAlice))
	if err != nil {
		t.Fatal(err)
	}
	chain := chainKeyOf(chainID)
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
	t.Parallel()
	ctx := context.Background()
	rdb, srv := storetest.MiniServer(t)
	s := over(t, rdb, grants.WithHandleIdleTTL(time.Hour))
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
	t.Parallel()
	ctx := context.Background()
	s, _ := newSessions(t)
	a1, _, err1 := s.NewHandle(ctx, record(oidAlice))
	a2, _, err2 := s.NewHandle(ctx, record(oidAlice))
	b, _, err3 := s.NewHandle(ctx, record(oidBob))
	err4 := s.SaveMSAL(ctx, tenantA, oidAlice, []byte("cache"), time.Hour, 0)
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
	if _, ok, _, _ := s.LoadMSAL(ctx, tenantA, oidAlice); ok {
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
	t.Parallel()
	ctx := context.Background()
	s, rdb := newSessions(t, grants.WithReuseGrace(0))
	var secrets []string
	secret := func(s string) string { secrets = append(secrets, s); return s }
	// A handle's chain id is meant to be in key names; its secret part and
	// the whole handle must not be anywhere.
	handle := func(h string) {
		_, part, _ := strings.Cut(h, ".")
		secrets = append(secrets, h, part)
	}

	// A full sign-in, exchange, refreshes, a reuse and a logout.
	_, err := s.MarkFlowDone(ctx, secret(rand.Text()), 10*time.Minute)
	must(t, err)
	code := newCode(t, s, grants.CodeRecord{TenantID: tenantA, ObjectID: oidAlice,
		HomeAccountID: secret("HOMEACCOUNT" + rand.Text())})
	secret(code)
	_, codeSecret, _ := strings.Cut(code, ".")
	secret(codeSecret)
	secret(newCode(t, s, grants.CodeRecord{TenantID: tenantA, ObjectID: oidAlice})) // never redeemed
	_, err = s.RedeemCode(ctx, code)
	must(t, err)
	must(t, s.SaveMSAL(ctx, tenantA, oidAlice, []byte(`{"RefreshToken":"`+secret("REFRESHTOKEN"+rand.Text())+`"}`), time.Hour, 0))
	h, _, err := s.IssueForCode(ctx, code, record(oidAlice))
	must(t, err)
	handle(h)
	_, err = s.RedeemCode(ctx, code) // reuse leaves the chain id on the tombstone
	if !errors.Is(err, grants.ErrCodeReused) {
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
	if !errors.Is(err, grants.ErrHandleReused) {
		t.Fatal(err)
	}
	h5, _, err := s.NewHandle(ctx, record(oidBob))
	must(t, err)
	handle(h5)
	must(t, s.Revoke(ctx, h5))
	lim := ratelimit.New(rdb, "token", 10, time.Minute, 5)
	_, _, err = lim.Allow(ctx, secret("203.0.113.77"))
	must(t, err)

	_, err = s.RevokeUser(ctx, tenantA, oidBob) // leaves Bob's epoch
	must(t, err)

	all := storetest.Keys(t, rdb, "*")
	if len(all) < 8 {
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
	t.Parallel()
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
		k := storetest.Keys(t, rdb, pattern)
		if len(k) != 1 {
			t.Fatalf("keys %s: %v", pattern, k)
		}
		return k[0]
	}

	// A code's record copied to another code of the same user.
	newCode(t, s, grants.CodeRecord{TenantID: tenantA, ObjectID: oidAlice})
	victimCode := only("code:*")
	other := newCode(t, s, grants.CodeRecord{TenantID: tenantA, ObjectID: oidAlice, Scope: "other"})
	for _, k := range storetest.Keys(t, rdb, "code:*") {
		if k != victimCode {
			d := rdb.HGet(ctx, victimCode, "d").Val()
			must(t, rdb.HSet(ctx, k, "d", d).Err())
		}
	}
	if _, err := s.RedeemCode(ctx, other); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("copied code: %v, want seal.ErrOpen", err)
	}

	// Alice's MSAL cache copied to Bob.
	must(t, s.SaveMSAL(ctx, tenantA, oidAlice, []byte("alice"), time.Hour, 0))
	must(t, s.SaveMSAL(ctx, tenantA, oidBob, []byte("bob"), time.Hour, 0))
	copyKey(only("msal:*"+oidAlice), only("msal:*"+oidBob))
	if _, _, _, err := s.LoadMSAL(ctx, tenantA, oidBob); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("copied MSAL cache: %v, want seal.ErrOpen", err)
	}

	// Alice's chain record copied into Bob's chain.
	_, aliceChain, err := s.NewHandle(ctx, record(oidAlice))
	must(t, err)
	bobHandle, bobChain, err := s.NewHandle(ctx, record(oidBob))
	must(t, err)
	data := rdb.HGet(ctx, chainKeyOf(aliceChain), "data").Val()
	must(t, rdb.HSet(ctx, chainKeyOf(bobChain), "data", data).Err())
	if _, _, err := s.Rotate(ctx, bobHandle); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("copied chain record: %v, want seal.ErrOpen", err)
	}
}

func TestSessionsRedisDown(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := over(t, storetest.Down(t))
	tag := userTag(t, tenantA, oidAlice)
	h := tag + "." + rand.Text() + "." + rand.Text()
	code := tag + "." + rand.Text()
	ops := map[string]func() error{
		"flow done": func() error { _, err := s.MarkFlowDone(ctx, rand.Text(), time.Minute); return err },
		"new code": func() error {
			_, err := s.NewCode(ctx, grants.CodeRecord{TenantID: tenantA, ObjectID: oidAlice}, time.Minute)
			return err
		},
		"redeem":    func() error { _, err := s.RedeemCode(ctx, code); return err },
		"load msal": func() error { _, _, _, err := s.LoadMSAL(ctx, tenantA, oidAlice); return err },
		"save msal": func() error { return s.SaveMSAL(ctx, tenantA, oidAlice, nil, time.Hour, 0) },
		"epoch":     func() error { _, err := s.CurrentEpoch(ctx, tenantA, oidAlice); return err },
		"del msal":  func() error { return s.DeleteMSAL(ctx, tenantA, oidAlice) },
		"new":       func() error { _, _, err := s.NewHandle(ctx, record(oidAlice)); return err },
		"issue":     func() error { _, _, err := s.IssueForCode(ctx, code, record(oidAlice)); return err },
		"rotate":    func() error { _, _, err := s.Rotate(ctx, h); return err },
		"peek":      func() error { _, err := s.PeekHandle(ctx, h); return err },
		"revoke":    func() error { return s.Revoke(ctx, h) },
		"chain":     func() error { return s.RevokeChain(ctx, tag+"."+rand.Text()) },
		"user":      func() error { _, err := s.RevokeUser(ctx, tenantA, oidAlice); return err },
	}
	for op, run := range ops {
		t.Run(op, func(t *testing.T) {
			if err := run(); !errors.Is(err, outage.ErrUnavailable) {
				t.Errorf("%s: %v, want ErrUnavailable", op, err)
			}
		})
	}
}

func sameRecord(got, want grants.HandleRecord) bool {
	if len(got.RotationKey) != 32 {
		return false
	}
	got.RotationKey = nil
	return reflect.DeepEqual(got, want)
}

// chainKeyOf is the Redis key of the chain a reference (from NewHandle)
// names, as the store's key plan documents it.
func chainKeyOf(chain string) string {
	tag, id, _ := strings.Cut(chain, ".")
	return "rt:{" + tag + "}:" + id
}

// chainOf is the user tag of a handle.
func chainOf(handle string) string {
	tag, _, _ := strings.Cut(handle, ".")
	return tag
}

// TestReuseGrace: a rotated handle presented again soon after its rotation,
// while its successor is unused, is a retry after a lost reply and gets a
// successor; anything else is reuse and revokes the chain.
func TestReuseGrace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	setup := func(t *testing.T) (sessions, *testkit.Clock, string) {
		clock := testkit.NewClock(start)
		s, _ := newSessions(t, grants.WithClock(clock.Now), grants.WithReuseGrace(30*time.Second))
		h, _, err := s.NewHandle(ctx, record(oidAlice))
		must(t, err)
		return s, clock, h
	}
	t.Run("a lost reply is retried", func(t *testing.T) {
		s, clock, h0 := setup(t)
		h1, _, err := s.Rotate(ctx, h0) // the reply carrying h1 is lost
		must(t, err)
		clock.Add(10 * time.Second)
		if _, err := s.PeekHandle(ctx, h0); err != nil {
			t.Fatalf("peek within the grace: %v", err)
		}
		again, _, err := s.Rotate(ctx, h0)
		if err != nil || again != h1 {
			t.Fatalf("retry within the grace: %v; got a successor other than the lost one: %v", err, again != h1)
		}
		h2, _, err := s.Rotate(ctx, h1)
		must(t, err)
		// Its successor used, the old handle is reuse again.
		clock.Add(time.Second)
		if _, _, err := s.Rotate(ctx, h0); !errors.Is(err, grants.ErrHandleReused) {
			t.Fatalf("after its successor was used: %v, want ErrHandleReused", err)
		}
		if _, _, err := s.Rotate(ctx, h2); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("chain after reuse: %v, want ErrNotFound", err)
		}
	})
	t.Run("the grace ends", func(t *testing.T) {
		s, clock, h0 := setup(t)
		_, _, err := s.Rotate(ctx, h0)
		must(t, err)
		clock.Add(31 * time.Second)
		if _, err := s.PeekHandle(ctx, h0); !errors.Is(err, grants.ErrHandleReused) {
			t.Fatalf("31 s after its rotation: %v, want ErrHandleReused", err)
		}
	})
	t.Run("a used successor ends the grace", func(t *testing.T) {
		s, clock, h0 := setup(t)
		h1, _, err := s.Rotate(ctx, h0)
		must(t, err)
		h2, _, err := s.Rotate(ctx, h1)
		must(t, err)
		clock.Add(time.Second)
		if _, _, err := s.Rotate(ctx, h0); !errors.Is(err, grants.ErrHandleReused) {
			t.Fatalf("h0 after h1 was used: %v, want ErrHandleReused", err)
		}
		if _, err := s.PeekHandle(ctx, h2); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("chain after reuse: %v, want ErrNotFound", err)
		}
	})
	t.Run("a rotation that arrives late changes nothing", func(t *testing.T) {
		// The first request's rotation is held in the network; the client
		// retries and goes on with the successor; then the first rotation
		// arrives. It must neither fork the chain nor revoke it.
		s, clock, h0 := setup(t)
		rec, err := s.PeekHandle(ctx, h0) // the first request, then held
		must(t, err)
		h1, _, err := s.Rotate(ctx, h0) // the retry
		must(t, err)
		clock.Add(5 * time.Second)
		late, err := s.Advance(ctx, h0, rec) // the first request's rotation, late
		if err != nil || late != h1 {
			t.Fatalf("the late rotation: %v, same successor %v", err, late == h1)
		}
		h2, _, err := s.Rotate(ctx, h1)
		must(t, err)
		clock.Add(40 * time.Second)
		if again, err := s.Advance(ctx, h0, rec); err != nil || again != h1 {
			t.Fatalf("a rotation arriving after the chain moved on: %v (it names the same successor, and changes nothing)", err)
		}
		if _, _, err := s.Rotate(ctx, h2); err != nil {
			t.Fatalf("the chain after the late rotations: %v", err)
		}
	})
	t.Run("the grace is judged when the handle is presented", func(t *testing.T) {
		// A retry presented within the grace whose rotation lands after it
		// (Entra was slow in between) still succeeds.
		s, clock, h0 := setup(t)
		h1, _, err := s.Rotate(ctx, h0)
		must(t, err)
		clock.Add(29 * time.Second)
		rec, err := s.PeekHandle(ctx, h0)
		must(t, err)
		clock.Add(5 * time.Second)
		if next, err := s.Advance(ctx, h0, rec); err != nil || next != h1 {
			t.Fatalf("rotation after the grace of a retry presented within it: %v", err)
		}
	})
	t.Run("no grace", func(t *testing.T) {
		s, _ := newSessions(t, grants.WithReuseGrace(0))
		h0, _, err := s.NewHandle(ctx, record(oidAlice))
		must(t, err)
		_, _, err = s.Rotate(ctx, h0)
		must(t, err)
		if _, _, err := s.Rotate(ctx, h0); !errors.Is(err, grants.ErrHandleReused) {
			t.Fatalf("reuse without grace: %v", err)
		}
	})
}

// TestRevocationEpoch: whatever was issued in an earlier epoch, or is
// being issued while RevokeUser runs, does not outlive it.
func TestRevocationEpoch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, rdb := newSessions(t)
	ep, err := s.CurrentEpoch(ctx, tenantA, oidAlice)
	must(t, err)
	code := newCode(t, s, grants.CodeRecord{TenantID: tenantA, ObjectID: oidAlice, Epoch: ep})
	h, _, err := s.NewHandle(ctx, record(oidAlice))
	must(t, err)
	obo := store.NewOBOTokens(rdb)
	slot, err := obo.SlotFor(tenantA, oidAlice, "scopes")
	must(t, err)
	_, oboEpoch, err := obo.Get(ctx, slot)
	must(t, err)
	must(t, obo.Put(ctx, slot, []byte("sealed token"), time.Hour, oboEpoch))
	_, inFlight, err := obo.Get(ctx, slot) // a lookup under way when the revocation runs
	must(t, err)
	bobHandle, _, err := s.NewHandle(ctx, record(oidBob))
	must(t, err)

	n, err := s.RevokeUser(ctx, tenantA, oidAlice)
	if err != nil || n != 1 {
		t.Fatalf("RevokeUser: %d, %v", n, err)
	}
	if now, _ := s.CurrentEpoch(ctx, tenantA, oidAlice); now != ep+1 {
		t.Fatalf("epoch %d after a revocation, want %d", now, ep+1)
	}
	if _, err := s.RedeemCode(ctx, code); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a code minted before the revocation: %v, want ErrNotFound", err)
	}
	if _, _, err := s.Rotate(ctx, h); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a chain from before: %v, want ErrNotFound", err)
	}
	if sealed, _, err := obo.Get(ctx, slot); sealed != nil || err != nil {
		t.Errorf("the on-behalf-of tokens survived: %v", err)
	}
	if err := obo.Put(ctx, slot, []byte("issued meanwhile"), time.Hour, inFlight); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("an on-behalf-of token from a lookup begun before the revocation: %v, want ErrRevoked", err)
	}
	rec := record(oidAlice)
	rec.Epoch = ep
	if _, _, err := s.NewHandle(ctx, rec); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("a chain issued in the old epoch: %v, want ErrRevoked", err)
	}
	if _, err := s.NewCode(ctx, grants.CodeRecord{TenantID: tenantA, ObjectID: oidAlice, Epoch: ep}, time.Minute); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("a code minted in the old epoch: %v, want ErrRevoked", err)
	}
	rec.Epoch = ep + 1
	if _, _, err := s.NewHandle(ctx, rec); err != nil {
		t.Errorf("a chain of the new epoch: %v", err)
	}
	if _, _, err := s.Rotate(ctx, bobHandle); err != nil {
		t.Errorf("Bob's chain: %v", err)
	}
}

// TestRevokeUserRacesIssue: chains issued while RevokeUser runs, many
// times over, never survive it.
func TestRevokeUserRacesIssue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newSessions(t)
	for trial := range 40 {
		var mu sync.Mutex
		var issued []string
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				ep, err := s.CurrentEpoch(ctx, tenantA, oidAlice)
				if err != nil {
					t.Error(err)
					return
				}
				rec := record(oidAlice)
				rec.Epoch = ep
				h, _, err := s.NewHandle(ctx, rec)
				if err == nil {
					mu.Lock()
					issued = append(issued, h)
					mu.Unlock()
				} else if !errors.Is(err, store.ErrRevoked) {
					t.Error(err)
				}
			})
		}
		_, err := s.RevokeUser(ctx, tenantA, oidAlice)
		wg.Wait() // before any Fatal: the issuers report through t too
		if err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		// Whatever was issued in the epoch the revocation ended is gone;
		// only what was issued after it, in the new epoch, may live.
		now, _ := s.CurrentEpoch(ctx, tenantA, oidAlice)
		for _, h := range issued {
			rec, err := s.PeekHandle(ctx, h)
			if err == nil && rec.Epoch != now {
				t.Fatalf("trial %d: a chain of epoch %d survived the revocation to epoch %d", trial, rec.Epoch, now)
			}
		}
	}
}

// TestChainsPerUserAreBounded: a user who signs in again and again keeps
// at most 100 chains; the 101st ends the oldest.
func TestChainsPerUserAreBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := testkit.NewClock(time.Now())
	s, rdb := newSessions(t, grants.WithClock(clock.Now))
	var handles []string
	for range 103 {
		h, _, err := s.NewHandle(ctx, record(oidAlice))
		must(t, err)
		handles = append(handles, h)
		clock.Add(time.Second) // oldest is earliest issued
	}
	tag := userTag(t, tenantA, oidAlice)
	if n := len(storetest.Keys(t, rdb, "rt:{"+tag+"}:*")); n != 100 {
		t.Errorf("%d chains kept, want 100", n)
	}
	for i, h := range handles {
		_, err := s.PeekHandle(ctx, h)
		if i < 3 && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("chain %d (among the oldest) still works: %v", i, err)
		}
		if i >= 3 && err != nil {
			t.Errorf("chain %d: %v", i, err)
		}
	}
	if n, err := s.RevokeUser(ctx, tenantA, oidAlice); err != nil || n != 100 {
		t.Errorf("RevokeUser ended %d chains (%v), want 100", n, err)
	}
}

// TestChainsCannotOutliveEpochs: a chain lifetime longer than the store
// keeps revocation epochs is refused at construction, since such a chain
// would escape its user's revocation.
func TestChainsCannotOutliveEpochs(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Error("NewRecords took a chain lifetime longer than the epochs'")
		}
	}()
	grants.NewRecords(storetest.Mini(t), testkit.Ring(t), grants.WithChainLifetime(store.DefaultChainLifetime+time.Hour))
}
