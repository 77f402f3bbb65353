package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devupstream"
	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/tools"
	"github.com/entra-mcp/functions-mcp/handler/tools/toolstest"
)

// rules are the permissions the tests' configurations give: whoami and
// list_notes for readers, add_note for writers; reset_all_notes is in no
// rule, so it must never appear.
var rules = []config.UpstreamRule{
	{Match: "list_*", Permission: "tasks.read"},
	{Match: devupstream.WhoamiTool, Permission: "tasks.read"},
	{Match: devupstream.AddNoteTool, Permission: "tasks.write"},
}

// fixture is an upstream on loopback behind a switchable front that can
// make it slow, down, or answer garbage, and a federation fronting it.
type fixture struct {
	up   *devupstream.Server
	srv  *httptest.Server
	fed  *Federation
	mode atomic.Value // string: "", "slow", "down", "garbage", "huge", "rpc-error", "forget-once"
	// held is what "slow" requests wait for (see holdSlow); nothing ever
	// closes the first one but the test's end, so by default a slow
	// upstream never answers.
	held  atomic.Pointer[chan struct{}]
	holds []func() // every holdSlow's release, for the test's end
	hits  atomic.Int64
	clock *clock
	// deletes records the status of each session-ending DELETE.
	deletes chan int
}

type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// mapSecrets stands in for Key Vault: a fixed set of named values.
type mapSecrets struct {
	mu    sync.Mutex
	m     map[string]string
	reads int
}

func (s *mapSecrets) Secret(_ context.Context, name string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	v, ok := s.m[name]
	if !ok {
		return "", fmt.Errorf("secret %s not found", name)
	}
	return v, nil
}

// ForgetSecret: nothing is kept here, each read is fresh.
func (s *mapSecrets) ForgetSecret(string) {}

func (s *mapSecrets) set(name, v string) {
	s.mu.Lock()
	s.m[name] = v
	s.mu.Unlock()
}

// newFixture starts the upstream and a federation with one entry for it,
// adjusted by edit.
func newFixture(t *testing.T, upOpts devupstream.Options, opts Options, edit func(*config.Upstream)) *fixture {
	t.Helper()
	f := &fixture{up: devupstream.New(upOpts), clock: &clock{}, deletes: make(chan int, 16)}
	f.mode.Store("")
	f.srv = httptest.NewServer(http.HandlerFunc(f.front))
	t.Cleanup(f.srv.Close)
	f.holdSlow()
	t.Cleanup(func() { // before the server closes, which waits for held requests
		for _, release := range f.holds {
			release()
		}
	})
	u := config.Upstream{
		Name:  "notes",
		URL:   f.srv.URL + "/mcp",
		Auth:  config.UpstreamAuth{Mode: config.UpstreamNone},
		Tools: rules,
	}
	if edit != nil {
		edit(&u)
	}
	text, err := json.Marshal(map[string]any{"upstreams": []config.Upstream{u}})
	if err != nil {
		t.Fatal(err)
	}
	ups, err := config.ParseUpstreams(text, authz.DefaultTable())
	if err != nil {
		t.Fatal(err)
	}
	opts.Upstreams = ups
	opts.Now = f.clock.now
	if f.fed, err = New(opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.fed.Close)
	return f
}

func (f *fixture) front(w http.ResponseWriter, r *http.Request) {
	f.hits.Add(1)
	if r.Method == http.MethodDelete {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		f.up.ServeHTTP(rec, r)
		select {
		case f.deletes <- rec.status:
		default:
		}
		return
	}
	switch f.mode.Load().(string) {
	case "slow":
		// Read to the end first: only then does the server notice a caller
		// that hangs up, and end the request rather than hold it.
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		select {
		case <-*f.held.Load():
		case <-r.Context().Done():
			return
		}
	case "down":
		// Hang up without an answer, as a crashed server's proxy might.
		if hj, ok := w.(http.Hijacker); ok {
			c, _, _ := hj.Hijack()
			c.Close()
			return
		}
	case "garbage":
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":`)
		return
	case "huge":
		body, _ := io.ReadAll(r.Body)
		var req struct {
			ID json.RawMessage `json:"id"`
		}
		_ = json.Unmarshal(body, &req)
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"%s"}]}}`, req.ID, strings.Repeat("x", 256<<10))
		return
	case "rpc-error":
		body, _ := io.ReadAll(r.Body)
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		_ = json.Unmarshal(body, &req)
		if req.Method == "tools/call" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32602,"message":"bad argument\u0007: text"}}`, req.ID)
			return
		}
		r.Body = io.NopCloser(strings.NewReader(string(body)))
	case "forget-once":
		if r.Header.Get("Mcp-Session-Id") != "" && f.mode.CompareAndSwap("forget-once", "") {
			http.Error(w, "unknown session", http.StatusNotFound)
			return
		}
	}
	f.up.ServeHTTP(w, r)
}

// holdSlow makes the "slow" requests that arrive from now on wait until
// release is called (or their caller hangs up, or the test ends). Only the
// test's goroutine calls it.
func (f *fixture) holdSlow() (release func()) {
	ch := make(chan struct{})
	f.held.Store(&ch)
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	f.holds = append(f.holds, release)
	return release
}

// statusRecorder keeps the status an answer was sent with.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

func user(oid string) context.Context {
	return entra.NewContext(context.Background(), &entra.Principal{TenantID: "tid", ObjectID: oid, Kind: entra.CallerUser})
}

// listed prepares the lists as oid and returns the federation's tools by
// name.
func (f *fixture) listed(t *testing.T, oid string) map[string]tools.Tool {
	t.Helper()
	f.fed.Prepare(user(oid), "")
	_, l := f.fed.Components()
	out := map[string]tools.Tool{}
	for _, tool := range l.Tools {
		out[tool.Def.Name] = tool
	}
	return out
}

// call runs the named tool as oid with args.
func (f *fixture) call(t *testing.T, oid, name string, args map[string]any) (*mcp.CallToolResult, error) {
	t.Helper()
	tool, ok := f.listed(t, oid)[name]
	if !ok {
		t.Fatalf("%s is not listed", name)
	}
	ctx := user(oid)
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	return tool.Run(ctx, tools.Call{Principal: entra.FromContext(ctx), Request: req})
}

// outcome is the Failure's outcome, "" for a result.
func outcome(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var f *tools.Failure
	if !errors.As(err, &f) {
		t.Fatalf("not a Failure: %v", err)
	}
	if !strings.Contains(f.Text, `"notes"`) {
		t.Errorf("the message does not name the upstream: %s", f.Text)
	}
	return f.Outcome
}

func TestListing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, devupstream.Options{}, Options{}, nil)
	got := f.listed(t, "u1")

	t.Run("only the tools a rule names, prefixed, with its permission", func(t *testing.T) {
		want := map[string]string{"notes.list_notes": "tasks.read", "notes.whoami": "tasks.read", "notes.add_note": "tasks.write"}
		if len(got) != len(want) {
			t.Fatalf("got %v", keys(got))
		}
		for name, perm := range want {
			tool, ok := got[name]
			if !ok || !slices.Equal(tool.Permissions, []string{perm}) || tool.Upstream != "notes" {
				t.Errorf("%s: %+v", name, tool.Permissions)
			}
		}
	})
	t.Run("a tool no rule names is never listed", func(t *testing.T) {
		if _, ok := got["notes."+devupstream.HiddenTool]; ok {
			t.Fatal("the hidden tool is listed")
		}
	})
	t.Run("schemas and hints arrive as the upstream wrote them", func(t *testing.T) {
		add := got["notes.add_note"].Def
		var schema struct {
			Required   []string                  `json:"required"`
			Properties map[string]map[string]any `json:"properties"`
		}
		if err := json.Unmarshal(add.RawInputSchema, &schema); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(schema.Required, []string{"text"}) || schema.Properties["text"]["maxLength"] != float64(500) {
			t.Errorf("input schema: %s", add.RawInputSchema)
		}
		if len(got["notes.whoami"].Def.RawOutputSchema) == 0 {
			t.Error("whoami lost its output schema")
		}
		if ro := got["notes.list_notes"].Def.Annotations.ReadOnlyHint; ro == nil || !*ro {
			t.Error("list_notes lost its read-only hint")
		}
	})
	t.Run("an unchanged list keeps its generation", func(t *testing.T) {
		g := f.fed.Generation()
		f.clock.advance(config.DefaultUpstreamListTTL + time.Second)
		f.fed.Prepare(user("u1"), "")
		testkit.WaitFor(t, "the condition", func() bool { return f.fed.Health()[0].ListedAt.After(time.Now()) })
		if f.fed.Generation() != g {
			t.Fatalf("generation moved from %d to %d with the same list", g, f.fed.Generation())
		}
	})
}

func TestCalls(t *testing.T) {
	t.Parallel()
	f := newFixture(t, devupstream.Options{}, Options{}, nil)

	t.Run("a result is relayed", func(t *testing.T) {
		res, err := f.call(t, "u1", "notes.add_note", map[string]any{"text": "buy milk"})
		if err != nil || res.IsError || !strings.Contains(toolstest.Text(res), "Noted") {
			t.Fatalf("got %v, %v", res, err)
		}
		res, err = f.call(t, "u1", "notes.list_notes", nil)
		if err != nil || toolstest.Text(res) != "buy milk" {
			t.Fatalf("got %q, %v", toolstest.Text(res), err)
		}
	})
	t.Run("structured content is relayed", func(t *testing.T) {
		res, err := f.call(t, "u1", "notes.whoami", nil)
		if err != nil {
			t.Fatal(err)
		}
		if m, ok := res.StructuredContent.(map[string]any); !ok || m["oid"] != "anonymous" {
			t.Fatalf("structured content: %#v", res.StructuredContent)
		}
	})
	t.Run("a tool error is relayed as one", func(t *testing.T) {
		res, err := f.call(t, "u1", "notes.add_note", map[string]any{"text": ""})
		if err != nil || !res.IsError {
			t.Fatalf("got %v, %v", res, err)
		}
	})
}

func keys(m map[string]tools.Tool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// unusedAddr is a loopback address nothing listens on.
func unusedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
