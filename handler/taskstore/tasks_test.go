package taskstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/outage"
	"github.com/entra-mcp/functions-mcp/handler/store"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
	"github.com/entra-mcp/functions-mcp/handler/taskstore"
)

const (
	tenantA = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	tenantB = "0d2f1a52-57a7-4c5e-9b0a-1f0d3c4e5a6b"
)

var (
	alice = taskstore.Actor{ID: "11111111-1111-1111-1111-111111111111", Name: "Alice"}
	bob   = taskstore.Actor{ID: "22222222-2222-2222-2222-222222222222", Name: "Bob"}
)

func ptr[T any](v T) *T { return &v }

// newTasks returns a task store over a test Redis whose scripts are
// checked to stay in one hash slot each.
func newTasks(t *testing.T, opts ...taskstore.Option) (*taskstore.Store, *redis.Client) {
	t.Helper()
	rdb := storetest.Redis(t)
	slots := &storetest.Slots{}
	rdb.AddHook(slots)
	t.Cleanup(func() { slots.Check(t) })
	return taskstore.New(rdb, opts...), rdb
}

func mustCreate(t *testing.T, s *taskstore.Store, tid, title string) taskstore.Task {
	t.Helper()
	task, err := s.Create(context.Background(), tid, alice, title, "")
	if err != nil {
		t.Fatalf("create %q: %v", title, err)
	}
	return task
}

func TestCRUD(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s, _ := newTasks(t, taskstore.WithClock(func() time.Time { return now }))

	created, err := s.Create(ctx, tenantA, alice, "  Write the report  ", "by Friday\nwith charts")
	if err != nil {
		t.Fatal(err)
	}
	want := taskstore.Task{
		ID: created.ID, Title: "Write the report", Notes: "by Friday\nwith charts", Status: taskstore.StatusOpen,
		CreatedBy: alice.ID, CreatedByName: "Alice", CreatedAt: now,
		UpdatedBy: alice.ID, UpdatedByName: "Alice", UpdatedAt: now,
	}
	if created != want {
		t.Fatalf("created %+v, want %+v", created, want)
	}
	if len(created.ID) != 12 || strings.Trim(created.ID, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		t.Fatalf("id %q is not 12 base32 characters", created.ID)
	}

	got, err := s.Get(ctx, tenantA, created.ID)
	if err != nil || got != want {
		t.Fatalf("get = %+v, %v; want %+v", got, err, want)
	}

	now = now.Add(time.Hour)
	updated, err := s.Update(ctx, tenantA, created.ID, bob, taskstore.Change{Title: ptr("Write the final report")})
	if err != nil {
		t.Fatal(err)
	}
	want.Title, want.UpdatedBy, want.UpdatedByName, want.UpdatedAt = "Write the final report", bob.ID, "Bob", now
	if updated != want {
		t.Fatalf("updated %+v, want %+v", updated, want)
	}

	// An update that changes nothing leaves the Updated fields alone.
	now = now.Add(time.Hour)
	same, err := s.Update(ctx, tenantA, created.ID, alice, taskstore.Change{Title: ptr("Write the final report")})
	if err != nil || same != want {
		t.Fatalf("no-op update = %+v, %v; want %+v", same, err, want)
	}

	done, err := s.Complete(ctx, tenantA, created.ID, alice)
	if err != nil || done.Status != taskstore.StatusDone || done.UpdatedBy != alice.ID {
		t.Fatalf("complete = %+v, %v", done, err)
	}
	again, err := s.Complete(ctx, tenantA, created.ID, bob)
	if err != nil || again != done {
		t.Fatalf("second complete = %+v, %v; want %+v", again, err, done)
	}

	deleted, err := s.Delete(ctx, tenantA, created.ID)
	if err != nil || deleted != done {
		t.Fatalf("delete = %+v, %v; want %+v", deleted, err, done)
	}
	if _, err := s.Get(ctx, tenantA, created.ID); !errors.Is(err, taskstore.ErrNotFound) {
		t.Fatalf("get after delete: %v, want ErrNotFound", err)
	}
	if _, err := s.Delete(ctx, tenantA, created.ID); !errors.Is(err, taskstore.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
	if _, err := s.Update(ctx, tenantA, created.ID, alice, taskstore.Change{Notes: ptr("x")}); !errors.Is(err, taskstore.ErrNotFound) {
		t.Fatalf("update after delete: %v, want ErrNotFound", err)
	}
	page, err := s.List(ctx, tenantA, taskstore.ListQuery{})
	if err != nil || len(page.Tasks) != 0 {
		t.Fatalf("list after delete = %+v, %v", page, err)
	}
}

func TestKeysStayInTenantNamespace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, rdb := newTasks(t)
	task := mustCreate(t, s, strings.ToUpper(tenantA), "upper-case tenant id")
	if _, err := s.Get(ctx, tenantA, task.ID); err != nil {
		t.Fatalf("tenant id case must not split the namespace: %v", err)
	}
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "tasks:{"+tenantA+"}:") {
			t.Errorf("key %q is outside the tenant's namespace", k)
		}
		if strings.Contains(k, alice.ID) || strings.Contains(k, "Alice") {
			t.Errorf("key %q holds personal data", k)
		}
	}
}

func TestListPagesAndFilters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newTasks(t)
	var ids []string
	for i := range 7 {
		ids = append(ids, mustCreate(t, s, tenantA, fmt.Sprintf("task %d", i)).ID)
	}
	for _, i := range []int{1, 4} {
		if _, err := s.Complete(ctx, tenantA, ids[i], alice); err != nil {
			t.Fatal(err)
		}
	}

	// All tasks, newest first, three at a time.
	var seen []string
	q := taskstore.ListQuery{Limit: 3}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		page, err := s.List(ctx, tenantA, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range page.Tasks {
			seen = append(seen, task.ID)
		}
		if page.NextCursor == "" {
			break
		}
		q.Cursor = page.NextCursor
	}
	want := []string{ids[6], ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("paged ids %v, want %v", seen, want)
	}

	done, err := s.List(ctx, tenantA, taskstore.ListQuery{Status: taskstore.StatusDone})
	if err != nil {
		t.Fatal(err)
	}
	if got := idsOf(done.Tasks); fmt.Sprint(got) != fmt.Sprint([]string{ids[4], ids[1]}) {
		t.Fatalf("done tasks %v", got)
	}
	open, err := s.List(ctx, tenantA, taskstore.ListQuery{Status: taskstore.StatusOpen, Limit: 100})
	if err != nil || len(open.Tasks) != 5 || open.NextCursor != "" {
		t.Fatalf("open tasks = %d, cursor %q, %v", len(open.Tasks), open.NextCursor, err)
	}

	// Reopening moves a task back to the open index.
	if _, err := s.Update(ctx, tenantA, ids[4], alice, taskstore.Change{Status: ptr(taskstore.StatusOpen)}); err != nil {
		t.Fatal(err)
	}
	done, _ = s.List(ctx, tenantA, taskstore.ListQuery{Status: taskstore.StatusDone})
	if got := idsOf(done.Tasks); fmt.Sprint(got) != fmt.Sprint([]string{ids[1]}) {
		t.Fatalf("done tasks after reopen %v", got)
	}
}

func idsOf(tasks []taskstore.Task) []string {
	out := []string{}
	for _, t := range tasks {
		out = append(out, t.ID)
	}
	return out
}

func TestSearch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newTasks(t)
	a := mustCreate(t, s, tenantA, "Buy MILK")
	b, err := s.Create(ctx, tenantA, alice, "Groceries", "eggs, milk, bread")
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, tenantA, "Call the bank")
	mustCreate(t, s, tenantB, "milk for tenant B")

	res, err := s.Search(ctx, tenantA, "  Milk ", 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := idsOf(res.Tasks); fmt.Sprint(got) != fmt.Sprint([]string{b.ID, a.ID}) || !res.Complete {
		t.Fatalf("search = %v complete=%v", got, res.Complete)
	}
	res, err = s.Search(ctx, tenantA, "milk", 1)
	if err != nil || len(res.Tasks) != 1 || res.Complete {
		t.Fatalf("limited search = %+v, %v", res, err)
	}
	res, err = s.Search(ctx, tenantA, "nothing like this", 10)
	if err != nil || len(res.Tasks) != 0 || !res.Complete || res.Tasks == nil {
		t.Fatalf("empty search = %+v, %v", res, err)
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newTasks(t)
	task := mustCreate(t, s, tenantA, "valid")

	cases := []struct {
		name  string
		field string
		err   error
	}{
		{"empty title", "title", create(s, "   ", "")},
		{"long title", "title", create(s, strings.Repeat("é", taskstore.MaxTitle+1), "")},
		{"title with newline", "title", create(s, "two\nlines", "")},
		{"long notes", "notes", create(s, "ok", strings.Repeat("n", taskstore.MaxNotes+1))},
		{"notes with NUL", "notes", create(s, "ok", "a\x00b")},
		{"bad status", "status", func() error {
			_, err := s.Update(ctx, tenantA, task.ID, alice, taskstore.Change{Status: ptr("closed")})
			return err
		}()},
		{"empty update", "update", func() error {
			_, err := s.Update(ctx, tenantA, task.ID, alice, taskstore.Change{})
			return err
		}()},
		{"bad id", "id", func() error { _, err := s.Get(ctx, tenantA, "../../etc"); return err }()},
		{"upper-case id", "id", func() error { _, err := s.Get(ctx, tenantA, strings.ToUpper(task.ID)); return err }()},
		{"limit too big", "limit", func() error { _, err := s.List(ctx, tenantA, taskstore.ListQuery{Limit: 101}); return err }()},
		{"negative limit", "limit", func() error { _, err := s.List(ctx, tenantA, taskstore.ListQuery{Limit: -1}); return err }()},
		{"bad cursor", "cursor", func() error { _, err := s.List(ctx, tenantA, taskstore.ListQuery{Cursor: "abc"}); return err }()},
		{"list status", "status", func() error { _, err := s.List(ctx, tenantA, taskstore.ListQuery{Status: "all"}); return err }()},
		{"empty query", "query", func() error { _, err := s.Search(ctx, tenantA, " ", 10); return err }()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ve *taskstore.ValidationError
			if !errors.As(c.err, &ve) || ve.Field != c.field {
				t.Errorf("%s: got %v, want a ValidationError on %s", c.name, c.err, c.field)
			}
		})
	}

	// Exactly at the limits is fine.
	if _, err := s.Create(ctx, tenantA, alice, strings.Repeat("é", taskstore.MaxTitle), strings.Repeat("n", taskstore.MaxNotes)); err != nil {
		t.Errorf("create at limits: %v", err)
	}
	// A tenant id that is not a GUID never reaches a key name.
	if _, err := s.Create(ctx, "tenant}:x", alice, "t", ""); err == nil {
		t.Error("create with a non-GUID tenant succeeded")
	}
	if _, err := s.Create(ctx, tenantA, taskstore.Actor{}, "t", ""); err == nil {
		t.Error("create without an actor succeeded")
	}
}

func create(s *taskstore.Store, title, notes string) error {
	_, err := s.Create(context.Background(), tenantA, alice, title, notes)
	return err
}

func TestTaskLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newTasks(t, taskstore.WithMaxTasks(3))
	var last taskstore.Task
	for i := range 3 {
		last = mustCreate(t, s, tenantA, fmt.Sprint("t", i))
	}
	_, err := s.Create(ctx, tenantA, alice, "one too many", "")
	if !errors.Is(err, taskstore.ErrLimit) {
		t.Fatalf("fourth create: %v, want ErrLimit", err)
	}
	// The cap is per tenant, and deleting makes room.
	mustCreate(t, s, tenantB, "other tenant")
	if _, err := s.Delete(ctx, tenantA, last.ID); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, tenantA, "fits again")
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newTasks(t)
	secret, err := s.Create(ctx, tenantA, alice, "tenant A secret", "notes")
	if err != nil {
		t.Fatal(err)
	}

	if _, err := s.Get(ctx, tenantB, secret.ID); !errors.Is(err, taskstore.ErrNotFound) {
		t.Errorf("B get A's task: %v", err)
	}
	if _, err := s.Update(ctx, tenantB, secret.ID, bob, taskstore.Change{Title: ptr("pwned")}); !errors.Is(err, taskstore.ErrNotFound) {
		t.Errorf("B update A's task: %v", err)
	}
	if _, err := s.Complete(ctx, tenantB, secret.ID, bob); !errors.Is(err, taskstore.ErrNotFound) {
		t.Errorf("B complete A's task: %v", err)
	}
	if _, err := s.Delete(ctx, tenantB, secret.ID); !errors.Is(err, taskstore.ErrNotFound) {
		t.Errorf("B delete A's task: %v", err)
	}
	page, err := s.List(ctx, tenantB, taskstore.ListQuery{})
	if err != nil || len(page.Tasks) != 0 {
		t.Errorf("B list = %+v, %v", page, err)
	}
	res, err := s.Search(ctx, tenantB, "secret", 10)
	if err != nil || len(res.Tasks) != 0 {
		t.Errorf("B search = %+v, %v", res, err)
	}

	got, err := s.Get(ctx, tenantA, secret.ID)
	if err != nil || got != secret {
		t.Errorf("A's task changed: %+v, %v", got, err)
	}
}

// TestConcurrentUpdates runs updates of different fields of one task at the
// same time; a read-modify-write race would lose one of them.
func TestConcurrentUpdates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newTasks(t)
	for round := range 20 {
		task := mustCreate(t, s, tenantA, "original")
		title, notes := fmt.Sprint("title ", round), fmt.Sprint("notes ", round)
		changes := []taskstore.Change{{Title: &title}, {Notes: &notes}, {Status: ptr(taskstore.StatusDone)}}
		var wg sync.WaitGroup
		errs := make(chan error, len(changes))
		for _, ch := range changes {
			wg.Go(func() {
				_, err := s.Update(ctx, tenantA, task.ID, bob, ch)
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Get(ctx, tenantA, task.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Title != title || got.Notes != notes || got.Status != taskstore.StatusDone {
			t.Fatalf("round %d: lost update: %+v", round, got)
		}
	}
	// The status indexes agree with the tasks.
	open, _ := s.List(ctx, tenantA, taskstore.ListQuery{Status: taskstore.StatusOpen})
	done, _ := s.List(ctx, tenantA, taskstore.ListQuery{Status: taskstore.StatusDone, Limit: 100})
	if len(open.Tasks) != 0 || len(done.Tasks) != 20 {
		t.Fatalf("open %d, done %d; want 0 and 20", len(open.Tasks), len(done.Tasks))
	}
}

// TestConcurrentCreatesRespectLimit checks that the cap holds when many
// creates race.
func TestConcurrentCreatesRespectLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newTasks(t, taskstore.WithMaxTasks(10))
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			_, err := s.Create(ctx, tenantA, alice, fmt.Sprint("task ", i), "")
			if err != nil && !errors.Is(err, taskstore.ErrLimit) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	page, err := s.List(ctx, tenantA, taskstore.ListQuery{Limit: 100})
	if err != nil || len(page.Tasks) != 10 {
		t.Fatalf("tasks after racing creates = %d, %v; want 10", len(page.Tasks), err)
	}
}

func TestRedisDown(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dead := taskstore.New(storetest.Down(t))

	rdb, srv := storetest.MiniServer(t)
	stopped := taskstore.New(rdb)
	id := mustCreate(t, stopped, tenantA, "before the outage").ID
	srv.Close()

	for name, s := range map[string]*taskstore.Store{"dead port": dead, "stopped server": stopped} {
		t.Run(name, func(t *testing.T) {
			ops := map[string]func() error{
				"create": func() error { _, err := s.Create(ctx, tenantA, alice, "t", ""); return err },
				"get":    func() error { _, err := s.Get(ctx, tenantA, id); return err },
				"list":   func() error { _, err := s.List(ctx, tenantA, taskstore.ListQuery{}); return err },
				"search": func() error { _, err := s.Search(ctx, tenantA, "t", 10); return err },
				"update": func() error {
					_, err := s.Update(ctx, tenantA, id, alice, taskstore.Change{Title: ptr("x")})
					return err
				},
				"complete": func() error { _, err := s.Complete(ctx, tenantA, id, alice); return err },
				"delete":   func() error { _, err := s.Delete(ctx, tenantA, id); return err },
			}
			for op, run := range ops {
				t.Run(op, func(t *testing.T) {
					if err := run(); !errors.Is(err, outage.ErrUnavailable) {
						t.Errorf("%s: %s: %v, want ErrUnavailable", name, op, err)
					}
				})
			}
		})
	}
	if err := store.Ping(ctx, storetest.Down(t)); !errors.Is(err, outage.ErrUnavailable) {
		t.Errorf("ping: %v, want ErrUnavailable", err)
	}
}

func TestClosedClientIsUnavailable(t *testing.T) {
	t.Parallel()
	rdb := storetest.Mini(t)
	rdb.Close()
	_, err := taskstore.New(rdb).Get(context.Background(), tenantA, "aaaaaaaaaaaa")
	if !errors.Is(err, outage.ErrUnavailable) {
		t.Fatalf("closed client: %v, want ErrUnavailable", err)
	}
}

// TestNotFoundIsATask: a missing task's error says so, and is not the
// session records' store.ErrNotFound.
func TestNotFoundIsATask(t *testing.T) {
	t.Parallel()
	s := taskstore.New(storetest.Redis(t))
	_, err := s.Get(context.Background(), tenantA, "aaaaaaaaaaaa")
	if !errors.Is(err, taskstore.ErrNotFound) || err.Error() != "task not found" || errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing task: %v", err)
	}
}
