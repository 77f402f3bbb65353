package mcpserver

// Red-team tests: each proves a fault found in review, against an upstream
// on loopback that answers raw JSON-RPC, so it can list what an mcp-go
// server would refuse to.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/tools"
	"github.com/entra-mcp/functions-mcp/handler/upstream"
)

// rawUpstream is an MCP server written by hand: it lists what its fields
// say and answers every tools/call, resources/read and prompts/get with
// fixed text.
type rawUpstream struct {
	mu        sync.Mutex
	tools     string // JSON array
	resources string // JSON array
	templates func() string
}

func (u *rawUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var req struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params struct {
			ProtocolVersion string `json:"protocolVersion"`
			URI             string `json:"uri"`
		} `json:"params"`
	}
	if json.Unmarshal(body, &req) != nil {
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	if len(req.ID) == 0 {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	var result string
	switch req.Method {
	case "initialize":
		result = fmt.Sprintf(`{"protocolVersion":%q,"capabilities":{"tools":{},"resources":{},"prompts":{}},"serverInfo":{"name":"raw","version":"1"}}`, req.Params.ProtocolVersion)
	case "tools/list":
		result = `{"tools":` + orEmpty(u.tools) + `}`
	case "resources/list":
		result = `{"resources":` + orEmpty(u.resources) + `}`
	case "resources/templates/list":
		t := "[]"
		if u.templates != nil {
			t = u.templates()
		}
		result = `{"resourceTemplates":` + t + `}`
	case "prompts/list":
		result = `{"prompts":[]}`
	case "tools/call":
		result = `{"content":[{"type":"text","text":"ran upstream"}]}`
	case "resources/read":
		b, _ := json.Marshal(req.Params.URI)
		result = `{"contents":[{"uri":` + string(b) + `,"mimeType":"text/plain","text":"from the upstream"}]}`
	default:
		result = `{}`
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":%s}`, req.ID, result)
}

func orEmpty(s string) string {
	if s == "" {
		return "[]"
	}
	return s
}

// rawFederated is an endpoint fronting one rawUpstream named "raw", whose
// rules are rulesJSON, with a clock the test moves.
type rawFederated struct {
	s   *Server
	fed *upstream.Federation
	up  *rawUpstream
	off atomic.Int64
}

func newRawFederated(t *testing.T, up *rawUpstream, rulesJSON string, opts Options) *rawFederated {
	t.Helper()
	f := &rawFederated{up: up}
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	ups, err := config.ParseUpstreams([]byte(`{"upstreams":[{"name":"raw","url":"`+srv.URL+`/mcp","auth":{"mode":"none"},`+rulesJSON+`}]}`), authz.DefaultTable())
	if err != nil {
		t.Fatal(err)
	}
	f.fed, err = upstream.New(upstream.Options{Upstreams: ups, Now: func() time.Time { return time.Now().Add(time.Duration(f.off.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.fed.Close)
	opts.Upstreams = f.fed
	if opts.Tools == nil {
		opts.Tools = testTools()
	}
	if f.s, err = New(opts); err != nil {
		t.Fatal(err)
	}
	return f
}

// postSafely is post, with a panic turned into a test failure (the HTTP
// layer's recoverer would answer 500).
func postSafely(t *testing.T, s *Server, roles []string, body string) (rec *httptest.ResponseRecorder) {
	t.Helper()
	defer func() {
		if v := recover(); v != nil {
			t.Errorf("the endpoint panicked (the HTTP layer answers 500): %v", v)
			rec = nil
		}
	}()
	return post(s, principalWith(roles...), rpcCase{body: body})
}

// TestRedteamAToolMCPGoRefusesDoesNotBreakToolsList: mcp-go's AddTools
// panics on a tool whose input schema has an x-mcp-header annotation it
// refuses (SEP-2243), and rejects the whole batch. An upstream listing one
// such tool makes syncUpstreams panic after it has already hidden the
// changing tools - and on every later request again, since the index never
// reaches the new generation: every tools/list, for every caller, fails.
func TestRedteamAToolMCPGoRefusesDoesNotBreakToolsList(t *testing.T) {
	t.Parallel()
	up := &rawUpstream{tools: `[
		{"name":"good","inputSchema":{"type":"object"}},
		{"name":"bad","inputSchema":{"type":"object","properties":{"obj":{"type":"object","x-mcp-header":"Obj"}}}}]`}
	f := newRawFederated(t, up, `"tools":[{"match":"*","permission":"tasks.read"}]`, Options{})
	for i := 0; i < 2; i++ {
		rec := postSafely(t, f.s, []string{"Task.Read"}, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
		if rec == nil {
			continue
		}
		if got := names(t, rec.Body.Bytes()); !slices.Contains(got, "raw.good") || !slices.Contains(got, "list_things") || slices.Contains(got, "raw.bad") {
			t.Errorf("tools/list %d: %v", i, got)
		}
	}
	// Our own tools must keep working too.
	rec := postSafely(t, f.s, []string{"Task.Read"}, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"raw.good"}}`)
	if rec != nil && !strings.Contains(rec.Body.String(), "ran upstream") {
		t.Errorf("raw.good: %s", rec.Body)
	}
}

// TestRedteamRetiredTemplatesAreBounded: mcp-go cannot forget a resource
// template, so every template an upstream ever listed stays registered in
// mcp-go and in the index's retired set, both walked on every
// resources/templates/list and resources/read. An upstream whose template
// names change with every listing grows them without bound.
func TestRedteamRetiredTemplatesAreBounded(t *testing.T) {
	t.Parallel()
	var listing atomic.Int64
	up := &rawUpstream{templates: func() string {
		n := listing.Add(1)
		var items []string
		for i := range 50 {
			items = append(items, fmt.Sprintf(`{"uriTemplate":"t%d-%d://{id}","name":"t%d-%d"}`, n, i, n, i))
		}
		return "[" + strings.Join(items, ",") + "]"
	}}
	f := newRawFederated(t, up, `"tools":[{"match":"*","permission":"tasks.read"}],"resources":[{"match":"*","permission":"tasks.read"}]`, Options{})
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	post(f.s, principalWith("Task.Read"), rpcCase{body: list})
	const listings = 30 // 1500 templates, three times what one listing may hold
	for range listings {
		g := f.fed.Generation()
		f.off.Add(int64(config.DefaultUpstreamListTTL + time.Second))
		post(f.s, principalWith("Task.Read"), rpcCase{body: list}) // starts the refresh
		testkit.Eventually(t, "the refresh to finish", func() error {
			if f.fed.Generation() == g {
				return fmt.Errorf("still generation %d", g)
			}
			return nil
		})
		post(f.s, principalWith("Task.Read"), rpcCase{body: list}) // syncs it
	}
	idx := f.s.index()
	if kept := len(idx.retired) + len(idx.templates); kept > 500 {
		t.Fatalf("after %d listings of 50 new templates each, %d templates are kept (%d retired); mcp-go holds them all too", listings, kept, len(idx.retired))
	}
}

// TestRedteamAnUpstreamResourceCannotShadowOurTemplate: "ours win a URI or
// name both claim" holds for exact URIs and identical templates only. An
// upstream resource whose URI one of our templates serves is checked first
// by serveRead, so reading that URI returns the upstream's content, under
// the upstream rule's permission, instead of ours.
func TestRedteamAnUpstreamResourceCannotShadowOurTemplate(t *testing.T) {
	t.Parallel()
	up := &rawUpstream{resources: `[{"uri":"thing://a1","name":"a1"}]`}
	f := newRawFederated(t, up, `"tools":[{"match":"*","permission":"tasks.read"}],"resources":[{"match":"thing://*","permission":"signed-in"}]`,
		Options{Templates: []tools.ResourceTemplate{testTemplate("thing://{id}", "thing", "tasks.read")}})
	post(f.s, principalWith("Task.Read"), rpcCase{body: `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`})
	read := `{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"thing://a1"}}`
	if body := post(f.s, principalWith("Task.Read"), rpcCase{body: read}).Body.String(); !strings.Contains(body, "thing a1 for") {
		t.Errorf("a reader of our thing://{id} gets: %s", body)
	}
	if body := post(f.s, principalWith(), rpcCase{body: read}).Body.String(); strings.Contains(body, "from the upstream") {
		t.Errorf("a caller without tasks.read reads thing://a1 (ours needs tasks.read), from the upstream: %s", body)
	}
}
