package devidp

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	msalerrors "github.com/AzureAD/microsoft-authentication-library-for-go/apps/errors"
)

const testRedirect = "http://127.0.0.1:7071/auth/callback"

// startSignIn starts a stand-in with testRedirect registered.
func startSignIn(t *testing.T, opts Options) *Server {
	t.Helper()
	opts.RedirectURIs = append(opts.RedirectURIs, testRedirect)
	return start(t, opts)
}

// memCache is a one-user MSAL cache kept in memory, persisted the way our
// sign-in persists it (cache.ExportReplace), so tests can read the refresh
// token MSAL never returns.
type memCache struct {
	mu   sync.Mutex
	data []byte
}

func (m *memCache) Replace(_ context.Context, u cache.Unmarshaler, _ cache.ReplaceHints) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.data == nil {
		return nil
	}
	return u.Unmarshal(m.data)
}

func (m *memCache) Export(_ context.Context, c cache.Marshaler, _ cache.ExportHints) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	data, err := c.Marshal()
	m.data = data
	return err
}

// refreshToken returns the one refresh token in the cache.
func (m *memCache) refreshToken(t *testing.T) string {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	var doc struct {
		RefreshToken map[string]struct {
			Secret string `json:"secret"`
		}
	}
	if err := json.Unmarshal(m.data, &doc); err != nil || len(doc.RefreshToken) != 1 {
		t.Fatalf("cache holds %d refresh tokens (%v)", len(doc.RefreshToken), err)
	}
	for _, rt := range doc.RefreshToken {
		return rt.Secret
	}
	return ""
}

// newMSAL builds MSAL's confidential client against s as our sign-in does.
func newMSAL(t *testing.T, s *Server, cred confidential.Credential, opts ...confidential.Option) confidential.Client {
	t.Helper()
	opts = append([]confidential.Option{confidential.WithHTTPClient(s.HTTPClient()), confidential.WithInstanceDiscovery(false)}, opts...)
	c, err := confidential.New(s.Authority(), s.ClientID(), cred, opts...)
	if err != nil {
		t.Fatalf("confidential.New: %v", err)
	}
	return c
}

func secretClient(t *testing.T, s *Server, secret string, opts ...confidential.Option) confidential.Client {
	t.Helper()
	cred, err := confidential.NewCredFromSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	return newMSAL(t, s, cred, opts...)
}

// flow is one sign-in's secrets, as our sign-in keeps them.
type flow struct {
	verifier, challenge, state, nonce string
}

func newFlow() flow {
	f := flow{verifier: randomString(32), state: randomString(16), nonce: randomString(16)}
	sum := sha256.Sum256([]byte(f.verifier))
	f.challenge = base64.RawURLEncoding.EncodeToString(sum[:])
	return f
}

// authURL is MSAL's AuthCodeURL plus what MSAL has no option for.
func (f flow) authURL(t *testing.T, c confidential.Client, s *Server) string {
	t.Helper()
	raw, err := c.AuthCodeURL(context.Background(), s.ClientID(), testRedirect, []string{"openid", "profile", "offline_access", s.Scope()})
	if err != nil {
		t.Fatalf("AuthCodeURL: %v", err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("code_challenge", f.challenge)
	q.Set("code_challenge_method", "S256")
	q.Set("state", f.state)
	q.Set("nonce", f.nonce)
	u.RawQuery = q.Encode()
	return u.String()
}

// signIn signs user in through the page and returns the code.
func (f flow) signIn(t *testing.T, c confidential.Client, s *Server, user string) string {
	t.Helper()
	loc, err := s.SignIn(context.Background(), f.authURL(t, c, s), user)
	if err != nil {
		t.Fatalf("SignIn: %v", err)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if got := u.Scheme + "://" + u.Host + u.Path; got != testRedirect || q.Get("state") != f.state || q.Get("code") == "" || q.Get("session_state") == "" {
		t.Fatalf("redirect = %s", loc)
	}
	return q.Get("code")
}

// wantAADError checks that err is MSAL's report of an HTTP status with the
// given OAuth error and AADSTS number.
func wantAADError(t *testing.T, err error, status int, code, aadsts string) {
	t.Helper()
	var ce msalerrors.CallErr
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v, want a CallErr", err)
	}
	if ce.Resp.StatusCode != status || !strings.Contains(err.Error(), `"error":"`+code+`"`) || !strings.Contains(err.Error(), aadsts+": ") {
		t.Fatalf("error = %v, want %d %s %s", err, status, code, aadsts)
	}
}

func TestMSALAuthCodeFlow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := startSignIn(t, Options{})
	c := secretClient(t, s, s.ClientSecret())
	f := newFlow()

	authURL := f.authURL(t, c, s)
	if !strings.HasPrefix(authURL, s.AuthorizeURL()+"?") {
		t.Fatalf("AuthCodeURL = %s, want the plain-HTTP page %s", authURL, s.AuthorizeURL())
	}
	code := f.signIn(t, c, s, "writer")
	res, err := c.AcquireTokenByAuthCode(ctx, code, testRedirect, []string{s.Scope()}, confidential.WithChallenge(f.verifier))
	if err != nil {
		t.Fatalf("AcquireTokenByAuthCode: %v", err)
	}
	u, _ := DemoUser("writer")

	at, _ := claimsOf(t, s, res.AccessToken)
	for k, v := range map[string]any{"aud": s.ClientID(), "iss": s.Issuer(), "ver": "2.0", "scp": ScopeName, "oid": u.ObjectID, "azp": s.ClientID(), "tid": s.TenantID()} {
		if at[k] != v {
			t.Errorf("access token %s = %v, want %v", k, at[k], v)
		}
	}
	if roles, _ := at["roles"].([]any); len(roles) != 1 || roles[0] != "Task.Write" {
		t.Errorf("roles = %v", at["roles"])
	}

	id, _ := claimsOf(t, s, res.IDToken.RawToken)
	for k, v := range map[string]any{"aud": s.ClientID(), "iss": s.Issuer(), "ver": "2.0", "nonce": f.nonce, "oid": u.ObjectID, "tid": s.TenantID(),
		"name": u.Name, "preferred_username": u.Username, "sub": at["sub"]} {
		if id[k] != v {
			t.Errorf("id token %s = %v, want %v", k, id[k], v)
		}
	}
	if res.Account.HomeAccountID != u.ObjectID+"."+s.TenantID() {
		t.Errorf("HomeAccountID = %s", res.Account.HomeAccountID)
	}
	if len(res.GrantedScopes) != 1 || res.GrantedScopes[0] != s.Scope() {
		t.Errorf("GrantedScopes = %v", res.GrantedScopes)
	}
	if d := time.Until(res.ExpiresOn); d < 59*time.Minute || d > time.Hour {
		t.Errorf("ExpiresOn in %v", d)
	}

	// A fresh access token comes from MSAL's cache, without a request.
	again, err := c.AcquireTokenSilent(ctx, []string{s.Scope()}, confidential.WithSilentAccount(res.Account))
	if err != nil || again.AccessToken != res.AccessToken {
		t.Fatalf("AcquireTokenSilent: %v (same token: %v)", err, again.AccessToken == res.AccessToken)
	}
	if n := s.TokenRequests(GrantRefreshToken); n != 0 {
		t.Errorf("refresh requests = %d, want 0", n)
	}
	if n := s.TokenRequests(GrantAuthorizationCode); n != 1 {
		t.Errorf("code requests = %d, want 1", n)
	}

	// The code works once.
	_, err = c.AcquireTokenByAuthCode(ctx, code, testRedirect, []string{s.Scope()}, confidential.WithChallenge(f.verifier))
	wantAADError(t, err, http.StatusBadRequest, "invalid_grant", "AADSTS54005")
}

func TestMSALSilentRefreshRotates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Under MSAL's five-minute margin, so every silent call refreshes.
	s := startSignIn(t, Options{AccessTokenLifetime: time.Minute, SingleUseRefreshTokens: true})
	store := &memCache{}
	c := secretClient(t, s, s.ClientSecret(), confidential.WithCache(store))
	f := newFlow()
	res, err := c.AcquireTokenByAuthCode(ctx, f.signIn(t, c, s, "reader"), testRedirect, []string{s.Scope()}, confidential.WithChallenge(f.verifier))
	if err != nil {
		t.Fatalf("AcquireTokenByAuthCode: %v", err)
	}
	oldRT := store.refreshToken(t)

	res2, err := c.AcquireTokenSilent(ctx, []string{s.Scope()}, confidential.WithSilentAccount(res.Account))
	if err != nil {
		t.Fatalf("AcquireTokenSilent: %v", err)
	}
	if res2.AccessToken == res.AccessToken {
		t.Error("silent call returned the old access token")
	}
	if n := s.TokenRequests(GrantRefreshToken); n != 1 {
		t.Errorf("refresh requests = %d, want 1", n)
	}
	newRT := store.refreshToken(t)
	if newRT == oldRT {
		t.Fatal("refresh token did not rotate")
	}
	claimsOf(t, s, res2.AccessToken)

	// The old refresh token is spent.
	status, body := postToken(t, s, url.Values{
		"grant_type": {GrantRefreshToken}, "client_id": {s.ClientID()}, "client_secret": {s.ClientSecret()},
		"refresh_token": {oldRT}, "scope": {s.Scope() + " offline_access"},
	})
	if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("old refresh token: %d %v", status, body)
	}
	// Entra requires the scope on refresh.
	status, body = postToken(t, s, url.Values{
		"grant_type": {GrantRefreshToken}, "client_id": {s.ClientID()}, "client_secret": {s.ClientSecret()}, "refresh_token": {newRT},
	})
	if status != http.StatusBadRequest || body["error"] != "invalid_request" || !strings.HasPrefix(body["error_description"].(string), "AADSTS900144: ") {
		t.Errorf("refresh without scope: %d %v", status, body)
	}

	// After revocation the next refresh fails as Entra's does.
	if n := s.RevokeRefreshTokens(res.Account.LocalAccountID); n != 1 {
		t.Errorf("revoked %d refresh tokens, want 1", n)
	}
	_, err = c.AcquireTokenSilent(ctx, []string{s.Scope()}, confidential.WithSilentAccount(res.Account))
	wantAADError(t, err, http.StatusBadRequest, "invalid_grant", "AADSTS50173")

	s.SetTokenFailing(true)
	_, err = c.AcquireTokenSilent(ctx, []string{s.Scope()}, confidential.WithSilentAccount(res.Account))
	wantAADError(t, err, http.StatusServiceUnavailable, "temporarily_unavailable", "AADSTS90033")
	if n := s.TokenRequests(GrantRefreshToken); n != 5 {
		t.Errorf("refresh requests = %d, want 5", n)
	}
}

func TestMSALCodeRedemptionErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now()
	var clockMu sync.Mutex
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	s := startSignIn(t, Options{Now: clock, RedirectURIs: []string{"http://127.0.0.1:7071/other"}})
	c := secretClient(t, s, s.ClientSecret())
	scopes := []string{s.Scope()}

	f := newFlow()
	_, err := c.AcquireTokenByAuthCode(ctx, f.signIn(t, c, s, "all"), testRedirect, scopes, confidential.WithChallenge(newFlow().verifier))
	wantAADError(t, err, http.StatusBadRequest, "invalid_grant", "AADSTS501481")

	f = newFlow()
	_, err = c.AcquireTokenByAuthCode(ctx, f.signIn(t, c, s, "all"), testRedirect, scopes)
	wantAADError(t, err, http.StatusBadRequest, "invalid_grant", "AADSTS501481")

	f = newFlow()
	_, err = c.AcquireTokenByAuthCode(ctx, f.signIn(t, c, s, "all"), "http://127.0.0.1:7071/other", scopes, confidential.WithChallenge(f.verifier))
	wantAADError(t, err, http.StatusBadRequest, "invalid_grant", "AADSTS500112")

	f = newFlow()
	bad := secretClient(t, s, "wrong secret")
	_, err = bad.AcquireTokenByAuthCode(ctx, f.signIn(t, c, s, "all"), testRedirect, scopes, confidential.WithChallenge(f.verifier))
	wantAADError(t, err, http.StatusUnauthorized, "invalid_client", "AADSTS7000215")

	f = newFlow()
	code := f.signIn(t, c, s, "all")
	clockMu.Lock()
	now = now.Add(codeLifetime + time.Second)
	clockMu.Unlock()
	_, err = c.AcquireTokenByAuthCode(ctx, code, testRedirect, scopes, confidential.WithChallenge(f.verifier))
	wantAADError(t, err, http.StatusBadRequest, "invalid_grant", "AADSTS70008")

	_, err = c.AcquireTokenByAuthCode(ctx, "made-up", testRedirect, scopes, confidential.WithChallenge(f.verifier))
	wantAADError(t, err, http.StatusBadRequest, "invalid_grant", "AADSTS70000")
}

// postToken posts form to the token endpoint and decodes the JSON answer.
func postToken(t *testing.T, s *Server, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := s.HTTPClient().PostForm(s.TokenURL(), form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("Cache-Control = %q", cc)
	}
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decoding token response: %v", err)
	}
	return resp.StatusCode, body
}

func TestTokenEndpointRequestErrors(t *testing.T) {
	t.Parallel()
	s := startSignIn(t, Options{})
	c := secretClient(t, s, s.ClientSecret())
	f := newFlow()
	code := f.signIn(t, c, s, "reader")
	base := func(extra ...string) url.Values {
		return withPairs(url.Values{"grant_type": {GrantAuthorizationCode}, "client_id": {s.ClientID()}, "client_secret": {s.ClientSecret()},
			"code": {code}, "redirect_uri": {testRedirect}, "code_verifier": {f.verifier}, "scope": {s.Scope() + " openid offline_access profile"}}, extra...)
	}
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		code   string
		aadsts string
	}{
		{"resource with scope", base("resource", "https://mcp.example"), 400, "invalid_target", "AADSTS9010010"},
		{"resource alone", base("resource", "https://mcp.example", "scope", ""), 400, "invalid_request", "AADSTS901002"},
		{"unknown client", base("client_id", DefaultClientAppID), 400, "unauthorized_client", "AADSTS700016"},
		{"no credential", base("client_secret", ""), 401, "invalid_client", "AADSTS7000218"},
		{"wrong secret", base("client_secret", "nope"), 401, "invalid_client", "AADSTS7000215"},
		{"no grant type", base("grant_type", ""), 400, "invalid_request", "AADSTS900144"},
		{"password grant", base("grant_type", "password"), 400, "unsupported_grant_type", "AADSTS70003"},
		{"foreign scope", base("scope", "https://graph.microsoft.com/User.Read"), 400, "invalid_scope", "AADSTS70011"},
		{"unknown API scope", base("scope", s.Scope()+"x"), 400, "invalid_scope", "AADSTS65005"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := postToken(t, s, tc.form)
			desc, _ := body["error_description"].(string)
			codes, _ := body["error_codes"].([]any)
			if status != tc.status || body["error"] != tc.code || !strings.HasPrefix(desc, tc.aadsts+": ") || len(codes) != 1 ||
				!strings.Contains(desc, "\r\nTrace ID: ") || body["correlation_id"] == nil || body["timestamp"] == nil {
				t.Errorf("%s: %d %v", tc.name, status, body)
			}
		})
	}

	// None of the failures above spent the code: they were refused before
	// it was looked at. Basic authentication works too, and the response has
	// Entra's shape.
	form := base("client_secret", "")
	req, _ := http.NewRequest(http.MethodPost, s.TokenURL(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(s.ClientID()), url.QueryEscape(s.ClientSecret()))
	resp, err := s.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("basic auth: %d %v", resp.StatusCode, body)
	}
	if body["token_type"] != "Bearer" || body["scope"] != s.Scope() || body["expires_in"] != float64(3600) || body["ext_expires_in"] != float64(3600) ||
		body["refresh_token"] == nil || body["id_token"] == nil {
		t.Errorf("response = %v", body)
	}
	if _, ok := body["client_info"]; ok {
		t.Error("client_info sent without client_info=1")
	}
}

func TestMSALFederatedAssertion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const miOID = "5e4f3a2b-0000-4000-8000-00000000000a"
	s := startSignIn(t, Options{FederatedCredentials: []FederatedCredential{{Subject: miOID}}})
	// A managed identity's token for the token-exchange audience, as the
	// managed-identity endpoint would hand it out.
	miToken := func(sub string) string {
		tok, err := s.Mint(User{Key: "mi", ObjectID: sub}, WithScopes(), WithClaims(map[string]any{"aud": TokenExchangeAudience, "sub": sub}))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	var asked confidential.AssertionRequestOptions
	c := newMSAL(t, s, confidential.NewCredFromAssertionCallback(func(_ context.Context, o confidential.AssertionRequestOptions) (string, error) {
		asked = o
		return miToken(miOID), nil
	}))
	f := newFlow()
	res, err := c.AcquireTokenByAuthCode(ctx, f.signIn(t, c, s, "admin"), testRedirect, []string{s.Scope()}, confidential.WithChallenge(f.verifier))
	if err != nil {
		t.Fatalf("AcquireTokenByAuthCode with assertion: %v", err)
	}
	if asked.ClientID != s.ClientID() || asked.TokenEndpoint != s.TokenURL() {
		t.Errorf("assertion callback got %+v", asked)
	}
	claimsOf(t, s, res.AccessToken)

	other := newMSAL(t, s, confidential.NewCredFromAssertionCallback(func(context.Context, confidential.AssertionRequestOptions) (string, error) {
		return miToken("5e4f3a2b-0000-4000-8000-00000000000b"), nil
	}))
	f = newFlow()
	_, err = other.AcquireTokenByAuthCode(ctx, f.signIn(t, c, s, "admin"), testRedirect, []string{s.Scope()}, confidential.WithChallenge(f.verifier))
	wantAADError(t, err, http.StatusUnauthorized, "invalid_client", "AADSTS70021")

	forged := newMSAL(t, s, confidential.NewCredFromAssertionCallback(func(context.Context, confidential.AssertionRequestOptions) (string, error) {
		tok := miToken(miOID)
		return tok[:len(tok)-4] + "AAAA", nil
	}))
	f = newFlow()
	_, err = forged.AcquireTokenByAuthCode(ctx, f.signIn(t, c, s, "admin"), testRedirect, []string{s.Scope()}, confidential.WithChallenge(f.verifier))
	wantAADError(t, err, http.StatusUnauthorized, "invalid_client", "AADSTS700027")
}

func TestMSALCancel(t *testing.T) {
	t.Parallel()
	s := startSignIn(t, Options{})
	c := secretClient(t, s, s.ClientSecret())
	f := newFlow()
	loc, err := s.CancelSignIn(context.Background(), f.authURL(t, c, s))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(loc)
	q := u.Query()
	if !strings.HasPrefix(loc, testRedirect+"?") || q.Get("error") != "access_denied" || q.Get("error_subcode") != "cancel" ||
		q.Get("state") != f.state || q.Has("code") || !strings.HasPrefix(q.Get("error_description"), "AADSTS65004: User declined to consent") {
		t.Errorf("cancel redirect = %s", loc)
	}
}
