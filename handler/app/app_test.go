package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/clientip"
	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/httpapi"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/mcpserver"
	"github.com/entra-mcp/functions-mcp/handler/seal"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
	"github.com/entra-mcp/functions-mcp/handler/tools/toolstest"
)

// stack is the whole handler behind a real HTTP server, with a stand-in
// issuer over HTTPS and a real Redis where one runs.
type stack struct {
	idp     *devidp.Server
	handler http.Handler
	base    string
}

func newStack(t testing.TB, rdb redis.UniversalClient) *stack {
	t.Helper()
	return newStackWith(t, rdb, nil)
}

// newStackWith lets a test adjust the configuration before the handler is
// built.
func newStackWith(t testing.TB, rdb redis.UniversalClient, adjust func(*config.Config, *devidp.Options)) *stack {
	t.Helper()
	return newStackFull(t, rdb, adjust, nil)
}

// newStackFull also lets a test adjust the app's options (secrets,
// credentials, telemetry) once the stand-in runs.
func newStackFull(t testing.TB, rdb redis.UniversalClient, adjust func(*config.Config, *devidp.Options), adjustApp func(*Options, *devidp.Server)) *stack {
	t.Helper()
	if c, ok := rdb.(*redis.Client); ok {
		// Every script and transaction the whole handler sends stays in
		// one hash slot (Azure Managed Redis, clustered).
		storetest.Watch(t, c)
	}
	st := &stack{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	st.base = "http://" + ln.Addr().String()
	idpOpts := devidp.Options{RedirectURIs: []string{st.base + "/auth/callback"}}
	ring, err := seal.ParseKeys(testSealingKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{
		Server:  config.Server{PublicBaseURL: st.base, ClientIP: clientip.Policy{Header: clientip.DefaultHeader}},
		Roles:   authz.DefaultTable(),
		Secrets: config.Secrets{ClientSecret: devidp.DefaultClientSecret, SealingKeys: ring},
		SignIn:  config.SignIn{ReturnURLs: []string{"http://127.0.0.1:9/return"}},
	}
	if adjust != nil {
		adjust(cfg, &idpOpts)
	}
	if idpOpts.SigningKey == nil {
		idpOpts.SigningKey = testkit.RSAKey()
	}
	idp, err := devidp.Start(idpOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	st.idp = idp
	cfg.Graph = config.Graph{BaseURL: idp.GraphBaseURL(), Scope: config.DefaultGraphScope}
	cfg.Entra = config.Entra{
		TenantID: idp.TenantID(), ClientID: idp.ClientID(), AuthorityHost: idp.AuthorityHost(),
		AllowedTenants: []string{idp.TenantID()}, TokenVersion: 2, AppIDURI: "api://" + idp.ClientID(),
	}
	appOpts := Options{Config: cfg, Version: "test", HTTPClient: idp.HTTPClient(), Redis: rdb}
	if adjustApp != nil {
		adjustApp(&appOpts, idp)
	}
	a, err := New(appOpts)
	if err != nil {
		t.Fatal(err)
	}
	st.handler = a.Handler
	testkit.Serve(t, ln, a.Handler)
	return st
}

// testSealingKey is a fixed key for tests (base64 of 32 bytes).
const testSealingKey = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8w="

func (st *stack) token(t testing.TB, user string) string {
	t.Helper()
	u, ok := devidp.DemoUser(user)
	if !ok {
		t.Fatalf("no demo user %q", user)
	}
	tok, err := st.idp.Mint(u)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (st *stack) do(t testing.TB, method, path, token string, hdr map[string]string, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, st.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return send(t, http.DefaultClient, req)
}

func (st *stack) rpc(t testing.TB, token, body string) map[string]any {
	t.Helper()
	r := st.do(t, http.MethodPost, "/mcp", token, nil, body)
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("%d %s: %v", r.status, r.body, err)
	}
	return m
}

func toolNames(m map[string]any) []string {
	var out []string
	res, _ := m["result"].(map[string]any)
	list, _ := res["tools"].([]any)
	for _, v := range list {
		out = append(out, v.(map[string]any)["name"].(string))
	}
	sort.Strings(out)
	return out
}

// TestEachRoleGetsExactlyItsTools lists the tools with each demo user's
// token and wants exactly the golden list, in order.
func TestEachRoleGetsExactlyItsTools(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Redis(t))
	golden := toolstest.Load(t)
	for _, u := range golden.Users {
		t.Run(u.Key, func(t *testing.T) {
			want := golden.Lists(t, u.Key)
			m := st.rpc(t, st.token(t, u.Key), `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
			var got []string
			res, _ := m["result"].(map[string]any)
			list, _ := res["tools"].([]any)
			for _, v := range list {
				got = append(got, v.(map[string]any)["name"].(string))
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s (%v) lists %v, want %v (handler/tools/toolstest/%s)", u.Key, u.Roles, got, want, toolstest.FileName)
			}
		})
	}
}

func callText(t testing.TB, m map[string]any) (string, bool) {
	t.Helper()
	if e, ok := m["error"]; ok {
		return fmt.Sprint(e), true
	}
	res := m["result"].(map[string]any)
	content := res["content"].([]any)
	isErr, _ := res["isError"].(bool)
	return content[0].(map[string]any)["text"].(string), isErr
}

func TestToolsWorkEndToEnd(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Redis(t))
	writer, reader, admin := st.token(t, "writer"), st.token(t, "reader"), st.token(t, "admin")

	text, isErr := callText(t, st.rpc(t, writer, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_task","arguments":{"title":"Ship the MCP endpoint"}}}`))
	if isErr {
		t.Fatalf("create_task: %s", text)
	}
	text, isErr = callText(t, st.rpc(t, reader, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_tasks","arguments":{}}}`))
	if isErr || !strings.Contains(text, "Ship the MCP endpoint") {
		t.Fatalf("list_tasks as reader: %v %s", isErr, text)
	}
	// The reader may not write: same error as a tool that does not exist.
	forbidden := st.do(t, http.MethodPost, "/mcp", reader, nil, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"delete_task","arguments":{"id":"x"}}}`)
	unknown := st.do(t, http.MethodPost, "/mcp", reader, nil, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"nope_task","arguments":{"id":"x"}}}`)
	if forbidden.status != unknown.status || string(forbidden.body) != strings.ReplaceAll(string(unknown.body), "nope_task", "delete_task") {
		t.Fatalf("forbidden %d %s\nunknown %d %s", forbidden.status, forbidden.body, unknown.status, unknown.body)
	}
	text, isErr = callText(t, st.rpc(t, admin, `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"server_stats","arguments":{}}}`))
	if isErr || !strings.Contains(text, "signing_keys") {
		t.Fatalf("server_stats: %v %s", isErr, text)
	}
	text, isErr = callText(t, st.rpc(t, reader, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`))
	if isErr || !strings.Contains(text, "0a1b2c3d-0001-4000-8000-000000000001") || !strings.Contains(text, "search_tasks") || strings.Contains(text, "create_task") {
		t.Fatalf("whoami: %v %s", isErr, text)
	}
}

func TestRedisDownKeepsListWorkingAndFailsToolsCleanly(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Down(t))
	tok := st.token(t, "all")
	if got := toolNames(st.rpc(t, tok, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)); !slices.Equal(got, toolstest.Load(t).Lists(t, "all")) {
		t.Fatalf("tools/list with Redis down: %v", got)
	}
	text, isErr := callText(t, st.rpc(t, tok, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_tasks","arguments":{}}}`))
	if !isErr || !strings.Contains(text, "unavailable") {
		t.Fatalf("list_tasks with Redis down: %v %s", isErr, text)
	}
}

func TestHTTPGuards(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Mini(t))
	tok := st.token(t, "all")
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	prm := st.base + "/.well-known/oauth-protected-resource/mcp"
	// The challenge names the metadata and the scopes it advertises (MCP
	// authorization, scope selection).
	var meta struct {
		Scopes []string `json:"scopes_supported"`
	}
	if r := st.do(t, http.MethodGet, "/.well-known/oauth-protected-resource/mcp", "", nil, ""); r.status != 200 ||
		json.Unmarshal(r.body, &meta) != nil || len(meta.Scopes) != 1 || meta.Scopes[0] != "api://"+st.idp.ClientID()+"/access_as_user" {
		t.Fatalf("protected resource metadata: %d %s", r.status, r.body)
	}
	params := `resource_metadata="` + prm + `", scope="` + strings.Join(meta.Scopes, " ") + `"`

	r := st.do(t, http.MethodPost, "/mcp", "", nil, list)
	if r.status != 401 || r.header.Get("WWW-Authenticate") != `Bearer `+params {
		t.Errorf("no token: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	for _, bad := range []string{"garbage", tok + "x", strings.Repeat("a", 20000)} {
		r = st.do(t, http.MethodPost, "/mcp", bad, nil, list)
		if r.status != 401 || r.header.Get("WWW-Authenticate") != `Bearer error="invalid_token", `+params || !json.Valid(r.body) {
			t.Errorf("bad token: %d %q %s", r.status, r.header.Get("WWW-Authenticate"), r.body)
		}
	}
	r = st.do(t, http.MethodPost, "/mcp", "", map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}, list)
	if r.status != 401 {
		t.Errorf("basic auth: %d", r.status)
	}
	// The Host header is the proxy's; Origin is what is checked.
	r = st.do(t, http.MethodPost, "/mcp", tok, map[string]string{"Origin": "https://evil.example"}, list)
	if r.status != 403 || !json.Valid(r.body) {
		t.Errorf("foreign origin: %d %s", r.status, r.body)
	}
	r = st.do(t, http.MethodPost, "/mcp", tok, map[string]string{"Origin": st.base, "X-Forwarded-Host": "evil.example"}, list)
	if r.status != 200 {
		t.Errorf("own origin: %d %s", r.status, r.body)
	}
	r = st.do(t, http.MethodPost, "/mcp", tok, map[string]string{"Content-Type": "text/plain"}, list)
	if r.status != 415 || !json.Valid(r.body) {
		t.Errorf("text/plain: %d %s", r.status, r.body)
	}
	r = st.do(t, http.MethodPost, "/mcp", tok, nil, `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"x":"`+strings.Repeat("a", 2<<20)+`"}}`)
	if r.status != 413 || !json.Valid(r.body) {
		t.Errorf("2 MiB body: %d %s", r.status, r.body)
	}
	for _, m := range []string{http.MethodGet, http.MethodDelete, http.MethodPut} {
		r = st.do(t, m, "/mcp", tok, nil, "")
		if r.status != 405 || r.header.Get("Allow") != "POST" || !json.Valid(r.body) {
			t.Errorf("%s /mcp: %d %q %s", m, r.status, r.header.Get("Allow"), r.body)
		}
	}
	r = st.do(t, http.MethodGet, "/nope", "", nil, "")
	if r.status != 404 || !json.Valid(r.body) {
		t.Errorf("unknown route: %d %s", r.status, r.body)
	}
}

// healthOf reads /health.
func (st *stack) healthOf(t *testing.T) (int, map[string]any) {
	t.Helper()
	r := st.do(t, http.MethodGet, "/health", "", nil, "")
	var h map[string]any
	if err := json.Unmarshal(r.body, &h); err != nil {
		t.Fatalf("health: %d %s", r.status, r.body)
	}
	return r.status, h
}

// TestHealthSaysWhichDependencyFails: /health is 200 "ok" with every
// dependency answering, 503 "degraded" naming the one that does not, and
// never says why (no address, no error text).
func TestHealthSaysWhichDependencyFails(t *testing.T) {
	t.Parallel()
	t.Run("all well", func(t *testing.T) {
		st := newStack(t, storetest.Redis(t))
		st.rpc(t, st.token(t, "reader"), `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`) // keys loaded
		status, h := st.healthOf(t)
		checks, _ := h["checks"].(map[string]any)
		if status != 200 || h["status"] != "ok" || h["client_address"] != "127.0.0.1" ||
			checks["redis"] != "ok" || checks["signing_keys"] != "ok" {
			t.Errorf("health: %d %v", status, h)
		}
	})
	t.Run("Redis down", func(t *testing.T) {
		st := newStack(t, storetest.Down(t))
		st.rpc(t, st.token(t, "reader"), `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
		status, h := st.healthOf(t)
		checks, _ := h["checks"].(map[string]any)
		if status != 503 || h["status"] != "degraded" || checks["redis"] != "unavailable" || checks["signing_keys"] != "ok" {
			t.Errorf("health: %d %v", status, h)
		}
	})
	t.Run("signing keys never fetched", func(t *testing.T) {
		st := newStack(t, storetest.Redis(t))
		st.idp.SetJWKSFailing(true)
		status, h := st.healthOf(t)
		checks, _ := h["checks"].(map[string]any)
		if status != 503 || checks["signing_keys"] != "unavailable" || checks["redis"] != "ok" {
			t.Errorf("health: %d %v", status, h)
		}
		if b, _ := json.Marshal(h); strings.Contains(string(b), "127.0.0.1:") || strings.Contains(strings.ToLower(string(b)), "error") {
			t.Errorf("health says too much: %s", b)
		}
	})
	t.Run("keys that arrive later show before the cache's 5 s are up", func(t *testing.T) {
		st := newStack(t, storetest.Redis(t))
		st.idp.SetJWKSFailing(true)
		if status, h := st.healthOf(t); status != 503 {
			t.Fatalf("health with no keys: %d %v", status, h)
		}
		st.idp.SetJWKSFailing(false)
		reader := st.token(t, "reader")
		testkit.EventuallyWithin(t, 3*time.Second, "health to see the keys that came back", func() error {
			st.rpc(t, reader, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`) // keys fetched
			if status, h := st.healthOf(t); status != 200 {
				return fmt.Errorf("health %d %v", status, h)
			}
			return nil
		})
	})
}

// TestHealthFloodPingsRedisOnce: /health needs no authentication, so a
// flood of it must not become a flood of Redis round trips, even while
// Redis is down and the verdict degraded (re-read every 500 ms): one ping
// per 5 s, made by one request while the others wait for it or answer from
// the verdict before.
func TestHealthFloodPingsRedisOnce(t *testing.T) {
	t.Parallel()
	rdb := storetest.Down(t)
	pings := &roundTrips{only: "ping"}
	rdb.AddHook(pings)
	st := newStack(t, rdb)
	before := pings.n.Load()
	deadline := time.Now().Add(1200 * time.Millisecond) // past two degraded re-reads
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				resp, err := http.Get(st.base + "/health") // not st.do: off the test's goroutine
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable {
					t.Errorf("health with Redis down: %d", resp.StatusCode)
					return
				}
				time.Sleep(5 * time.Millisecond) // a flood, not a CPU test
			}
		})
	}
	wg.Wait()
	if n := pings.n.Load() - before; n != 1 {
		t.Errorf("%d Redis pings for a 1.2 s flood of /health, want 1", n)
	}
}

// TestProtectedResourceMetadata checks both modes: proxy (the default)
// names this server as the authorization server, entra names Entra's v2
// issuer; neither takes the host from the request.
func TestProtectedResourceMetadata(t *testing.T) {
	t.Parallel()
	for _, mode := range []config.AuthMode{"", config.AuthModeProxy, config.AuthModeEntra} {
		st := newStackWith(t, storetest.Mini(t), func(c *config.Config, _ *devidp.Options) { c.OAuth.Mode = mode })
		wantAS := st.base
		if mode == config.AuthModeEntra {
			wantAS = st.idp.Issuer()
		}
		for _, path := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
			r := st.do(t, http.MethodGet, path, "", map[string]string{"X-Forwarded-Host": "evil.example", "Host": "evil.example"}, "")
			var m struct {
				Resource               string   `json:"resource"`
				AuthorizationServers   []string `json:"authorization_servers"`
				ScopesSupported        []string `json:"scopes_supported"`
				BearerMethodsSupported []string `json:"bearer_methods_supported"`
			}
			if r.status != 200 || json.Unmarshal(r.body, &m) != nil {
				t.Fatalf("mode %q %s: %d %s", mode, path, r.status, r.body)
			}
			if m.Resource != st.base+"/mcp" || len(m.AuthorizationServers) != 1 || m.AuthorizationServers[0] != wantAS ||
				len(m.ScopesSupported) != 1 || m.ScopesSupported[0] != "api://"+st.idp.ClientID()+"/access_as_user" ||
				len(m.BearerMethodsSupported) != 1 || m.BearerMethodsSupported[0] != "header" {
				t.Errorf("mode %q %s: %s", mode, path, r.body)
			}
		}
		// The front's metadata exists in proxy mode only.
		r := st.do(t, http.MethodGet, "/.well-known/oauth-authorization-server", "", nil, "")
		if want := map[bool]int{true: 404, false: 200}[mode == config.AuthModeEntra]; r.status != want {
			t.Errorf("mode %q: authorization server metadata answered %d, want %d", mode, r.status, want)
		}
	}
}

// TestProtocolRevision20260728 drives the stateless 2026-07-28 revision by
// hand: no initialize, the version in the header and in _meta.
func TestProtocolRevision20260728(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Redis(t))
	tok := st.token(t, "all")
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}`
	hdr := map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"}
	r := st.do(t, http.MethodPost, "/mcp", tok, hdr, `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{`+meta+`}}`)
	var m map[string]any
	if r.status != 200 || json.Unmarshal(r.body, &m) != nil || !slices.Equal(toolNames(m), toolstest.Load(t).Lists(t, "all")) {
		t.Fatalf("modern tools/list: %d %s", r.status, r.body)
	}
	if r.header.Get("Mcp-Session-Id") != "" {
		t.Errorf("a session id was minted on the stateless revision")
	}
	res := m["result"].(map[string]any)
	if res["resultType"] != "complete" {
		t.Errorf("result lacks resultType: %s", r.body)
	}

	hdr = map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "whoami"}
	r = st.do(t, http.MethodPost, "/mcp", tok, hdr, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{},`+meta+`}}`)
	if r.status != 200 || !strings.Contains(string(r.body), "0a1b2c3d-0003") {
		t.Fatalf("modern whoami: %d %s", r.status, r.body)
	}
	// initialize does not exist on this revision.
	hdr = map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "initialize"}
	r = st.do(t, http.MethodPost, "/mcp", tok, hdr, `{"jsonrpc":"2.0","id":3,"method":"initialize","params":{`+meta+`}}`)
	if r.status < 400 || r.status >= 500 {
		t.Fatalf("modern initialize: %d %s", r.status, r.body)
	}
	// Header and _meta must agree.
	hdr = map[string]string{"MCP-Protocol-Version": "2025-11-25", "Mcp-Method": "tools/list"}
	r = st.do(t, http.MethodPost, "/mcp", tok, hdr, `{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{`+meta+`}}`)
	if r.status != 400 || !json.Valid(r.body) {
		t.Fatalf("mismatched versions: %d %s", r.status, r.body)
	}
}

// TestUnservedProtocolVersions: through the whole stack, a version we do
// not serve gets 400 with -32022 and the versions we serve, so a dual-era
// client can retry with one of them, and initialize negotiates only a
// revision we serve.
func TestUnservedProtocolVersions(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Mini(t))
	tok := st.token(t, "all")
	served := mcpserver.ProtocolVersions()
	for _, v := range []string{"1900-01-01", "2024-11-05", "2025-03-26", "2026-01-01", "2027-01-01"} {
		modern := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{%q:%q,%q:{}}}}`,
			mcp.MetaKeyProtocolVersion, v, mcp.MetaKeyClientCapabilities)
		for form, body := range map[string]string{"modern": modern, "legacy": `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`} {
			r := st.do(t, http.MethodPost, "/mcp", tok, map[string]string{"MCP-Protocol-Version": v, "Mcp-Method": "tools/list"}, body)
			var m struct {
				Error struct {
					Code int `json:"code"`
					Data struct {
						Supported []string `json:"supported"`
						Requested string   `json:"requested"`
					} `json:"data"`
				} `json:"error"`
			}
			if r.status != http.StatusBadRequest || json.Unmarshal(r.body, &m) != nil || m.Error.Code != mcp.UNSUPPORTED_PROTOCOL_VERSION ||
				fmt.Sprint(m.Error.Data.Supported) != fmt.Sprint(served) || m.Error.Data.Requested != v {
				t.Errorf("%s request at %s: %d %s, want 400 with -32022 listing %v", form, v, r.status, r.body, served)
			}
		}
		init := fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"protocolVersion":%q,"capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`, v)
		var res struct {
			Result struct {
				ProtocolVersion string `json:"protocolVersion"`
			} `json:"result"`
		}
		if r := st.do(t, http.MethodPost, "/mcp", tok, nil, init); r.status != http.StatusOK || json.Unmarshal(r.body, &res) != nil ||
			res.Result.ProtocolVersion != mcp.ProtocolVersion20251125 {
			t.Errorf("initialize requesting %s: %d %s, want %s", v, r.status, r.body, mcp.ProtocolVersion20251125)
		}
	}
}

// TestSDKClients connects mcp-go's own client at each revision we serve.
func TestSDKClients(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Redis(t))
	tok := st.token(t, "all")
	for _, version := range mcpserver.ProtocolVersions() {
		t.Run(version, func(t *testing.T) {
			c, err := client.NewStreamableHttpClient(st.base+"/mcp",
				transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + tok}))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c2 := client.NewClient(c.GetTransport(), client.WithProtocolVersion(version))
			ctx := context.Background()
			if err := c2.Start(ctx); err != nil {
				t.Fatal(err)
			}
			init := mcp.InitializeRequest{}
			init.Params.ClientInfo = mcp.Implementation{Name: "test", Version: "1"}
			init.Params.ProtocolVersion = version
			res, err := c2.Initialize(ctx, init)
			if err != nil {
				t.Fatalf("initialize: %v", err)
			}
			if res.ProtocolVersion != version {
				t.Errorf("negotiated %s, want %s", res.ProtocolVersion, version)
			}
			tools, err := c2.ListTools(ctx, mcp.ListToolsRequest{})
			if err != nil || len(tools.Tools) != len(toolstest.Load(t).Lists(t, "all")) {
				t.Fatalf("list tools: %v %d", err, len(tools.Tools))
			}
			call := mcp.CallToolRequest{}
			call.Params.Name = "create_task"
			call.Params.Arguments = map[string]any{"title": "from the SDK at " + version}
			out, err := c2.CallTool(ctx, call)
			if err != nil || out.IsError {
				t.Fatalf("call: %v %+v", err, out)
			}
		})
	}
}

// TestIssuerUnreachableIs503 checks that a verifier which never got keys
// answers 503, not 401: clients should retry, not sign in again.
func TestIssuerUnreachableIs503(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Mini(t))
	tok := st.token(t, "all")
	st.idp.Close()
	r := st.do(t, http.MethodPost, "/mcp", tok, nil, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !json.Valid(r.body) {
		t.Fatalf("issuer down: %d %q %s", r.status, r.header.Get("Retry-After"), r.body)
	}
}

// TestMyProfileOnBehalfOfTheCaller: my_profile trades the caller's token
// for a Graph token (OBO) at the stand-in and reads /v1.0/me; without
// consent the caller is told what to ask an admin for.
func TestMyProfileOnBehalfOfTheCaller(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Redis(t))
	reader, _ := devidp.DemoUser("reader")
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"my_profile","arguments":{}}}`
	text, isErr := callText(t, st.rpc(t, st.token(t, "reader"), call))
	if isErr || !strings.Contains(text, reader.Name) || !strings.Contains(text, reader.Username) {
		t.Fatalf("my_profile: %v %s", isErr, text)
	}
	// A second call reuses the sealed OBO token: no new OBO request.
	before := st.idp.TokenRequests(devidp.GrantJWTBearer)
	if _, isErr := callText(t, st.rpc(t, st.token(t, "reader"), call)); isErr {
		t.Fatal("second my_profile failed")
	}
	if after := st.idp.TokenRequests(devidp.GrantJWTBearer); after != before {
		t.Fatalf("second call made %d OBO requests", after-before)
	}
	st.idp.RevokeConsent(reader.ObjectID, "https://graph.microsoft.com/User.Read")
	writer, _ := devidp.DemoUser("all")
	st.idp.RevokeConsent(writer.ObjectID, "https://graph.microsoft.com/User.Read")
	text, isErr = callText(t, st.rpc(t, st.token(t, "all"), call))
	if !isErr || !strings.Contains(strings.ToLower(text), "consent") || !strings.Contains(text, "admin") {
		t.Fatalf("my_profile without consent: %v %s", isErr, text)
	}
}

// TestEveryRouteIsServed: each route the Functions host forwards (and the
// layout test matches with functions/*/function.json) reaches a handler, for
// every method it forwards; none falls through to the 404 of unknown paths.
func TestEveryRouteIsServed(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Mini(t))
	for _, rt := range httpapi.Routes() {
		for _, m := range rt.Methods {
			r := st.do(t, m, rt.Path, "", nil, "")
			if r.status == http.StatusNotFound && strings.Contains(string(r.body), "no such route") {
				t.Errorf("%s %s: not served", m, rt.Path)
			}
		}
	}
}

// TestCORSIsOnePolicy: browser origins in MCP_ALLOWED_ORIGINS (and the
// public origin) get their preflights answered and may read /mcp, the
// OAuth endpoints and the session routes, with the challenge and protocol
// headers exposed; any other origin gets a preflight without CORS headers,
// and /mcp still refuses its real request. Public documents are readable
// by anyone.
func TestCORSIsOnePolicy(t *testing.T) {
	t.Parallel()
	const app = "https://app.example.com"
	st := newStackWith(t, storetest.Redis(t), func(c *config.Config, _ *devidp.Options) {
		c.Server.AllowedOrigins = []string{app}
	})
	preflight := func(path, origin string) reply {
		return st.do(t, http.MethodOptions, path, "", map[string]string{"Origin": origin,
			"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type, mcp-protocol-version"}, "")
	}
	for _, path := range []string{"/mcp", "/oauth/token", "/oauth/register", "/oauth/revoke", "/auth/exchange", "/auth/refresh", "/auth/logout"} {
		t.Run(path, func(t *testing.T) {
			r := preflight(path, app)
			if r.status != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != app ||
				!strings.Contains(r.header.Get("Access-Control-Allow-Methods"), "POST") ||
				!strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "authorization") {
				t.Errorf("preflight from an allowed origin: %d %v", r.status, r.header)
			}
			r = preflight(path, "https://evil.example")
			if r.status != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != "" || r.header.Get("Access-Control-Allow-Methods") != "" {
				t.Errorf("preflight from another origin: %d %v", r.status, r.header)
			}
		})
	}
	// The real requests.
	r := st.do(t, http.MethodPost, "/mcp", "", map[string]string{"Origin": app}, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	if r.status != http.StatusUnauthorized || r.header.Get("Access-Control-Allow-Origin") != app ||
		!strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") ||
		!strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "Mcp-Protocol-Version") {
		t.Errorf("/mcp from an allowed origin: %d %v", r.status, r.header)
	}
	r = st.do(t, http.MethodPost, "/mcp", st.token(t, "all"), map[string]string{"Origin": "https://evil.example"}, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	if r.status != http.StatusForbidden || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("/mcp from another origin: %d %v", r.status, r.header)
	}
	for _, path := range []string{"/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-authorization-server", "/health"} {
		if r := st.do(t, http.MethodGet, path, "", map[string]string{"Origin": "https://anyone.example"}, ""); r.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: %v", path, r.header)
		}
	}
	// An OPTIONS that is no preflight is not answered as one.
	if r := st.do(t, http.MethodOptions, "/mcp", "", nil, ""); r.status != http.StatusMethodNotAllowed {
		t.Errorf("OPTIONS /mcp without a preflight: %d", r.status)
	}
}
