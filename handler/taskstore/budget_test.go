package taskstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/outage"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
	"github.com/entra-mcp/functions-mcp/handler/taskstore"
)

const bytesKey = "tasks:{" + tenantA + "}:bytes"

// fixedClock keeps timestamps (RFC 3339 without trailing zeros) one length,
// so equal tasks count the same.
func fixedClock() taskstore.Option {
	now := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	return taskstore.WithClock(func() time.Time { return now })
}

// counted is the tenant's byte count as the store keeps it.
func counted(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	n, err := rdb.Get(context.Background(), bytesKey).Int64()
	if err != nil {
		t.Fatalf("byte count: %v", err)
	}
	return n
}

// storedBytes sums, independently of the store, what tenant A's tasks hold:
// TaskOverhead per task plus the length of every field but id and seq.
func storedBytes(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	ctx := context.Background()
	ids, err := rdb.ZRange(ctx, "tasks:{"+tenantA+"}:all", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, id := range ids {
		fields, err := rdb.HGetAll(ctx, "tasks:{"+tenantA+"}:t:"+id).Result()
		if err != nil {
			t.Fatal(err)
		}
		n += taskstore.TaskOverhead
		for f, v := range fields {
			if f != "id" && f != "seq" {
				n += int64(len(v))
			}
		}
	}
	return n
}

func TestByteBudget(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	notes := strings.Repeat("n", 4000)

	// size is what one task with these notes counts for.
	size := func(t *testing.T) int64 {
		s, rdb := newTasks(t, fixedClock())
		if _, err := s.Create(ctx, tenantA, alice, "task", notes); err != nil {
			t.Fatal(err)
		}
		return counted(t, rdb)
	}(t)
	if size < taskstore.TaskOverhead+4000 || size > taskstore.TaskOverhead+4300 {
		t.Fatalf("a task with 4000 bytes of notes counts %d", size)
	}

	t.Run("create refused over budget", func(t *testing.T) {
		s, rdb := newTasks(t, fixedClock(), taskstore.WithMaxBytes(2*size+size/2))
		mustCreateNotes(t, s, "task", notes)
		mustCreateNotes(t, s, "task", notes)
		_, err := s.Create(ctx, tenantA, alice, "task", notes)
		if !errors.Is(err, taskstore.ErrStorageFull) {
			t.Fatalf("third create: %v, want ErrStorageFull", err)
		}
		// A smaller task still fits, and another tenant has its own budget.
		mustCreateNotes(t, s, "small", "")
		if _, err := s.Create(ctx, tenantB, alice, "task", notes); err != nil {
			t.Fatalf("other tenant: %v", err)
		}
		if got, want := counted(t, rdb), storedBytes(t, rdb); got != want {
			t.Fatalf("counted %d, stored %d", got, want)
		}
	})

	t.Run("update refused over budget", func(t *testing.T) {
		s, rdb := newTasks(t, fixedClock(), taskstore.WithMaxBytes(2*size+size/2))
		a := mustCreateNotes(t, s, "task", notes)
		b := mustCreateNotes(t, s, "task", "")
		_, err := s.Update(ctx, tenantA, b.ID, alice, taskstore.Change{Notes: ptr(strings.Repeat("é", 4000))})
		if !errors.Is(err, taskstore.ErrStorageFull) {
			t.Fatalf("growing update: %v, want ErrStorageFull", err)
		}
		if got, _ := s.Get(ctx, tenantA, b.ID); got.Notes != "" {
			t.Fatalf("refused update changed the task: %q", got.Notes[:10])
		}
		// Growing within the budget, and shrinking, are fine.
		if _, err := s.Update(ctx, tenantA, b.ID, bob, taskstore.Change{Notes: ptr(notes)}); err != nil {
			t.Fatalf("update within budget: %v", err)
		}
		if _, err := s.Update(ctx, tenantA, a.ID, bob, taskstore.Change{Notes: ptr("short"), Status: ptr(taskstore.StatusDone)}); err != nil {
			t.Fatalf("shrinking update: %v", err)
		}
		if got, want := counted(t, rdb), storedBytes(t, rdb); got != want {
			t.Fatalf("counted %d, stored %d", got, want)
		}
	})

	t.Run("delete frees budget", func(t *testing.T) {
		s, rdb := newTasks(t, fixedClock(), taskstore.WithMaxBytes(2*size+size/2))
		a := mustCreateNotes(t, s, "task", notes)
		mustCreateNotes(t, s, "task", notes)
		if _, err := s.Create(ctx, tenantA, alice, "task", notes); !errors.Is(err, taskstore.ErrStorageFull) {
			t.Fatalf("create when full: %v", err)
		}
		if _, err := s.Delete(ctx, tenantA, a.ID); err != nil {
			t.Fatal(err)
		}
		mustCreateNotes(t, s, "task", notes)
		if got, want := counted(t, rdb), storedBytes(t, rdb); got != want || got != 2*size {
			t.Fatalf("counted %d, stored %d, want %d", got, want, 2*size)
		}
	})

	t.Run("count kept through every change", func(t *testing.T) {
		s, rdb := newTasks(t)
		var ids []string
		for i := range 12 {
			ids = append(ids, mustCreateNotes(t, s, fmt.Sprint("task ", i), strings.Repeat("é", i*37)).ID)
		}
		for i, id := range ids {
			var err error
			switch i % 4 {
			case 0:
				_, err = s.Update(ctx, tenantA, id, bob, taskstore.Change{Title: ptr(strings.Repeat("t", i+1)), Notes: ptr("")})
			case 1:
				_, err = s.Complete(ctx, tenantA, id, taskstore.Actor{ID: bob.ID, Name: strings.Repeat("B", 200)})
			case 2:
				_, err = s.Delete(ctx, tenantA, id)
			case 3:
				_, err = s.Update(ctx, tenantA, id, alice, taskstore.Change{Notes: ptr(strings.Repeat("ü", 999))})
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if got, want := counted(t, rdb), storedBytes(t, rdb); got != want {
			t.Fatalf("counted %d, stored %d", got, want)
		}
	})

	t.Run("count initialised for tasks written before it", func(t *testing.T) {
		s, rdb := newTasks(t, fixedClock())
		for range 5 {
			mustCreateNotes(t, s, "task", notes)
		}
		// As a store from before the byte budget left it: tasks, no count.
		if err := rdb.Del(ctx, bytesKey).Err(); err != nil {
			t.Fatal(err)
		}
		// A delete or a shrinking update leaves the count to the next write
		// that needs it.
		page, _ := s.List(ctx, tenantA, taskstore.ListQuery{})
		if _, err := s.Delete(ctx, tenantA, page.Tasks[0].ID); err != nil {
			t.Fatal(err)
		}
		if n, err := rdb.Exists(ctx, bytesKey).Result(); err != nil || n != 0 {
			t.Fatalf("delete made a count from nothing: %d %v", n, err)
		}
		full := taskstore.New(rdb, fixedClock(), taskstore.WithMaxBytes(5*size+size/2))
		if _, err := full.Create(ctx, tenantA, alice, "task", notes); err != nil {
			t.Fatalf("fifth task: %v", err)
		}
		if got := counted(t, rdb); got != 5*size {
			t.Fatalf("count after initialising %d, want %d", got, 5*size)
		}
		if _, err := full.Create(ctx, tenantA, alice, "task", notes); !errors.Is(err, taskstore.ErrStorageFull) {
			t.Fatalf("sixth task: %v, want ErrStorageFull", err)
		}
		// The same through a growing update.
		rdb.Del(ctx, bytesKey)
		page, _ = s.List(ctx, tenantA, taskstore.ListQuery{})
		_, err := full.Update(ctx, tenantA, page.Tasks[0].ID, alice, taskstore.Change{Notes: ptr(strings.Repeat("é", 4000))})
		if !errors.Is(err, taskstore.ErrStorageFull) {
			t.Fatalf("growing update after losing the count: %v", err)
		}
		if got := counted(t, rdb); got != 5*size {
			t.Fatalf("count after initialising in update %d, want %d", got, 5*size)
		}
	})
}

func mustCreateNotes(t *testing.T, s *taskstore.Store, title, notes string) taskstore.Task {
	t.Helper()
	task, err := s.Create(context.Background(), tenantA, alice, title, notes)
	if err != nil {
		t.Fatalf("create %q: %v", title, err)
	}
	return task
}

func TestByteCaps(t *testing.T) {
	t.Parallel()
	s, _ := newTasks(t)
	for _, c := range []struct {
		name, title, notes, field string
	}{
		// Within the character caps, past the byte caps.
		{"title of emoji", strings.Repeat("😀", 129), "", "title"},
		{"notes of euro signs", "ok", strings.Repeat("€", 2731), "notes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := create(s, c.title, c.notes)
			var ve *taskstore.ValidationError
			if !errors.As(err, &ve) || ve.Field != c.field || !strings.Contains(ve.Reason, "bytes") {
				t.Fatalf("got %v, want a ValidationError on %s naming bytes", err, c.field)
			}
		})
	}
	t.Run("exactly at the byte caps", func(t *testing.T) {
		if err := create(s, strings.Repeat("😀", 128), strings.Repeat("€", 2730)+"ab"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("update too", func(t *testing.T) {
		task := mustCreate(t, s, tenantA, "target")
		_, err := s.Update(context.Background(), tenantA, task.ID, alice, taskstore.Change{Notes: ptr(strings.Repeat("€", 2731))})
		var ve *taskstore.ValidationError
		if !errors.As(err, &ve) || ve.Field != "notes" {
			t.Fatalf("got %v", err)
		}
	})
}

// readBytes counts the bytes of task text Redis sends in HMGET and HGETALL
// replies.
type readBytes struct{ n atomic.Int64 }

func (r *readBytes) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *readBytes) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		r.count(cmd)
		return err
	}
}
func (r *readBytes) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			r.count(c)
		}
		return err
	}
}
func (r *readBytes) count(cmd redis.Cmder) {
	switch c := cmd.(type) {
	case *redis.SliceCmd:
		for _, v := range c.Val() {
			s, _ := v.(string)
			r.n.Add(int64(len(s)))
		}
	case *redis.MapStringStringCmd:
		for k, v := range c.Val() {
			r.n.Add(int64(len(k) + len(v)))
		}
	}
}

func TestSearchByteBound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, rdb := newTasks(t)
	big := strings.Repeat("é", 4000)
	// The match is the oldest task, behind 250 tasks of 8,000 bytes of
	// notes each: 2 MB, more than the bound, far fewer than SearchScanLimit.
	mustCreate(t, s, tenantA, "the needle")
	mustCreate(t, s, tenantB, "the needle")
	for i := range 250 {
		if _, err := s.Create(ctx, tenantA, alice, fmt.Sprint("hay ", i), big); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Create(ctx, tenantB, alice, fmt.Sprint("hay ", i), "x"); err != nil {
			t.Fatal(err)
		}
	}
	read := &readBytes{}
	rdb.AddHook(read)

	res, err := s.Search(ctx, tenantA, "needle", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tasks) != 0 || res.Complete {
		t.Fatalf("search past the byte bound: %d tasks, complete=%v; want none and incomplete", len(res.Tasks), res.Complete)
	}
	t.Logf("search read %d bytes of task text from Redis", read.n.Load())
	// The bound, plus at most the batch that crossed it.
	if n := read.n.Load(); n < taskstore.SearchByteLimit || n > taskstore.SearchByteLimit+100*(taskstore.MaxTitleBytes+taskstore.MaxNotesBytes) {
		t.Fatalf("search read %d bytes of task text", n)
	}

	// With small tasks the same search reaches the needle.
	res, err = s.Search(ctx, tenantB, "needle", 10)
	if err != nil || len(res.Tasks) != 1 || !res.Complete {
		t.Fatalf("small tasks: %+v, %v", res, err)
	}
	// A match loads its whole task.
	if res.Tasks[0].CreatedBy != alice.ID || res.Tasks[0].Status != taskstore.StatusOpen {
		t.Fatalf("match not loaded whole: %+v", res.Tasks[0])
	}
}

func TestCreateIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := testkit.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	s, rdb := newTasks(t, taskstore.WithClock(clock.Now))
	count := func(t *testing.T, tid string) int64 {
		t.Helper()
		n, err := rdb.ZCard(ctx, "tasks:{"+tid+"}:all").Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	first, err := s.CreateIdempotent(ctx, tenantA, alice, "report-2026.03:1", "Write the report", "notes")
	if err != nil || first.Replayed {
		t.Fatalf("first create: %+v, %v", first, err)
	}
	t.Run("retry returns the first task", func(t *testing.T) {
		// The task as it is now, changes included.
		if _, err := s.Complete(ctx, tenantA, first.Task.ID, bob); err != nil {
			t.Fatal(err)
		}
		again, err := s.CreateIdempotent(ctx, tenantA, alice, "report-2026.03:1", "  Write the report ", "notes")
		if err != nil || !again.Replayed || again.Task.ID != first.Task.ID || again.Task.Status != taskstore.StatusDone {
			t.Fatalf("retry: %+v, %v", again, err)
		}
		if n := count(t, tenantA); n != 1 {
			t.Fatalf("%d tasks after a retry, want 1", n)
		}
	})
	t.Run("key is per user and per tenant", func(t *testing.T) {
		other, err := s.CreateIdempotent(ctx, tenantA, bob, "report-2026.03:1", "Write the report", "notes")
		if err != nil || other.Replayed || other.Task.ID == first.Task.ID {
			t.Fatalf("bob with alice's key: %+v, %v", other, err)
		}
		elsewhere, err := s.CreateIdempotent(ctx, tenantB, alice, "report-2026.03:1", "Write the report", "notes")
		if err != nil || elsewhere.Replayed {
			t.Fatalf("other tenant: %+v, %v", elsewhere, err)
		}
	})
	t.Run("same key for another task is a conflict", func(t *testing.T) {
		before := count(t, tenantA)
		_, err := s.CreateIdempotent(ctx, tenantA, alice, "report-2026.03:1", "Something else", "notes")
		if !errors.Is(err, taskstore.ErrKeyConflict) || count(t, tenantA) != before {
			t.Fatalf("different title: %v", err)
		}
	})
	t.Run("deleted since", func(t *testing.T) {
		c, err := s.CreateIdempotent(ctx, tenantA, alice, "to-delete", "Temporary", "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Delete(ctx, tenantA, c.Task.ID); err != nil {
			t.Fatal(err)
		}
		before := count(t, tenantA)
		again, err := s.CreateIdempotent(ctx, tenantA, alice, "to-delete", "Temporary", "")
		if !errors.Is(err, taskstore.ErrKeyReplayDeleted) || again.Task.ID != c.Task.ID || count(t, tenantA) != before {
			t.Fatalf("retry after delete: %+v, %v", again, err)
		}
	})
	t.Run("forgotten after the window", func(t *testing.T) {
		clock.Add(taskstore.IdempotencyWindow + time.Millisecond)
		later, err := s.CreateIdempotent(ctx, tenantA, alice, "report-2026.03:1", "Write the report", "notes")
		if err != nil || later.Replayed || later.Task.ID == first.Task.ID {
			t.Fatalf("a day later: %+v, %v", later, err)
		}
	})
	t.Run("bad keys", func(t *testing.T) {
		for _, key := range []string{"", strings.Repeat("k", taskstore.MaxKeyLen+1), "a b", "ключ", "a/b", "a\x00"} {
			_, err := s.CreateIdempotent(ctx, tenantA, alice, key, "t", "")
			var ve *taskstore.ValidationError
			if !errors.As(err, &ve) || ve.Field != "idempotency_key" {
				t.Errorf("key %q: %v, want a ValidationError on idempotency_key", key, err)
			}
		}
	})
}

func TestRememberedKeysAreBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, rdb := newTasks(t, taskstore.WithMaxKeys(3))
	var ids []string
	for i := range 5 {
		c, err := s.CreateIdempotent(ctx, tenantA, alice, fmt.Sprint("k", i), "t", "")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.Task.ID)
	}
	if n, _ := rdb.HLen(ctx, "tasks:{"+tenantA+"}:idem").Result(); n != 3 {
		t.Fatalf("%d keys remembered, want 3", n)
	}
	if n, _ := rdb.ZCard(ctx, "tasks:{"+tenantA+"}:idemexp").Result(); n != 3 {
		t.Fatalf("%d expiries kept, want 3", n)
	}
	// The newest are remembered, the oldest forgotten.
	if c, err := s.CreateIdempotent(ctx, tenantA, alice, "k4", "t", ""); err != nil || !c.Replayed || c.Task.ID != ids[4] {
		t.Fatalf("newest key: %+v, %v", c, err)
	}
	if c, err := s.CreateIdempotent(ctx, tenantA, alice, "k0", "t", ""); err != nil || c.Replayed {
		t.Fatalf("oldest key: %+v, %v", c, err)
	}
}

// TestCreateRetriedAfterLostReply: Redis runs the create, its reply is lost
// (the client times out), and the retry with the same key finds the task
// instead of making a second one. Without a key the same retry duplicates,
// which shows the reply really was lost after the write.
func TestCreateRetriedAfterLostReply(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	direct := storetest.Redis(t)
	tasksIn := func(tid string) int64 {
		n, err := direct.ZCard(ctx, "tasks:{"+tid+"}:all").Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// The create with a key and the one without go through proxies of
	// their own, so that both replies are lost at once and the two
	// timeouts are waited out together.
	type lossy struct {
		s     *taskstore.Store
		proxy *testkit.Proxy
		slots *storetest.Slots
	}
	behind := func() lossy {
		rdb, proxy := storetest.Behind(t, direct, 300*time.Millisecond)
		slots := &storetest.Slots{}
		rdb.AddHook(slots)
		s := taskstore.New(rdb)
		// Redis learns the script first: a lost reply to EVALSHA would
		// mean the script never ran. The client keeps the connection,
		// whose handshake a stall would otherwise hold too.
		if _, err := s.Create(ctx, "3c4d5e6f-0000-4000-8000-000000000003", alice, "warm-up", ""); err != nil {
			t.Fatal(err)
		}
		return lossy{s, proxy, slots}
	}
	keyed, keyless := behind(), behind()

	keyed.proxy.Stall(time.Minute)
	keyless.proxy.Stall(time.Minute)
	var keyedErr, keylessErr error
	var wg sync.WaitGroup
	wg.Go(func() { _, keyedErr = keyed.s.CreateIdempotent(ctx, tenantA, alice, "retry-me", "Lost reply", "") })
	wg.Go(func() { _, keylessErr = keyless.s.Create(ctx, tenantB, alice, "No key", "") })
	wg.Wait()
	keyed.proxy.Stall(0)
	keyless.proxy.Stall(0)
	if !errors.Is(keyedErr, outage.ErrUnavailable) {
		t.Fatalf("create with its reply held: %v, want ErrUnavailable", keyedErr)
	}
	if !errors.Is(keylessErr, outage.ErrUnavailable) {
		t.Fatalf("keyless create with its reply held: %v", keylessErr)
	}

	if n := tasksIn(tenantA); n != 1 {
		t.Fatalf("the lost create made %d tasks, want 1 (the write happened)", n)
	}
	c, err := keyed.s.CreateIdempotent(ctx, tenantA, alice, "retry-me", "Lost reply", "")
	if err != nil || !c.Replayed || c.Task.Title != "Lost reply" {
		t.Fatalf("retry: %+v, %v", c, err)
	}
	if n := tasksIn(tenantA); n != 1 {
		t.Fatalf("tenant holds %d tasks after the retry, want exactly 1", n)
	}

	if _, err := keyless.s.Create(ctx, tenantB, alice, "No key", ""); err != nil {
		t.Fatal(err)
	}
	if n := tasksIn(tenantB); n != 2 {
		t.Fatalf("keyless retry: %d tasks, want 2", n)
	}
	keyed.slots.Check(t)
	keyless.slots.Check(t)
}

// TestBudgetBoundsRedisMemory fills a tenant's default budget with maximal
// tasks, on a redis-server of the test's own, and checks what Redis really
// spends on them: the budget must bound memory, not just a count.
func TestBudgetBoundsRedisMemory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := storetest.Server(t)
	s := taskstore.New(rdb)
	before := usedMemory(t, rdb)
	title := strings.Repeat("😀", taskstore.MaxTitleBytes/4)
	notes := strings.Repeat("€", taskstore.MaxNotesBytes/3) + "ab"
	n := 0
	for ; ; n++ {
		_, err := s.Create(ctx, tenantA, alice, title, notes)
		if errors.Is(err, taskstore.ErrStorageFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n > taskstore.DefaultMaxBytes/taskstore.MaxNotesBytes {
			t.Fatalf("%d maximal tasks fit in %d bytes", n, taskstore.DefaultMaxBytes)
		}
	}
	used := usedMemory(t, rdb) - before
	t.Logf("%d maximal tasks fill the %d MiB budget; Redis used_memory grew by %.1f MiB", n, taskstore.DefaultMaxBytes>>20, float64(used)/(1<<20))
	if used > taskstore.DefaultMaxBytes*13/10 {
		t.Errorf("a full budget of %d bytes takes %d bytes of Redis memory, more than 1.3×", taskstore.DefaultMaxBytes, used)
	}

	read := &readBytes{}
	rdb.AddHook(read)
	if _, err := s.Search(ctx, tenantA, "needle", 10); err != nil {
		t.Fatal(err)
	}
	t.Logf("a search that matches nothing read %.2f MB of task text", float64(read.n.Load())/1e6)
}

func usedMemory(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			var n int64
			fmt.Sscan(v, &n)
			return n
		}
	}
	t.Fatal("no used_memory in INFO")
	return 0
}
