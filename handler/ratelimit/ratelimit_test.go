package ratelimit_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/ratelimit"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
)

func TestLimiterBurstThenRefuse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := storetest.Redis(t)
	// 10 a second: one every 100ms, 3 at once.
	a := ratelimit.New(rdb, "login", 10, time.Second, 3)
	b := ratelimit.New(rdb, "login", 10, time.Second, 3) // another instance
	ip := "198.51.100.7"

	for i, l := range []*ratelimit.Limiter{a, b, a} {
		ok, wait, err := l.Allow(ctx, ip)
		if err != nil || !ok || wait != 0 {
			t.Fatalf("request %d: %v, %v, %v; want allowed", i+1, ok, wait, err)
		}
	}
	ok, wait, err := b.Allow(ctx, ip)
	if err != nil || ok {
		t.Fatalf("request 4 on the other instance: %v, %v; want refused", ok, err)
	}
	if wait <= 0 || wait > 100*time.Millisecond {
		t.Errorf("retry after %v, want (0, 100ms]", wait)
	}
	// Another client is not affected.
	if ok, _, err := a.Allow(ctx, "198.51.100.8"); !ok || err != nil {
		t.Errorf("other client: %v, %v", ok, err)
	}
	// Another limiter name is not affected.
	c := ratelimit.New(rdb, "token", 10, time.Second, 1)
	if ok, _, err := c.Allow(ctx, ip); !ok || err != nil {
		t.Errorf("other limiter: %v, %v", ok, err)
	}

	time.Sleep(wait + 5*time.Millisecond)
	if ok, _, err := a.Allow(ctx, ip); !ok || err != nil {
		t.Errorf("after retry-after: %v, %v; want allowed", ok, err)
	}
	if ok, wait, _ := b.Allow(ctx, ip); ok || wait <= 0 {
		t.Errorf("right after: %v, %v; want refused", ok, wait)
	}

	for _, key := range storetest.Keys(t, rdb, "rl:*") {
		if strings.Contains(key, ip) {
			t.Errorf("key %s holds the address", key)
		}
		// -2ns: the key is gone already, its TTL spent (the "token"
		// bucket's is 100ms, which a slow run can outlast); -1ns would be
		// a key without one.
		if d := rdb.PTTL(ctx, key).Val(); d == -time.Nanosecond || d > 400*time.Millisecond {
			t.Errorf("key %s TTL %v, want until the bucket is full", key, d)
		}
	}
}

func TestLimiterRefill(t *testing.T) {
	t.Parallel()
	// A slow rate: refusals say how long until the next request.
	ctx := context.Background()
	l := ratelimit.New(storetest.Redis(t), "slow", 2, time.Minute, 2)
	for range 2 {
		if ok, _, err := l.Allow(ctx, "x"); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	for range 3 {
		ok, wait, err := l.Allow(ctx, "x")
		if ok || err != nil || wait < 29*time.Second || wait > 30*time.Second {
			t.Errorf("refusal: %v, %v, %v; want retry after ~30s", ok, wait, err)
		}
	}
}

func TestNewLimiterRejects(t *testing.T) {
	t.Parallel()
	rdb := storetest.Mini(t)
	for _, c := range []struct {
		name        string
		rate, burst int
		per         time.Duration
	}{
		{"", 1, 1, time.Second},
		{"a:b", 1, 1, time.Second},
		{"ok", 0, 1, time.Second},
		{"ok", 1, 0, time.Second},
		{"ok", 1, 1, 0},
		{"ok", 1e9, 1, time.Second},
	} {
		t.Run(fmt.Sprintf("%q %d per %v burst %d", c.name, c.rate, c.per, c.burst), func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%q, %d, %v, %d) did not panic", c.name, c.rate, c.per, c.burst)
				}
			}()
			ratelimit.New(rdb, c.name, c.rate, c.per, c.burst)
		})
	}
}

// TestLimiterRedisDown: without Redis the limiter counts in process, with
// the same burst and rate, and says so once in the log.
func TestLimiterRedisDown(t *testing.T) {
	t.Parallel()
	logs := &testkit.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	l := ratelimit.New(storetest.Down(t), "login", 1, time.Minute, 3, ratelimit.WithLogger(log))
	ctx := context.Background()
	for i := range 3 {
		if ok, _, err := l.Allow(ctx, "198.51.100.7"); !ok || err != nil {
			t.Fatalf("request %d: %v, %v; want allowed in process", i+1, ok, err)
		}
	}
	ok, wait, err := l.Allow(ctx, "198.51.100.7")
	if ok || err != nil || wait < 59*time.Second {
		t.Fatalf("request 4: %v, %v, %v; want refused for about a minute", ok, wait, err)
	}
	if ok, _, _ := l.Allow(ctx, "198.51.100.8"); !ok {
		t.Error("another key was refused")
	}
	if n := strings.Count(logs.String(), "counted in process"); n != 1 {
		t.Errorf("outage logged %d times, want once:\n%s", n, logs)
	}
}

// TestLimiterLogsRefusalsOncePerWindow: a flood from one key is one log
// line, not one per request.
func TestLimiterLogsRefusalsOncePerWindow(t *testing.T) {
	t.Parallel()
	logs := &testkit.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	l := ratelimit.New(storetest.Redis(t), "flood", 1, time.Minute, 2, ratelimit.WithLogger(log))
	ctx := context.Background()
	for range 50 {
		l.Allow(ctx, "203.0.113.9")
		l.Allow(ctx, "203.0.113.10")
	}
	out := logs.String()
	for _, key := range []string{"203.0.113.9", "203.0.113.10"} {
		if n := strings.Count(out, `"key":"`+key+`"`); n != 1 {
			t.Errorf("refusals of %s logged %d times, want once", key, n)
		}
	}
	if !strings.Contains(out, `"level":"WARN"`) || !strings.Contains(out, `"limit":"flood"`) {
		t.Errorf("refusal log lacks level or limit name: %s", out)
	}
}

// TestLocalBucketsStayBounded: a flood of distinct keys during an outage
// neither grows memory past the bound nor locks out a key being counted.
func TestLocalBucketsStayBounded(t *testing.T) {
	t.Parallel()
	l := ratelimit.New(storetest.Down(t), "bounded", 1, time.Hour, 1)
	ctx := context.Background()
	for i := range 11000 {
		l.Allow(ctx, fmt.Sprint("flood-", i))
	}
	if n := ratelimit.LocalBucketCount(l); n > 10000 {
		t.Fatalf("%d local buckets, want at most 10000", n)
	}
}
