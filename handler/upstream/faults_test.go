package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devupstream"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/tools"
)

// failureText is the words a Failure gives the caller.
func failureText(err error) string {
	var f *tools.Failure
	if errors.As(err, &f) {
		return f.Text
	}
	return ""
}

func TestUpstreamDown(t *testing.T) {
	t.Parallel()
	f := newFixture(t, devupstream.Options{}, Options{}, nil)
	before := f.listed(t, "u1")

	t.Run("the last good list is served while it is down", func(t *testing.T) {
		f.mode.Store("down")
		f.clock.advance(config.DefaultUpstreamListTTL + time.Second)
		f.fed.Prepare(user("u1"), "")
		testkit.WaitFor(t, "the condition", func() bool { return f.fed.Health()[0].ListError != "" })
		if got := f.listed(t, "u1"); len(got) != len(before) {
			t.Fatalf("list shrank to %v", keys(got))
		}
		h := f.fed.Health()[0]
		if h.Healthy || h.Tools != len(before) {
			t.Fatalf("health: %+v", h)
		}
	})
	t.Run("calls fail cleanly, naming the upstream, and fast", func(t *testing.T) {
		start := time.Now()
		_, err := f.call(t, "u1", "notes.list_notes", nil)
		if got := outcome(t, err); got != OutcomeUnreachable {
			t.Fatalf("outcome %q: %v", got, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("took %v", d)
		}
	})
	t.Run("a write that may have arrived says so", func(t *testing.T) {
		_, err := f.call(t, "u1", "notes.add_note", map[string]any{"text": "x"})
		if !strings.Contains(failureText(err), "may or may not have taken effect") {
			t.Fatalf("got %q", failureText(err))
		}
	})
	t.Run("nothing listening: nothing was changed", func(t *testing.T) {
		g := newFixture(t, devupstream.Options{}, Options{}, nil)
		g.listed(t, "u1")
		addr := g.srv.Listener.Addr().String()
		g.srv.Close()
		_, err := g.call(t, "u1", "notes.add_note", map[string]any{"text": "x"})
		if outcome(t, err) != OutcomeUnreachable || !strings.Contains(failureText(err), "nothing was changed") {
			t.Fatalf("got %q (upstream was %s)", failureText(err), addr)
		}
	})
	t.Run("never listed: no tools, and health says so", func(t *testing.T) {
		g := newFixture(t, devupstream.Options{}, Options{}, func(u *config.Upstream) { u.URL = "http://" + unusedAddr(t) + "/mcp" })
		if got := g.listed(t, "u1"); len(got) != 0 {
			t.Fatalf("got %v", keys(got))
		}
		if h := g.fed.Health()[0]; h.Healthy || h.ListError == "" || !h.ListedAt.IsZero() {
			t.Fatalf("health: %+v", h)
		}
	})
}

func TestSlowUpstream(t *testing.T) {
	t.Parallel()
	f := newFixture(t, devupstream.Options{}, Options{}, func(u *config.Upstream) { u.Timeout = config.Duration(100 * time.Millisecond) })
	f.listed(t, "u1")
	f.mode.Store("slow") // held until the test ends: well over the timeout

	t.Run("a call times out at the upstream's timeout", func(t *testing.T) {
		start := time.Now()
		_, err := f.call(t, "u1", "notes.list_notes", nil)
		if got := outcome(t, err); got != OutcomeTimeout {
			t.Fatalf("outcome %q: %v", got, err)
		}
		if d := time.Since(start); d < 80*time.Millisecond || d > 2*time.Second {
			t.Errorf("took %v", d)
		}
		if !strings.Contains(failureText(err), "only reads") {
			t.Errorf("a read's timeout should say retrying is safe: %s", failureText(err))
		}
	})
	t.Run("repeated failures open the breaker, which fails at once", func(t *testing.T) {
		for i, err := range f.callTogether(t, "notes.list_notes", breakerThreshold-1) {
			if got := outcome(t, err); got != OutcomeTimeout {
				t.Fatalf("call %d: %q", i+1, got)
			}
		}
		if s := f.fed.Health()[0].Breaker; s != "open" {
			t.Fatalf("breaker %s after %d timeouts", s, breakerThreshold)
		}
		hits := f.hits.Load()
		start := time.Now()
		_, err := f.call(t, "u1", "notes.list_notes", nil)
		if got := outcome(t, err); got != OutcomeBreakerOpen || time.Since(start) > 100*time.Millisecond {
			t.Fatalf("outcome %q after %v", got, time.Since(start))
		}
		if !strings.Contains(failureText(err), "try again in 30 seconds") {
			t.Errorf("text: %s", failureText(err))
		}
		if f.hits.Load() != hits {
			t.Error("an open breaker still called the upstream")
		}
	})
	t.Run("after the cooldown one trial call closes it again", func(t *testing.T) {
		f.mode.Store("")
		f.clock.advance(breakerCooldown)
		if s := f.fed.Health()[0].Breaker; s != "half-open" {
			t.Fatalf("breaker %s after the cooldown", s)
		}
		if _, err := f.call(t, "u1", "notes.list_notes", nil); err != nil {
			t.Fatal(err)
		}
		if s := f.fed.Health()[0].Breaker; s != "closed" {
			t.Fatalf("breaker %s after a good trial", s)
		}
	})
	t.Run("a failed trial opens it again", func(t *testing.T) {
		f.mode.Store("slow")
		f.callTogether(t, "notes.list_notes", breakerThreshold)
		f.clock.advance(breakerCooldown)
		if _, err := f.call(t, "u1", "notes.list_notes", nil); outcome(t, err) != OutcomeTimeout {
			t.Fatalf("trial: %v", err)
		}
		if s := f.fed.Health()[0].Breaker; s != "open" {
			t.Fatalf("breaker %s after a failed trial", s)
		}
	})
}

// callTogether makes n calls of the named tool at once, each as a user of
// its own, and returns their errors. The breaker counts failures, not
// whose or in what order: timeouts that run at once cost one timeout of
// the test's time, not n.
func (f *fixture) callTogether(t *testing.T, name string, n int) []error {
	t.Helper()
	tool, ok := f.listed(t, "u1")[name]
	if !ok {
		t.Fatalf("%s is not listed", name)
	}
	calls := make([]func() error, n)
	for i := range calls {
		calls[i] = func() error { _, err := run(user(fmt.Sprintf("together-%d", i)), tool, nil); return err }
	}
	return testkit.Together(calls...)
}

func TestConcurrencyCap(t *testing.T) {
	t.Parallel()
	f := newFixture(t, devupstream.Options{}, Options{}, func(u *config.Upstream) { u.MaxConcurrent = 2 })
	tool := f.listed(t, "u1")["notes.list_notes"]
	g := f.fed.servers[0].gate
	// The two calls that get the slots are held at the upstream until the
	// other four have given up, so any wait for a slot runs out first.
	g.wait = 10 * time.Millisecond
	release := f.holdSlow()
	f.mode.Store("slow")
	results := make(chan error, 6)
	for range 6 {
		go func() {
			_, err := run(user("u1"), tool, nil)
			results <- err
		}()
	}
	errs := receive(results, 4, 10*time.Second) // the wait only if the cap let more than two through
	release()
	for len(errs) < 6 {
		errs = append(errs, <-results)
	}
	counts := map[string]int{}
	for _, err := range errs {
		counts[outcome(t, err)]++
	}
	if counts[OutcomeBusy] != 4 || counts[""] != 2 {
		t.Fatalf("with a cap of 2 and 6 calls at once: %v", counts)
	}
	t.Run("a call waits briefly for a slot", func(t *testing.T) {
		// The production wait; the two calls in flight are let go as soon
		// as the other two wait for their slots.
		g.wait = slotWait
		waiting := make(chan struct{}, 4)
		g.waiting = func() { waiting <- struct{}{} }
		release := f.holdSlow()
		var wg sync.WaitGroup
		var failed atomic.Int64
		for range 4 {
			wg.Go(func() {
				if _, err := run(user("u1"), tool, nil); err != nil {
					failed.Add(1)
				}
			})
		}
		if n := len(receive(waiting, 2, 10*time.Second)); n != 2 {
			t.Errorf("with a cap of 2 and 4 calls at once, %d calls waited for a slot", n)
		}
		release()
		wg.Wait()
		if failed.Load() != 0 {
			t.Fatalf("%d of 4 calls failed with a cap of 2, calls in flight until two more waited, and a %v wait", failed.Load(), slotWait)
		}
	})
}

// receive takes n values from c, or fewer if wait passes first.
func receive[T any](c <-chan T, n int, wait time.Duration) []T {
	var out []T
	timeout := time.After(wait)
	for len(out) < n {
		select {
		case v := <-c:
			out = append(out, v)
		case <-timeout:
			return out
		}
	}
	return out
}

func TestBadAnswers(t *testing.T) {
	t.Parallel()
	f := newFixture(t, devupstream.Options{}, Options{}, func(u *config.Upstream) { u.MaxResponseBytes = 64 << 10 })
	f.listed(t, "u1")

	t.Run("garbage", func(t *testing.T) {
		f.mode.Store("garbage")
		_, err := f.call(t, "u1", "notes.list_notes", nil)
		if got := outcome(t, err); got != OutcomeBadAnswer {
			t.Fatalf("outcome %q: %v", got, err)
		}
	})
	t.Run("an answer over the cap", func(t *testing.T) {
		f.mode.Store("huge")
		_, err := f.call(t, "u1", "notes.list_notes", nil)
		if got := outcome(t, err); got != OutcomeBadAnswer || !strings.Contains(failureText(err), "65536 bytes") {
			t.Fatalf("outcome %q: %s", got, failureText(err))
		}
	})
	t.Run("a JSON-RPC error is relayed in words, without control characters", func(t *testing.T) {
		f.mode.Store("rpc-error")
		_, err := f.call(t, "u1", "notes.add_note", map[string]any{"text": "x"})
		text := failureText(err)
		if outcome(t, err) != OutcomeUpstreamRPCError || !strings.Contains(text, "-32602") || strings.ContainsRune(text, '\a') {
			t.Fatalf("got %q", text)
		}
	})
	t.Run("none of it opened the breaker for good answers", func(t *testing.T) {
		f.mode.Store("")
		if _, err := f.call(t, "u1", "notes.list_notes", nil); err != nil {
			t.Fatal(err)
		}
	})
}

func TestHeaderCredential(t *testing.T) {
	t.Parallel()
	secrets := &mapSecrets{m: map[string]string{"notes-key": "k1"}}
	f := newFixture(t, devupstream.Options{Header: "X-Api-Key", Value: "k1"}, Options{Secrets: secrets}, func(u *config.Upstream) {
		u.Auth = config.UpstreamAuth{Mode: config.UpstreamHeader, Header: "X-Api-Key", Secret: "notes-key"}
	})

	t.Run("the header carries the secret", func(t *testing.T) {
		if _, err := f.call(t, "u1", "notes.list_notes", nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a refused secret is read afresh on the next call", func(t *testing.T) {
		f.up = devupstream.New(devupstream.Options{Header: "X-Api-Key", Value: "k2"}) // rotated upstream
		_, err := f.call(t, "u1", "notes.list_notes", nil)
		if got := outcome(t, err); got != OutcomeTokenRefused || !strings.Contains(failureText(err), "HTTP 401") {
			t.Fatalf("outcome %q: %s", got, failureText(err))
		}
		secrets.set("notes-key", "k2") // rotated in Key Vault
		if _, err := f.call(t, "u1", "notes.list_notes", nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("the secret is never in what the caller sees", func(t *testing.T) {
		secrets.set("notes-key", "wrong-k3")
		f.up = devupstream.New(devupstream.Options{Header: "X-Api-Key", Value: "k4"})
		_, err := f.call(t, "u1", "notes.list_notes", nil)
		if strings.Contains(failureText(err), "k3") {
			t.Fatalf("leaked: %s", failureText(err))
		}
	})
}

func TestSessions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, devupstream.Options{Sessions: true}, Options{}, nil)
	f.listed(t, "u1")

	t.Run("each user has a session of their own", func(t *testing.T) {
		sessions := map[string]string{}
		for _, u := range []string{"u1", "u2", "u1", "u3", "u2"} {
			res, err := f.call(t, u, "notes.whoami", nil)
			if err != nil {
				t.Fatal(err)
			}
			sid := res.StructuredContent.(map[string]any)["session"].(string)
			if sid == "" {
				t.Fatal("no session id reached the upstream")
			}
			if prev, ok := sessions[u]; ok && prev != sid {
				t.Errorf("%s changed session: %s then %s", u, prev, sid)
			}
			sessions[u] = sid
		}
		if sessions["u1"] == sessions["u2"] || sessions["u2"] == sessions["u3"] {
			t.Fatalf("users share a session: %v", sessions)
		}
		if n := f.fed.Health()[0].Sessions; n != 3 {
			t.Errorf("%d sessions kept, want 3", n)
		}
	})
	t.Run("a session the upstream forgot is started again", func(t *testing.T) {
		before, err := f.call(t, "u1", "notes.whoami", nil)
		if err != nil {
			t.Fatal(err)
		}
		f.mode.Store("forget-once")
		after, err := f.call(t, "u1", "notes.whoami", nil)
		if err != nil {
			t.Fatal(err)
		}
		old, cur := before.StructuredContent.(map[string]any)["session"], after.StructuredContent.(map[string]any)["session"]
		if old == cur {
			t.Fatalf("still session %v after the upstream forgot it", old)
		}
	})
	t.Run("no request ever used another user's session", func(t *testing.T) {
		if n := f.up.CrossedSessions(); n != 0 {
			t.Fatalf("%d requests crossed sessions", n)
		}
	})
}

// TestSessionEndCarriesTheCredential: ending a session (eviction, idle,
// shutdown) sends the upstream the credential the session was used with,
// so an authenticated upstream ends it rather than refuse the DELETE.
func TestSessionEndCarriesTheCredential(t *testing.T) {
	t.Parallel()
	secrets := &mapSecrets{m: map[string]string{"notes-key": "k1"}}
	f := newFixture(t, devupstream.Options{Header: "X-Api-Key", Value: "k1", Sessions: true}, Options{Secrets: secrets}, func(u *config.Upstream) {
		u.Auth = config.UpstreamAuth{Mode: config.UpstreamHeader, Header: "X-Api-Key", Secret: "notes-key"}
	})
	if _, err := f.call(t, "u1", "notes.whoami", nil); err != nil {
		t.Fatal(err)
	}
	f.fed.Close()
	select {
	case status := <-f.deletes:
		if status != http.StatusOK && status != http.StatusNoContent {
			t.Fatalf("the session's DELETE was answered %d", status)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no DELETE ended the session")
	}
}
