package oauthserver

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/grants"
	"github.com/entra-mcp/functions-mcp/handler/internal/standin"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/oauthclients"
	"github.com/entra-mcp/functions-mcp/handler/oautherr"
	"github.com/entra-mcp/functions-mcp/handler/ratelimit"
	"github.com/entra-mcp/functions-mcp/handler/signin"
	"github.com/entra-mcp/functions-mcp/handler/store"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
)

// The front under test is the real one, over real HTTP, with the real
// sign-in service (its Entra the stand-in), grants, client registry and
// Redis. Only the end of a sign-in is driven directly: Continue is what the
// sign-in service calls once Entra accepted a user, and the full browser
// walk through Entra is handler/app's test.

const (
	loopbackRedirect = "http://127.0.0.1:7777/callback"  // trusted: errors go there by redirect
	webRedirect      = "https://client.example/callback" // not trusted: errors are a page with a link
	tid              = "11111111-2222-3333-4444-555555555555"
	oid              = "66666666-7777-8888-9999-000000000000"
	verifier         = "a-client-verifier-that-is-long-enough-to-be-one-0123456789"
)

type front struct {
	t        *testing.T
	base     string
	server   *Server
	sessions *store.Sessions
	records  *grants.Records
	http     *http.Client
}

// newFront starts the front on a test server of its own.
func newFront(t *testing.T) *front {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	idp, ids := standin.Start(t, devidp.Options{RedirectURIs: []string{base + "/auth/callback"}})
	ring := testkit.Ring(t)
	rdb := storetest.Redis(t)
	sessions := store.NewSessions(rdb, ring)
	records := grants.NewRecords(rdb, ring)
	limit := func(name string) *ratelimit.Limiter {
		return ratelimit.New(rdb, "front-test-"+name, 1000, time.Second, 1000)
	}
	cred, _ := confidential.NewCredFromSecret(idp.ClientSecret())
	si, err := signin.New(signin.Options{
		PublicBaseURL: base,
		Entra: config.Entra{TenantID: idp.TenantID(), ClientID: idp.ClientID(), AuthorityHost: idp.AuthorityHost(),
			AllowedTenants: []string{idp.TenantID()}, TokenVersion: 2, AppIDURI: "api://" + idp.ClientID()},
		Credential: cred, HTTPClient: idp.HTTPClient(), Sessions: sessions, Records: records, Sealer: ring, IDTokens: ids,
		Limits: signin.Limits{SignIn: limit("signin"), Callback: limit("callback"), Failures: limit("failures"), Refresh: limit("refresh")},
	})
	if err != nil {
		t.Fatal(err)
	}
	clients, err := oauthclients.New(oauthclients.Options{Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{
		Issuer: base, Resource: base + "/mcp", Scope: "api://" + idp.ClientID() + "/access_as_user",
		Clients: clients, SignIn: si, Grants: si.Grants(), Consents: sessions, Sealer: ring,
		Limiter: limit("oauth"), Registrations: limit("register"),
	})
	if err != nil {
		t.Fatal(err)
	}
	si.HandOffTo(s)

	mux := http.NewServeMux()
	mux.HandleFunc(PathMetadata, s.Metadata)
	mux.HandleFunc(PathAuthorize, s.Authorize)
	mux.HandleFunc(PathToken, s.Token)
	mux.HandleFunc(PathRegister, s.Register)
	mux.HandleFunc(PathRevoke, s.Revoke)
	mux.HandleFunc("/auth/callback", si.Callback)
	testkit.Serve(t, ln, mux)
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &front{t: t, base: base, server: s, sessions: sessions, records: records, http: hc}
}

// reply is an endpoint's answer.
type reply = testkit.Reply

// location is the target of r, a redirect.
func location(t *testing.T, r reply) *url.URL {
	t.Helper()
	u, err := url.Parse(r.Header.Get("Location"))
	if err != nil || r.Status != http.StatusFound {
		t.Fatalf("not a redirect: %d %v %s", r.Status, r.Header, r.Body)
	}
	return u
}

func (f *front) do(req *http.Request) reply {
	f.t.Helper()
	return testkit.Do(f.t, f.http, req)
}

func (f *front) post(path, contentType, body string, header http.Header) reply {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	for k, v := range header {
		req.Header[k] = v
	}
	return f.do(req)
}

func (f *front) form(path string, v url.Values) reply {
	f.t.Helper()
	return f.post(path, "application/x-www-form-urlencoded", v.Encode(), nil)
}

func (f *front) get(path string, q url.Values) reply {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.base+path+"?"+q.Encode(), nil)
	return f.do(req)
}

// register registers a client with the redirect URIs, for both grants, and
// returns its id.
func (f *front) register(redirects ...string) string {
	f.t.Helper()
	return f.registerFor([]string{"authorization_code", "refresh_token"}, redirects...)
}

func (f *front) registerFor(grantTypes []string, redirects ...string) string {
	f.t.Helper()
	body, _ := json.Marshal(map[string]any{"client_name": "Test client", "redirect_uris": redirects, "grant_types": grantTypes})
	r := f.post(PathRegister, "application/json", string(body), nil)
	var c struct {
		ClientID string `json:"client_id"`
	}
	if r.Status != http.StatusCreated || json.Unmarshal([]byte(r.Body), &c) != nil || c.ClientID == "" {
		f.t.Fatalf("register: %d %s", r.Status, r.Body)
	}
	return c.ClientID
}

func challengeOf(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// signedIn ends a sign-in handed off for the request as the sign-in
// service does once Entra accepted the user, and returns the redirect to
// the client.
func (f *front) signedIn(c clientSignIn, failure *oautherr.Error) reply {
	f.t.Helper()
	handoff, _ := json.Marshal(c)
	user := signin.SignedIn{TenantID: tid, ObjectID: oid, Grant: grants.CodeRecord{
		TenantID: tid, ObjectID: oid, HomeAccountID: oid + "." + tid, Scope: f.server.opts.Scope,
		AccessToken: "an-access-token", ExpiresOn: time.Now().Add(time.Hour),
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.server.Continue(w, r, handoff, user, failure)
	}))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/auth/callback", nil)
	return f.do(req)
}

// code gets a one-time code for client at redirect, bound to verifier.
func (f *front) code(client, redirect string) string {
	f.t.Helper()
	r := f.signedIn(clientSignIn{authRequest: authRequest{ClientID: client, RedirectURI: redirect, State: "st",
		Challenge: challengeOf(verifier), Scope: f.server.opts.Scope}}, nil)
	q := location(f.t, r).Query()
	if q.Get("code") == "" || q.Get("state") != "st" || q.Get("iss") != f.base {
		f.t.Fatalf("no code: %v", q)
	}
	return q.Get("code")
}

func TestMetadata(t *testing.T) {
	t.Parallel()
	f := newFront(t)
	r := f.get(PathMetadata, nil)
	var m metadata
	if r.Status != http.StatusOK || json.Unmarshal([]byte(r.Body), &m) != nil {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	if m.Issuer != f.base || m.TokenEndpoint != f.base+PathToken || m.AuthorizationEndpoint != f.base+PathAuthorize ||
		m.RegistrationEndpoint != f.base+PathRegister || m.RevocationEndpoint != f.base+PathRevoke {
		t.Errorf("endpoints %+v", m)
	}
	if strings.Join(m.CodeChallengeMethodsSupported, ",") != "S256" || strings.Join(m.TokenEndpointAuthMethodsSupported, ",") != "none" ||
		!m.AuthorizationResponseIssParameterSupported || !m.ClientIDMetadataDocumentSupported {
		t.Errorf("capabilities %+v", m)
	}
	if r.Header.Get("Cache-Control") != "public, max-age=3600" {
		t.Errorf("Cache-Control %q", r.Header.Get("Cache-Control"))
	}
}

func TestRegister(t *testing.T) {
	t.Parallel()
	f := newFront(t)
	for _, tc := range []struct {
		name, contentType, body string
		status                  int
		code                    string
	}{
		{"not JSON", "application/x-www-form-urlencoded", "redirect_uris=x", http.StatusUnsupportedMediaType, oautherr.InvalidClientMetadata},
		{"too large", "application/json", `{"client_name":"` + strings.Repeat("n", oauthclients.MaxRegistrationBytes) + `"}`,
			http.StatusRequestEntityTooLarge, oautherr.InvalidClientMetadata},
		{"no redirect URI", "application/json", `{"client_name":"x"}`, http.StatusBadRequest, oautherr.InvalidRedirectURI},
		{"a redirect URI over plain http elsewhere", "application/json", `{"redirect_uris":["http://client.example/cb"]}`,
			http.StatusBadRequest, oautherr.InvalidRedirectURI},
		{"registered", "application/json", `{"client_name":"x","redirect_uris":["` + loopbackRedirect + `"]}`, http.StatusCreated, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.post(PathRegister, tc.contentType, tc.body, nil)
			if r.Status != tc.status || r.OAuth.Error != tc.code {
				t.Fatalf("%d %s; want %d %q", r.Status, r.Body, tc.status, tc.code)
			}
			if r.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q", r.Header.Get("Cache-Control"))
			}
		})
	}
}

// authorizeQuery is a valid authorization request of client at redirect.
func (f *front) authorizeQuery(client, redirect string) url.Values {
	return url.Values{"client_id": {client}, "redirect_uri": {redirect}, "response_type": {"code"}, "state": {"st"},
		"code_challenge": {challengeOf(verifier)}, "code_challenge_method": {"S256"}, "scope": {f.server.opts.Scope},
		"resource": {f.base + "/mcp"}}
}

func TestAuthorize(t *testing.T) {
	t.Parallel()
	f := newFront(t)
	client := f.register(loopbackRedirect, webRedirect)

	t.Run("until client and redirect URI are known good, errors are pages", func(t *testing.T) {
		for name, change := range map[string]url.Values{
			"no client_id":            {"client_id": {""}},
			"unknown client":          {"client_id": {"AAAAAAAAAAAAAAAAAAAAAAAAAA"}},
			"no redirect_uri":         {"redirect_uri": {""}},
			"redirect_uri elsewhere":  {"redirect_uri": {"https://attacker.example/callback"}},
			"client_id twice":         {"client_id": {client, client}},
			"redirect_uri on another": {"redirect_uri": {"http://127.0.0.1:7777/other"}},
		} {
			t.Run(name, func(t *testing.T) {
				q := f.authorizeQuery(client, loopbackRedirect)
				for k, v := range change {
					q[k] = v
				}
				r := f.get(PathAuthorize, q)
				if r.Status != http.StatusBadRequest || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") || r.Header.Get("Location") != "" {
					t.Fatalf("%d %v", r.Status, r.Header)
				}
			})
		}
	})

	refusals := []struct {
		name   string
		change url.Values
		code   string
	}{
		{"no response_type", url.Values{"response_type": {""}}, oautherr.InvalidRequest},
		{"response_type token", url.Values{"response_type": {"token"}}, oautherr.UnsupportedResponseType},
		{"no code_challenge", url.Values{"code_challenge": {""}}, oautherr.InvalidRequest},
		{"plain PKCE", url.Values{"code_challenge_method": {"plain"}}, oautherr.InvalidRequest},
		{"a challenge of the wrong shape", url.Values{"code_challenge": {"short"}}, oautherr.InvalidRequest},
		{"another resource", url.Values{"resource": {"https://other.example/mcp"}}, oautherr.InvalidTarget},
		{"another scope", url.Values{"scope": {"api://other/.default"}}, oautherr.InvalidScope},
		{"a parameter twice", url.Values{"scope": {"openid", "profile"}}, oautherr.InvalidRequest},
		{"state too long", url.Values{"state": {strings.Repeat("s", maxState+1)}}, oautherr.InvalidRequest},
	}
	t.Run("then errors go to a trusted redirect URI", func(t *testing.T) {
		for _, tc := range refusals {
			t.Run(tc.name, func(t *testing.T) {
				q := f.authorizeQuery(client, loopbackRedirect)
				for k, v := range tc.change {
					q[k] = v
				}
				back := location(t, f.get(PathAuthorize, q))
				got := back.Query()
				wantState := "st"
				if tc.change.Has("state") {
					wantState = "" // too long to send back
				}
				if back.Host != "127.0.0.1:7777" || got.Get("error") != tc.code || got.Get("error_description") == "" ||
					got.Get("state") != wantState || got.Get("iss") != f.base {
					t.Fatalf("%v", back)
				}
			})
		}
	})
	t.Run("and to any other through a page with a link", func(t *testing.T) {
		for _, tc := range refusals[:3] {
			t.Run(tc.name, func(t *testing.T) {
				q := f.authorizeQuery(client, webRedirect)
				for k, v := range tc.change {
					q[k] = v
				}
				r := f.get(PathAuthorize, q)
				if r.Status != http.StatusBadRequest || r.Header.Get("Location") != "" ||
					!strings.Contains(r.Body, `href="`+webRedirect+`?`) ||
					!strings.Contains(r.Body, "error="+tc.code) {
					t.Fatalf("%d %s", r.Status, r.Body)
				}
			})
		}
	})
	t.Run("a good request asks for consent", func(t *testing.T) {
		r := f.get(PathAuthorize, f.authorizeQuery(client, loopbackRedirect))
		if r.Status != http.StatusOK || !strings.Contains(r.Body, `name="request"`) || !strings.Contains(r.Body, `id="client-name">Test client<`) {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action") {
			t.Errorf("CSP %q", csp)
		}
	})
}

// consent shows the consent page for a request and returns the form's
// hidden fields and the browser-binding cookie.
func (f *front) consent(q url.Values) (url.Values, *http.Cookie) {
	f.t.Helper()
	r := f.get(PathAuthorize, q)
	form := testkit.FormFields(r.Body, "request", "csrf_token")
	var bind *http.Cookie
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if strings.HasSuffix(c.Name, "mcp-authorize") {
			bind = c
		}
	}
	if r.Status != http.StatusOK || len(form) != 2 || bind == nil {
		f.t.Fatalf("consent page: %d %v %s", r.Status, r.Header, r.Body)
	}
	return form, bind
}

func TestConsentForm(t *testing.T) {
	t.Parallel()
	f := newFront(t)
	client := f.register(loopbackRedirect)
	answer := func(form url.Values, bind *http.Cookie, origin string) reply {
		req, _ := http.NewRequest(http.MethodPost, f.base+PathAuthorize, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if bind != nil {
			req.AddCookie(bind)
		}
		return f.do(req)
	}
	with := func(form url.Values, k, v string) url.Values {
		c := url.Values{}
		for key, vs := range form {
			c[key] = vs
		}
		c.Set(k, v)
		return c
	}

	t.Run("deny goes back to the client with access_denied", func(t *testing.T) {
		form, bind := f.consent(f.authorizeQuery(client, loopbackRedirect))
		q := location(t, answer(with(form, "decision", "deny"), bind, f.base)).Query()
		if q.Get("error") != oautherr.AccessDenied || q.Get("state") != "st" || q.Get("iss") != f.base {
			t.Fatalf("%v", q)
		}
	})
	t.Run("approve sends the browser to Entra", func(t *testing.T) {
		form, bind := f.consent(f.authorizeQuery(client, loopbackRedirect))
		to := location(t, answer(with(form, "decision", "approve"), bind, f.base))
		if to.Query().Get("code_challenge_method") != "S256" || to.Query().Get("state") == "" || strings.HasPrefix(to.String(), f.base) {
			t.Fatalf("%v", to)
		}
	})
	t.Run("refused", func(t *testing.T) {
		form, bind := f.consent(f.authorizeQuery(client, loopbackRedirect))
		approve := with(form, "decision", "approve")
		for _, tc := range []struct {
			name   string
			form   url.Values
			bind   *http.Cookie
			origin string
			status int
		}{
			{"from another origin", approve, bind, "https://attacker.example", http.StatusForbidden},
			{"without the binding cookie", approve, nil, f.base, http.StatusForbidden},
			{"with another CSRF token", with(approve, "csrf_token", "forged"), bind, f.base, http.StatusForbidden},
			{"with a forged request", with(approve, "request", "Zm9yZ2Vk"), bind, f.base, http.StatusBadRequest},
			{"with another decision", with(form, "decision", "maybe"), bind, f.base, http.StatusBadRequest},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if r := answer(tc.form, tc.bind, tc.origin); r.Status != tc.status || r.Header.Get("Location") != "" {
					t.Fatalf("%d %v", r.Status, r.Header)
				}
			})
		}
		t.Run("not form encoded", func(t *testing.T) {
			r := f.post(PathAuthorize, "application/json", "{}", http.Header{"Origin": {f.base}})
			if r.Status != http.StatusUnsupportedMediaType {
				t.Fatalf("%d", r.Status)
			}
		})
		t.Run("too large", func(t *testing.T) {
			r := answer(with(approve, "padding", strings.Repeat("p", maxConsentFormBody)), bind, f.base)
			if r.Status != http.StatusBadRequest {
				t.Fatalf("%d", r.Status)
			}
		})
	})
}

// TestContinue: how a handed-off sign-in ends at the client.
func TestContinue(t *testing.T) {
	t.Parallel()
	f := newFront(t)
	client := f.register(loopbackRedirect)
	req := clientSignIn{authRequest: authRequest{ClientID: client, RedirectURI: loopbackRedirect, State: "st",
		Challenge: challengeOf(verifier), Scope: f.server.opts.Scope}}
	t.Run("a hand-off without a redirect URI is our bug: a page, no redirect", func(t *testing.T) {
		if r := f.signedIn(clientSignIn{}, nil); r.Status != http.StatusInternalServerError || r.Header.Get("Retry-After") != "" || r.Header.Get("Location") != "" {
			t.Fatalf("%d %v", r.Status, r.Header)
		}
	})
	t.Run("a sign-in that failed passes its error on", func(t *testing.T) {
		q := location(t, f.signedIn(req, oautherr.New(oautherr.TemporarilyUnavailable, "the sign-in with Entra ID was not completed"))).Query()
		if q.Get("error") != oautherr.TemporarilyUnavailable || q.Get("state") != "st" || q.Has("code") {
			t.Fatalf("%v", q)
		}
	})
	t.Run("a remembered approval of another user is refused and forgotten", func(t *testing.T) {
		other := req
		other.ConsentUser = "99999999-2222-3333-4444-555555555555." + oid
		r := f.signedIn(other, nil)
		q := location(t, r).Query()
		if q.Get("error") != oautherr.AccessDenied || q.Has("code") {
			t.Fatalf("%v", q)
		}
		if c := r.Header.Get("Set-Cookie"); !strings.Contains(c, "mcp-consent=;") {
			t.Errorf("consent cookie not cleared: %q", c)
		}
	})
	t.Run("a sign-in gives the client a code and remembers the approval", func(t *testing.T) {
		r := f.signedIn(req, nil)
		q := location(t, r).Query()
		if q.Get("code") == "" || q.Get("state") != "st" || q.Get("iss") != f.base {
			t.Fatalf("%v", q)
		}
		var browser string
		for _, c := range (&http.Response{Header: r.Header}).Cookies() {
			if strings.HasSuffix(c.Name, "mcp-consent") {
				browser = c.Value
			}
		}
		user, err := f.sessions.ConsentedUser(t.Context(), browser, consentSubject(client, loopbackRedirect))
		if err != nil || user != tid+"."+oid {
			t.Errorf("remembered consent: %q %v", user, err)
		}
	})
}

func TestToken(t *testing.T) {
	t.Parallel()
	f := newFront(t)
	client := f.register(loopbackRedirect)
	good := func(code string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "client_id": {client}, "code": {code},
			"code_verifier": {verifier}, "redirect_uri": {loopbackRedirect}}
	}
	with := func(v url.Values, k string, vs ...string) url.Values {
		c := url.Values{}
		for key, val := range v {
			c[key] = val
		}
		if vs == nil {
			c.Del(k)
		} else {
			c[k] = vs
		}
		return c
	}

	t.Run("refused before any grant is looked at", func(t *testing.T) {
		refresh := url.Values{"grant_type": {"refresh_token"}, "client_id": {client}, "refresh_token": {"x"}}
		for _, tc := range []struct {
			name   string
			form   url.Values
			status int
			code   string
		}{
			{"no client_id", with(good("c"), "client_id"), http.StatusBadRequest, oautherr.InvalidRequest},
			{"an unknown client", with(good("c"), "client_id", "AAAAAAAAAAAAAAAAAAAAAAAAAA"), http.StatusBadRequest, oautherr.InvalidClient},
			{"a client secret", with(good("c"), "client_secret", "s"), http.StatusBadRequest, oautherr.InvalidClient},
			{"no grant_type", with(good("c"), "grant_type"), http.StatusBadRequest, oautherr.InvalidRequest},
			{"the password grant", with(good("c"), "grant_type", "password"), http.StatusBadRequest, oautherr.UnsupportedGrantType},
			{"no code_verifier", with(good("c"), "code_verifier"), http.StatusBadRequest, oautherr.InvalidRequest},
			{"another resource", with(good("c"), "resource", "https://other.example/mcp"), http.StatusBadRequest, oautherr.InvalidTarget},
			{"a parameter twice", with(good("c"), "code", "a", "b"), http.StatusBadRequest, oautherr.InvalidRequest},
			{"no refresh_token", with(refresh, "refresh_token"), http.StatusBadRequest, oautherr.InvalidRequest},
			{"a wider scope", with(refresh, "scope", "api://other/.default"), http.StatusBadRequest, oautherr.InvalidScope},
			{"an unknown code", good("0123456789abcdef." + strings.Repeat("C", 43)), http.StatusBadRequest, oautherr.InvalidGrant},
			{"an unknown refresh token", refresh, http.StatusBadRequest, oautherr.InvalidGrant},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := f.form(PathToken, tc.form)
				if r.Status != tc.status || r.OAuth.Error != tc.code || r.Header.Get("Cache-Control") != "no-store" {
					t.Fatalf("%d %v %s; want %d %s", r.Status, r.Header, r.Body, tc.status, tc.code)
				}
			})
		}
	})
	t.Run("HTTP authentication gets 401 naming its scheme", func(t *testing.T) {
		r := f.post(PathToken, "application/x-www-form-urlencoded", good("c").Encode(), http.Header{"Authorization": {"Basic eDp5"}})
		if r.Status != http.StatusUnauthorized || r.OAuth.Error != oautherr.InvalidClient ||
			r.Header.Get("WWW-Authenticate") != `Basic realm="`+f.base+`"` {
			t.Fatalf("%d %v %s", r.Status, r.Header, r.Body)
		}
	})
	t.Run("not form encoded", func(t *testing.T) {
		if r := f.post(PathToken, "application/json", "{}", nil); r.Status != http.StatusBadRequest || r.OAuth.Error != oautherr.InvalidRequest {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("too large", func(t *testing.T) {
		r := f.form(PathToken, with(good("c"), "padding", strings.Repeat("p", maxFormBody)))
		if r.Status != http.StatusRequestEntityTooLarge {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("a code is bound to its client, redirect URI and verifier, and spent by any attempt", func(t *testing.T) {
		other := f.register(loopbackRedirect)
		for name, form := range map[string]func(code string) url.Values{
			"another client":       func(code string) url.Values { return with(good(code), "client_id", other) },
			"another redirect URI": func(code string) url.Values { return with(good(code), "redirect_uri", "http://127.0.0.1:7777/other") },
			"another verifier":     func(code string) url.Values { return with(good(code), "code_verifier", strings.Repeat("v", 43)) },
		} {
			t.Run(name, func(t *testing.T) {
				code := f.code(client, loopbackRedirect)
				if r := f.form(PathToken, form(code)); r.Status != http.StatusBadRequest || r.OAuth.Error != oautherr.InvalidGrant {
					t.Fatalf("%d %s", r.Status, r.Body)
				}
				if r := f.form(PathToken, good(code)); r.OAuth.Error != oautherr.InvalidGrant {
					t.Fatalf("the code was not spent: %d %s", r.Status, r.Body)
				}
			})
		}
	})
	t.Run("a good code gives tokens once", func(t *testing.T) {
		code := f.code(client, loopbackRedirect)
		r := f.form(PathToken, good(code))
		var tok struct {
			AccessToken  string `json:"access_token"`
			TokenType    string `json:"token_type"`
			RefreshToken string `json:"refresh_token"`
			Scope        string `json:"scope"`
		}
		if r.Status != http.StatusOK || json.Unmarshal([]byte(r.Body), &tok) != nil || tok.AccessToken != "an-access-token" ||
			tok.TokenType != "Bearer" || tok.RefreshToken == "" || tok.Scope != f.server.opts.Scope {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		if r.Header.Get("Cache-Control") != "no-store" || r.Header.Get("Pragma") != "no-cache" {
			t.Errorf("headers %v", r.Header)
		}
		if r := f.form(PathToken, good(code)); r.OAuth.Error != oautherr.InvalidGrant {
			t.Fatalf("second redemption: %d %s", r.Status, r.Body)
		}
		t.Run("and the second redemption ended the first one's refresh chain", func(t *testing.T) {
			r := f.form(PathRevoke, url.Values{"client_id": {client}, "token": {tok.RefreshToken}})
			if r.Status != http.StatusOK {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
			if _, err := f.records.PeekHandle(t.Context(), tok.RefreshToken); err == nil {
				t.Error("the chain is still alive")
			}
		})
	})
	t.Run("a client that registered no refresh_token grant gets no refresh token", func(t *testing.T) {
		codeOnly := f.registerFor([]string{"authorization_code"}, loopbackRedirect)
		r := f.form(PathToken, with(good(f.code(codeOnly, loopbackRedirect)), "client_id", codeOnly))
		if r.Status != http.StatusOK || strings.Contains(r.Body, "refresh_token") {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		refresh := url.Values{"grant_type": {"refresh_token"}, "client_id": {codeOnly}, "refresh_token": {"x"}}
		if r := f.form(PathToken, refresh); r.OAuth.Error != oautherr.UnauthorizedClient {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("a refresh whose session Entra no longer knows is invalid_grant", func(t *testing.T) {
		tokens, err := f.server.opts.Grants.RedeemCode(t.Context(), f.code(client, loopbackRedirect),
			func(grants.CodeRecord) string { return "" }, true)
		if err != nil {
			t.Fatal(err)
		}
		r := f.form(PathToken, url.Values{"grant_type": {"refresh_token"}, "client_id": {client}, "refresh_token": {tokens.RefreshToken}})
		if r.Status != http.StatusBadRequest || r.OAuth.Error != oautherr.InvalidGrant {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	f := newFront(t)
	client := f.register(loopbackRedirect)
	other := f.register(loopbackRedirect)
	issued := func() grants.Tokens {
		tokens, err := f.server.opts.Grants.RedeemCode(t.Context(), f.code(client, loopbackRedirect),
			func(grants.CodeRecord) string { return "" }, true)
		if err != nil {
			t.Fatal(err)
		}
		return tokens
	}
	for _, tc := range []struct {
		name   string
		form   func() url.Values
		status int
		code   string
	}{
		{"no token", func() url.Values { return url.Values{"client_id": {client}} }, http.StatusBadRequest, oautherr.InvalidRequest},
		{"an access token", func() url.Values { return url.Values{"client_id": {client}, "token": {"eyJhbGciOi.x.y"}} },
			http.StatusBadRequest, oautherr.UnsupportedTokenType},
		{"an unknown token", func() url.Values { return url.Values{"client_id": {client}, "token": {"junk"}} }, http.StatusOK, ""},
		{"another client's token", func() url.Values {
			return url.Values{"client_id": {other}, "token": {issued().RefreshToken}}
		}, http.StatusBadRequest, oautherr.InvalidGrant},
		{"its own token", func() url.Values { return url.Values{"client_id": {client}, "token": {issued().RefreshToken}} }, http.StatusOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.form(PathRevoke, tc.form())
			if r.Status != tc.status || r.OAuth.Error != tc.code || r.Header.Get("Cache-Control") != "no-store" {
				t.Fatalf("%d %v %s; want %d %q", r.Status, r.Header, r.Body, tc.status, tc.code)
			}
		})
	}
}

// TestConsentRequestNeedsItsClient: a sealed consent request that decodes
// without a client or redirect URI (an older instance's shape, say) is
// refused as expired, never acted on.
func TestConsentRequestNeedsItsClient(t *testing.T) {
	t.Parallel()
	f := newFront(t)
	for name, req := range map[string]authRequest{
		"no client":       {RedirectURI: loopbackRedirect},
		"no redirect URI": {ClientID: "c"},
	} {
		t.Run(name, func(t *testing.T) {
			plain, err := json.Marshal(consentRequest{Request: req, Expires: time.Now().Add(time.Minute).UnixMilli()})
			if err != nil {
				t.Fatal(err)
			}
			sealed, err := f.server.opts.Sealer.Seal(consentSealName, plain)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := f.server.openConsentRequest(base64.RawURLEncoding.EncodeToString(sealed)); ok {
				t.Error("opened")
			}
		})
	}
}
