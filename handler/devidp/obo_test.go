package devidp

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// oboForm is an on-behalf-of request for assertion, as MSAL sends it, with
// extra as name/value pairs to set ("" deletes).
func oboForm(s *Server, assertion string, extra ...string) url.Values {
	v := url.Values{
		"grant_type": {GrantJWTBearer}, "client_id": {s.ClientID()}, "client_secret": {s.ClientSecret()},
		"assertion": {assertion}, "requested_token_use": {"on_behalf_of"}, "client_info": {"1"},
		"scope": {GraphResource + "/User.Read openid offline_access profile"},
	}
	for i := 0; i < len(extra); i += 2 {
		if extra[i+1] == "" {
			v.Del(extra[i])
		} else {
			v.Set(extra[i], extra[i+1])
		}
	}
	return v
}

func mint(t *testing.T, s *Server, u User, opts ...MintOption) string {
	t.Helper()
	tok, err := s.Mint(u, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestOBOIssuesGraphToken(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	reader, _ := DemoUser("reader")
	for _, version := range []int{1, 2} {
		status, body := postToken(t, s, oboForm(s, mint(t, s, reader, WithVersion(version))))
		if status != http.StatusOK {
			t.Fatalf("v%d: %d %v", version, status, body)
		}
		if body["token_type"] != "Bearer" || body["scope"] != GraphResource+"/User.Read" || body["expires_in"] != float64(3600) ||
			body["client_info"] == nil || body["refresh_token"] != nil || body["id_token"] != nil {
			t.Errorf("v%d: response = %v", version, body)
		}
		var c struct {
			jwt.RegisteredClaims
			Tid, Oid, Scp, Appid, Ver string
			Roles                     []string
		}
		at, _ := body["access_token"].(string)
		_, err := jwt.ParseWithClaims(at, &c, func(tok *jwt.Token) (any, error) { return s.PublicKey(tok.Header["kid"].(string)) },
			jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience(GraphAppID), jwt.WithIssuer(s.AuthorityHost()+"/"+s.TenantID()+"/"))
		if err != nil {
			t.Fatalf("v%d: Graph token: %v", version, err)
		}
		if c.Oid != reader.ObjectID || c.Tid != s.TenantID() || c.Scp != "User.Read" || c.Appid != s.ClientID() || c.Ver != "1.0" || c.Roles != nil {
			t.Errorf("v%d: Graph token claims = %+v", version, c)
		}
	}
	if n := s.TokenRequests(GrantJWTBearer); n != 2 {
		t.Errorf("TokenRequests(GrantJWTBearer) = %d, want 2", n)
	}
}

func TestOBOConsent(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	reader, _ := DemoUser("reader")
	writer, _ := DemoUser("writer")
	assertion := mint(t, s, reader)

	if !s.RevokeConsent(reader.ObjectID, GraphResource+"/User.Read") {
		t.Fatal("RevokeConsent refused User.Read")
	}
	status, body := postToken(t, s, oboForm(s, assertion))
	desc, _ := body["error_description"].(string)
	if status != http.StatusBadRequest || body["error"] != "invalid_grant" || body["suberror"] != "consent_required" ||
		!strings.HasPrefix(desc, "AADSTS65001: The user or administrator has not consented to use the application") {
		t.Errorf("without consent: %d %v", status, body)
	}
	// Consent is per user.
	if status, body := postToken(t, s, oboForm(s, mint(t, s, writer))); status != http.StatusOK {
		t.Errorf("another user: %d %v", status, body)
	}
	// Granting it back, and other permissions one by one.
	s.GrantConsent(reader.ObjectID, "user.read")
	if status, body := postToken(t, s, oboForm(s, assertion)); status != http.StatusOK {
		t.Errorf("after GrantConsent: %d %v", status, body)
	}
	mail := oboForm(s, assertion, "scope", GraphResource+"/Mail.Read "+GraphResource+"/User.Read")
	if status, body := postToken(t, s, mail); status != http.StatusBadRequest || body["suberror"] != "consent_required" {
		t.Errorf("Mail.Read without consent: %d %v", status, body)
	}
	s.GrantConsent(reader.ObjectID, "Mail.Read")
	if status, body := postToken(t, s, mail); status != http.StatusOK || body["scope"] != GraphResource+"/Mail.Read "+GraphResource+"/User.Read" {
		t.Errorf("Mail.Read with consent: %d %v", status, body)
	}
	// .default is every consented permission.
	status, body = postToken(t, s, oboForm(s, assertion, "scope", GraphAppID+"/.default"))
	if status != http.StatusOK || !strings.Contains(body["scope"].(string), GraphResource+"/Mail.Read") {
		t.Errorf(".default: %d %v", status, body)
	}
	if s.GrantConsent(reader.ObjectID, "Sites.FullControl.All") {
		t.Error("GrantConsent accepted an unknown permission")
	}
}

func TestOBORequestErrors(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	reader, _ := DemoUser("reader")
	good := mint(t, s, reader)
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		code   string
		aadsts string
	}{
		{"no requested_token_use", oboForm(s, good, "requested_token_use", ""), 400, "invalid_request", "AADSTS900144"},
		{"no assertion", oboForm(s, good, "assertion", ""), 400, "invalid_request", "AADSTS900144"},
		{"no scope", oboForm(s, good, "scope", ""), 400, "invalid_request", "AADSTS900144"},
		{"API scope", oboForm(s, good, "scope", s.Scope()), 400, "invalid_scope", "AADSTS70011"},
		{"unknown Graph scope", oboForm(s, good, "scope", GraphResource+"/User.Raed"), 400, "invalid_scope", "AADSTS70011"},
		{"only OIDC scopes", oboForm(s, good, "scope", "openid profile"), 400, "invalid_scope", "AADSTS70011"},
		{"wrong secret", oboForm(s, good, "client_secret", "nope"), 401, "invalid_client", "AADSTS7000215"},
		{"garbage assertion", oboForm(s, "not.a.jwt"), 400, "invalid_grant", "AADSTS50027"},
		{"expired assertion", oboForm(s, mint(t, s, reader, WithLifetime(-time.Hour))), 400, "invalid_grant", "AADSTS500133"},
		{"other audience", oboForm(s, mint(t, s, reader, WithClaims(map[string]any{"aud": "api://someone-else"}))), 400, "invalid_grant", "AADSTS50013"},
		{"app-only token", oboForm(s, mint(t, s, reader, WithScopes())), 400, "invalid_grant", "AADSTS50013"},
		{"foreign issuer", oboForm(s, mint(t, s, reader, WithClaims(map[string]any{"iss": "https://evil.example/"}))), 400, "invalid_grant", "AADSTS50013"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := postToken(t, s, tc.form)
			desc, _ := body["error_description"].(string)
			if status != tc.status || body["error"] != tc.code || !strings.HasPrefix(desc, tc.aadsts+": ") || body["suberror"] != nil {
				t.Errorf("%s: %d %v", tc.name, status, body)
			}
		})
	}

	// A Graph token is not an assertion for this API.
	_, body := postToken(t, s, oboForm(s, good))
	graphToken, _ := body["access_token"].(string)
	if status, body := postToken(t, s, oboForm(s, graphToken)); status != 400 || !strings.HasPrefix(body["error_description"].(string), "AADSTS50013: ") {
		t.Errorf("Graph token as assertion: %d %v", status, body)
	}
	// A key the stand-in no longer publishes.
	old := s.CurrentKeyID()
	oldToken := mint(t, s, reader)
	if _, err := s.RotateKey(); err != nil {
		t.Fatal(err)
	}
	s.RetireKey(old)
	if status, body := postToken(t, s, oboForm(s, oldToken)); status != 400 || !strings.HasPrefix(body["error_description"].(string), "AADSTS50013: ") {
		t.Errorf("retired key: %d %v", status, body)
	}
	// The outage switch covers this grant too.
	s.SetTokenFailing(true)
	if status, body := postToken(t, s, oboForm(s, mint(t, s, reader))); status != http.StatusServiceUnavailable || body["error"] != "temporarily_unavailable" {
		t.Errorf("failing: %d %v", status, body)
	}
}

// getGraph calls the Graph stand-in's /v1.0/me with a bearer token.
func getGraph(t *testing.T, s *Server, token string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, s.GraphBaseURL()+"/v1.0/me", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decoding Graph answer: %v", err)
	}
	return resp.StatusCode, resp.Header, body
}

func TestGraphMe(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	for _, u := range DemoUsers() {
		_, body := postToken(t, s, oboForm(s, mint(t, s, u)))
		status, _, me := getGraph(t, s, body["access_token"].(string))
		if status != http.StatusOK || me["id"] != u.ObjectID || me["displayName"] != u.Name || me["mail"] != u.Username ||
			me["userPrincipalName"] != u.Username || me["jobTitle"] == nil || me["jobTitle"] == "" ||
			me["@odata.context"] != s.GraphBaseURL()+"/v1.0/$metadata#users/$entity" {
			t.Errorf("%s: %d %v", u.Key, status, me)
		}
	}
	if s.GraphRequests() != int64(len(DemoUsers())) {
		t.Errorf("GraphRequests = %d", s.GraphRequests())
	}
}

func TestGraphRefusals(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	reader, _ := DemoUser("reader")
	stranger := User{Key: "x", Name: "Sam Stranger", Username: "sam@devidp.example", ObjectID: "0a1b2c3d-0009-4000-8000-000000000009"}
	graphToken := func(u User, opts ...MintOption) string {
		return mint(t, s, u, append([]MintOption{WithVersion(1), WithClientApp(s.ClientID()), WithScopes("User.Read"),
			WithClaims(map[string]any{"aud": GraphAppID})}, opts...)...)
	}
	for _, tc := range []struct {
		name   string
		token  string
		status int
		code   string
	}{
		{"no token", "", 401, "InvalidAuthenticationToken"},
		{"API token", mint(t, s, reader), 401, "InvalidAuthenticationToken"},
		{"expired", graphToken(reader, WithLifetime(-time.Hour)), 401, "InvalidAuthenticationToken"},
		{"garbage", "abc", 401, "InvalidAuthenticationToken"},
		{"no User.Read", graphToken(reader, WithScopes("Mail.Read")), 403, "Authorization_RequestDenied"},
		{"not in directory", graphToken(stranger), 404, "Request_ResourceNotFound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, h, body := getGraph(t, s, tc.token)
			e, _ := body["error"].(map[string]any)
			inner, _ := e["innerError"].(map[string]any)
			if status != tc.status || e["code"] != tc.code || e["message"] == "" || inner["request-id"] != h.Get("request-id") || inner["date"] == nil {
				t.Errorf("%s: %d %v", tc.name, status, body)
			}
			if status == 401 && !strings.Contains(h.Get("WWW-Authenticate"), GraphAppID) {
				t.Errorf("%s: WWW-Authenticate = %q", tc.name, h.Get("WWW-Authenticate"))
			}
		})
	}

	for _, status := range []int{500, 503, 429} {
		s.SetGraphStatus(status)
		got, _, body := getGraph(t, s, graphToken(reader))
		if got != status || body["error"] == nil {
			t.Errorf("SetGraphStatus(%d): %d %v", status, got, body)
		}
	}
	s.SetGraphStatus(0)
	if status, _, _ := getGraph(t, s, graphToken(reader)); status != http.StatusOK {
		t.Errorf("after SetGraphStatus(0): %d", status)
	}
}

func TestAuthorizationCodeStillRefusesGraph(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	// The sign-in path issues tokens for the API only; Graph is for OBO.
	if _, err := s.parseScopes(GraphResource + "/User.Read openid"); err == nil {
		t.Error("parseScopes accepted a Graph scope")
	}
	if !slices.Contains(graphPermissions, GraphUserRead) {
		t.Error("User.Read is not a known permission")
	}
}
