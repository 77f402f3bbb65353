package mcpserver

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devupstream"
	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/upstream"
)

// federated is an endpoint with testTools and one upstream ("notes", the
// devupstream) whose answers can be switched to another MCP server.
type federated struct {
	s      *Server
	fed    *upstream.Federation
	target atomic.Pointer[http.Handler]
	now    atomic.Int64 // the federation's clock offset, ns
	logs   *testkit.SyncBuffer
}

func newFederated(t *testing.T) *federated {
	t.Helper()
	return newFederatedWith(t, nil)
}

// newFederatedWith builds it with limiter as the tools/call limit.
func newFederatedWith(t *testing.T, limiter Limiter) *federated {
	t.Helper()
	f := &federated{logs: &testkit.SyncBuffer{}}
	var h http.Handler = devupstream.New(devupstream.Options{})
	f.target.Store(&h)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*f.target.Load()).ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	ups, err := config.ParseUpstreams([]byte(`{"upstreams":[{"name":"notes","url":"`+srv.URL+`/mcp","auth":{"mode":"none"},
		"tools":[{"match":"list_*","permission":"tasks.read"},{"match":"whoami","permission":"signed-in"},{"match":"add_note","permission":"tasks.write"}],
		"resources":[{"match":"notes://mine","permission":"tasks.read"},{"match":"note://*","permission":"tasks.read"}],
		"prompts":[{"match":"summarize_*","permission":"tasks.read"}]}]}`),
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
	if f.s, err = New(Options{Name: "test", Version: "1.0.0", Tools: testTools(), Upstreams: f.fed, Logger: log, Limiter: limiter}); err != nil {
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
			name := roles
			if name == "" {
				name = "no roles"
			}
			t.Run(name, func(t *testing.T) {
				got := f.list(t, strings.Fields(roles)...)
				if !slices.Equal(got, want) {
					t.Errorf("roles %q: got %v, want %v", roles, got, want)
				}
			})
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
	testkit.Eventually(t, "the upstream's new list", func() error {
		if got := f.list(t, "Task.Read"); !slices.Equal(got, want) {
			return fmt.Errorf("after the change: %v, want %v", got, want)
		}
		return nil
	})
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

// rpc posts one JSON-RPC request as p and decodes the answer.
func (f *federated) rpc(t *testing.T, p *entra.Principal, method string, params any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 3, "method": method, "params": params})
	rec := post(f.s, p, rpcCase{body: string(b)})
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("%s: %d %s", method, rec.Code, rec.Body)
	}
	return m
}

// namesIn lists the key field of each item under list in a result, but
// the conformance build's fixtures (fixtures_conformance.go: test://...,
// test_...), which every caller lists.
func namesIn(m map[string]any, list, key string) []string {
	res, _ := m["result"].(map[string]any)
	items, _ := res[list].([]any)
	var out []string
	for _, it := range items {
		v := it.(map[string]any)[key].(string)
		if !strings.HasPrefix(v, "test://") && !strings.HasPrefix(v, "test_") {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// errorText is a JSON-RPC error's message with name taken out.
func errorText(m map[string]any, name string) string {
	e, _ := m["error"].(map[string]any)
	msg, _ := e["message"].(string)
	if name == "" {
		return msg
	}
	return strings.ReplaceAll(msg, name, "X")
}

// TestUpstreamResourcesAndPrompts: an upstream's resources (by URI),
// resource templates and prompts (prefixed) are listed and served by the
// permission their rules give, like tools; what no rule names is never
// listed and reads as unknown.
func TestUpstreamResourcesAndPrompts(t *testing.T) {
	t.Parallel()
	f := newFederated(t)
	reader, admin := principalWith("Task.Read", "Task.Write"), principalWith("MCPServer.Admin")
	f.list(t, "Task.Read") // the first list fetches the upstream's
	add := callTool(t, f.s, reader, "notes.add_note", map[string]any{"text": "first note"})
	if add.Error != nil {
		t.Fatalf("add_note: %+v", add)
	}

	t.Run("resources and templates are listed by permission", func(t *testing.T) {
		if got := namesIn(f.rpc(t, reader, "resources/list", nil), "resources", "uri"); !slices.Equal(got, []string{devupstream.NotesResource}) {
			t.Errorf("reader: %v", got)
		}
		if got := namesIn(f.rpc(t, admin, "resources/list", nil), "resources", "uri"); len(got) != 0 {
			t.Errorf("admin: %v", got)
		}
		if got := namesIn(f.rpc(t, reader, "resources/templates/list", nil), "resourceTemplates", "uriTemplate"); !slices.Equal(got, []string{devupstream.NoteTemplate}) {
			t.Errorf("reader's templates: %v", got)
		}
	})
	t.Run("a permitted read is forwarded, as the caller", func(t *testing.T) {
		for _, uri := range []string{devupstream.NotesResource, "note://1"} {
			m := f.rpc(t, reader, "resources/read", map[string]any{"uri": uri})
			res, _ := m["result"].(map[string]any)
			contents, _ := res["contents"].([]any)
			if len(contents) != 1 || contents[0].(map[string]any)["text"] != "first note" {
				t.Errorf("%s: %v", uri, m)
			}
		}
	})
	t.Run("forbidden, unlisted and missing resources read as unknown", func(t *testing.T) {
		unknown := errorText(f.rpc(t, reader, "resources/read", map[string]any{"uri": "nothing://here"}), "nothing://here")
		if unknown == "" {
			t.Fatal("an unknown URI was read")
		}
		for _, c := range []struct {
			name string
			p    *entra.Principal
			uri  string
		}{
			{"forbidden resource", admin, devupstream.NotesResource},
			{"unlisted resource", reader, devupstream.HiddenResource},
			{"forbidden template", admin, "note://1"},
		} {
			t.Run(c.name, func(t *testing.T) {
				if got := errorText(f.rpc(t, c.p, "resources/read", map[string]any{"uri": c.uri}), c.uri); got != unknown {
					t.Errorf("%s: %q, unknown: %q", c.uri, got, unknown)
				}
			})
		}
	})
	t.Run("a permitted read the upstream fails is an error naming it", func(t *testing.T) {
		// mcp-go upstreams answer a handler's not-found with -32603, which
		// is relayed; -32002 (what MCP names) would read as unknown.
		m := f.rpc(t, reader, "resources/read", map[string]any{"uri": "note://99"})
		if _, ok := m["result"]; ok || !strings.Contains(errorText(m, ""), `upstream MCP server "notes"`) {
			t.Fatalf("%v", m)
		}
	})
	t.Run("a resources/list or prompts/list as the first request fetches the lists too", func(t *testing.T) {
		g := newFederated(t)
		if got := namesIn(g.rpc(t, reader, "resources/list", nil), "resources", "uri"); !slices.Equal(got, []string{devupstream.NotesResource}) {
			t.Errorf("resources/list: %v", got)
		}
		h := newFederated(t)
		if got := namesIn(h.rpc(t, reader, "prompts/list", nil), "prompts", "name"); len(got) != 1 {
			t.Errorf("prompts/list: %v", got)
		}
	})
	t.Run("prompts are prefixed, listed and got by permission", func(t *testing.T) {
		if got := namesIn(f.rpc(t, reader, "prompts/list", nil), "prompts", "name"); !slices.Equal(got, []string{"notes." + devupstream.SummarizePrompt}) {
			t.Errorf("reader: %v", got)
		}
		m := f.rpc(t, reader, "prompts/get", map[string]any{"name": "notes." + devupstream.SummarizePrompt, "arguments": map[string]string{"style": "detailed"}})
		if b, _ := json.Marshal(m); !strings.Contains(string(b), "detailed summary") || !strings.Contains(string(b), "first note") {
			t.Errorf("prompts/get: %s", b)
		}
		unknown := errorText(f.rpc(t, reader, "prompts/get", map[string]any{"name": "notes.nope"}), "notes.nope")
		for _, c := range []struct {
			p    *entra.Principal
			name string
		}{{admin, "notes." + devupstream.SummarizePrompt}, {reader, "notes." + devupstream.HiddenPrompt}} {
			t.Run(c.name, func(t *testing.T) {
				if got := errorText(f.rpc(t, c.p, "prompts/get", map[string]any{"name": c.name}), c.name); got != unknown {
					t.Errorf("%s: %q, unknown: %q", c.name, got, unknown)
				}
			})
		}
	})
}

// TestUpstreamCallsShareTheRateLimit: an upstream tool call spends the
// caller's tools/call budget, and a refusal is audited with its upstream.
func TestUpstreamCallsShareTheRateLimit(t *testing.T) {
	t.Parallel()
	f := newFederatedWith(t, &countingLimiter{allow: 1})
	p := principalWith("Task.Read")
	f.list(t, "Task.Read")
	if r := callTool(t, f.s, p, "notes.whoami", nil); r.Error != nil || r.Result.IsError {
		t.Fatalf("first call: %+v", r)
	}
	r := callTool(t, f.s, p, "notes.whoami", nil)
	if !r.Result.IsError || !strings.Contains(r.text(), "Too many tool calls") {
		t.Fatalf("second call: %+v", r)
	}
	line := regexp.MustCompile(`"tool":"notes.whoami"[^\n]*"outcome":"rate_limited"[^\n]*"upstream":"notes"`).FindString(f.logs.String())
	if line == "" {
		t.Fatalf("no rate_limited audit line naming the upstream:\n%s", f.logs.String())
	}
}
