package tools_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/internal/standin"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/obo"
	"github.com/entra-mcp/functions-mcp/handler/outage"
	"github.com/entra-mcp/functions-mcp/handler/seal"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
	"github.com/entra-mcp/functions-mcp/handler/tools"
)

// graphEnv is the Entra stand-in with its Graph, a verifier, a Redis, and
// the tools over an obo.Client, as the app wires them.
type graphEnv struct {
	t      *testing.T
	idp    *devidp.Server
	verify *entra.Verifier
	rdb    redis.UniversalClient
	srv    *server
}

func newGraphEnv(t *testing.T) *graphEnv {
	t.Helper()
	idp, v := standin.Start(t, devidp.Options{})
	cred, err := confidential.NewCredFromSecret(idp.ClientSecret())
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, seal.KeySize)
	_, _ = rand.Read(key)
	ring, err := seal.NewRing(key)
	if err != nil {
		t.Fatal(err)
	}
	rdb := storetest.Redis(t)
	client, err := obo.New(obo.Options{
		Authority: idp.Authority(), ClientID: idp.ClientID(), Credential: cred,
		HTTPClient: idp.HTTPClient(), Redis: rdb, Ring: ring,
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &graphEnv{t: t, idp: idp, verify: v, rdb: rdb}
	e.srv = newServer(t, tools.Deps{Graph: &tools.Graph{Tokens: client, BaseURL: idp.GraphBaseURL(), HTTPClient: idp.HTTPClient()}})
	return e
}

// signIn mints an access token for a demo user and verifies it, and returns
// the context the HTTP layer would hand the tools: principal and raw token.
func (e *graphEnv) signIn(key string) (context.Context, *entra.Principal, string) {
	e.t.Helper()
	u, _ := devidp.DemoUser(key)
	tok, err := e.idp.Mint(u)
	if err != nil {
		e.t.Fatal(err)
	}
	p, err := e.verify.Verify(context.Background(), tok)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx := entra.NewVerifiedContext(context.Background(), p, tok)
	return ctx, p, tok
}

// callCtx runs a tool as p with ctx, as mcpserver does.
func (s *server) callCtx(ctx context.Context, p *entra.Principal, name string) (*mcp.CallToolResult, error) {
	s.t.Helper()
	tool, ok := s.tools[name]
	if !ok {
		s.t.Fatalf("no tool %q", name)
	}
	var req mcp.CallToolRequest
	req.Params.Name = name
	return tool.Run(ctx, tools.Call{Principal: p, Grants: authz.DefaultTable().Permissions(), Request: req})
}

func (e *graphEnv) profile(key string) (*mcp.CallToolResult, *entra.Principal, string) {
	e.t.Helper()
	ctx, p, tok := e.signIn(key)
	res, err := e.srv.callCtx(ctx, p, "my_profile")
	if err != nil {
		e.t.Fatalf("my_profile as %s: %v", key, err)
	}
	return res, p, tok
}

func TestMyProfile(t *testing.T) {
	t.Parallel()
	e := newGraphEnv(t)
	res, p, incoming := e.profile("reader")
	if res.IsError {
		t.Fatalf("tool error: %s", text(res))
	}
	checkOutputSchema(t, e.srv.tools["my_profile"].Def, res)
	got := structured(t, res)
	want := map[string]any{
		"displayName": "Rita Reader", "mail": "reader@devidp.example", "jobTitle": "Research Analyst",
		"userPrincipalName": "reader@devidp.example", "id": p.ObjectID,
	}
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("my_profile = %s, want %s", gotJSON, wantJSON)
	}
	var fromText map[string]any
	if err := json.Unmarshal([]byte(text(res)), &fromText); err != nil || fromText["displayName"] != "Rita Reader" {
		t.Errorf("text %q is not the same JSON", text(res))
	}

	// Another user sees their own profile; each user's Graph token is kept
	// and reused: two users, four calls, two OBO requests.
	res, _, _ = e.profile("writer")
	if structured(t, res)["displayName"] != "Walt Writer" {
		t.Errorf("writer sees %v", structured(t, res))
	}
	e.profile("reader")
	e.profile("writer")
	if n := e.idp.TokenRequests(devidp.GrantJWTBearer); n != 2 {
		t.Errorf("OBO requests = %d, want 2", n)
	}
	if n := e.idp.GraphRequests(); n != 4 {
		t.Errorf("Graph requests = %d, want 4", n)
	}

	// What Redis holds is sealed: no token, not even in part.
	keys, _ := e.rdb.Keys(context.Background(), "*").Result()
	if len(keys) != 2 {
		t.Errorf("Redis keys = %v", keys)
	}
	for _, k := range keys {
		v, _ := e.rdb.Get(context.Background(), k).Result()
		testkit.NoTokenIn(t, k, v, incoming)
		if strings.Contains(v, devidp.GraphAppID) || strings.Contains(v, p.ObjectID) {
			t.Errorf("%s holds a readable token", k)
		}
	}
}

func TestMyProfileConsentMissing(t *testing.T) {
	t.Parallel()
	e := newGraphEnv(t)
	reader, _ := devidp.DemoUser("reader")
	e.idp.RevokeConsent(reader.ObjectID, "User.Read")
	res, _, _ := e.profile("reader")
	if !res.IsError || res.StructuredContent != nil {
		t.Fatalf("want a tool error, got %+v", res)
	}
	msg := text(res)
	for _, want := range []string{"admin consent", "User.Read", e.idp.ClientID()} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q: %s", want, msg)
		}
	}
	// Other users are unaffected.
	if res, _, _ := e.profile("writer"); res.IsError {
		t.Errorf("writer: %s", text(res))
	}
}

func TestMyProfileOutages(t *testing.T) {
	t.Parallel()
	e := newGraphEnv(t)
	ctx, p, _ := e.signIn("reader")

	e.idp.SetTokenFailing(true)
	if res, err := e.srv.callCtx(ctx, p, "my_profile"); !errors.Is(err, outage.ErrUnavailable) || res != nil {
		t.Errorf("token endpoint 503: %v, %v; want ErrUnavailable", res, err)
	}
	e.idp.SetTokenFailing(false)

	for _, status := range []int{500, 503, 429} {
		e.idp.SetGraphStatus(status)
		res, err := e.srv.callCtx(ctx, p, "my_profile")
		if !errors.Is(err, outage.ErrUnavailable) || res != nil {
			t.Errorf("Graph %d: %v, %v; want ErrUnavailable", status, res, err)
		}
		if outage.Dependency(err) != "microsoft graph" || err != nil && strings.Contains(err.Error(), "redis") {
			t.Errorf("Graph %d: %v does not name Microsoft Graph as what is unavailable", status, err)
		}
	}
	e.idp.SetGraphStatus(0)
	if res, err := e.srv.callCtx(ctx, p, "my_profile"); err != nil || res.IsError {
		t.Errorf("after recovery: %v %v", res, err)
	}
}

// fakeTokens hands out a fixed token and remembers Forget.
type fakeTokens struct {
	token  string
	forgot int
}

func (f *fakeTokens) Token(context.Context, []string) (string, error) {
	return f.token, nil
}

func (f *fakeTokens) Forget(context.Context, *entra.Principal, []string) error {
	f.forgot++
	return nil
}

func TestMyProfileGraphRefusals(t *testing.T) {
	t.Parallel()
	e := newGraphEnv(t)
	ctx, p, apiToken := e.signIn("reader")
	reader, _ := devidp.DemoUser("reader")
	graphToken := func(u devidp.User, scope string) string {
		tok, err := e.idp.Mint(u, devidp.WithVersion(1), devidp.WithClientApp(e.idp.ClientID()), devidp.WithScopes(scope),
			devidp.WithClaims(map[string]any{"aud": devidp.GraphAppID}))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	stranger := devidp.User{Name: "Sam Stranger", Username: "sam@devidp.example", ObjectID: "0a1b2c3d-0009-4000-8000-000000000009"}
	with := func(tok string) (*server, *fakeTokens) {
		f := &fakeTokens{token: tok}
		return newServer(t, tools.Deps{Graph: &tools.Graph{Tokens: f, BaseURL: e.idp.GraphBaseURL(), HTTPClient: e.idp.HTTPClient()}}), f
	}

	// 401 (here: a token for the API, not Graph): an internal error, and
	// the kept token is dropped so the next call asks Entra afresh.
	s, f := with(apiToken)
	res, err := s.callCtx(ctx, p, "my_profile")
	if err == nil || res != nil || errors.Is(err, outage.ErrUnavailable) || !strings.Contains(err.Error(), "401 InvalidAuthenticationToken") || f.forgot != 1 {
		t.Errorf("Graph 401: %v, %v, forgot %d", res, err, f.forgot)
	}
	if strings.Contains(err.Error(), apiToken) {
		t.Error("error holds the token")
	}
	// 403: the token lacks User.Read; the admin can fix that.
	s, _ = with(graphToken(reader, "Mail.Read"))
	res, err = s.callCtx(ctx, p, "my_profile")
	if err != nil || !res.IsError || !strings.Contains(text(res), "admin consent") || !strings.Contains(text(res), "User.Read") {
		t.Errorf("Graph 403: %v, %v", res, err)
	}
	// 404: no directory entry.
	s, _ = with(graphToken(stranger, "User.Read"))
	res, err = s.callCtx(ctx, p, "my_profile")
	if err != nil || !res.IsError || !strings.Contains(text(res), "no profile") {
		t.Errorf("Graph 404: %v, %v", res, err)
	}
}

func TestMyProfileGuards(t *testing.T) {
	t.Parallel()
	// An answer over the cap is refused, not read whole.
	big := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"x","displayName":"` + strings.Repeat("a", 2<<20) + `"}`))
	}))
	defer big.Close()
	p := &entra.Principal{TenantID: devidp.DefaultTenantID, ObjectID: "0a1b2c3d-0001-4000-8000-000000000001"}
	ctx := entra.NewVerifiedContext(context.Background(), p, "incoming")
	s := newServer(t, tools.Deps{Graph: &tools.Graph{Tokens: &fakeTokens{token: "t"}, BaseURL: big.URL, HTTPClient: big.Client()}})
	if res, err := s.callCtx(ctx, p, "my_profile"); err == nil || res != nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized answer: %v, %v", res, err)
	}

	// No bearer token over plain http.
	plain := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("token sent over http") }))
	defer plain.Close()
	s = newServer(t, tools.Deps{Graph: &tools.Graph{Tokens: &fakeTokens{token: "t"}, BaseURL: plain.URL}})
	if _, err := s.callCtx(ctx, p, "my_profile"); err == nil || !strings.Contains(err.Error(), "https") {
		t.Errorf("http base URL: %v", err)
	}

	// No caller token in the context is a wiring bug: an internal error.
	if _, err := s.callCtx(context.Background(), p, "my_profile"); err == nil {
		t.Error("ran without the caller's token")
	}
	// Nor without a principal.
	if _, err := s.tools["my_profile"].Run(ctx, tools.Call{}); err == nil {
		t.Error("ran without a principal")
	}
}

func TestMyProfileDefinition(t *testing.T) {
	t.Parallel()
	for _, tool := range tools.All(tools.Deps{}) {
		if tool.Def.Name == "my_profile" {
			t.Fatal("my_profile listed without Graph configured")
		}
	}
	s := newServer(t, tools.Deps{Graph: &tools.Graph{Tokens: &fakeTokens{}}})
	tool := s.tools["my_profile"]
	a := tool.Def.Annotations
	if !slices.Equal(tool.Permissions, []string{"tasks.read"}) || !*a.ReadOnlyHint || *a.DestructiveHint || !*a.IdempotentHint || !*a.OpenWorldHint {
		t.Errorf("permissions %v, hints %+v", tool.Permissions, a)
	}
	if tool.Def.RawOutputSchema == nil || tool.Def.InputSchema.AdditionalProperties != false || tool.Def.Title == "" ||
		!strings.Contains(tool.Def.Description, "User.Read") {
		t.Errorf("definition = %+v", tool.Def)
	}
	if msg := s.toolError(alice, "my_profile", map[string]any{"x": 1}); !strings.Contains(msg, `unknown argument "x"`) {
		t.Errorf("with an argument: %q", msg)
	}
}
