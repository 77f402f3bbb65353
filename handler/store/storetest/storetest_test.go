package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
)

func TestSlot(t *testing.T) {
	// Values from the Redis Cluster specification and CLUSTER KEYSLOT.
	if got := crc16("123456789"); got != 0x31C3 {
		t.Errorf("crc16(123456789) = %#x, want 0x31c3", got)
	}
	for key, want := range map[string]int{"foo": 12182, "bar": 5061, "{foo}.x": 12182, "a{}b": int(crc16("a{}b") % 16384)} {
		if got := Slot(key); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
	if Slot("{user1000}.following") != Slot("{user1000}.followers") {
		t.Error("keys with one hash tag are in different slots")
	}
	if Slot("{}.a") != int(crc16("{}.a")%16384) {
		t.Error("an empty tag must not be a tag")
	}
}

func TestSlotsFlagsCrossSlotScripts(t *testing.T) {
	rdb := Mini(t)
	slots := &Slots{}
	rdb.AddHook(slots)
	ctx := context.Background()
	one := redis.NewScript(`return redis.call('SET', KEYS[1], KEYS[2])`)
	if err := one.Run(ctx, rdb, []string{"{a}:1", "{a}:2"}).Err(); err != nil {
		t.Fatal(err)
	}
	if slots.Checked() == 0 {
		t.Fatal("script not seen")
	}
	for name, run := range map[string]func(*redis.Client){
		"script": func(c *redis.Client) { _ = one.Run(ctx, c, []string{"foo", "bar"}).Err() },
		"transaction": func(c *redis.Client) {
			_, _ = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, "foo", 1, 0)
				p.Set(ctx, "bar", 1, 0)
				return nil
			})
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := Mini(t)
			bad := &Slots{}
			c.AddHook(bad)
			run(c)
			rec := &recorder{}
			bad.Check(rec)
			if rec.errors == 0 {
				t.Fatal("a cross-slot " + name + " was not flagged")
			}
		})
	}
	slots.Check(t)
}

type recorder struct{ errors int }

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.errors++ }

// TestProxyStallLosesRepliesNotWrites: through a stalled proxy the client
// times out, and the write has happened anyway; a stall for a time ends by
// itself.
func TestProxyStallLosesRepliesNotWrites(t *testing.T) {
	_, srv := MiniServer(t)
	p := testkit.NewProxy(t, srv.Addr())
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), ReadTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "k", "before", 0).Err(); err != nil {
		t.Fatal(err)
	}
	p.Stall(time.Minute)
	if err := c.Set(ctx, "k", "during", 0).Err(); err == nil {
		t.Fatal("a stalled reply arrived in time")
	}
	if v, _ := srv.Get("k"); v != "during" {
		t.Fatalf("the write did not happen: %q", v)
	}
	// Shortened to 100 ms, the stall holds the reply to a patient
	// client's read and lets it through when it ends: no waiting for a
	// long stall to run out.
	patient := redis.NewClient(&redis.Options{Addr: p.Addr(), ReadTimeout: 10 * time.Second, MaxRetries: -1})
	defer patient.Close()
	p.Stall(100 * time.Millisecond)
	start := time.Now()
	if v, err := patient.Get(ctx, "k").Result(); err != nil || v != "during" {
		t.Fatalf("a read held by a stall for a time: %q %v", v, err)
	}
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Fatalf("the reply came after %v: the 100 ms stall did not hold it", d)
	}
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "during" {
		t.Fatalf("after the stall: %q %v", v, err)
	}
}
