package redisauth_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/outage"
	"github.com/entra-mcp/functions-mcp/handler/redisauth"
	"github.com/entra-mcp/functions-mcp/handler/store"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
)

// These tests need a real Redis (6 or later) because they use ACL users and
// CLIENT LIST. Two ACL users stand in for two tokens: each fake token
// carries its user's name as oid and is that user's password, so a
// connection's user in CLIENT LIST shows which token it last sent in AUTH.
// (Rotating one user's password would prove nothing: Redis does not drop
// connections that authenticated with an old password.)

// realRedis returns an administrator client on a redis-server of the
// test's own: the ACL users these tests create must never land in a Redis
// the test run did not start. Without a redis-server binary the test is
// skipped (STORETEST_REQUIRE_SERVER=1, as in CI, makes that a failure).
func realRedis(t *testing.T) *redis.Client {
	t.Helper()
	admin := storetest.Server(t)
	if err := admin.Do(context.Background(), "ACL", "WHOAMI").Err(); err != nil {
		t.Fatalf("ACL WHOAMI: %v", err)
	}
	return admin
}

// aclUser creates a Redis user whose password is token, deleted at cleanup.
func aclUser(t *testing.T, admin *redis.Client, name, token string) {
	t.Helper()
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", name, "reset", "on", ">"+token, "~*", "&*", "+@all").Err(); err != nil {
		t.Fatalf("ACL SETUSER %s: %v", name, err)
	}
	t.Cleanup(func() { admin.Do(ctx, "ACL", "DELUSER", name) })
}

// testClient returns a client with the application's options, on the
// admin's server and database, authenticating through p.
func testClient(t *testing.T, admin *redis.Client, p *redisauth.Provider, name string) *redis.Client {
	t.Helper()
	base := admin.Options()
	opts, err := store.Options(fmt.Sprintf("redis://%s/%d", base.Addr, base.DB))
	if err != nil {
		t.Fatal(err)
	}
	if base.TLSConfig != nil {
		opts.TLSConfig = base.TLSConfig.Clone()
	}
	opts.Network, opts.Dialer = base.Network, base.Dialer
	opts.ClientName = name
	if err := redisauth.Configure(opts, p); err != nil {
		// A CI Redis may be reached in clear on a non-loopback address.
		// The tokens here are fakes, so wire the provider directly.
		t.Logf("Configure: %v; setting the provider directly", err)
		opts.StreamingCredentialsProvider = p
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

type clientInfo struct{ id, user, cmd string }

// clients lists the connections named name, by CLIENT LIST.
func clients(t *testing.T, admin *redis.Client, name string) []clientInfo {
	t.Helper()
	list, err := admin.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	var out []clientInfo
	for line := range strings.Lines(list) {
		f := map[string]string{}
		for kv := range strings.FieldsSeq(line) {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		if f["name"] == name {
			out = append(out, clientInfo{id: f["id"], user: f["user"], cmd: f["cmd"]})
		}
	}
	return out
}

// blockMany runs n commands at once, each holding a connection for 200ms,
// so the pool opens up to n connections and passes them all through.
func blockMany(t *testing.T, rdb *redis.Client, n int, key string) {
	t.Helper()
	blockManyFor(t, rdb, n, key, "0.2")
}

// blockManyFor is blockMany with each command waiting hold seconds: long
// enough for all n to be in flight at once on a loaded machine.
func blockManyFor(t *testing.T, rdb *redis.Client, n int, key, hold string) {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			// Do, not BLPop: BLPop rounds timeouts up to whole seconds.
			if err := rdb.Do(context.Background(), "BLPOP", key, hold).Err(); !errors.Is(err, redis.Nil) {
				t.Errorf("BLPOP: %v", err)
			}
		})
	}
	wg.Wait()
}

func suffix() string { return strings.ToLower(rand.Text()[:10]) }

func TestPooledConnectionsSwitchToNewToken(t *testing.T) {
	t.Parallel()
	admin := realRedis(t)
	ctx := context.Background()
	sfx := suffix()
	userA, userB := "tokuser-a-"+sfx, "tokuser-b-"+sfx
	aclUser(t, admin, userA, tokenFor(userA, ""))
	aclUser(t, admin, userB, tokenFor(userB, ""))
	clk := newFakeClock()
	cred := newFakeCred(clk, userA)
	p := newProvider(t, cred, clk, redisauth.Options{})
	name := "redisauth-test-" + sfx
	rdb := testClient(t, admin, p, name)
	key := "redisauth:missing:" + sfx

	// Fill the pool with connections, all with token A. Later rounds use
	// as many commands at once as the pool has connections, because the
	// pool is LIFO and fewer would leave its oldest idle connections
	// untouched (go-redis re-authenticates a connection only as it passes
	// through the pool).
	size := rdb.Options().PoolSize
	blockMany(t, rdb, size, key)
	before := clients(t, admin, name)
	if len(before) < size {
		t.Fatalf("%d connections open, want %d", len(before), size)
	}
	for _, c := range before {
		if c.user != userA {
			t.Fatalf("connection %s is user %q, want %q", c.id, c.user, userA)
		}
	}

	// One connection is busy with a command while the token changes: a
	// BLPOP that waits until the test releases it, not for a timeout
	// (BLPop, not Do: only the typed command lifts the client's 3 s read
	// timeout for as long as it blocks).
	busyKey := key + ":busy"
	busy := make(chan error, 1)
	go func() { busy <- rdb.BLPop(ctx, 0, busyKey).Err() }()
	testkit.Eventually(t, "the busy command to start", func() error {
		for _, c := range clients(t, admin, name) {
			if c.cmd == "blpop" {
				return nil
			}
		}
		return errors.New("no connection runs BLPOP")
	})

	// The credential now issues token B; the refresh falls due.
	cred.set(userB, "", nil)
	(&stepper{clk: clk}).until(t, start.Add(45*time.Minute))
	if err := admin.RPush(ctx, busyKey, "release").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Del(context.Background(), busyKey) })
	if err := <-busy; err != nil {
		t.Fatalf("busy BLPOP: %v", err)
	}

	// go-redis re-authenticates each connection as it passes through the
	// pool. Every connection that was open, idle or busy, must now be
	// user B: the same connection ids, so re-authenticated rather than
	// replaced.
	testkit.Eventually(t, "every connection to be user B", func() error {
		// Rounds repeat until all are re-authenticated: a round in which
		// fewer were in flight at once costs only another round.
		blockManyFor(t, rdb, size, key, "0.05")
		now := map[string]string{}
		for _, c := range clients(t, admin, name) {
			now[c.id] = c.user
			if c.user != userB {
				return fmt.Errorf("connection %s is still user %q", c.id, c.user)
			}
		}
		for _, c := range before {
			if _, ok := now[c.id]; !ok {
				return fmt.Errorf("connection %s was closed instead of re-authenticated", c.id)
			}
		}
		return nil
	})

	// Retire user A as Redis would retire an expired token: nothing of
	// ours is left on it, and the client keeps working.
	if err := admin.Do(ctx, "ACL", "SETUSER", userA, "off").Err(); err != nil {
		t.Fatal(err)
	}
	killed, err := admin.ClientKillByFilter(ctx, "USER", userA).Result()
	if err != nil {
		t.Fatal(err)
	}
	if killed != 0 {
		t.Errorf("CLIENT KILL USER %s killed %d connections, want 0", userA, killed)
	}
	blockMany(t, rdb, size, key)
	if err := rdb.Set(ctx, "redisauth:"+sfx, "v", time.Minute).Err(); err != nil {
		t.Fatalf("SET after user A was disabled: %v", err)
	}
	if v, err := rdb.Get(ctx, "redisauth:"+sfx).Result(); err != nil || v != "v" {
		t.Fatalf("GET = %q, %v", v, err)
	}
	for _, c := range clients(t, admin, name) {
		if c.user != userB {
			t.Errorf("connection %s is user %q, want %q", c.id, c.user, userB)
		}
	}
}

func TestWrongTokenFailsWithWrongpass(t *testing.T) {
	t.Parallel()
	admin := realRedis(t)
	sfx := suffix()
	user := "tokuser-c-" + sfx
	aclUser(t, admin, user, "not-the-token")
	clk := newFakeClock()
	p := newProvider(t, newFakeCred(clk, user), clk, redisauth.Options{})
	rdb := testClient(t, admin, p, "redisauth-test-"+sfx)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	began := time.Now()
	err := store.Ping(ctx, rdb)
	if err == nil {
		t.Fatal("PING succeeded with a token Redis does not accept")
	}
	if !strings.Contains(err.Error(), "WRONGPASS") || !redis.IsAuthError(err) {
		t.Errorf("error %q, want Redis's WRONGPASS", err)
	}
	if !errors.Is(err, outage.ErrUnavailable) {
		t.Errorf("error %q, want it to wrap outage.ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), tokenFor(user, "")) {
		t.Error("the error quotes the token")
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("took %v to fail", d)
	}
}

func TestExpiryWithoutNewTokenClosesConnections(t *testing.T) {
	t.Parallel()
	admin := realRedis(t)
	ctx := context.Background()
	sfx := suffix()
	user := "tokuser-d-" + sfx
	aclUser(t, admin, user, tokenFor(user, ""))
	aclUser(t, admin, user+"-2", tokenFor(user+"-2", ""))
	clk := newFakeClock()
	cred := newFakeCred(clk, user)
	p := newProvider(t, cred, clk, redisauth.Options{})
	name := "redisauth-test-" + sfx
	rdb := testClient(t, admin, p, name)
	key := "redisauth:missing:" + sfx

	blockMany(t, rdb, 4, key)
	if n := len(clients(t, admin, name)); n < 4 {
		t.Fatalf("%d connections open, want at least 4", n)
	}

	// The token service fails from the first refresh on. Until the token is
	// about to expire, nothing changes for the client.
	outage := errors.New("managed identity endpoint unavailable")
	cred.set(user+"-2", "", outage)
	s := &stepper{clk: clk}
	s.until(t, start.Add(59*time.Minute-time.Millisecond))
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING with the old, still valid token: %v", err)
	}

	// Then OnError makes go-redis close its connections, and a new one
	// fails at once with the reason.
	s.until(t, start.Add(59*time.Minute))
	testkit.Eventually(t, "OnError to close every connection", func() error {
		if n := len(clients(t, admin, name)); n != 0 {
			return fmt.Errorf("%d connections still open after OnError", n)
		}
		return nil
	})
	began := time.Now()
	err := rdb.Ping(ctx).Err()
	if !errors.Is(err, redisauth.ErrNoToken) || !errors.Is(err, outage) {
		t.Errorf("PING without a token: %v, want ErrNoToken wrapping the credential's error", err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("took %v to fail", d)
	}

	// The token service recovers: the next retry brings a token and new
	// connections use it.
	cred.set(user+"-2", "", nil)
	s.until(t, start.Add(61*time.Minute))
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after recovery: %v", err)
	}
	for _, c := range clients(t, admin, name) {
		if c.user != user+"-2" {
			t.Errorf("connection %s is user %q, want %q", c.id, c.user, user+"-2")
		}
	}
}
