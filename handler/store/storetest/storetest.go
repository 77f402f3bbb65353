// Package storetest gives tests a Redis of their own, and never touches a
// Redis it was not given.
//
// By default each test gets its own embedded miniredis. A real server is
// used only when STORETEST_REDIS_URL names one: that says its databases 1–15
// belong to the tests (CI sets it to the redis-server it started). Each test
// then leases a whole database number there, so tests and packages can run
// in parallel and may flush what they own. REDIS_URL, the handler's own
// setting, is never read, and nothing answering on the default port is ever
// used: a developer's Redis next to the tests stays untouched. Server starts
// a redis-server of the test's own for what only a real server does.
package storetest

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

const (
	firstDB   = 1
	lastDB    = 15
	leaseTTL  = 2 * time.Minute
	leaseWait = 3 * time.Minute
	// leasePrefix names the lease keys, kept in database 0.
	leasePrefix = "storetest:lease:"
)

// Redis returns a client on an empty database that belongs to the test
// until it ends; it is flushed and closed in cleanup.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	base, ok := realServer(t)
	if !ok {
		return Mini(t)
	}
	return leaseDB(t, base)
}

// Mini returns a client on a fresh miniredis, and the server so the test
// can stop it or move its clock.
func Mini(t testing.TB) *redis.Client {
	t.Helper()
	c, _ := MiniServer(t)
	return c
}

// MiniServer is Mini that also returns the server.
func MiniServer(t testing.TB) (*redis.Client, *miniredis.Miniredis) {
	t.Helper()
	srv := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), DialerRetries: 1, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return c, srv
}

// Down returns a client for a Redis that does not answer: its address is a
// port that was free a moment ago.
func Down(t testing.TB) *redis.Client {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("storetest: find a free port: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	c := redis.NewClient(&redis.Options{
		Addr:          addr,
		DialTimeout:   time.Second,
		DialerRetries: 1,
		MaxRetries:    -1,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// EnvURL names the Redis whose databases 1–15 the tests may use and flush.
const EnvURL = "STORETEST_REDIS_URL"

// realServer returns options for the real Redis the tests were given, if
// any.
func realServer(t testing.TB) (*redis.Options, bool) {
	t.Helper()
	url := os.Getenv(EnvURL)
	if url == "" {
		return nil, false
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("storetest: %s is not a Redis URL", EnvURL)
	}
	return opts, true
}

// leaseDB claims a free database number on the server for the test,
// waiting while all are taken.
func leaseDB(t testing.TB, base *redis.Options) *redis.Client {
	t.Helper()
	admin := client(base, 0)
	t.Cleanup(func() { admin.Close() })
	token := rand.Text()
	deadline := time.Now().Add(leaseWait)
	for {
		for db := firstDB; db <= lastDB; db++ {
			key := fmt.Sprintf("%s%d", leasePrefix, db)
			ok, err := admin.SetNX(context.Background(), key, token, leaseTTL).Result()
			if err != nil {
				t.Fatalf("storetest: lease a database: %v", err)
			}
			if ok {
				return useDB(t, base, admin, db, key, token)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("storetest: no free database in %d–%d after %v", firstDB, lastDB, leaseWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// useDB empties the leased database, keeps the lease alive while the test
// runs, and empties and releases it when the test ends.
func useDB(t testing.TB, base *redis.Options, admin *redis.Client, db int, key, token string) *redis.Client {
	t.Helper()
	ctx := context.Background()
	c := client(base, db)
	if err := c.FlushDB(ctx).Err(); err != nil {
		releaseScript.Run(ctx, admin, []string{key}, token)
		c.Close()
		t.Fatalf("storetest: use database %d: %v", db, err)
	}
	stop := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(leaseTTL / 4)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				renewScript.Run(ctx, admin, []string{key}, token, leaseTTL.Milliseconds())
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-stopped
		c.FlushDB(ctx)
		c.Close()
		releaseScript.Run(ctx, admin, []string{key}, token)
	})
	return c
}

func client(base *redis.Options, db int) *redis.Client {
	opts := *base
	opts.DB = db
	return redis.NewClient(&opts)
}

// releaseScript deletes a lease only if it is still ours.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// renewScript extends a lease only if it is still ours.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`)

// Keys lists the keys of rdb (a Redis the test owns) that match pattern.
func Keys(t testing.TB, rdb *redis.Client, pattern string) []string {
	t.Helper()
	var out []string
	iter := rdb.Scan(context.Background(), 0, pattern, 100).Iterator()
	for iter.Next(context.Background()) {
		out = append(out, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("list keys %s: %v", pattern, err)
	}
	return out
}
