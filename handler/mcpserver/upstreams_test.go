package mcpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devupstream"
	"github.com/entra-mcp/functions-mcp/handler/upstream"
)

// federated is an endpoint with testTools and one upstream ("notes", the
// devupstream) whose answers can be switched to another MCP server.
type federated struct {
	s      *Server
	fed    *upstream.Federation
	target atomic.Pointer[http.Handler]
	now    atomic.Int64 // the federation's clock offset, ns
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newFederated(t *testing.T) *federated {
	t.Helper()
	f := &federated{logs: &syncBuffer{}}
	var h http.Handler = devupstream.New(devupstream.Options{})
	f.target.Store(&h)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*f.target.Load()).ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	ups, err := config.ParseUpstreams([]byte(`{"upstreams":[{"name":"notes","url":"`+srv.URL+`/mcp","auth":{"mode":"none"},
		"tools":[{"match":"list_*","permission":"tasks.read"},{"match":"whoami","permission":"signed-in"},{"match":"add_note","permission":"tasks.write"}]}]}`),
		authz.DefaultTable())
	if err != nil {
		t.Fatal(err)
	}
	f.fed, err = upstream.New(upstream.Options{Upstreams: ups, Now: func() time.Time { return time.Now().Add(time.Duration(f.now.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.fed.Close)
	log := slog.New(slog.NewJSONHandler(f.logs, nil))
	if f.s, err = New(Options{Name: "test", Version: "1.0.0", Tools: testTools(), Upstreams: f.fed, Logger: log}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *federated) list(t *testing.T, roles ...string) []string {
	t.Helper()
	rec := post(f.s, principalWith(roles...), rpcCase{body: `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`})
	return names(t, rec.Body.Bytes())
}

func TestUpstreamToolsMerged(t *testing.T) {
	t.Parallel()
	f := newFederated(t)

	t.Run("each role sees our tools and the upstream tools its permissions allow", func(t *testing.T) {
		for roles, want := range map[string][]string{
			"":                {"notes.whoami", "whoami"},
			"Task.Read":       {"get_thing", "list_things", "notes.list_notes", "notes.whoami", "whoami"},
			"Task.Write":      {"make_thing", "notes.add_note", "notes.whoami", "whoami"},
			"MCPServer.Admin": {"notes.whoami", "stats", "whoami"},
		} {
			got := f.list(t, strings.Fields(roles)...)
			if !slices.Equal(got, want) {
				t.Errorf("roles %q: got %v, want %v", roles, got, want)
			}
		}
	})
	t.Run("the pre-encoded lists match mcp-go's with upstream tools in them", func(t *testing.T) {
		checkPreEncodedLists(t, f.s, roleSets())
	})
	t.Run("an upstream tool no rule names is unknown, as is one the caller may not use", func(t *testing.T) {
		p := principalWith("Task.Read")
		unknown := callTool(t, f.s, p, "notes.no_such_tool", nil)
		if unknown.Error == nil {
			t.Fatalf("a made-up tool ran: %+v", unknown)
		}
		for _, name := range []string{"notes." + devupstream.HiddenTool, "notes.add_note", "make_thing"} {
			got := callTool(t, f.s, p, name, nil)
			if got.Error == nil || strings.ReplaceAll(got.Error.Message, name, "X") != strings.ReplaceAll(unknown.Error.Message, "notes.no_such_tool", "X") {
				t.Errorf("%s: %+v, unknown: %+v", name, got.Error, unknown.Error)
			}
		}
	})
	t.Run("a permitted upstream tool runs upstream and is audited with its upstream", func(t *testing.T) {
		got := callTool(t, f.s, principalWith("Task.Write"), "notes.add_note", map[string]any{"text": "hello"})
		if got.Error != nil || !strings.Contains(got.text(), "Noted") {
			t.Fatalf("%+v", got)
		}
		lines := regexp.MustCompile(`\{[^\n]*"msg":"tool call"[^\n]*"tool":"notes.add_note"[^\n]*\}`).FindAllString(f.logs.String(), -1)
		line := ""
		if len(lines) > 0 {
			line = lines[len(lines)-1] // the earlier one is the reader's refusal
		}
		var audit map[string]any
		if err := json.Unmarshal([]byte(line), &audit); err != nil {
			t.Fatalf("no audit line: %v\n%s", err, f.logs.String())
		}
		if audit["upstream"] != "notes" || audit["outcome"] != "ok" || audit["allowed"] != true {
			t.Fatalf("audit: %v", audit)
		}
	})
}

// TestUpstreamListChanges: when an upstream's list changes, tools/list
// (pre-encoded or not) shows the new list once the old one's TTL is over,
// and calls follow it.
func TestUpstreamListChanges(t *testing.T) {
	t.Parallel()
	f := newFederated(t)
	if got := f.list(t, "Task.Read"); !slices.Contains(got, "notes.list_notes") {
		t.Fatalf("before: %v", got)
	}
	// The upstream is replaced by one with another list.
	other := server.NewMCPServer("other", "1")
	other.AddTool(mcp.NewTool("list_projects", mcp.WithDescription("Lists projects.")), func(_ context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("projects"), nil
	})
	var h http.Handler = server.NewStreamableHTTPServer(other, server.WithStateLess(true))
	f.target.Store(&h)
	f.now.Add(int64(config.DefaultUpstreamListTTL + time.Second))

	want := []string{"get_thing", "list_things", "notes.list_projects", "whoami"}
	deadline := time.Now().Add(5 * time.Second)
	var got []string
	for time.Now().Before(deadline) {
		if got = f.list(t, "Task.Read"); slices.Equal(got, want) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("after the change: %v, want %v", got, want)
	}
	t.Run("the pre-encoded answers were rebuilt", func(t *testing.T) {
		checkPreEncodedLists(t, f.s, roleSets())
	})
	t.Run("a tool that went is unknown; the new one runs", func(t *testing.T) {
		p := principalWith("Task.Read")
		if r := callTool(t, f.s, p, "notes.list_notes", nil); r.Error == nil {
			t.Fatalf("a tool the upstream no longer lists ran: %+v", r)
		}
		if r := callTool(t, f.s, p, "notes.list_projects", nil); r.Error != nil || r.text() != "projects" {
			t.Fatalf("%+v", r)
		}
	})
}
