package oauthclients_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/oauthclients"
	"github.com/entra-mcp/functions-mcp/handler/oautherr"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
)

const smallRegistration = `{"redirect_uris":["http://127.0.0.1/callback"]}`

// testUser is the "<tid>.<oid>" the tests' grants are for.
const testUser = "72f988bf-86f1-41af-91ab-2d7cd011db47.11111111-1111-1111-1111-111111111111"

// confirm looks a pending client up and confirms it for user, as a grant
// with it does.
func confirm(t *testing.T, r *oauthclients.Registry, id, user string) {
	t.Helper()
	c, err := r.Lookup(context.Background(), id, "requester")
	if err != nil {
		t.Fatalf("lookup of %s: %v", id, err)
	}
	if err := r.Confirm(context.Background(), c, user); err != nil {
		t.Fatalf("confirm %s: %v", id, err)
	}
}

// TestConfirmedPerUserBounded: the user whose sign-in takes a
// registration out of the pending ones answers for it, and keeps at most
// MaxConfirmedPerUser: one more ends their oldest. A signed-in user who
// scripts sign-ins with fresh registrations would otherwise keep one for 90
// days per sign-in.
func TestConfirmedPerUserBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := storetest.Redis(t)
	clock := newClock()
	log := &testkit.SyncBuffer{}
	r := newRegistry(t, rdb, oauthclients.Options{Now: clock.Now, Logger: newLogger(log)})
	const other = "72f988bf-86f1-41af-91ab-2d7cd011db47.22222222-2222-2222-2222-222222222222"
	const extra = 5
	ids := registerN(t, r, clock, oauthclients.MaxConfirmedPerUser+extra)
	othersClient := registerN(t, r, clock, 1)[0]
	confirm(t, r, othersClient, other)
	for _, id := range ids {
		clock.Add(time.Second)
		confirm(t, r, id, testUser)
	}

	t.Run("the oldest beyond the cap are ended", func(t *testing.T) {
		for i, id := range ids {
			if got, want := known(t, r, id), i >= extra; got != want {
				t.Errorf("client %d of %d: known %v, want %v", i+1, len(ids), got, want)
			}
		}
		if n := rdb.Exists(ctx, "oauthclient:"+ids[0]).Val(); n != 0 {
			t.Error("the oldest client's record is still stored")
		}
		if !strings.Contains(log.String(), "ended their oldest client registrations") {
			t.Errorf("no log line about the ended registrations:\n%s", log.String())
		}
	})
	t.Run("another user's client is untouched", func(t *testing.T) {
		if !known(t, r, othersClient) {
			t.Error("another user's client was ended")
		}
	})
	t.Run("signing in with someone else's client counts against no one", func(t *testing.T) {
		// The other user's client is not pending any more: this grant
		// only keeps it alive, and cannot end it through testUser's cap.
		confirm(t, r, othersClient, testUser)
		clock.Add(time.Second)
		confirm(t, r, registerN(t, r, clock, 1)[0], testUser)
		if !known(t, r, othersClient) {
			t.Error("a sign-in with another user's client put it under this user's cap")
		}
	})
	t.Run("a retried confirmation counts once", func(t *testing.T) {
		key := oauthclients.UserKeyPrefix + testUser
		clock.Add(time.Second)
		id := registerN(t, r, clock, 1)[0]
		c, err := r.Lookup(ctx, id, "requester")
		if err != nil {
			t.Fatal(err)
		}
		before := rdb.ZRange(ctx, key, 0, -1).Val()
		for range 2 { // the same confirmation again, as after a lost reply
			if err := r.Confirm(ctx, c, testUser); err != nil {
				t.Fatal(err)
			}
		}
		if after := rdb.ZRange(ctx, key, 0, -1).Val(); !slices.Equal(after[:len(after)-1], before[1:]) || after[len(after)-1] != id {
			t.Errorf("two confirmations of one client ended more than the oldest one")
		}
		if n := rdb.ZCard(ctx, key).Val(); n != oauthclients.MaxConfirmedPerUser {
			t.Errorf("the user's set holds %d, want %d", n, oauthclients.MaxConfirmedPerUser)
		}
		if ttl := rdb.PTTL(ctx, key).Val(); ttl <= 0 || ttl > oauthclients.DefaultRegistrationTTL {
			t.Errorf("the user's set has TTL %v, want at most %v", ttl, oauthclients.DefaultRegistrationTTL)
		}
	})
}

// wantPending checks whether a client_id is among the pending
// registrations, in both the hash and the order index.
func wantPending(t *testing.T, what string, rdb redis.UniversalClient, id string, want bool) {
	t.Helper()
	ctx := context.Background()
	inHash := rdb.HExists(ctx, oauthclients.PendingKey, id).Val()
	inOrder := rdb.ZScore(ctx, oauthclients.PendingOrderKey, id).Err() == nil
	if inHash != want || inOrder != want {
		t.Errorf("%s: %s in the pending hash %v, in the order index %v; want %v", what, id, inHash, inOrder, want)
	}
}

func newLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// newClock is the clock the registry tests move, at the same start.
func newClock() *testkit.Clock { return testkit.NewClock(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)) }

// registerN registers n small clients, the clock moving a second before
// each, and returns their ids, oldest first.
func registerN(t *testing.T, r *oauthclients.Registry, clock *testkit.Clock, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		clock.Add(time.Second)
		c, err := r.Register(context.Background(), []byte(smallRegistration))
		if err != nil {
			t.Fatalf("registration %d: %v", i+1, err)
		}
		ids[i] = c.ClientID
	}
	return ids
}

// known reports whether Lookup finds a registered client.
func known(t *testing.T, r *oauthclients.Registry, id string) bool {
	t.Helper()
	_, err := r.Lookup(context.Background(), id, "requester")
	if err == nil {
		return true
	}
	wantCode(t, "lookup of "+id, err, oautherr.InvalidClient)
	return false
}

// TestRegistrationBudgetEvictsOldest: a full budget of unused
// registrations makes room for a new one by dropping the oldest, so a
// flood costs the flooder its own first registrations and never refuses
// the next one.
func TestRegistrationBudgetEvictsOldest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := storetest.Redis(t)
	clock := newClock()
	log := &testkit.SyncBuffer{}
	r := newRegistry(t, rdb, oauthclients.Options{MaxPendingRegistrations: 5, Now: clock.Now, Logger: newLogger(log)})

	squat := registerN(t, r, clock, 5)
	t.Run("full budget keeps all", func(t *testing.T) {
		for _, id := range squat {
			if !known(t, r, id) {
				t.Errorf("%s dropped before the budget was exceeded", id)
			}
		}
	})
	t.Run("new registrations evict the oldest in order", func(t *testing.T) {
		victim := registerN(t, r, clock, 1)[0]
		if known(t, r, squat[0]) {
			t.Error("the oldest registration survived a sixth in a budget of five")
		}
		for _, id := range append(squat[1:], victim) {
			if !known(t, r, id) {
				t.Errorf("%s evicted; only the oldest should be", id)
			}
		}
		more := registerN(t, r, clock, 3)
		for i, id := range squat[1:4] {
			if known(t, r, id) {
				t.Errorf("registration %d survived three more", i+2)
			}
		}
		for _, id := range append([]string{squat[4], victim}, more...) {
			if !known(t, r, id) {
				t.Errorf("%s evicted out of order", id)
			}
		}
		if h, z := rdb.HLen(ctx, oauthclients.PendingKey).Val(), rdb.ZCard(ctx, oauthclients.PendingOrderKey).Val(); h != 5 || z != 5 {
			t.Errorf("pending hash %d, order index %d entries; want the budget, 5", h, z)
		}
	})
	t.Run("a confirmed client leaves the budget", func(t *testing.T) {
		ids := registerN(t, r, clock, 1)
		c, err := r.Lookup(ctx, ids[0], "requester")
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Confirm(ctx, c, testUser); err != nil {
			t.Fatal(err)
		}
		registerN(t, r, clock, 10)
		if !known(t, r, ids[0]) {
			t.Error("a confirmed client was evicted by later registrations")
		}
	})
	t.Run("evictions logged once a minute", func(t *testing.T) {
		if n := strings.Count(log.String(), "registration budget full"); n != 1 {
			t.Errorf("%d log lines about evictions within a minute; want 1:\n%s", n, log.String())
		}
		clock.Add(time.Minute)
		registerN(t, r, clock, 1)
		if n := strings.Count(log.String(), "registration budget full"); n != 2 {
			t.Errorf("%d log lines about evictions after a minute; want 2", n)
		}
	})
	t.Run("a registration stamped before the newest is still kept", func(t *testing.T) {
		// Another instance's clock may be behind: the newcomer must not be
		// the first one evicted.
		clock.Add(-time.Hour)
		late := registerN(t, r, clock, 1)[0]
		if !known(t, r, late) {
			t.Error("a registration from a clock behind the others was evicted at once")
		}
	})
}

// TestPendingRegistrationsExpire: an unused registration lives
// UnusedRegistrationTTL, though a hash field has no TTL of its own.
func TestPendingRegistrationsExpire(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := storetest.Redis(t)
	clock := newClock()
	r := newRegistry(t, rdb, oauthclients.Options{Now: clock.Now})
	old := registerN(t, r, clock, 3)

	clock.Add(oauthclients.DefaultUnusedTTL - 5*time.Second)
	t.Run("alive within the TTL", func(t *testing.T) {
		if !known(t, r, old[2]) {
			t.Error("dropped before its day was over")
		}
	})
	clock.Add(10 * time.Second)
	t.Run("gone after the TTL", func(t *testing.T) {
		if known(t, r, old[2]) {
			t.Error("still found after its day")
		}
		wantPending(t, "after a lookup past its TTL", rdb, old[2], false)
	})
	t.Run("the next registration drops the expired", func(t *testing.T) {
		fresh := registerN(t, r, clock, 1)[0]
		if h := rdb.HLen(ctx, oauthclients.PendingKey).Val(); h != 1 {
			t.Errorf("%d pending entries; want only the new one", h)
		}
		if !known(t, r, fresh) {
			t.Error("the new registration is missing")
		}
	})
}

// TestLegacyRegistrationResolves: registrations stored at
// oauthclient:<id> with a day's TTL by earlier versions still work, and
// become confirmed as before.
func TestLegacyRegistrationResolves(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := storetest.Redis(t)
	r := newRegistry(t, rdb, oauthclients.Options{})
	const id = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	key := "oauthclient:" + id
	legacy := `{"client_id":"` + id + `","client_id_issued_at":1777000000,"client_name":"Old",` +
		`"redirect_uris":["http://127.0.0.1/callback"],"grant_types":["authorization_code","refresh_token"],` +
		`"response_types":["code"],"token_endpoint_auth_method":"none"}`
	if err := rdb.Set(ctx, key, legacy, 20*time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	c, err := r.Lookup(ctx, id, "requester")
	if err != nil || c.ClientName != "Old" || c.Source != oauthclients.SourceRegistered || !c.AllowsGrant("refresh_token") {
		t.Fatalf("legacy registration: %+v, %v", c, err)
	}
	if ttl := rdb.TTL(ctx, key).Val(); ttl > 20*time.Hour {
		t.Errorf("a lookup extended an unused legacy registration to %v", ttl)
	}
	if err := r.Confirm(ctx, c, testUser); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.TTL(ctx, key).Val(); ttl < oauthclients.DefaultRegistrationTTL-time.Minute {
		t.Errorf("TTL after Confirm %v; want about %v", ttl, oauthclients.DefaultRegistrationTTL)
	}
	var stored map[string]any
	if err := json.Unmarshal([]byte(rdb.Get(ctx, key).Val()), &stored); err != nil || stored["client_name"] != "Old" {
		t.Errorf("stored after Confirm: %v, %v", stored, err)
	}
	if n := rdb.DBSize(ctx).Val(); n != 1 {
		t.Errorf("%d keys; a legacy client must not enter the pending set", n)
	}
}

// TestConfirmMovesOutOfPending: Confirm writes the client's own key and
// removes it from the pending ones; a registration evicted between the
// grant's lookup and Confirm is written back, since a user just signed in
// with it.
func TestConfirmMovesOutOfPending(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := storetest.Redis(t)
	clock := newClock()
	r := newRegistry(t, rdb, oauthclients.Options{MaxPendingRegistrations: 1, Now: clock.Now})

	t.Run("moved", func(t *testing.T) {
		id := registerN(t, r, clock, 1)[0]
		c, err := r.Lookup(ctx, id, "requester")
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Confirm(ctx, c, testUser); err != nil {
			t.Fatal(err)
		}
		wantPending(t, "after Confirm", rdb, id, false)
		if rdb.Exists(ctx, "oauthclient:"+id).Val() != 1 {
			t.Error("no confirmed key after Confirm")
		}
		again, err := r.Lookup(ctx, id, "requester")
		if err != nil || !equalClients(again, c) {
			t.Errorf("after Confirm: %+v, %v; want %+v", again, err, c)
		}
		// A second grant: Confirm again is harmless.
		if err := r.Confirm(ctx, again, testUser); err != nil {
			t.Error(err)
		}
	})
	t.Run("evicted before Confirm", func(t *testing.T) {
		id := registerN(t, r, clock, 1)[0]
		c, err := r.Lookup(ctx, id, "requester")
		if err != nil {
			t.Fatal(err)
		}
		registerN(t, r, clock, 1) // the budget is one: evicts it
		if known(t, r, id) {
			t.Fatal("not evicted: the test proves nothing")
		}
		if err := r.Confirm(ctx, c, testUser); err != nil {
			t.Fatal(err)
		}
		if !known(t, r, id) {
			t.Error("a client evicted between its grant's lookup and Confirm is lost")
		}
	})
	t.Run("lookups during Confirm always find it", func(t *testing.T) {
		// Confirm writes two keys in two steps; a lookup between them, or
		// straddling them, must still find the client.
		for trial := range 50 {
			id := registerN(t, r, clock, 1)[0]
			c, err := r.Lookup(ctx, id, "requester")
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			done := make(chan struct{})
			wg.Go(func() {
				defer close(done)
				if err := r.Confirm(ctx, c, testUser); err != nil {
					t.Error(err)
				}
			})
			for stop := false; !stop; {
				select {
				case <-done:
					stop = true
				default:
				}
				if _, err := r.Lookup(ctx, id, "requester"); err != nil {
					t.Fatalf("trial %d: lookup while confirming: %v", trial, err)
				}
			}
			wg.Wait()
		}
	})
}

// TestRegistrationScriptsOneSlot: every script of registration, lookup
// and Confirm keeps its keys in one hash slot (Redis Cluster, Azure
// Managed Redis with the EnterpriseCluster policy).
func TestRegistrationScriptsOneSlot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := storetest.Redis(t)
	slots := &storetest.Slots{}
	rdb.AddHook(slots)
	clock := newClock()
	r := newRegistry(t, rdb, oauthclients.Options{MaxPendingRegistrations: 2, Now: clock.Now})
	ids := registerN(t, r, clock, 4) // with evictions
	c, err := r.Lookup(ctx, ids[3], "requester")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Confirm(ctx, c, testUser); err != nil {
		t.Fatal(err)
	}
	known(t, r, ids[3]) // confirmed
	known(t, r, ids[0]) // evicted: all three reads
	clock.Add(oauthclients.DefaultUnusedTTL + time.Second)
	known(t, r, ids[2]) // expired: dropped by the lookup
	registerN(t, r, clock, 1)
	slots.Check(t)
}

// TestPendingBudgetBytes: the budget full of the largest registrations
// costs Redis about budget × MaxStoredClientBytes, and registering more
// does not raise it, on a redis-server of the test's own. The README's figure:
// go test ./handler/oauthclients -run TestPendingBudgetBytes -v
func TestPendingBudgetBytes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := storetest.Server(t) // MEMORY USAGE: a real Redis
	const budget = oauthclients.DefaultMaxPending
	r := newRegistry(t, rdb, oauthclients.Options{})
	body := largestRegistration(t, r)
	used := func() int64 {
		var sum int64
		for _, k := range []string{oauthclients.PendingKey, oauthclients.PendingOrderKey} {
			n, err := rdb.MemoryUsage(ctx, k, 0).Result()
			if err != nil {
				t.Fatal(err)
			}
			sum += n
		}
		return sum
	}
	fill := func(n int) {
		var wg sync.WaitGroup
		work := make(chan struct{})
		for range 8 {
			wg.Go(func() {
				for range work {
					if _, err := r.Register(ctx, body); err != nil {
						t.Error(err)
					}
				}
			})
		}
		for range n {
			work <- struct{}{}
		}
		close(work)
		wg.Wait()
	}
	fill(budget)
	full := used()
	fill(budget / 10)
	after := used()
	limit := int64(budget) * (oauthclients.MaxStoredClientBytes + 256)
	t.Logf("%d pending registrations of %d bytes: %d bytes in Redis (%d per registration); after %d more: %d",
		budget, len(body), full, full/budget, budget/10, after)
	if full > limit || after > limit {
		t.Errorf("pending set %d, then %d bytes; want at most %d", full, after, limit)
	}
	if h := rdb.HLen(ctx, oauthclients.PendingKey).Val(); h != budget {
		t.Errorf("%d pending; want the budget, %d", h, budget)
	}
}

// largestRegistration returns a registration body whose stored metadata
// is just under MaxStoredClientBytes.
func largestRegistration(t *testing.T, r *oauthclients.Registry) []byte {
	t.Helper()
	for pad := 400; pad > 0; pad-- {
		var uris []string
		for i := range 10 {
			uris = append(uris, fmt.Sprintf("https://app.example/%s/%d", strings.Repeat("p", pad), i))
		}
		body, _ := json.Marshal(map[string]any{"redirect_uris": uris, "client_name": strings.Repeat("n", oauthclients.MaxClientName)})
		c, err := r.Register(context.Background(), body)
		if err == nil {
			stored, _ := json.Marshal(c)
			if len(stored) < oauthclients.MaxStoredClientBytes-64 {
				t.Fatalf("largest registration stores %d bytes; want close to %d", len(stored), oauthclients.MaxStoredClientBytes)
			}
			return body
		}
	}
	t.Fatal("no registration fits")
	return nil
}

// TestEndedClientStaysEnded: the token endpoint looks the client up, then
// redeems or refreshes (an Entra round trip), then calls Confirm. A grant
// with the user's oldest client under way while another of the user's
// sign-ins ends it must not write it back, uncounted: a user racing a
// refresh with their oldest client against every new sign-in would keep
// one more registration per sign-in.
func TestEndedClientStaysEnded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := storetest.Redis(t)
	clock := newClock()
	r := newRegistry(t, rdb, oauthclients.Options{Now: clock.Now})
	const rounds = 5
	ids := registerN(t, r, clock, oauthclients.MaxConfirmedPerUser+rounds)
	for _, id := range ids[:oauthclients.MaxConfirmedPerUser] {
		clock.Add(time.Second)
		confirm(t, r, id, testUser)
	}
	for i := range rounds {
		oldest := ids[i]
		// The refresh with the oldest client: its Lookup...
		c, err := r.Lookup(ctx, oldest, "requester")
		if err != nil {
			t.Fatal(err)
		}
		// ...then, while Entra answers it, a sign-in with a new client
		// ends the oldest...
		clock.Add(time.Second)
		confirm(t, r, ids[oauthclients.MaxConfirmedPerUser+i], testUser)
		// ...then the refresh's Confirm.
		if err := r.Confirm(ctx, c, testUser); err != nil {
			t.Fatal(err)
		}
	}
	live := 0
	for _, id := range ids {
		if rdb.Exists(ctx, "oauthclient:"+id).Val() == 1 {
			live++
		}
	}
	if live > oauthclients.MaxConfirmedPerUser {
		t.Errorf("one user keeps %d registrations, want at most %d (ended ones written back, uncounted)",
			live, oauthclients.MaxConfirmedPerUser)
	}
}

// TestConfirmOnASlowClockKeepsTheNewClient: on an instance whose clock is
// behind the one that confirmed the user's others, the client just signed
// in with must not score as the oldest and be ended at once, right after
// its first grant (registerScript guards pending ones the same way).
func TestConfirmOnASlowClockKeepsTheNewClient(t *testing.T) {
	t.Parallel()
	rdb := storetest.Redis(t)
	start := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	fast := testkit.NewClock(start.Add(time.Minute)) // one instance, a minute ahead
	slow := testkit.NewClock(start)                  // another, on time
	rFast := newRegistry(t, rdb, oauthclients.Options{Now: fast.Now})
	rSlow := newRegistry(t, rdb, oauthclients.Options{Now: slow.Now})
	for _, id := range registerN(t, rFast, fast, oauthclients.MaxConfirmedPerUser) {
		confirm(t, rFast, id, testUser)
	}
	slow.Add(10 * time.Second)
	id := registerN(t, rSlow, slow, 1)[0]
	confirm(t, rSlow, id, testUser)
	if !known(t, rSlow, id) {
		t.Error("the client the user just signed in with was ended at once: its confirmation scored oldest")
	}
}
