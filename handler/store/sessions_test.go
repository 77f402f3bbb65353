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
	"github.com/entra-mcp/functions-mcp/handler/store"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
)

const (
	oidAlice = "11111111-1111-1111-1111-111111111111"
	oidBob   = "22222222-2222-2222-2222-222222222222"
)

func newSessions(t *testing.T, opts ...store.SessionsOption) (*store.Sessions, *redis.Client) {
	t.Helper()
	rdb := storetest.Redis(t)
	storetest.Watch(t, rdb)
	return store.NewSessions(rdb, testkit.Ring(t), opts...), rdb
}

func TestMarkFlowDone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, rdb := newSessions(t)
	state := rand.Text()
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			ok, err := s.MarkFlowDone(ctx, state, time.Minute)
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d completions of one sign-in, want 1", wins.Load())
	}
	if d := rdb.PTTL(ctx, storetest.Keys(t, rdb, "flowdone:*")[0]).Val(); d <= 0 || d > time.Minute {
		t.Errorf("marker TTL %v", d)
	}
	if _, err := s.MarkFlowDone(ctx, "short", time.Minute); err == nil {
		t.Error("marked a short state")
	}
}

// newCode mints a code for rec in the user's current epoch.
func TestMSAL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newSessions(t)
	if _, ok, st, err := s.LoadMSAL(ctx, tenantA, oidAlice); ok || st.Epoch != 0 || st.RevokedAt.UnixMilli() != 0 || err != nil {
		t.Fatalf("load before save: %v, %+v, %v", ok, st, err)
	}
	data := []byte(`{"RefreshToken":{"x":{"secret":"marker"}}}`)
	if err := s.SaveMSAL(ctx, tenantA, oidAlice, data, time.Hour, 0); err != nil {
		t.Fatal(err)
	}
	// Ids are GUIDs in any case; one user has one cache.
	got, ok, _, err := s.LoadMSAL(ctx, strings.ToUpper(tenantA), strings.ToUpper(oidAlice))
	if err != nil || !ok || !bytes.Equal(got, data) {
		t.Fatalf("load: %q, %v, %v", got, ok, err)
	}
	if _, ok, _, _ := s.LoadMSAL(ctx, tenantA, oidBob); ok {
		t.Error("bob sees alice's cache")
	}
	if err := s.DeleteMSAL(ctx, tenantA, oidAlice); err != nil {
		t.Fatal(err)
	}
	if _, ok, _, err := s.LoadMSAL(ctx, tenantA, oidAlice); ok || err != nil {
		t.Errorf("load after delete: %v, %v", ok, err)
	}
	for _, ids := range [][2]string{{"tenant", oidAlice}, {tenantA, "*"}, {tenantA, oidAlice + ":x"}} {
		if err := s.SaveMSAL(ctx, ids[0], ids[1], data, time.Hour, 0); err == nil {
			t.Errorf("saved under tid %q oid %q", ids[0], ids[1])
		}
	}
	if err := s.SaveMSAL(ctx, tenantA, oidAlice, data, 0, 0); err == nil {
		t.Error("saved without a TTL")
	}
	// A save from before a revocation writes nothing.
	_, _, st, err := s.LoadMSAL(ctx, tenantA, oidAlice)
	must(t, err)
	before, err := s.Now(ctx)
	must(t, err)
	_, err = s.RevokeUser(ctx, tenantA, oidAlice)
	must(t, err)
	if err := s.SaveMSAL(ctx, tenantA, oidAlice, data, time.Hour, st.Epoch); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("save across a revocation: %v, want ErrRevoked", err)
	}
	_, ok, now, _ := s.LoadMSAL(ctx, tenantA, oidAlice)
	if ok || now.Epoch != st.Epoch+1 {
		t.Errorf("after the refused save: found %v, epoch %d; want nothing, epoch %d", ok, now.Epoch, st.Epoch+1)
	}
	// The revocation is stamped on Redis's clock, after a time read before it.
	if now.RevokedAt.Before(before) || time.Since(now.RevokedAt) > time.Minute {
		t.Errorf("revoked at %v, read %v before it", now.RevokedAt, before)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestRememberedConsent(t *testing.T) {
	t.Parallel()
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
		t.Run(name, func(t *testing.T) {
			if _, err := s.ConsentedUser(ctx, tc[0], tc[1]); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s: %v", name, err)
			}
		})
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
	for _, k := range storetest.Keys(t, rdb, "consent:*") {
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
	for _, k := range storetest.Keys(t, rdb, "rev:*") {
		if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 {
			t.Errorf("epoch key %s TTL %v", k, ttl)
		}
	}
	if err := s.RememberConsent(ctx, browser, "client-a", tenantA, oidAlice, store.DefaultChainLifetime+time.Hour); err == nil {
		t.Error("a consent outliving RevokeUser's mark was accepted")
	}
}

// TestReuseGrace: a rotated handle presented again soon after its rotation,
// while its successor is unused, is a retry after a lost reply and gets a
// successor; anything else is reuse and revokes the chain.
