package store_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/store"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
)

// consentsOf counts the approvals of user ("<tid>.<oid>") stored in
// browsers' consent hashes, live or not.
func consentsOf(t *testing.T, rdb *redis.Client, user string) int {
	t.Helper()
	n := 0
	for _, k := range storetest.Keys(t, rdb, "consent:*") {
		for _, v := range rdb.HGetAll(context.Background(), k).Val() {
			if strings.HasPrefix(v, user+" ") {
				n++
			}
		}
	}
	return n
}

// consentIndex is the key of user's consent index.
func consentIndex(t *testing.T, rdb *redis.Client, oid string) string {
	t.Helper()
	var found []string
	for _, k := range storetest.Keys(t, rdb, "consentu:*") {
		if strings.HasSuffix(k, "."+oid) {
			found = append(found, k)
		}
	}
	if len(found) != 1 {
		t.Fatalf("consent index of %s: %q", oid, found)
	}
	return found[0]
}

// TestConsentsPerUserAreBounded: a user who remembers consent from fresh
// browsers again and again (a scripted sign-in without the cookie) keeps
// at most 100 remembered approvals; the newest work, the oldest are
// forgotten, and other users' approvals, even in the same browser, stay.
func TestConsentsPerUserAreBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := testkit.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s, rdb := newSessions(t, store.WithSessionsClock(clock.Now))
	const budget, extra = 100, 20
	alice, bob := tenantA+"."+oidAlice, tenantA+"."+oidBob

	// Bob's approvals come first, so they are the oldest of all. In the
	// browser of Alice's oldest approval, Bob then approves the same
	// client: forgetting Alice's must leave his.
	var browsers []string
	for range budget + extra {
		browsers = append(browsers, rand.Text())
	}
	bobs := map[string]string{rand.Text(): "client-b", rand.Text(): "client-b", browsers[0]: "client-a"}
	for b, c := range bobs {
		if c == "client-b" {
			must(t, s.RememberConsent(ctx, b, c, tenantA, oidBob, time.Hour))
			clock.Add(time.Second)
		}
	}
	for i, b := range browsers {
		must(t, s.RememberConsent(ctx, b, "client-a", tenantA, oidAlice, time.Hour))
		clock.Add(time.Second) // the oldest is the earliest remembered
		if i == 0 {
			must(t, s.RememberConsent(ctx, b, "client-a", tenantA, oidBob, time.Hour))
		}
	}

	if n := consentsOf(t, rdb, alice); n != budget {
		t.Errorf("%d of Alice's approvals stored, want %d", n, budget)
	}
	for i, b := range browsers {
		u, err := s.ConsentedUser(ctx, b, "client-a")
		if i == 0 {
			continue // Bob's now
		}
		if i < extra && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("browser %d (among the oldest) still remembered: %q %v", i, u, err)
		}
		if i >= extra && (err != nil || u != alice) {
			t.Errorf("browser %d: %q %v", i, u, err)
		}
	}
	for b, c := range bobs {
		if u, err := s.ConsentedUser(ctx, b, c); err != nil || u != bob {
			t.Errorf("Bob's %s: %q %v", c, u, err)
		}
	}
	if n := consentsOf(t, rdb, bob); n != len(bobs) {
		t.Errorf("%d of Bob's approvals stored, want %d", n, len(bobs))
	}
	// Alice's forgotten browsers are gone, except the one Bob shares.
	if n := len(storetest.Keys(t, rdb, "consent:*")); n != budget+len(bobs) {
		t.Errorf("%d consent keys, want %d", n, budget+len(bobs))
	}
	idx := consentIndex(t, rdb, oidAlice)
	if n := rdb.ZCard(ctx, idx).Val(); n != budget {
		t.Errorf("Alice's index lists %d approvals, want %d", n, budget)
	}
	if ttl := rdb.PTTL(ctx, idx).Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("index TTL %v, want (0, 1h]", ttl)
	}
	if !strings.HasPrefix(idx, "consentu:{") {
		t.Errorf("index %s is not in the user's hash slot", idx)
	}

	// A retry (a lost reply) of the same approval moves its entry; it
	// does not count twice.
	last := browsers[len(browsers)-1]
	must(t, s.RememberConsent(ctx, last, "client-a", tenantA, oidAlice, time.Hour))
	if n := rdb.ZCard(ctx, idx).Val(); n != budget {
		t.Errorf("after a retry the index lists %d, want %d", n, budget)
	}
	if u, err := s.ConsentedUser(ctx, browsers[extra], "client-a"); err != nil || u != alice {
		t.Errorf("a retry evicted the oldest kept approval: %q %v", u, err)
	}

	// A lost reply after an approval was forgotten but before it left
	// the index leaves an entry with nothing behind it: the next call
	// evicts it with the oldest real one, and the index is back at the
	// budget.
	phantom := strings.Repeat("0", 64) + ":" + strings.Repeat("0", 64)
	must(t, rdb.ZAdd(ctx, idx, redis.Z{Score: 1, Member: phantom}).Err())
	must(t, s.RememberConsent(ctx, rand.Text(), "client-a", tenantA, oidAlice, time.Hour))
	if n, m := rdb.ZCard(ctx, idx).Val(), consentsOf(t, rdb, alice); n != budget || m != budget {
		t.Errorf("after a lost unlisting: index %d, stored %d; want %d", n, m, budget)
	}
	if _, err := s.ConsentedUser(ctx, browsers[extra], "client-a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the oldest real approval was not evicted with the phantom: %v", err)
	}

	// Entries past the TTL leave the index at the next write, and the
	// index lives no longer than its newest entry.
	clock.Add(2 * time.Hour)
	fresh := rand.Text()
	must(t, s.RememberConsent(ctx, fresh, "client-a", tenantA, oidAlice, 10*time.Minute))
	if got := rdb.ZCard(ctx, idx).Val(); got != 1 {
		t.Errorf("after everything expired the index lists %d, want 1", got)
	}
	if ttl := rdb.PTTL(ctx, idx).Val(); ttl <= 0 || ttl > 10*time.Minute {
		t.Errorf("index TTL %v, want (0, 10m]", ttl)
	}

	// Revocation is unchanged: it voids the approvals, and one given after
	// it counts.
	clock.Add(time.Second)
	_, err := s.RevokeUser(ctx, tenantA, oidAlice)
	must(t, err)
	if _, err := s.ConsentedUser(ctx, fresh, "client-a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("approval after RevokeUser: %v", err)
	}
	must(t, s.RememberConsent(ctx, fresh, "client-a", tenantA, oidAlice, 10*time.Minute))
	if u, err := s.ConsentedUser(ctx, fresh, "client-a"); err != nil || u != alice {
		t.Errorf("approval given again after RevokeUser: %q %v", u, err)
	}
}

// TestConsentWriteDropsExpiredApprovals: a browser's hash kept alive by
// new approvals does not keep the expired ones.
func TestConsentWriteDropsExpiredApprovals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := testkit.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s, rdb := newSessions(t, store.WithSessionsClock(clock.Now))
	browser := rand.Text()
	must(t, s.RememberConsent(ctx, browser, "client-a", tenantA, oidAlice, time.Hour))
	must(t, s.RememberConsent(ctx, browser, "client-b", tenantA, oidBob, 3*time.Hour))
	clock.Add(2 * time.Hour)
	must(t, s.RememberConsent(ctx, browser, "client-c", tenantA, oidBob, time.Hour))
	keys := storetest.Keys(t, rdb, "consent:*")
	if len(keys) != 1 {
		t.Fatalf("consent keys %q", keys)
	}
	if n := rdb.HLen(ctx, keys[0]).Val(); n != 2 {
		t.Errorf("%d approvals stored, want 2 (client-a's expired)", n)
	}
	// The hash lives as long as its longest-lived approval (client-b's,
	// one more hour), not just the newest one's.
	if ttl := rdb.PTTL(ctx, keys[0]).Val(); ttl < 59*time.Minute || ttl > time.Hour {
		t.Errorf("hash TTL %v, want about 1h", ttl)
	}
	if u, err := s.ConsentedUser(ctx, browser, "client-b"); err != nil || u != tenantA+"."+oidBob {
		t.Errorf("client-b: %q %v", u, err)
	}
}
