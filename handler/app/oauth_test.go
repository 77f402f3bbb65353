package app

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
	"github.com/entra-mcp/functions-mcp/handler/tools/toolstest"
)

// The OAuth front, end to end through the real handler, the Entra stand-in
// over HTTPS and Redis: what an MCP client following the authorization spec
// does, and every way it must fail closed.

const clientRedirect = "http://127.0.0.1:7777/callback"

// pkcePair returns a fresh verifier and its S256 challenge.
func pkcePair(t testing.TB) (verifier, challenge string) {
	t.Helper()
	verifier = strings.TrimRight(rand.Text()+rand.Text(), "=")
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// register registers a client through /oauth/register and returns its id.
func (st *stack) register(t testing.TB, name string, redirects ...string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"client_name": name, "redirect_uris": redirects,
		"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none",
	})
	r := st.do(t, http.MethodPost, "/oauth/register", "", nil, string(body))
	var c struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &c) != nil || c.ClientID == "" || c.ClientSecret != "" {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	return c.ClientID
}

// authRequest is an authorization request as a client builds it.
type authRequest struct {
	clientID, redirect, state, challenge string
	verifier                             string
	extra                                url.Values // added or, with an empty value, removed
}

func (st *stack) newAuthRequest(t testing.TB, clientID string) authRequest {
	v, c := pkcePair(t)
	return authRequest{clientID: clientID, redirect: clientRedirect, state: rand.Text(), challenge: c, verifier: v}
}

func (a authRequest) url(base string) string {
	q := url.Values{
		"response_type": {"code"}, "client_id": {a.clientID}, "redirect_uri": {a.redirect},
		"state": {a.state}, "code_challenge": {a.challenge}, "code_challenge_method": {"S256"},
		"scope": {"api://" + devidp.DefaultClientID + "/access_as_user"}, "resource": {base + "/mcp"},
	}
	for k, v := range a.extra {
		if len(v) == 1 && v[0] == "" {
			q.Del(k)
		} else {
			q[k] = v
		}
	}
	return base + "/oauth/authorize?" + q.Encode()
}

// consent loads the consent page of a request and returns its form fields.
func (st *stack) consent(t testing.TB, c *http.Client, a authRequest) (request, csrf string) {
	t.Helper()
	r := get(t, c, a.url(st.base))
	form := testkit.FormFields(string(r.body), "request", "csrf_token")
	if r.status != http.StatusOK || form.Get("request") == "" || form.Get("csrf_token") == "" {
		t.Fatalf("consent page: %d %s %s", r.status, r.header.Get("Location"), r.body)
	}
	return form.Get("request"), form.Get("csrf_token")
}

// decide posts the consent form as the page would.
func (st *stack) decide(t testing.TB, c *http.Client, fields url.Values, origin string) reply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, st.base+"/oauth/authorize", strings.NewReader(fields.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	return send(t, c, req)
}

// clientLanding follows a Location to the client's redirect URI and
// returns its query; it fails unless the Location is the redirect URI.
func clientLanding(t testing.TB, loc, redirect string) url.Values {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil || u.Scheme+"://"+u.Host+u.Path != redirect {
		t.Fatalf("redirected to %q, want the client's %s", loc, redirect)
	}
	return u.Query()
}

// authorize runs the browser part for a: consent (approved) unless
// remembered, the stand-in's sign-in as user, and the callback. It returns
// the query the client's redirect URI receives.
func (st *stack) authorize(t testing.TB, c *http.Client, a authRequest, user string) url.Values {
	t.Helper()
	r := get(t, c, a.url(st.base))
	loc := r.header.Get("Location")
	if r.status == http.StatusOK {
		request, csrf := st.consent(t, c, a)
		r = st.decide(t, c, url.Values{"request": {request}, "csrf_token": {csrf}, "decision": {"approve"}}, st.base)
		loc = r.header.Get("Location")
	}
	if r.status != http.StatusFound || !strings.HasPrefix(loc, st.idp.AuthorityHost()) && !strings.Contains(loc, "/oauth2/v2.0/authorize") {
		t.Fatalf("approve: %d %s %s", r.status, loc, r.body)
	}
	cb, err := st.idp.SignIn(context.Background(), loc, user)
	if err != nil {
		t.Fatalf("stand-in sign-in: %v", err)
	}
	r = get(t, c, cb)
	if r.status != http.StatusFound {
		t.Fatalf("callback: %d %s", r.status, r.body)
	}
	return clientLanding(t, r.header.Get("Location"), a.redirect)
}

// tokenReq posts form to /oauth/token.
func (st *stack) tokenReq(t testing.TB, path string, form url.Values) (reply, tokens) {
	t.Helper()
	r := st.do(t, http.MethodPost, path, "", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, form.Encode())
	var tk tokens
	if len(r.body) > 0 {
		if err := json.Unmarshal(r.body, &tk); err != nil {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
	}
	return r, tk
}

func (st *stack) redeem(t testing.TB, a authRequest, code string) (reply, tokens) {
	t.Helper()
	return st.tokenReq(t, "/oauth/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "client_id": {a.clientID},
		"redirect_uri": {a.redirect}, "code_verifier": {a.verifier}, "resource": {st.base + "/mcp"},
	})
}

func (st *stack) refreshFor(t testing.TB, clientID, handle string) (reply, tokens) {
	t.Helper()
	return st.tokenReq(t, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {handle}, "client_id": {clientID}})
}

func wantOAuthError(t testing.TB, what string, r reply, status int, code string) {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(r.body, &e)
	if r.status != status || e.Error != code {
		t.Errorf("%s: %d %s, want %d %s", what, r.status, r.body, status, code)
	}
	if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("%s: Cache-Control %q, want no-store", what, cc)
	}
}

// TestOAuthMetadata: the RFC 8414 document, exactly; and no OpenID
// Provider Configuration, since this server issues no ID tokens and the
// document lacks what OIDC Discovery requires (jwks_uri,
// subject_types_supported, id_token_signing_alg_values_supported).
func TestOAuthMetadata(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Mini(t))
	r := st.do(t, http.MethodGet, "/.well-known/oauth-authorization-server", "", nil, "")
	var m map[string]any
	if r.status != 200 || json.Unmarshal(r.body, &m) != nil {
		t.Fatalf("RFC 8414 metadata: %d %s", r.status, r.body)
	}
	want := map[string]any{
		"issuer":                                         st.base,
		"authorization_endpoint":                         st.base + "/oauth/authorize",
		"token_endpoint":                                 st.base + "/oauth/token",
		"registration_endpoint":                          st.base + "/oauth/register",
		"revocation_endpoint":                            st.base + "/oauth/revoke",
		"scopes_supported":                               []any{"api://" + st.idp.ClientID() + "/access_as_user"},
		"response_types_supported":                       []any{"code"},
		"response_modes_supported":                       []any{"query"},
		"grant_types_supported":                          []any{"authorization_code", "refresh_token"},
		"token_endpoint_auth_methods_supported":          []any{"none"},
		"revocation_endpoint_auth_methods_supported":     []any{"none"},
		"code_challenge_methods_supported":               []any{"S256"},
		"client_id_metadata_document_supported":          true,
		"authorization_response_iss_parameter_supported": true,
	}
	if len(m) != len(want) {
		t.Errorf("RFC 8414 metadata has %d members, want %d: %s", len(m), len(want), r.body)
	}
	for k, v := range want {
		if fmt.Sprint(m[k]) != fmt.Sprint(v) {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if r.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Error("RFC 8414 metadata: no CORS header")
	}

	entra := newStackWith(t, storetest.Mini(t), func(c *config.Config, _ *devidp.Options) { c.OAuth.Mode = config.AuthModeEntra })
	for mode, s := range map[config.AuthMode]*stack{config.AuthModeProxy: st, config.AuthModeEntra: entra} {
		for _, method := range []string{http.MethodGet, http.MethodOptions} {
			r := s.do(t, method, "/.well-known/openid-configuration", "", nil, "")
			if r.status != http.StatusNotFound || !json.Valid(r.body) {
				t.Errorf("mode %s: %s /.well-known/openid-configuration: %d %s, want 404", mode, method, r.status, r.body)
			}
		}
	}
}

// TestOAuthEndToEnd is the whole life of a registered client: discovery
// from a 401, registration, consent, sign-in, token, MCP calls, refresh,
// remembered consent, revocation.
func TestOAuthEndToEnd(t *testing.T) {
	t.Parallel()
	rdb := storetest.Redis(t)
	st := newStack(t, rdb)
	// The flow signs in as the demo user "all" (Alex All).
	allTools := toolstest.Load(t).Lists(t, "all")

	// Discovery starts from the 401 of the MCP endpoint.
	r := st.do(t, http.MethodPost, "/mcp", "", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), st.base+"/.well-known/oauth-protected-resource/mcp") {
		t.Fatalf("401: %d %v", r.status, r.header)
	}

	id := st.register(t, "Test Client", clientRedirect)
	// Unused, a registration is pending, for a day at most; the first
	// sign-in moves it to a key of its own, for 90 days.
	ttl := func() time.Duration { return rdb.TTL(context.Background(), "oauthclient:"+id).Val() }
	if !rdb.HExists(context.Background(), "oauthclients:{pending}", id).Val() || rdb.Exists(context.Background(), "oauthclient:"+id).Val() != 0 {
		t.Error("an unused registration is not (only) pending")
	}
	c := browser(t)
	a := st.newAuthRequest(t, id)
	page := get(t, c, a.url(st.base))
	// Allow starts inert (the page's script arms it: double-clickjacking).
	for _, want := range []string{"Test Client", "127.0.0.1:7777", "access_as_user", `name="decision" value="approve" class="approve" id="approve" disabled>`} {
		if !strings.Contains(string(page.body), want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	if csp := page.header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("consent page CSP %q", csp)
	}

	got := st.authorize(t, c, a, "all")
	if got.Get("state") != a.state || got.Get("iss") != st.base || got.Get("code") == "" {
		t.Fatalf("client got %v", got)
	}
	r, tk := st.redeem(t, a, got.Get("code"))
	if r.status != 200 || tk.AccessToken == "" || tk.RefreshToken == "" || tk.TokenType != "Bearer" ||
		tk.Scope != "api://"+st.idp.ClientID()+"/access_as_user" || !strings.Contains(r.header.Get("Cache-Control"), "no-store") {
		t.Fatalf("token: %d %s", r.status, r.body)
	}
	if d := ttl(); d < 89*24*time.Hour {
		t.Errorf("TTL of a registration after its first sign-in: %v", d)
	}
	if rdb.HExists(context.Background(), "oauthclients:{pending}", id).Val() {
		t.Error("a registration is still pending after its first sign-in")
	}
	// It counts against the budget of the user who signed in with it, and
	// no one else's (oauthclients.MaxConfirmedPerUser).
	all, _ := devidp.DemoUser("all")
	if users := rdb.Keys(context.Background(), "oauthclients:user:*").Val(); len(users) != 1 ||
		users[0] != "oauthclients:user:"+st.idp.TenantID()+"."+all.ObjectID ||
		rdb.ZScore(context.Background(), users[0], id).Err() != nil {
		t.Errorf("the registration is counted in %v, want only in the signed-in user's set", users)
	}
	if names := toolNames(st.rpc(t, tk.AccessToken, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)); !slices.Equal(names, allTools) {
		t.Errorf("tools with the client's token: %v, want %v", names, allTools)
	}
	res := st.rpc(t, tk.AccessToken, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`)
	if text, isErr := callText(t, res); isErr || !strings.Contains(text, "Alex All") {
		t.Errorf("whoami: %v", res)
	}

	// Refresh rotates; the old handle presented again revokes the chain.
	r, tk2 := st.refreshFor(t, id, tk.RefreshToken)
	if r.status != 200 || tk2.AccessToken == "" || tk2.RefreshToken == "" || tk2.RefreshToken == tk.RefreshToken {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	if names := toolNames(st.rpc(t, tk2.AccessToken, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)); !slices.Equal(names, allTools) {
		t.Errorf("tools with the refreshed token: %v, want %v", names, allTools)
	}
	// Once the new handle has been used, the old one coming back is reuse
	// (within the grace it would have been a retry after a lost reply).
	r, tkNext := st.refreshFor(t, id, tk2.RefreshToken)
	if r.status != 200 {
		t.Fatalf("second refresh: %d %s", r.status, r.body)
	}
	r, _ = st.refreshFor(t, id, tk.RefreshToken)
	wantOAuthError(t, "refresh-handle reuse", r, 400, "invalid_grant")
	r, _ = st.refreshFor(t, id, tkNext.RefreshToken)
	wantOAuthError(t, "newest handle after reuse (chain revoked)", r, 400, "invalid_grant")

	// The same user and browser again: no consent page, straight to Entra.
	a2 := st.newAuthRequest(t, id)
	r = get(t, c, a2.url(st.base))
	if r.status != http.StatusFound || !strings.Contains(r.header.Get("Location"), "/oauth2/v2.0/authorize") {
		t.Fatalf("remembered consent: %d %s", r.status, r.header.Get("Location"))
	}
	// Not for another loopback port, though the client may use any: any
	// program on the machine could be asking in the client's name.
	other := st.newAuthRequest(t, id)
	other.redirect = "http://127.0.0.1:7778/callback"
	if r := get(t, c, other.url(st.base)); r.status != http.StatusOK || !strings.Contains(string(r.body), `id="loopback"`) {
		t.Errorf("remembered consent on another port: %d, want the consent page with the loopback warning", r.status)
	}
	got = st.authorize(t, c, a2, "all")
	r, tk3 := st.redeem(t, a2, got.Get("code"))
	if r.status != 200 {
		t.Fatalf("second token: %d %s", r.status, r.body)
	}

	// Revocation: another client cannot, the owner can, a JWT cannot.
	otherClient := st.register(t, "Other", clientRedirect)
	r, _ = st.tokenReq(t, "/oauth/revoke", url.Values{"token": {tk3.RefreshToken}, "client_id": {otherClient}})
	wantOAuthError(t, "revoke by another client", r, 400, "invalid_grant")
	r, _ = st.tokenReq(t, "/oauth/revoke", url.Values{"token": {tk3.AccessToken}, "client_id": {id}})
	wantOAuthError(t, "revoke an access token", r, 400, "unsupported_token_type")
	r, _ = st.tokenReq(t, "/oauth/revoke", url.Values{"token": {tk3.RefreshToken}, "client_id": {id}, "token_type_hint": {"refresh_token"}})
	if r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	r, _ = st.refreshFor(t, id, tk3.RefreshToken)
	wantOAuthError(t, "refresh after revoke", r, 400, "invalid_grant")
	r, _ = st.tokenReq(t, "/oauth/revoke", url.Values{"token": {"no-such-token"}, "client_id": {id}})
	if r.status != 200 {
		t.Errorf("revoke an unknown token: %d %s, want 200 (RFC 7009 §2.2)", r.status, r.body)
	}
}

// TestOAuthClientMetadataDocument signs in a client identified by a Client
// ID Metadata Document, and refuses bad documents with a page, never a
// redirect.
func TestOAuthClientMetadataDocument(t *testing.T) {
	t.Parallel()
	docs := http.NewServeMux()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	testkit.Serve(t, ln, docs)
	docsURL := "http://" + ln.Addr().String()
	doc := func(path string, body func(id string) string) string {
		id := docsURL + path
		docs.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, body(id))
		})
		return id
	}
	good := doc("/good.json", func(id string) string {
		return `{"client_id":"` + id + `","client_name":"Doc Client","client_uri":"` + docsURL + `","redirect_uris":["` + clientRedirect + `"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"]}`
	})
	mismatched := doc("/mismatched.json", func(string) string {
		return `{"client_id":"https://elsewhere.example/client.json","redirect_uris":["` + clientRedirect + `"]}`
	})
	oversize := doc("/big.json", func(id string) string {
		return `{"client_id":"` + id + `","redirect_uris":["` + clientRedirect + `"],"client_name":"` + strings.Repeat("x", 20000) + `"}`
	})
	slowID := docsURL + "/slow.json"
	docs.HandleFunc("/slow.json", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(8 * time.Second):
		case <-r.Context().Done():
		}
	})

	// The slow server is refused when the fetch times out: a short cap, so
	// the test does not wait out the real one.
	st := newStackFull(t, storetest.Redis(t), func(c *config.Config, _ *devidp.Options) { c.OAuth.AllowLoopbackClients = true },
		func(o *Options, _ *devidp.Server) { o.metadataFetchTimeout = 500 * time.Millisecond })
	c := browser(t)
	a := st.newAuthRequest(t, good)
	page := get(t, c, a.url(st.base))
	if !strings.Contains(string(page.body), "Doc Client") || !strings.Contains(string(page.body), "identified by its metadata document") {
		t.Errorf("consent page for a document client: %s", page.body)
	}
	got := st.authorize(t, c, a, "reader")
	r, tk := st.redeem(t, a, got.Get("code"))
	if r.status != 200 || tk.AccessToken == "" {
		t.Fatalf("token for a document client: %d %s", r.status, r.body)
	}

	for name, id := range map[string]string{
		"mismatched client_id": mismatched,
		"private address":      "https://10.1.2.3/client.json",
		"link-local address":   "https://169.254.169.254/client.json",
		"oversize document":    oversize,
		"slow server":          slowID,
		"plain http elsewhere": "http://example.com/client.json",
	} {
		t.Run(name, func(t *testing.T) {
			r := get(t, browser(t), st.newAuthRequest(t, id).url(st.base))
			if r.status != http.StatusBadRequest || r.header.Get("Location") != "" || !strings.Contains(string(r.body), "not known to this server") {
				t.Errorf("%s: %d Location=%q %s", name, r.status, r.header.Get("Location"), r.body)
			}
			// The page tells the user whose fix it is: a document is the
			// publisher's, not an expired registration.
			if body := string(r.body); !strings.Contains(body, "metadata document must be fixed by its publisher") || strings.Contains(body, "registration may have expired") {
				t.Errorf("%s: the page does not say the document is at fault: %s", name, body)
			}
		})
	}
}

// TestOAuthNegativeMatrix: each case fails closed with the spec's error,
// as a page while the redirect URI is not trusted, at the client's
// redirect URI after.
func TestOAuthNegativeMatrix(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Redis(t))
	id := st.register(t, "Matrix", clientRedirect)

	t.Run("authorize errors shown as a page", func(t *testing.T) {
		for name, a := range map[string]authRequest{
			"unregistered client":          {clientID: "AAAAAAAAAAAAAAAAAAAAAAAAAA", redirect: clientRedirect, state: "s", challenge: strings.Repeat("a", 43)},
			"redirect URI not registered":  {clientID: id, redirect: "http://127.0.0.1:7777/other", state: "s", challenge: strings.Repeat("a", 43)},
			"redirect URI on another host": {clientID: id, redirect: "https://attacker.example/callback", state: "s", challenge: strings.Repeat("a", 43)},
			"no client_id":                 {redirect: clientRedirect, state: "s", challenge: strings.Repeat("a", 43)},
		} {
			t.Run(name, func(t *testing.T) {
				r := get(t, browser(t), a.url(st.base))
				if r.status != http.StatusBadRequest || r.header.Get("Location") != "" {
					t.Errorf("%s: %d Location=%q", name, r.status, r.header.Get("Location"))
				}
			})
		}
	})

	t.Run("authorize errors sent to the client", func(t *testing.T) {
		for name, tc := range map[string]struct {
			extra     url.Values
			code      string
			withState bool
		}{
			"plain PKCE":              {url.Values{"code_challenge_method": {"plain"}}, "invalid_request", true},
			"PKCE method missing":     {url.Values{"code_challenge_method": {""}}, "invalid_request", true},
			"no code_challenge":       {url.Values{"code_challenge": {""}}, "invalid_request", true},
			"state too long":          {url.Values{"state": {strings.Repeat("s", 1025)}}, "invalid_request", false},
			"response_type token":     {url.Values{"response_type": {"token"}}, "unsupported_response_type", true},
			"resource of another API": {url.Values{"resource": {"https://graph.microsoft.com"}}, "invalid_target", true},
			"scope not offered":       {url.Values{"scope": {"https://graph.microsoft.com/Mail.Read"}}, "invalid_scope", true},
			"state given twice":       {url.Values{"state": {"a", "b"}}, "invalid_request", false},
		} {
			t.Run(name, func(t *testing.T) {
				a := st.newAuthRequest(t, id)
				a.extra = tc.extra
				r := get(t, browser(t), a.url(st.base))
				if r.status != http.StatusFound {
					t.Errorf("%s: %d %s", name, r.status, r.body)
					return
				}
				q := clientLanding(t, r.header.Get("Location"), clientRedirect)
				if q.Get("error") != tc.code || q.Get("iss") != st.base || (q.Get("state") == a.state) != tc.withState {
					t.Errorf("%s: client got %v, want error=%s", name, q, tc.code)
				}
			})
		}
	})

	// A registered https redirect URI may be anyone's site: errors go there
	// only through a link the user follows, never automatically (RFC 9700
	// §4.11.2), or this server would be an open redirector.
	t.Run("untrusted redirect URI gets a page with a link", func(t *testing.T) {
		web := st.register(t, "Web", "https://app.example/cb")
		a := st.newAuthRequest(t, web)
		a.redirect = "https://app.example/cb"
		a.extra = url.Values{"code_challenge_method": {"plain"}}
		r := get(t, browser(t), a.url(st.base))
		if r.status != http.StatusBadRequest || r.header.Get("Location") != "" {
			t.Fatalf("untrusted redirect: %d Location=%q", r.status, r.header.Get("Location"))
		}
		m := regexp.MustCompile(`<a id="return" href="([^"]+)"`).FindSubmatch(r.body)
		if m == nil {
			t.Fatalf("no return link: %s", r.body)
		}
		q := clientLanding(t, html.UnescapeString(string(m[1])), "https://app.example/cb")
		if q.Get("error") != "invalid_request" || q.Get("state") != a.state || q.Get("iss") != st.base {
			t.Errorf("return link carries %v", q)
		}
	})

	t.Run("consent form", func(t *testing.T) {
		c := browser(t)
		a := st.newAuthRequest(t, id)
		request, csrf := st.consent(t, c, a)
		for name, tc := range map[string]struct {
			fields url.Values
			origin string
		}{
			"CSRF token missing": {url.Values{"request": {request}, "decision": {"approve"}}, st.base},
			"foreign Origin":     {url.Values{"request": {request}, "csrf_token": {csrf}, "decision": {"approve"}}, "https://attacker.example"},
		} {
			t.Run(name, func(t *testing.T) {
				if r := st.decide(t, c, tc.fields, tc.origin); r.status != http.StatusForbidden || r.header.Get("Location") != "" {
					t.Errorf("%s: %d %s", name, r.status, r.header.Get("Location"))
				}
			})
		}
		// A wrong token is refused. The request is not stored, so nothing
		// is spent: the page's own (256-bit) token still works, and a forger
		// would need this browser's SameSite=Strict cookie for every guess.
		if r := st.decide(t, c, url.Values{"request": {request}, "csrf_token": {"wrong"}, "decision": {"approve"}}, st.base); r.status != http.StatusForbidden {
			t.Errorf("wrong CSRF token: %d", r.status)
		}
		// A request sealed for another page does not take this page's token.
		other, _ := st.consent(t, c, a)
		if r := st.decide(t, c, url.Values{"request": {other}, "csrf_token": {csrf}, "decision": {"approve"}}, st.base); r.status != http.StatusForbidden {
			t.Errorf("another page's request with this page's token: %d", r.status)
		}
		// A forged or altered request does not open.
		if r := st.decide(t, c, url.Values{"request": {request[:len(request)-4] + "AAAA"}, "csrf_token": {csrf}, "decision": {"approve"}}, st.base); r.status != http.StatusBadRequest {
			t.Errorf("altered request: %d, want 400", r.status)
		}
		if r := st.decide(t, c, url.Values{"request": {request}, "csrf_token": {csrf}, "decision": {"approve"}}, st.base); r.status != http.StatusFound {
			t.Errorf("the page's own answer after refused ones: %d", r.status)
		}
		// Another browser (no binding cookie) cannot answer this browser's page.
		request, csrf = st.consent(t, c, a)
		if r := st.decide(t, browser(t), url.Values{"request": {request}, "csrf_token": {csrf}, "decision": {"approve"}}, st.base); r.status != http.StatusForbidden {
			t.Errorf("answer from another browser: %d", r.status)
		}
		// Denied: the client gets access_denied, with its state and our iss.
		request, csrf = st.consent(t, c, a)
		r := st.decide(t, c, url.Values{"request": {request}, "csrf_token": {csrf}, "decision": {"deny"}}, st.base)
		q := clientLanding(t, r.header.Get("Location"), clientRedirect)
		if r.status != http.StatusFound || q.Get("error") != "access_denied" || q.Get("state") != a.state || q.Get("iss") != st.base {
			t.Errorf("deny: %d %v", r.status, q)
		}
	})

	t.Run("sign-in cancelled at Entra", func(t *testing.T) {
		c := browser(t)
		a := st.newAuthRequest(t, id)
		request, csrf := st.consent(t, c, a)
		r := st.decide(t, c, url.Values{"request": {request}, "csrf_token": {csrf}, "decision": {"approve"}}, st.base)
		cb, err := st.idp.CancelSignIn(context.Background(), r.header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		r = get(t, c, cb)
		q := clientLanding(t, r.header.Get("Location"), clientRedirect)
		if q.Get("error") != "access_denied" || q.Get("state") != a.state || q.Get("code") != "" {
			t.Errorf("cancel: %v", q)
		}
	})

	t.Run("token errors", func(t *testing.T) {
		other := st.register(t, "Other", clientRedirect)
		c := browser(t)
		code := func() (authRequest, string) {
			a := st.newAuthRequest(t, id)
			return a, st.authorize(t, c, a, "writer").Get("code")
		}

		a, cd := code()
		bad := a
		bad.verifier = strings.Repeat("x", 43)
		r, _ := st.redeem(t, bad, cd)
		wantOAuthError(t, "wrong verifier", r, 400, "invalid_grant")
		r, _ = st.redeem(t, a, cd)
		wantOAuthError(t, "right verifier after a wrong one (code spent)", r, 400, "invalid_grant")

		a, cd = code()
		theirs := a
		theirs.clientID = other
		r, _ = st.redeem(t, theirs, cd)
		wantOAuthError(t, "code from another client", r, 400, "invalid_grant")

		a, cd = code()
		moved := a
		moved.redirect = "http://127.0.0.1:7777/other"
		r, _ = st.redeem(t, moved, cd)
		wantOAuthError(t, "redirect_uri differs", r, 400, "invalid_grant")

		// Code reuse: refused, and the tokens of the first redemption lose
		// their refresh chain.
		a, cd = code()
		r, first := st.redeem(t, a, cd)
		if r.status != 200 {
			t.Fatalf("first redemption: %d %s", r.status, r.body)
		}
		r, _ = st.redeem(t, a, cd)
		wantOAuthError(t, "code reuse", r, 400, "invalid_grant")
		r, _ = st.refreshFor(t, id, first.RefreshToken)
		wantOAuthError(t, "refresh after code reuse", r, 400, "invalid_grant")

		a, cd = code()
		r, tk := st.redeem(t, a, cd)
		if r.status != 200 {
			t.Fatalf("redemption: %d %s", r.status, r.body)
		}
		r, _ = st.refreshFor(t, other, tk.RefreshToken)
		wantOAuthError(t, "refresh by another client", r, 400, "invalid_grant")
		r, _ = st.refresh(t, tk.RefreshToken)
		wantOAuthError(t, "client's handle at /auth/refresh", r, 400, "invalid_grant")

		// A client-bound code is no good at /auth/exchange.
		a, cd = code()
		r, _ = st.exchange(t, cd, a.verifier)
		wantOAuthError(t, "client code at /auth/exchange", r, 400, "invalid_grant")

		for name, tc := range map[string]struct {
			form   url.Values
			status int
			code   string
		}{
			"unknown client":      {url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "client_id": {"AAAAAAAAAAAAAAAAAAAAAAAAAA"}, "redirect_uri": {clientRedirect}, "code_verifier": {a.verifier}}, 400, "invalid_client"},
			"client secret sent":  {url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "client_id": {id}, "client_secret": {"s"}}, 400, "invalid_client"},
			"no client_id":        {url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, 400, "invalid_request"},
			"no grant_type":       {url.Values{"client_id": {id}}, 400, "invalid_request"},
			"password grant":      {url.Values{"grant_type": {"password"}, "client_id": {id}}, 400, "unsupported_grant_type"},
			"client_credentials":  {url.Values{"grant_type": {"client_credentials"}, "client_id": {id}}, 400, "unsupported_grant_type"},
			"no verifier":         {url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "client_id": {id}, "redirect_uri": {clientRedirect}}, 400, "invalid_request"},
			"unknown code":        {url.Values{"grant_type": {"authorization_code"}, "code": {rand.Text()}, "client_id": {id}, "redirect_uri": {clientRedirect}, "code_verifier": {a.verifier}}, 400, "invalid_grant"},
			"unknown refresh":     {url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_id": {id}}, 400, "invalid_grant"},
			"wrong resource":      {url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_id": {id}, "resource": {"https://other.example"}}, 400, "invalid_target"},
			"wider refresh scope": {url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_id": {id}, "scope": {"Mail.Read"}}, 400, "invalid_scope"},
		} {
			t.Run(name, func(t *testing.T) {
				r, _ := st.tokenReq(t, "/oauth/token", tc.form)
				wantOAuthError(t, name, r, tc.status, tc.code)
			})
		}
		r = st.do(t, http.MethodPost, "/oauth/token", "", map[string]string{"Content-Type": "application/x-www-form-urlencoded",
			"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":secret"))}, "grant_type=refresh_token&refresh_token=x&client_id="+id)
		wantOAuthError(t, "client_secret_basic", r, 401, "invalid_client")
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("client_secret_basic: WWW-Authenticate %q, want the Basic scheme (RFC 6749 §5.2)", r.header.Get("WWW-Authenticate"))
		}
		r = st.do(t, http.MethodPost, "/oauth/token", "", map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
			"grant_type=refresh_token&grant_type=authorization_code&client_id="+id)
		wantOAuthError(t, "parameter twice", r, 400, "invalid_request")
		r = st.do(t, http.MethodPost, "/oauth/token", "", nil, `{"grant_type":"refresh_token"}`)
		wantOAuthError(t, "JSON body", r, 400, "invalid_request")
	})

	t.Run("remembered consent is for the user who gave it", func(t *testing.T) {
		c := browser(t)
		st.authorize(t, c, st.newAuthRequest(t, id), "all")
		// Same browser, consent remembered, but another account signs in.
		a := st.newAuthRequest(t, id)
		r := get(t, c, a.url(st.base))
		if r.status != http.StatusFound {
			t.Fatalf("remembered consent: %d", r.status)
		}
		cb, err := st.idp.SignIn(context.Background(), r.header.Get("Location"), "reader")
		if err != nil {
			t.Fatal(err)
		}
		r = get(t, c, cb)
		q := clientLanding(t, r.header.Get("Location"), clientRedirect)
		if q.Get("error") != "access_denied" || q.Get("code") != "" {
			t.Errorf("other user with remembered consent: %v", q)
		}
		// Forgotten: the next request asks again.
		if r := get(t, c, st.newAuthRequest(t, id).url(st.base)); r.status != http.StatusOK {
			t.Errorf("after a refused remembered consent: %d, want the consent page", r.status)
		}
	})

	t.Run("an admin's revocation ends remembered consent", func(t *testing.T) {
		c := browser(t)
		st.authorize(t, c, st.newAuthRequest(t, id), "writer")
		if r := get(t, c, st.newAuthRequest(t, id).url(st.base)); r.status != http.StatusFound {
			t.Fatalf("remembered consent: %d", r.status)
		}
		writer, _ := devidp.DemoUser("writer")
		res := st.rpc(t, st.token(t, "admin"), `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"revoke_sessions","arguments":{"oid":"`+writer.ObjectID+`"}}}`)
		if _, isErr := callText(t, res); isErr {
			t.Fatalf("revoke_sessions: %v", res)
		}
		if r := get(t, c, st.newAuthRequest(t, id).url(st.base)); r.status != http.StatusOK {
			t.Errorf("after revoke_sessions: %d, want the consent page again", r.status)
		}
	})

	t.Run("registration", func(t *testing.T) {
		for name, tc := range map[string]struct {
			body, code string
		}{
			"no redirect_uris":        {`{"client_name":"x"}`, "invalid_redirect_uri"},
			"http redirect elsewhere": {`{"redirect_uris":["http://attacker.example/cb"]}`, "invalid_redirect_uri"},
			"fragment in redirect":    {`{"redirect_uris":["https://app.example/cb#x"]}`, "invalid_redirect_uri"},
			"secret auth method":      {`{"redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"client_secret_basic"}`, "invalid_client_metadata"},
			"not JSON":                {`redirect_uris=x`, "invalid_client_metadata"},
		} {
			t.Run(name, func(t *testing.T) {
				r := st.do(t, http.MethodPost, "/oauth/register", "", nil, tc.body)
				wantOAuthError(t, name, r, 400, tc.code)
			})
		}
	})
}

// registerFrom posts a registration from a client address.
func (st *stack) registerFrom(t testing.TB, addr string) reply {
	t.Helper()
	return st.do(t, http.MethodPost, "/oauth/register", "", map[string]string{"X-Forwarded-For": addr},
		`{"redirect_uris":["`+clientRedirect+`"]}`)
}

// TestOAuthRegistrationLimit: every registration is stored, and anyone may
// register, so one address gets 20 an hour; nothing counts all addresses
// together, so another address is never refused for what others did.
func TestOAuthRegistrationLimit(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Redis(t))
	for i := range 20 {
		if r := st.registerFrom(t, "203.0.113.7"); r.status != http.StatusCreated {
			t.Fatalf("registration %d: %d %s", i+1, r.status, r.body)
		}
	}
	r := st.registerFrom(t, "203.0.113.7")
	wantOAuthError(t, "21st registration from one address", r, http.StatusTooManyRequests, "slow_down")
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	// Once took the server-wide burst of 100 and refused everyone with 503.
	for n := range 5 {
		for range 20 {
			st.registerFrom(t, fmt.Sprintf("2001:db8:7:%d::1", n))
		}
	}
	if r := st.registerFrom(t, "203.0.113.8"); r.status != http.StatusCreated {
		t.Errorf("another address after 120 registrations from others: %d %s", r.status, r.body)
	}
}

// TestOAuthRegistrationSquatting: registrations from several /64s of one
// /48 and from many addresses fill the budget of unused registrations;
// a client from another address still registers and signs in, since the
// oldest squatters are evicted, not the newcomer, and a client that signed
// in leaves the budget.
func TestOAuthRegistrationSquatting(t *testing.T) {
	t.Parallel()
	const budget = 30
	rdb := storetest.Redis(t)
	st := newStackFull(t, rdb, nil, func(o *Options, _ *devidp.Server) { o.pendingRegistrations = budget })
	// squat registers from each address until it is refused (20 an hour
	// per address; per /48 for IPv6 once limits group by /48) and returns
	// the ids, oldest first.
	squat := func(addrs ...string) []string {
		var ids []string
		for _, addr := range addrs {
			for {
				r := st.registerFrom(t, addr)
				if r.status == http.StatusTooManyRequests {
					break
				}
				var c struct {
					ClientID string `json:"client_id"`
				}
				if r.status != http.StatusCreated || json.Unmarshal(r.body, &c) != nil {
					t.Fatalf("squatting from %s: %d %s", addr, r.status, r.body)
				}
				ids = append(ids, c.ClientID)
			}
		}
		return ids
	}
	var addrs []string
	for n := range 4 {
		addrs = append(addrs, fmt.Sprintf("2001:db8:5:%x::%d", n, n+1)) // four /64s of one /48
	}
	for n := range 2 {
		addrs = append(addrs, fmt.Sprintf("198.51.100.%d", n+1))
	}
	first := squat(addrs...)
	if len(first) <= budget {
		t.Fatalf("only %d squatting registrations; the test needs more than the budget, %d", len(first), budget)
	}
	if n := rdb.HLen(context.Background(), "oauthclients:{pending}").Val(); n != budget {
		t.Errorf("%d pending registrations; want the budget, %d", n, budget)
	}

	// The victim registers from elsewhere, and squatters go on.
	id := st.register(t, "Victim", clientRedirect)
	more := squat("198.51.100.3")
	if len(more) >= budget {
		t.Fatalf("%d more squatting registrations: the victim's is gone, the test needs fewer", len(more))
	}
	c := browser(t)
	a := st.newAuthRequest(t, id)
	got := st.authorize(t, c, a, "all")
	r, tk := st.redeem(t, a, got.Get("code"))
	if r.status != http.StatusOK || tk.AccessToken == "" {
		t.Fatalf("the victim's sign-in: %d %s", r.status, r.body)
	}

	// The oldest squatters were evicted: their registrations are unknown.
	old := st.newAuthRequest(t, first[0])
	if p := get(t, browser(t), old.url(st.base)); p.status != http.StatusBadRequest || !strings.Contains(string(p.body), "unknown client") {
		t.Errorf("the oldest squatter's registration: %d; want an unknown-client page", p.status)
	}

	// Signed in, the victim no longer counts against the budget: a whole
	// budget more of squatting does not touch it.
	for n := range 2 {
		squat(fmt.Sprintf("198.51.100.%d", n+10))
	}
	if r, _ := st.refreshFor(t, id, tk.RefreshToken); r.status != http.StatusOK {
		t.Errorf("the victim's refresh after more squatting: %d %s", r.status, r.body)
	}
}

// TestOAuthExtraRedirectSchemes: a custom scheme without a dot (Cursor's)
// is refused unless the operator lists it; then its errors go straight
// back to the app, which lives on the user's machine.
func TestOAuthExtraRedirectSchemes(t *testing.T) {
	t.Parallel()
	const cursor = "cursor://anysphere.cursor-mcp/oauth/callback"
	body := `{"redirect_uris":["` + cursor + `"]}`
	st := newStack(t, storetest.Mini(t))
	wantOAuthError(t, "cursor:// by default", st.do(t, http.MethodPost, "/oauth/register", "", nil, body), 400, "invalid_redirect_uri")

	st = newStackWith(t, storetest.Mini(t), func(c *config.Config, _ *devidp.Options) { c.OAuth.ExtraRedirectSchemes = []string{"cursor"} })
	id := st.register(t, "Cursor", cursor)
	a := st.newAuthRequest(t, id)
	a.redirect = cursor
	page := get(t, browser(t), a.url(st.base))
	if page.status != http.StatusOK || !strings.Contains(string(page.body), "<code>cursor://anysphere.cursor-mcp</code>") {
		t.Errorf("consent page for a cursor:// client: %d", page.status)
	}
	a.extra = url.Values{"code_challenge_method": {"plain"}}
	r := get(t, browser(t), a.url(st.base))
	if r.status != http.StatusFound || !strings.HasPrefix(r.header.Get("Location"), cursor+"?") {
		t.Errorf("error for a cursor:// client: %d %q", r.status, r.header.Get("Location"))
	}
}

// TestOAuthRequestTooLargeForTheSignIn: a request whose sign-in would not
// fit in its cookie is refused before the consent page, not after the
// user approved it.
func TestOAuthRequestTooLargeForTheSignIn(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Redis(t))
	long := "http://127.0.0.1:7777/" + strings.Repeat("p", 1900)
	id := st.register(t, "Long", long)
	a := st.newAuthRequest(t, id)
	a.redirect = long
	a.state = strings.Repeat("s", 1000)
	r := get(t, browser(t), a.url(st.base))
	q := clientLanding(t, r.header.Get("Location"), long)
	if r.status != http.StatusFound || q.Get("error") != "invalid_request" || !strings.Contains(q.Get("error_description"), "too large") {
		t.Fatalf("a request too large for the sign-in: %d %v", r.status, q)
	}
	// A request within bounds with the same client still works.
	a.state = rand.Text()
	if r := get(t, browser(t), a.url(st.base)); r.status != http.StatusOK {
		t.Fatalf("the same client with a short state: %d", r.status)
	}
}

// TestOAuthWithoutState: state is optional where PKCE is required (OAuth
// 2.1), and the TypeScript SDK sends none unless its provider makes one. A
// client without it signs in through the consent page, the remembered
// consent and the callback, and hears errors, with iss and no state.
func TestOAuthWithoutState(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Redis(t))
	id := st.register(t, "Stateless", clientRedirect)
	stateless := func() authRequest {
		a := st.newAuthRequest(t, id)
		a.state = ""
		a.extra = url.Values{"state": {""}}
		return a
	}
	// wantNoState checks what the client's redirect URI got: iss, no state.
	wantNoState := func(t *testing.T, what string, q url.Values) {
		t.Helper()
		if q.Has("state") || q.Get("iss") != st.base {
			t.Errorf("%s: the client got %v, want iss=%s and no state", what, q, st.base)
		}
	}

	t.Run("no state: code and iss, no state, through consent and remembered consent", func(t *testing.T) {
		c := browser(t)
		for _, what := range []string{"consent page", "remembered consent"} {
			a := stateless()
			if what == "remembered consent" {
				if r := get(t, c, a.url(st.base)); r.status != http.StatusFound {
					t.Fatalf("remembered consent: %d, want a redirect to Entra", r.status)
				}
			}
			got := st.authorize(t, c, a, "all")
			wantNoState(t, what, got)
			if r, tk := st.redeem(t, a, got.Get("code")); r.status != http.StatusOK || tk.AccessToken == "" {
				t.Fatalf("%s: token: %d %s", what, r.status, r.body)
			}
		}
	})

	t.Run("error without state: error and iss, no state", func(t *testing.T) {
		a := stateless()
		a.extra.Set("code_challenge_method", "plain")
		r := get(t, browser(t), a.url(st.base))
		q := clientLanding(t, r.header.Get("Location"), clientRedirect)
		if r.status != http.StatusFound || q.Get("error") != "invalid_request" {
			t.Errorf("plain PKCE without state: %d %v", r.status, q)
		}
		wantNoState(t, "refused request", q)
	})

	t.Run("denied without state: access_denied and iss, no state", func(t *testing.T) {
		c := browser(t)
		request, csrf := st.consent(t, c, stateless())
		r := st.decide(t, c, url.Values{"request": {request}, "csrf_token": {csrf}, "decision": {"deny"}}, st.base)
		q := clientLanding(t, r.header.Get("Location"), clientRedirect)
		if r.status != http.StatusFound || q.Get("error") != "access_denied" {
			t.Errorf("deny: %d %v", r.status, q)
		}
		wantNoState(t, "denied request", q)
	})

	t.Run("sign-in cancelled at Entra without state: access_denied and iss, no state", func(t *testing.T) {
		c := browser(t)
		request, csrf := st.consent(t, c, stateless())
		r := st.decide(t, c, url.Values{"request": {request}, "csrf_token": {csrf}, "decision": {"approve"}}, st.base)
		cb, err := st.idp.CancelSignIn(context.Background(), r.header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		q := clientLanding(t, get(t, c, cb).header.Get("Location"), clientRedirect)
		if q.Get("error") != "access_denied" || q.Get("code") != "" {
			t.Errorf("cancel: %v", q)
		}
		wantNoState(t, "cancelled sign-in", q)
	})
}

// TestOAuthResourceIndicators: RFC 8707 at /oauth/authorize and
// /oauth/token. Our MCP endpoint's URL is accepted with its scheme and host
// in any case (the MCP spec's canonical server URI rules), its path only
// exactly. Several resource parameters are allowed by RFC 8707 §2: the
// same resource twice is served, another one besides ours is invalid_target
// (this server issues tokens for one resource), never invalid_request.
func TestOAuthResourceIndicators(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Redis(t))
	id := st.register(t, "Resources", clientRedirect)
	ours := st.base + "/mcp"
	upper := "HTTP" + strings.TrimPrefix(ours, "http")
	other := "https://graph.microsoft.com"

	t.Run("authorize", func(t *testing.T) {
		for name, tc := range map[string]struct {
			resource []string
			code     string // "" for the consent page
		}{
			"upper-case scheme":            {[]string{upper}, ""},
			"ours twice":                   {[]string{ours, ours}, ""},
			"ours in two spellings":        {[]string{ours, upper}, ""},
			"ours and another":             {[]string{ours, other}, "invalid_target"},
			"another and ours":             {[]string{other, ours}, "invalid_target"},
			"path in another case":         {[]string{st.base + "/MCP"}, "invalid_target"},
			"trailing slash":               {[]string{ours + "/"}, "invalid_target"},
			"with a fragment":              {[]string{ours + "#x"}, "invalid_target"},
			"not an absolute URI":          {[]string{"/mcp"}, "invalid_target"},
			"the server, not the endpoint": {[]string{st.base}, "invalid_target"},
		} {
			t.Run(name, func(t *testing.T) {
				a := st.newAuthRequest(t, id)
				a.extra = url.Values{"resource": tc.resource}
				r := get(t, browser(t), a.url(st.base))
				if tc.code == "" {
					if r.status != http.StatusOK || testkit.FormFields(string(r.body), "request").Get("request") == "" {
						t.Errorf("%s: %d %s, want the consent page", name, r.status, r.header.Get("Location"))
					}
					return
				}
				q := clientLanding(t, r.header.Get("Location"), clientRedirect)
				if r.status != http.StatusFound || q.Get("error") != tc.code || q.Get("state") != a.state {
					t.Errorf("%s: %d %v, want %s", name, r.status, q, tc.code)
				}
			})
		}
	})

	t.Run("token", func(t *testing.T) {
		// A whole sign-in whose code is redeemed naming the resource in
		// upper case: the token is issued.
		a := st.newAuthRequest(t, id)
		a.extra = url.Values{"resource": {upper}}
		code := st.authorize(t, browser(t), a, "all").Get("code")
		r, tk := st.tokenReq(t, "/oauth/token", url.Values{
			"grant_type": {"authorization_code"}, "code": {code}, "client_id": {id},
			"redirect_uri": {a.redirect}, "code_verifier": {a.verifier}, "resource": {upper},
		})
		if r.status != http.StatusOK || tk.AccessToken == "" || tk.RefreshToken == "" {
			t.Fatalf("redeem with an upper-case scheme: %d %s", r.status, r.body)
		}
		refresh := func(resource ...string) reply {
			r, _ := st.tokenReq(t, "/oauth/token", url.Values{"grant_type": {"refresh_token"},
				"refresh_token": {tk.RefreshToken}, "client_id": {id}, "resource": resource})
			if r.status == http.StatusOK {
				_ = json.Unmarshal(r.body, &tk)
			}
			return r
		}
		if r := refresh(ours, upper); r.status != http.StatusOK {
			t.Errorf("refresh naming our resource twice: %d %s", r.status, r.body)
		}
		wantOAuthError(t, "refresh naming ours and another", refresh(ours, other), http.StatusBadRequest, "invalid_target")
		wantOAuthError(t, "refresh naming another", refresh(other), http.StatusBadRequest, "invalid_target")
		wantOAuthError(t, "refresh naming our path in another case", refresh(st.base+"/MCP"), http.StatusBadRequest, "invalid_target")
		// Refused, the handle is still good.
		if r := refresh(ours); r.status != http.StatusOK {
			t.Errorf("refresh after refused ones: %d %s", r.status, r.body)
		}
	})
}
