package mcpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/tools"
)

// testTools is one tool per permission, plus a second read tool, so every
// grant set sees a different list.
func testTools() []tools.Tool {
	mk := func(name string, need string) tools.Tool {
		return tools.Tool{
			Def: mcp.NewTool(name,
				mcp.WithDescription("test tool "+name+" <&> \u2028"),
				mcp.WithString("arg", mcp.Description("an argument")),
				mcp.WithReadOnlyHintAnnotation(need == "tasks.read"),
				mcp.WithDestructiveHintAnnotation(false),
				mcp.WithIdempotentHintAnnotation(true),
				mcp.WithOpenWorldHintAnnotation(false),
			),
			Permissions: []string{need},
			Run: func(ctx context.Context, c tools.Call) (*mcp.CallToolResult, error) {
				return mcp.NewToolResultText(name + " ran for " + c.Principal.ObjectID), nil
			},
		}
	}
	return []tools.Tool{
		mk("whoami", authz.SignedIn),
		mk("list_things", "tasks.read"),
		mk("get_thing", "tasks.read"),
		mk("make_thing", "tasks.write"),
		mk("stats", "server.admin"),
	}
}

func newTestServer(t testing.TB) *Server {
	t.Helper()
	s, err := New(Options{Name: "test", Version: "1.0.0", Tools: testTools()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func principalWith(roles ...string) *entra.Principal {
	return &entra.Principal{
		TenantID: "11111111-1111-4111-8111-111111111111",
		ObjectID: "22222222-2222-4222-8222-222222222222",
		Roles:    roles,
	}
}

type rpcCase struct {
	header map[string]string
	body   string
}

func post(h http.Handler, p *entra.Principal, c rpcCase) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(c.body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	if p != nil {
		req = req.WithContext(entra.NewContext(req.Context(), p))
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// roleSets is every combination of the default table's single-permission
// roles: with testTools, each gives a different grant set and list.
func roleSets() [][]string {
	roles := []string{"Task.Read", "Task.Write", "MCPServer.Admin"}
	var out [][]string
	for mask := range 1 << len(roles) {
		var set []string
		for i, r := range roles {
			if mask&(1<<i) != 0 {
				set = append(set, r)
			}
		}
		out = append(out, set)
	}
	return out
}

func listCases() []rpcCase {
	ids := []string{`1`, `0`, `-7`, `1.5`, `1e3`, `12345678901234567890`, `"abc"`, `"<&>\u2028 é"`, `""`}
	var cases []rpcCase
	for _, id := range ids {
		cases = append(cases,
			rpcCase{body: `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/list"}`},
			rpcCase{header: map[string]string{"MCP-Protocol-Version": "2025-06-18"},
				body: `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/list","params":{}}`},
			rpcCase{header: map[string]string{"MCP-Protocol-Version": "2025-11-25"},
				body: `{"id":` + id + `,"method":"tools/list","params":null,"jsonrpc":"2.0"}`},
			rpcCase{header: map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"},
				body: `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/list","params":{"_meta":{` +
					`"io.modelcontextprotocol/protocolVersion":"2026-07-28",` +
					`"io.modelcontextprotocol/clientCapabilities":{"roots":{}},` +
					`"io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"}}}}`},
		)
	}
	return cases
}

// TestToolsListPreEncodedMatchesMCPGo proves the shortcut answers byte for
// byte what mcp-go's own transport answers, for every grant set, era and
// id shape, and that it really was the shortcut that answered.
func TestToolsListPreEncodedMatchesMCPGo(t *testing.T) {
	t.Parallel()
	checkPreEncodedLists(t, newTestServer(t), roleSets())
}

// checkPreEncodedLists: for callers with each of roleSets (each must give
// grants of its own), every shape of tools/list is answered by the
// shortcut, byte for byte as mcp-go's own transport answers it.
func checkPreEncodedLists(t *testing.T, s *Server, roleSets [][]string) {
	t.Helper()
	seen := map[authz.Set]bool{}
	for _, roles := range roleSets {
		p := principalWith(roles...)
		g := s.policy.Grants(p.Roles, false)
		if seen[g] {
			t.Fatalf("roles %v: grants %v again", roles, s.policy.Names(g))
		}
		seen[g] = true
		for _, c := range listCases() {
			before := s.metrics.listFast.Load()
			fast := post(s, p, c)
			if s.metrics.listFast.Load() != before+1 {
				t.Fatalf("grants %v, %s: shortcut not taken", g, c.body)
			}
			// mcp-go's own answer, through its transport, as the same caller.
			req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(c.body))
			req.Header.Set("Content-Type", "application/json")
			for k, v := range c.header {
				req.Header.Set(k, v)
			}
			req = req.WithContext(withGrants(entra.NewContext(req.Context(), p), g))
			ref := httptest.NewRecorder()
			s.transport.ServeHTTP(ref, req)

			if fast.Code != ref.Code || fast.Header().Get("Content-Type") != ref.Header().Get("Content-Type") {
				t.Fatalf("grants %v, %s: status/type %d %q, mcp-go %d %q", g, c.body,
					fast.Code, fast.Header().Get("Content-Type"), ref.Code, ref.Header().Get("Content-Type"))
			}
			if !bytes.Equal(fast.Body.Bytes(), ref.Body.Bytes()) {
				t.Fatalf("grants %v, %s:\nshortcut: %s\nmcp-go:   %s", g, c.body, fast.Body, ref.Body)
			}
		}
	}
}

func TestToolsListOtherFormsGoToMCPGo(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	p := principalWith("Task.All")
	for _, tc := range []struct {
		name string
		c    rpcCase
	}{
		{"cursor", rpcCase{body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"abc"}}`}},
		{"progress token", rpcCase{body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"progressToken":1}}}`}},
		// modern in the body but the header is missing: mcp-go refuses it
		{"modern without the version header", rpcCase{body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`}},
		{"modern without Mcp-Method", rpcCase{header: map[string]string{"MCP-Protocol-Version": "2026-07-28"},
			body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			before := s.metrics.listFast.Load()
			rec := post(s, p, c)
			if s.metrics.listFast.Load() != before {
				t.Errorf("%s: shortcut taken; want mcp-go to answer (got %d %s)", c.body, rec.Code, rec.Body)
			}
			if !strings.Contains(rec.Header().Get("Content-Type"), "application/json") {
				t.Errorf("%s: content type %q, body %s", c.body, rec.Header().Get("Content-Type"), rec.Body)
			}
		})
	}
}

type listResult struct {
	Result struct {
		Tools []struct {
			Name string `json:"name"`
		} `json:"tools"`
		IsError bool `json:"isError"`
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
	} `json:"result"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func names(t testing.TB, body []byte) []string {
	t.Helper()
	var r listResult
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	var out []string
	for _, tl := range r.Result.Tools {
		out = append(out, tl.Name)
	}
	return out
}

func TestRBACListAndCall(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	want := map[string][]string{
		"":                {"whoami"},
		"Task.Read":       {"get_thing", "list_things", "whoami"},
		"Task.Write":      {"make_thing", "whoami"},
		"Task.All":        {"get_thing", "list_things", "make_thing", "whoami"},
		"MCPServer.Admin": {"stats", "whoami"},
		"Unknown.Role":    {"whoami"},
	}
	all := []string{"whoami", "list_things", "get_thing", "make_thing", "stats"}
	for role, visible := range want {
		label := role
		if label == "" {
			label = "no role"
		}
		t.Run(label, func(t *testing.T) {
			p := principalWith(role)
			got := names(t, post(s, p, rpcCase{body: `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`}).Body.Bytes())
			if strings.Join(got, ",") != strings.Join(visible, ",") {
				t.Errorf("role %q sees %v, want %v", role, got, visible)
			}
			for _, name := range all {
				rec := post(s, p, rpcCase{body: `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"` + name + `","arguments":{}}}`})
				var r listResult
				if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
					t.Fatal(err)
				}
				allowed := contains(visible, name)
				if allowed && (r.Error != nil || r.Result.IsError) {
					t.Errorf("role %q calling %s: %s", role, name, rec.Body)
				}
				if !allowed {
					// A forbidden tool fails exactly like an unknown one.
					unknown := post(s, p, rpcCase{body: `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"` + name + `x","arguments":{}}}`})
					wantBody := strings.ReplaceAll(unknown.Body.String(), name+"x", name)
					if r.Error == nil || rec.Body.String() != wantBody || rec.Code != unknown.Code {
						t.Errorf("role %q calling forbidden %s:\n got %d %s\nunknown %d %s", role, name, rec.Code, rec.Body, unknown.Code, unknown.Body)
					}
				}
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestConcurrentCallersNeverSeeOthersTools runs 200 callers with mixed
// roles at once (run with -race): each sees only its own tools, and runs a
// tool only when its own roles allow it.
func TestConcurrentCallersNeverSeeOthersTools(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	roles := []string{"Task.Read", "Task.Write", "Task.All", "MCPServer.Admin", ""}
	visible := map[string]string{
		"Task.Read":       "get_thing,list_things,whoami",
		"Task.Write":      "make_thing,whoami",
		"Task.All":        "get_thing,list_things,make_thing,whoami",
		"MCPServer.Admin": "stats,whoami",
		"":                "whoami",
	}
	var wg sync.WaitGroup
	errs := make(chan string, 200*10*3) // room for every possible failure: a full channel would hang the test
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			role := roles[i%len(roles)]
			p := principalWith(role)
			p.ObjectID = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
			for j := 0; j < 10; j++ {
				body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/list"}`, j)
				if j%2 == 1 {
					body = fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/list","params":{"cursor":""}}`, j)
				}
				var lr listResult
				_ = json.Unmarshal(post(s, p, rpcCase{body: body}).Body.Bytes(), &lr)
				var seen []string
				for _, tl := range lr.Result.Tools {
					seen = append(seen, tl.Name)
				}
				got := strings.Join(seen, ",")
				if got != visible[role] {
					errs <- fmt.Sprintf("caller %d (%q) saw %s", i, role, got)
				}
				rec := post(s, p, rpcCase{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"make_thing"}}`})
				var r listResult
				_ = json.Unmarshal(rec.Body.Bytes(), &r)
				ran := r.Error == nil && !r.Result.IsError
				mayWrite := role == "Task.Write" || role == "Task.All"
				if ran != mayWrite {
					errs <- fmt.Sprintf("caller %d (%q) make_thing ran=%v: %s", i, role, ran, rec.Body)
				}
				if ran && (len(r.Result.Content) == 0 || !strings.Contains(r.Result.Content[0].Text, p.ObjectID)) {
					errs <- fmt.Sprintf("caller %d ran as someone else: %s", i, r.Result.Content[0].Text)
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestMalformedInputIs4xxJSON(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	p := principalWith("Task.All")
	for _, c := range []struct {
		body   string
		header map[string]string
		status int
	}{
		{body: ``, status: 400},
		{body: `{`, status: 400},
		{body: `[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]`, status: 400},
		{body: `"hello"`, status: 400},
		{body: `{"jsonrpc":"1.0","id":1,"method":"tools/list"}`, status: 400},
		{body: `{"jsonrpc":"2.0","id":{},"method":"tools/list"}`, status: 400},
		{body: `{"jsonrpc":"2.0","id":1,"method":5}`, status: 400},
		{body: `{"jsonrpc":"2.0","id":1,"method":""}`, status: 400},
		{body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":[1]}`, status: 400},
		{body: `{"jsonrpc":"2.0","id":1}`, status: 400},
		{body: `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, header: map[string]string{"MCP-Protocol-Version": "1999-01-01"}, status: 400},
	} {
		t.Run(c.body, func(t *testing.T) {
			rec := post(s, p, rpcCase{body: c.body, header: c.header})
			if rec.Code != c.status || rec.Header().Get("Content-Type") != "application/json" || !json.Valid(rec.Body.Bytes()) {
				t.Errorf("%q: got %d %q %s, want %d JSON", c.body, rec.Code, rec.Header().Get("Content-Type"), rec.Body, c.status)
			}
		})
	}
}

func TestNoPrincipalNoService(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	rec := post(s, nil, rpcCase{body: `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`})
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
}

func TestNewRefusesToolWithoutPermission(t *testing.T) {
	t.Parallel()
	bad := testTools()
	bad[0].Permissions = nil
	if _, err := New(Options{Tools: bad}); err == nil {
		t.Fatal("a tool without a permission was accepted")
	}
	dup := append(testTools(), testTools()[0])
	if _, err := New(Options{Tools: dup}); err == nil {
		t.Fatal("a duplicate tool was accepted")
	}
}

// recorder is an Events that keeps what it is told.
type recorder struct {
	mu         sync.Mutex
	events     []string
	exceptions []string
}

func (r *recorder) Event(_ context.Context, name string, props map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, name+" "+props["tool"])
}

func (r *recorder) Exception(_ context.Context, v any, props map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exceptions = append(r.exceptions, fmt.Sprint(v)+" "+props["tool"])
}

// TestToolPanicIsAToolErrorAndAnException: a panicking tool answers a
// generic tool error, the process lives on, and telemetry gets the panic.
func TestToolPanicIsAToolErrorAndAnException(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	boom := tools.Tool{
		Def:         mcp.NewTool("boom", mcp.WithReadOnlyHintAnnotation(true), mcp.WithDestructiveHintAnnotation(false), mcp.WithOpenWorldHintAnnotation(false)),
		Permissions: []string{authz.SignedIn},
		Run:         func(context.Context, tools.Call) (*mcp.CallToolResult, error) { panic("kaboom") },
	}
	s, err := New(Options{Tools: append(testTools(), boom), Events: rec})
	if err != nil {
		t.Fatal(err)
	}
	rr := post(s, principalWith(), rpcCase{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"boom"}}`})
	var r listResult
	if err := json.Unmarshal(rr.Body.Bytes(), &r); err != nil || !r.Result.IsError || strings.Contains(rr.Body.String(), "kaboom") {
		t.Fatalf("panicking tool: %s", rr.Body)
	}
	post(s, principalWith(), rpcCase{body: `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"stats"}}`})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.exceptions) != 1 || rec.exceptions[0] != "kaboom boom" {
		t.Errorf("exceptions %v", rec.exceptions)
	}
	if strings.Join(rec.events, ",") != "tool.allowed boom,tool.denied stats" {
		t.Errorf("events %v", rec.events)
	}
}
