package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/azcred"
	"github.com/entra-mcp/functions-mcp/handler/azuretest"
	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/devupstream"
	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
	"github.com/entra-mcp/functions-mcp/handler/telemetry"
	"github.com/entra-mcp/functions-mcp/handler/tools/toolstest"
)

// Two upstream APIs in the stand-in's tenant, each the audience of its own
// upstream MCP server: notes is stateless, desk keeps sessions.
var (
	notesAPI = devidp.API{AppID: "a1b2c3d4-0001-4000-8000-00000000a001", AppIDURI: "api://notes.test", Name: "Notes",
		Permissions: []string{"Notes.Read"}, Consented: []string{"Notes.Read"}}
	deskAPI = devidp.API{AppID: "a1b2c3d4-0002-4000-8000-00000000a002", AppIDURI: "api://desk.test", Name: "Desk",
		Permissions: []string{"Desk.ReadWrite"}, Consented: []string{"Desk.ReadWrite"}}
)

// upstreamRules: whoami for every signed-in caller, list_notes for readers,
// add_note for writers; reset_all_notes is in no rule.
var upstreamRules = []config.UpstreamRule{
	{Match: devupstream.WhoamiTool, Permission: authz.SignedIn},
	{Match: "list_*", Permission: "tasks.read"},
	{Match: devupstream.AddNoteTool, Permission: "tasks.write"},
}

// federation is the whole handler fronting the two upstreams on behalf of
// its callers.
type federation struct {
	*stack
	notes, desk       *devupstream.Server
	notesSrv, deskSrv *httptest.Server
}

func newFederation(t *testing.T, adjust func(*config.Config, *devidp.Options)) *federation {
	t.Helper()
	return newFederationWith(t, adjust, nil)
}

// newFederationWith also adjusts the app's options (telemetry).
func newFederationWith(t *testing.T, adjust func(*config.Config, *devidp.Options), adjustApp func(*Options)) *federation {
	t.Helper()
	f := &federation{}
	f.stack = newStackFull(t, storetest.Redis(t), func(c *config.Config, o *devidp.Options) {
		o.APIs = []devidp.API{notesAPI, deskAPI}
		if adjust != nil {
			adjust(c, o)
		}
	}, func(o *Options, idp *devidp.Server) {
		f.notes, f.notesSrv = startUpstream(t, idp, notesAPI, false)
		f.desk, f.deskSrv = startUpstream(t, idp, deskAPI, true)
		notesURL, deskURL := f.notesSrv.URL+"/mcp", f.deskSrv.URL+"/mcp"
		for _, u := range []config.Upstream{
			{Name: "notes", URL: notesURL, Tools: upstreamRules,
				Auth: config.UpstreamAuth{Mode: config.UpstreamOnBehalfOf, Scopes: []string{notesAPI.Scope("Notes.Read")}}},
			{Name: "desk", URL: deskURL, Tools: upstreamRules,
				Auth: config.UpstreamAuth{Mode: config.UpstreamOnBehalfOf, Scopes: []string{deskAPI.Scope("Desk.ReadWrite")}}},
		} {
			checked, err := config.CheckUpstream(u, o.Config.Roles)
			if err != nil {
				t.Fatal(err)
			}
			o.Config.Upstreams = append(o.Config.Upstreams, checked)
		}
		if adjustApp != nil {
			adjustApp(o)
		}
	})
	return f
}

// startUpstream runs a devupstream for api on loopback, verifying tokens
// for api's audience with the stand-in's keys.
func startUpstream(t *testing.T, idp *devidp.Server, api devidp.API, sessions bool) (*devupstream.Server, *httptest.Server) {
	t.Helper()
	v, err := entra.NewVerifier(entra.Config{AuthorityHost: idp.AuthorityHost(), TenantID: idp.TenantID(), ClientID: api.AppID, HTTPClient: idp.HTTPClient()})
	if err != nil {
		t.Fatal(err)
	}
	up := devupstream.New(devupstream.Options{Verifier: v, Sessions: sessions})
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	return up, srv
}

func callBody(name string, args map[string]any) string {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": map[string]any{"name": name, "arguments": args}})
	return string(b)
}

// post sends one JSON-RPC message with token and decodes the answer; it
// does not touch t, so goroutines can call it.
func (f *federation) post(token, body string) (map[string]any, error) {
	req, err := http.NewRequest(http.MethodPost, f.base+"/mcp", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return nil, fmt.Errorf("%d: %w", resp.StatusCode, err)
	}
	return m, nil
}

// resultOf is a tools/call answer's text, structured content and isError.
func resultOf(m map[string]any) (text string, structured map[string]any, isError bool) {
	res, _ := m["result"].(map[string]any)
	structured, _ = res["structuredContent"].(map[string]any)
	isError, _ = res["isError"].(bool)
	content, _ := res["content"].([]any)
	for _, c := range content {
		if tc, ok := c.(map[string]any); ok {
			s, _ := tc["text"].(string)
			text += s
		}
	}
	return text, structured, isError
}

// whoamiOf is what an upstream's whoami saw, called through the front.
func (f *federation) whoamiOf(t *testing.T, token, upstream string) map[string]any {
	t.Helper()
	m := f.rpc(t, token, callBody(upstream+".whoami", nil))
	res, _ := m["result"].(map[string]any)
	sc, ok := res["structuredContent"].(map[string]any)
	if !ok {
		t.Fatalf("%s.whoami: %v", upstream, m)
	}
	return sc
}

func TestUpstreamsOnBehalfOfTheCaller(t *testing.T) {
	t.Parallel()
	f := newFederation(t, nil)
	reader, _ := devidp.DemoUser("reader")
	tok := f.token(t, "reader")

	t.Run("each upstream gets a token minted for it, for the caller", func(t *testing.T) {
		for name, api := range map[string]devidp.API{"notes": notesAPI, "desk": deskAPI} {
			t.Run(name, func(t *testing.T) {
				w := f.whoamiOf(t, tok, name)
				if w["aud"] != api.AppID || w["oid"] != reader.ObjectID || w["tid"] != f.idp.TenantID() {
					t.Errorf("%s saw %v; want aud %s, oid %s", name, w, api.AppID, reader.ObjectID)
				}
				if w["appId"] != f.idp.ClientID() {
					t.Errorf("%s: the token's client is %v, want this server (%s)", name, w["appId"], f.idp.ClientID())
				}
			})
		}
	})
	t.Run("no upstream ever received the caller's own token", func(t *testing.T) {
		if f.notes.Received(tok) || f.desk.Received(tok) {
			t.Fatal("the caller's token was passed through")
		}
	})
	t.Run("on-behalf-of tokens are kept: a second call asks Entra nothing", func(t *testing.T) {
		before := f.idp.TokenRequests(devidp.GrantJWTBearer)
		f.whoamiOf(t, tok, "notes")
		f.whoamiOf(t, tok, "desk")
		if n := f.idp.TokenRequests(devidp.GrantJWTBearer) - before; n != 0 {
			t.Fatalf("%d on-behalf-of requests for tokens already kept", n)
		}
	})
	t.Run("Entra refusing the exchange is a tool error naming the upstream and what an admin must grant", func(t *testing.T) {
		writer, _ := devidp.DemoUser("writer")
		f.idp.RevokeConsent(writer.ObjectID, notesAPI.Scope("Notes.Read"))
		calls := f.notes.Calls()
		text, isErr := callText(t, f.rpc(t, f.token(t, "writer"), callBody("notes.whoami", nil)))
		if !isErr || !strings.Contains(text, `"notes"`) || !strings.Contains(text, "Notes.Read") || !strings.Contains(strings.ToLower(text), "consent") {
			t.Fatalf("%v %s", isErr, text)
		}
		if f.notes.Calls() != calls {
			t.Error("the upstream was called without a token")
		}
		if strings.Contains(text, "eyJ") {
			t.Errorf("a token in the message: %s", text)
		}
	})
}

// TestUpstreamToolsPerRole: each demo user lists exactly the golden tools
// of its roles plus the upstream tools their permissions allow, and calling
// anything else, ours or upstream, unlisted or forbidden, fails exactly as
// an unknown tool does.
func TestUpstreamToolsPerRole(t *testing.T) {
	t.Parallel()
	f := newFederation(t, nil)
	golden := toolstest.Load(t)
	table := authz.DefaultTable()
	policy, err := authz.NewPolicy(table)
	if err != nil {
		t.Fatal(err)
	}
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	for _, u := range devidp.DemoUsers() {
		t.Run(u.Key, func(t *testing.T) {
			want := golden.Lists(t, u.Key)
			grants := policy.Names(policy.Grants(u.Roles, false))
			for _, up := range []string{"notes", "desk"} {
				for _, tool := range []string{devupstream.WhoamiTool, devupstream.ListNotesTool, devupstream.AddNoteTool, devupstream.HiddenTool} {
					if perm, ok := config.Permission(upstreamRules, tool); ok && slices.Contains(grants, perm) {
						want = append(want, up+"."+tool)
					}
				}
			}
			slices.Sort(want)
			tok := f.token(t, u.Key)
			if got := toolNames(f.rpc(t, tok, list)); !slices.Equal(got, want) {
				t.Fatalf("got %v\nwant %v", got, want)
			}
			unknown := f.rpc(t, tok, callBody("notes.made_up", nil))
			wantErr := strings.ReplaceAll(fmt.Sprint(unknown["error"]), "notes.made_up", "X")
			for _, name := range []string{"desk." + devupstream.HiddenTool, "notes." + devupstream.HiddenTool, "made_up", "desk.add_note", "create_task", "server_stats"} {
				if slices.Contains(want, name) {
					continue
				}
				got := f.rpc(t, tok, callBody(name, map[string]any{"text": "x"}))
				if _, ran := got["result"]; ran || strings.ReplaceAll(fmt.Sprint(got["error"]), name, "X") != wantErr {
					t.Errorf("%s: %v, an unknown tool: %v", name, got, unknown)
				}
			}
		})
	}
}

// TestAppCallerOnAnOnBehalfOfUpstream: an application calling as itself is
// told on-behalf-of needs a user; nothing reaches Entra or the upstream.
func TestAppCallerOnAnOnBehalfOfUpstream(t *testing.T) {
	t.Parallel()
	table := readerForApps()
	agent := devidp.AppsFor(table, "reader-agent-secret")[0]
	f := newFederation(t, func(c *config.Config, o *devidp.Options) {
		c.Roles = table
		o.Apps = []devidp.App{agent}
	})
	tok := f.appToken(t, agent)
	// An on-behalf-of upstream is listed as a person: a user lists first.
	f.rpc(t, f.token(t, "reader"), `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	before, calls := f.idp.TokenRequests(devidp.GrantJWTBearer), f.notes.Calls()
	text, isErr := callText(t, f.rpc(t, tok, callBody("notes.list_notes", nil)))
	if !isErr || !strings.Contains(text, "on behalf of a signed-in person") || !strings.Contains(text, `"notes"`) {
		t.Fatalf("%v %s", isErr, text)
	}
	if f.idp.TokenRequests(devidp.GrantJWTBearer) != before || f.notes.Calls() != calls {
		t.Error("an app-only call reached Entra or the upstream")
	}
}

// TestManyCallersAcrossUpstreams: 200 callers, each a different user with
// a role of its own, call both upstreams at once (run under -race in CI):
// every upstream sees each caller's own identity in a token minted for it,
// and a session-keeping upstream never sees a session used by two users.
func TestManyCallersAcrossUpstreams(t *testing.T) {
	t.Parallel()
	const callers = 200
	// Room for every caller at once: the cap's own behaviour is
	// upstream's TestConcurrencyCap; here it would only turn slow runs
	// (-race on two cores) into "busy" answers.
	f := newFederationWith(t, nil, func(o *Options) {
		for i := range o.Config.Upstreams {
			o.Config.Upstreams[i].MaxConcurrent = callers
		}
	})
	roles := [][]string{{"Task.Read"}, {"Task.Write"}, {"Task.All"}, {"MCPServer.Admin"}}
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	sessions := sync.Map{} // desk session id -> oid
	for i := range callers {
		u := devidp.User{Name: fmt.Sprintf("Caller %d", i), Username: fmt.Sprintf("caller%d@contoso.test", i),
			ObjectID: fmt.Sprintf("c0ffee00-0000-4000-8000-%012d", i), Roles: roles[i%len(roles)]}
		tok, err := f.idp.Mint(u)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			call := func(name string, args map[string]any) (string, map[string]any, bool, error) {
				m, err := f.post(tok, callBody(name, args))
				if err != nil {
					return "", nil, false, err
				}
				text, sc, isErr := resultOf(m)
				return text, sc, isErr, nil
			}
			for _, c := range []struct{ up, aud string }{{"notes", notesAPI.AppID}, {"desk", deskAPI.AppID}, {"desk", deskAPI.AppID}} {
				text, w, _, err := call(c.up+".whoami", nil)
				if err != nil || w["aud"] != c.aud || w["oid"] != u.ObjectID {
					errs <- fmt.Errorf("%s via %s saw %v (%v): %s", u.ObjectID, c.up, w, err, text)
					return
				}
				if c.up == "desk" {
					if prev, loaded := sessions.LoadOrStore(w["session"], u.ObjectID); loaded && prev != u.ObjectID {
						errs <- fmt.Errorf("desk session %v used by %v and %s", w["session"], prev, u.ObjectID)
						return
					}
				}
			}
			if slices.Contains(u.Roles, "Task.Write") || slices.Contains(u.Roles, "Task.All") {
				if text, _, isErr, err := call("notes.add_note", map[string]any{"text": "from " + u.ObjectID}); err != nil || isErr {
					errs <- fmt.Errorf("%s: add_note: %s %v", u.ObjectID, text, err)
					return
				}
			}
			if slices.Contains(u.Roles, "Task.Read") || slices.Contains(u.Roles, "Task.All") {
				text, _, _, err := call("notes.list_notes", nil)
				if err != nil || strings.Contains(text, "from ") && !strings.Contains(text, "from "+u.ObjectID) {
					errs <- fmt.Errorf("%s saw another user's notes: %s (%v)", u.ObjectID, text, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := f.desk.CrossedSessions(); n != 0 {
		t.Fatalf("%d requests used another user's session", n)
	}
	if f.notes.Received(f.token(t, "reader")) {
		t.Fatal("a caller's token reached an upstream")
	}
}

// TestUpstreamHealth: /health names each upstream (not yet listed, ok, or
// unavailable, which makes it degraded) and server_stats reports its state.
func TestUpstreamHealth(t *testing.T) {
	t.Parallel()
	f := newFederation(t, nil)
	f.rpc(t, f.token(t, "reader"), `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	f.deskSrv.Close() // desk goes down
	for range 5 {
		text, isErr := callText(t, f.rpc(t, f.token(t, "admin"), callBody("desk.whoami", nil)))
		if !isErr || !strings.Contains(text, `"desk"`) {
			t.Fatalf("a call to a stopped upstream: %v %s", isErr, text)
		}
	}
	status, h := f.healthOf(t)
	checks, _ := h["checks"].(map[string]any)
	if status != http.StatusServiceUnavailable || checks["upstream:desk"] != "unavailable" || checks["upstream:notes"] != "ok" || checks["redis"] != "ok" {
		t.Fatalf("health: %d %v", status, h)
	}
	text, isErr := callText(t, f.rpc(t, f.token(t, "admin"), callBody("server_stats", nil)))
	if isErr {
		t.Fatal(text)
	}
	var stats struct {
		Stats struct {
			MCP struct {
				UpstreamFailures int `json:"upstream_failures"`
			} `json:"mcp"`
			Upstreams []struct {
				Name, Breaker string
				Tools         int
				Healthy       bool
			} `json:"upstreams"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(text), &stats); err != nil || len(stats.Stats.Upstreams) != 2 {
		t.Fatalf("server_stats: %v %s", err, text)
	}
	if stats.Stats.MCP.UpstreamFailures != 5 {
		t.Errorf("upstream failures counted: %d, want 5", stats.Stats.MCP.UpstreamFailures)
	}
	for _, u := range stats.Stats.Upstreams {
		want := u.Name == "notes"
		if u.Healthy != want || u.Tools != 3 || (u.Name == "desk" && u.Breaker != "open") {
			t.Errorf("server_stats upstream %+v", u)
		}
	}
}

// TestManagedIdentityUpstream: an upstream called as this server gets the
// managed identity's token for its own audience, whoever calls, and an
// application caller may use it (nobody is acted for).
func TestManagedIdentityUpstream(t *testing.T) {
	ident := azuretest.NewIdentity()
	msi, err := azuretest.StartManagedIdentity(azuretest.ManagedIdentityOptions{UserAssigned: []azuretest.Identity{ident}})
	if err != nil {
		t.Fatal(err)
	}
	defer msi.Close()
	for k, v := range msi.Env() {
		t.Setenv(k, v) // azidentity reads these from the process itself
	}
	cred, err := azcred.New(azcred.Options{ManagedIdentity: true, ClientID: ident.ClientID})
	if err != nil {
		t.Fatal(err)
	}
	const resource = "api://vendor.test"
	up := devupstream.New(devupstream.Options{Accept: msi.Accepts(resource)})
	srv := httptest.NewServer(up)
	defer srv.Close()
	st := newStackFull(t, storetest.Redis(t), nil, func(o *Options, _ *devidp.Server) {
		o.AzureCredential = cred
		u, err := config.CheckUpstream(config.Upstream{Name: "vendor", URL: srv.URL + "/mcp", Tools: upstreamRules,
			Auth: config.UpstreamAuth{Mode: config.UpstreamManagedIdentity, Scopes: []string{resource + "/.default"}}}, o.Config.Roles)
		if err != nil {
			t.Fatal(err)
		}
		o.Config.Upstreams = []config.Upstream{u}
	})
	tok := st.token(t, "all")
	if got := toolNames(st.rpc(t, tok, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)); !slices.Contains(got, "vendor.add_note") {
		t.Fatalf("tools/list: %v", got)
	}
	text, isErr := callText(t, st.rpc(t, tok, callBody("vendor.add_note", map[string]any{"text": "as the server"})))
	if isErr || !strings.Contains(text, "Noted") {
		t.Fatalf("%v %s", isErr, text)
	}
	if up.Received(tok) {
		t.Fatal("the caller's token reached the upstream")
	}
	for _, r := range msi.Requests() {
		if r.Resource != resource && r.Resource != resource+"/" {
			t.Errorf("the identity was asked for %q", r.Resource)
		}
	}
}

// TestUpstreamCallsAreDependencies: every request to an upstream is an
// Application Insights dependency of type "MCP upstream", and the caller's
// token and the upstream's token are in no item.
func TestUpstreamCallsAreDependencies(t *testing.T) {
	t.Parallel()
	in, tel := startIngestion(t)
	f := newFederationWith(t, nil, func(o *Options) { o.Telemetry = tel })
	tok := f.token(t, "reader")
	f.whoamiOf(t, tok, "notes")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tel.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	var upstream int
	for _, e := range in.envelopes {
		data, _ := e["data"].(map[string]any)
		base, _ := data["baseData"].(map[string]any)
		if data["baseType"] == "RemoteDependencyData" && base["type"] == telemetry.TypeUpstream {
			upstream++
		}
	}
	// initialize, notifications/initialized and tools/list to list; the
	// same handshake and tools/call for the call.
	if upstream < 4 {
		t.Fatalf("%d upstream dependencies among %d items", upstream, len(in.envelopes))
	}
	if raw := in.raw.String(); strings.Contains(raw, tok) || strings.Contains(raw, "Bearer") {
		t.Error("a token reached telemetry")
	}
}
