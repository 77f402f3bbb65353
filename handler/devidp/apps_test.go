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

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
)

// Applications that call the API as themselves in these tests.
var (
	// agentApp has a secret and two App Roles of the API.
	agentApp = App{
		ClientID: "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d", ObjectID: "6b7c8d9e-0f1a-4b2c-8d3e-4f5a6b7c8d9e",
		DisplayName: "Task agent", Secret: "agent-secret", Roles: []string{"Task.Read", "Task.Write"},
	}
	// miApp is a managed identity's application: no secret, a federated
	// credential for the identity's token.
	miApp = App{
		ClientID: "7c8d9e0f-1a2b-4c3d-8e4f-5a6b7c8d9e0f", ObjectID: "8d9e0f1a-2b3c-4d4e-8f5a-6b7c8d9e0f1a",
		DisplayName: "Nightly job", FederatedCredentials: []FederatedCredential{{Subject: miSubject}},
		Roles: []string{"Task.Read"},
	}
	// idleApp has a secret and no App Role of the API.
	idleApp = App{
		ClientID: "9e0f1a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b", ObjectID: "0f1a2b3c-4d5e-4f6a-8b7c-8d9e0f1a2b3c",
		DisplayName: "Unassigned", Secret: "idle-secret",
	}
)

// miSubject is the managed identity's object id, the sub of its token.
const miSubject = "1a2b3c4d-5e6f-4a7b-8c8d-9e0f1a2b3c4d"

func startApps(t *testing.T, opts Options) *Server {
	t.Helper()
	opts.Apps = []App{agentApp, miApp, idleApp}
	return start(t, opts)
}

// miToken is the managed identity's token for the token-exchange audience,
// as the managed-identity endpoint would hand it out: a v2 token whatever
// version the API asks for, since it is not for the API.
func miToken(t *testing.T, s *Server, sub string) string {
	t.Helper()
	return mint(t, s, User{Key: "mi", ObjectID: sub}, WithVersion(2), WithScopes(),
		WithClaims(map[string]any{"aud": TokenExchangeAudience, "sub": sub}))
}

// ccForm is a client credentials request for the API by app with its
// secret in the body, with extra as name/value pairs to set ("" deletes).
func ccForm(s *Server, app App, extra ...string) url.Values {
	return withPairs(url.Values{"grant_type": {GrantClientCredentials}, "client_id": {app.ClientID}, "client_secret": {app.Secret},
		"scope": {"api://" + s.ClientID() + "/.default"}}, extra...)
}

// withPairs sets v's fields from name/value pairs ("" deletes) and
// returns v.
func withPairs(v url.Values, extra ...string) url.Values {
	for i := 0; i < len(extra); i += 2 {
		if extra[i+1] == "" {
			v.Del(extra[i])
		} else {
			v.Set(extra[i], extra[i+1])
		}
	}
	return v
}

// postBasic posts form with client id and secret in Basic authentication.
func postBasic(t *testing.T, s *Server, form url.Values, id, secret string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.TokenURL(), strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := s.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// wantAppResponse checks a client credentials answer has Entra's shape and
// returns its access token.
func wantAppResponse(t *testing.T, status int, body map[string]any) string {
	t.Helper()
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, body)
	}
	if body["token_type"] != "Bearer" || body["expires_in"] != float64(3600) || body["ext_expires_in"] != float64(3600) {
		t.Errorf("response = %v", body)
	}
	for _, k := range []string{"refresh_token", "id_token", "client_info", "scope"} {
		if _, ok := body[k]; ok {
			t.Errorf("%s in a client credentials response", k)
		}
	}
	at, _ := body["access_token"].(string)
	if at == "" {
		t.Fatalf("no access token: %v", body)
	}
	return at
}

// wantAppClaims checks that tok is app's v2 app-only token, authenticated
// as acr says.
func wantAppClaims(t *testing.T, s *Server, tok string, app App, acr string) map[string]any {
	t.Helper()
	c, _ := claimsOf(t, s, tok)
	want := map[string]any{
		"aud": s.ClientID(), "iss": s.Issuer(), "ver": "2.0", "tid": s.TenantID(),
		"oid": app.ObjectID, "sub": app.ObjectID, "azp": app.ClientID, "azpacr": acr,
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("%s = %v, want %v", k, c[k], v)
		}
	}
	for _, k := range []string{"scp", "name", "preferred_username", "upn", "appid", "appidacr", "idtyp"} {
		if _, ok := c[k]; ok {
			t.Errorf("%s in an app-only token: %v", k, c[k])
		}
	}
	var roles []string
	for _, r := range asSlice(c["roles"]) {
		roles = append(roles, r.(string))
	}
	if !slices.Equal(roles, app.Roles) {
		t.Errorf("roles = %v, want %v", c["roles"], app.Roles)
	}
	return c
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

// TestClientCredentials gets app-only tokens over HTTPS with each way an
// application can authenticate.
func TestClientCredentials(t *testing.T) {
	t.Parallel()
	s := startApps(t, Options{})
	t.Run("secret in the body", func(t *testing.T) {
		t.Parallel()
		status, body := postToken(t, s, ccForm(s, agentApp))
		wantAppClaims(t, s, wantAppResponse(t, status, body), agentApp, "1")
	})
	t.Run("secret in Basic authentication", func(t *testing.T) {
		t.Parallel()
		status, body := postBasic(t, s, ccForm(s, agentApp, "client_id", "", "client_secret", ""), agentApp.ClientID, agentApp.Secret)
		wantAppClaims(t, s, wantAppResponse(t, status, body), agentApp, "1")
	})
	t.Run("managed identity's token as assertion", func(t *testing.T) {
		t.Parallel()
		form := ccForm(s, miApp, "client_secret", "", "client_assertion_type", ClientAssertionType,
			"client_assertion", miToken(t, s, miSubject))
		status, body := postToken(t, s, form)
		wantAppClaims(t, s, wantAppResponse(t, status, body), miApp, "2")
	})
	t.Run("resource named by client id, OpenID scopes ignored", func(t *testing.T) {
		t.Parallel()
		status, body := postToken(t, s, ccForm(s, agentApp, "scope", s.ClientID()+"/.default openid profile offline_access"))
		wantAppClaims(t, s, wantAppResponse(t, status, body), agentApp, "1")
	})
	t.Run("no role assigned: token without roles", func(t *testing.T) {
		t.Parallel()
		status, body := postToken(t, s, ccForm(s, idleApp))
		c := wantAppClaims(t, s, wantAppResponse(t, status, body), idleApp, "1")
		if _, ok := c["roles"]; ok {
			t.Errorf("roles = %v, want no claim", c["roles"])
		}
	})
	t.Run("MSAL with a secret", func(t *testing.T) {
		t.Parallel()
		cred, err := confidential.NewCredFromSecret(agentApp.Secret)
		if err != nil {
			t.Fatal(err)
		}
		c := appMSAL(t, s, agentApp, cred)
		res, err := c.AcquireTokenByCredential(context.Background(), []string{s.appIDURI() + "/.default"})
		if err != nil {
			t.Fatalf("AcquireTokenByCredential: %v", err)
		}
		wantAppClaims(t, s, res.AccessToken, agentApp, "1")
		// A second call is answered from MSAL's cache: no refresh token
		// was needed for it.
		again, err := c.AcquireTokenByCredential(context.Background(), []string{s.appIDURI() + "/.default"})
		if err != nil || again.AccessToken != res.AccessToken {
			t.Errorf("second AcquireTokenByCredential: %v, cached %v", err, again.AccessToken == res.AccessToken)
		}
	})
	t.Run("MSAL with a managed identity's assertion", func(t *testing.T) {
		t.Parallel()
		c := appMSAL(t, s, miApp, confidential.NewCredFromAssertionCallback(func(context.Context, confidential.AssertionRequestOptions) (string, error) {
			return miToken(t, s, miSubject), nil
		}))
		res, err := c.AcquireTokenByCredential(context.Background(), []string{s.appIDURI() + "/.default"})
		if err != nil {
			t.Fatalf("AcquireTokenByCredential: %v", err)
		}
		wantAppClaims(t, s, res.AccessToken, miApp, "2")
	})
	t.Run("MSAL with a wrong secret", func(t *testing.T) {
		t.Parallel()
		cred, _ := confidential.NewCredFromSecret("wrong")
		_, err := appMSAL(t, s, agentApp, cred).AcquireTokenByCredential(context.Background(), []string{s.appIDURI() + "/.default"})
		wantAADError(t, err, http.StatusUnauthorized, "invalid_client", "AADSTS7000215")
	})
}

// appMSAL is MSAL's confidential client for app against s.
func appMSAL(t *testing.T, s *Server, app App, cred confidential.Credential) confidential.Client {
	t.Helper()
	c, err := confidential.New(s.Authority(), app.ClientID, cred,
		confidential.WithHTTPClient(s.HTTPClient()), confidential.WithInstanceDiscovery(false))
	if err != nil {
		t.Fatalf("confidential.New: %v", err)
	}
	return c
}

// TestClientCredentialsTokenShapes checks v1 and v2 tokens, with and without
// the idtyp optional claim.
func TestClientCredentialsTokenShapes(t *testing.T) {
	t.Parallel()
	t.Run("v2 with idtyp", func(t *testing.T) {
		t.Parallel()
		s := startApps(t, Options{IDTypClaim: true})
		status, body := postToken(t, s, ccForm(s, agentApp))
		c, _ := claimsOf(t, s, wantAppResponse(t, status, body))
		if c["idtyp"] != "app" || c["ver"] != "2.0" || c["azp"] != agentApp.ClientID {
			t.Errorf("claims = %v", c)
		}
		// idtyp is for app-only tokens: users' tokens do not get it.
		user, _ := DemoUser("reader")
		uc, _ := claimsOf(t, s, mint(t, s, user))
		if _, ok := uc["idtyp"]; ok {
			t.Errorf("user token with idtyp %v", uc["idtyp"])
		}
	})
	for _, tc := range []struct {
		name, scope, aud string
		idtyp            bool
	}{
		{"v1 by App ID URI", "api://" + DefaultClientID + "/.default", "api://" + DefaultClientID, false},
		{"v1 by client id", DefaultClientID + "/.default", DefaultClientID, false},
		{"v1 with idtyp", "api://" + DefaultClientID + "/.default", "api://" + DefaultClientID, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startApps(t, Options{AccessTokenVersion: 1, IDTypClaim: tc.idtyp})
			form := ccForm(s, miApp, "scope", tc.scope, "client_secret", "", "client_assertion_type", ClientAssertionType,
				"client_assertion", miToken(t, s, miSubject))
			status, body := postToken(t, s, form)
			c, parsed := claimsOf(t, s, wantAppResponse(t, status, body))
			iss := s.AuthorityHost() + "/" + s.TenantID() + "/"
			want := map[string]any{
				"aud": tc.aud, "iss": iss, "idp": iss, "ver": "1.0", "tid": s.TenantID(),
				"oid": miApp.ObjectID, "sub": miApp.ObjectID, "appid": miApp.ClientID, "appidacr": "2",
			}
			for k, v := range want {
				if c[k] != v {
					t.Errorf("%s = %v, want %v", k, c[k], v)
				}
			}
			for _, k := range []string{"scp", "name", "upn", "unique_name", "azp", "azpacr", "amr", "acr"} {
				if _, ok := c[k]; ok {
					t.Errorf("%s in a v1 app-only token: %v", k, c[k])
				}
			}
			if got, _ := c["idtyp"].(string); (got == "app") != tc.idtyp || (!tc.idtyp && got != "") {
				t.Errorf("idtyp = %q with IDTypClaim %v", got, tc.idtyp)
			}
			if parsed.Header["x5t"] != s.CurrentKeyID() {
				t.Errorf("header = %v", parsed.Header)
			}
		})
	}
	t.Run("v1 user tokens from the endpoint too", func(t *testing.T) {
		t.Parallel()
		// The resource's version applies to every token issued for it.
		s := startSignIn(t, Options{AccessTokenVersion: 1})
		c := secretClient(t, s, s.ClientSecret())
		f := newFlow()
		res, err := c.AcquireTokenByAuthCode(context.Background(), f.signIn(t, c, s, "reader"), testRedirect, []string{s.Scope()}, confidential.WithChallenge(f.verifier))
		if err != nil {
			t.Fatalf("AcquireTokenByAuthCode: %v", err)
		}
		if uc, _ := claimsOf(t, s, res.AccessToken); uc["ver"] != "1.0" || uc["scp"] != ScopeName {
			t.Errorf("user token = %v", uc)
		}
	})
}

// TestClientCredentialsErrors checks each refusal has Entra's status, error
// and AADSTS number.
func TestClientCredentialsErrors(t *testing.T) {
	t.Parallel()
	s := startApps(t, Options{})
	api := "api://" + s.ClientID()
	assertion := func(sub string) []string {
		return []string{"client_secret", "", "client_assertion_type", ClientAssertionType, "client_assertion", miToken(t, s, sub)}
	}
	forged := miToken(t, s, miSubject)
	forged = forged[:len(forged)-4] + "AAAA"
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		code   string
		aadsts string
	}{
		{"wrong secret", ccForm(s, agentApp, "client_secret", "nope"), 401, "invalid_client", "AADSTS7000215"},
		{"another app's secret", ccForm(s, agentApp, "client_secret", idleApp.Secret), 401, "invalid_client", "AADSTS7000215"},
		{"the API's secret", ccForm(s, agentApp, "client_secret", s.ClientSecret()), 401, "invalid_client", "AADSTS7000215"},
		{"secret for an app without one", ccForm(s, miApp, "client_secret", "guess"), 401, "invalid_client", "AADSTS7000215"},
		{"no credential", ccForm(s, agentApp, "client_secret", ""), 401, "invalid_client", "AADSTS7000218"},
		{"secret and assertion", ccForm(s, miApp, append(assertion(miSubject), "client_secret", "x")...), 400, "invalid_request", "AADSTS90023"},
		{"assertion of another identity", ccForm(s, miApp, assertion("2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e")...), 401, "invalid_client", "AADSTS70021"},
		{"assertion for an app without that credential", ccForm(s, agentApp, assertion(miSubject)...), 401, "invalid_client", "AADSTS70021"},
		{"forged assertion", ccForm(s, miApp, "client_secret", "", "client_assertion_type", ClientAssertionType, "client_assertion", forged), 401, "invalid_client", "AADSTS700027"},
		{"unknown client", ccForm(s, App{ClientID: "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f", Secret: "x"}), 400, "unauthorized_client", "AADSTS700016"},
		{"the API itself", ccForm(s, App{ClientID: s.ClientID(), Secret: s.ClientSecret()}), 401, "invalid_client", "AADSTS7000229"},
		{"no scope", ccForm(s, agentApp, "scope", ""), 400, "invalid_request", "AADSTS900144"},
		{"delegated scope", ccForm(s, agentApp, "scope", s.Scope()), 400, "invalid_scope", "AADSTS1002012"},
		{"App Role by name", ccForm(s, agentApp, "scope", api+"/Task.Read"), 400, "invalid_scope", "AADSTS1002012"},
		{"OpenID scopes only", ccForm(s, agentApp, "scope", "openid profile offline_access"), 400, "invalid_scope", "AADSTS1002012"},
		{"bare .default", ccForm(s, agentApp, "scope", ".default"), 400, "invalid_scope", "AADSTS1002012"},
		{"two .default scopes", ccForm(s, agentApp, "scope", api+"/.default "+GraphResource+"/.default"), 400, "invalid_scope", "AADSTS70011"},
		{"the API twice", ccForm(s, agentApp, "scope", api+"/.default "+s.ClientID()+"/.default"), 400, "invalid_scope", "AADSTS70011"},
		{".default and a named scope", ccForm(s, agentApp, "scope", api+"/.default "+s.Scope()), 400, "invalid_scope", "AADSTS70011"},
		{"another resource", ccForm(s, agentApp, "scope", "api://3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f/.default"), 400, "invalid_resource", "AADSTS500011"},
		{"Graph", ccForm(s, agentApp, "scope", GraphResource+"/.default"), 400, "invalid_resource", "AADSTS500011"},
		{"resource parameter", ccForm(s, agentApp, "resource", api), 400, "invalid_target", "AADSTS9010010"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			status, body := postToken(t, s, tc.form)
			desc, _ := body["error_description"].(string)
			if status != tc.status || body["error"] != tc.code || !strings.HasPrefix(desc, tc.aadsts+": ") || body["access_token"] != nil {
				t.Errorf("%d %v, want %d %s %s", status, body, tc.status, tc.code, tc.aadsts)
			}
			for _, secret := range []string{agentApp.Secret, idleApp.Secret, s.ClientSecret()} {
				if strings.Contains(desc, secret) {
					t.Errorf("error names a secret: %s", desc)
				}
			}
		})
	}
	t.Run("Basic with the wrong secret", func(t *testing.T) {
		t.Parallel()
		status, body := postBasic(t, s, ccForm(s, agentApp, "client_id", "", "client_secret", ""), agentApp.ClientID, "nope")
		if status != 401 || body["error"] != "invalid_client" {
			t.Errorf("%d %v", status, body)
		}
	})
}

// TestAppsUseOnlyTheirGrant checks that an application's credential gets it
// nothing through the grants meant for the API: an on-behalf-of assertion
// addressed to the API is not the app's to exchange.
func TestAppsUseOnlyTheirGrant(t *testing.T) {
	t.Parallel()
	s := startApps(t, Options{})
	u, _ := DemoUser("reader")
	form := oboForm(s, mint(t, s, u), "client_id", agentApp.ClientID, "client_secret", agentApp.Secret)
	status, body := postToken(t, s, form)
	if desc, _ := body["error_description"].(string); status != 400 || body["error"] != "invalid_grant" || !strings.HasPrefix(desc, "AADSTS50013: Assertion audience") {
		t.Errorf("OBO by another app: %d %v", status, body)
	}
	// The API's own on-behalf-of still works beside the apps.
	if status, body := postToken(t, s, oboForm(s, mint(t, s, u))); status != http.StatusOK {
		t.Errorf("OBO by the API: %d %v", status, body)
	}
	status, body = postToken(t, s, url.Values{"grant_type": {GrantRefreshToken}, "client_id": {agentApp.ClientID},
		"client_secret": {agentApp.Secret}, "refresh_token": {"1.devidp.made-up"}, "scope": {s.Scope()}})
	if status != 400 || body["error"] != "invalid_grant" {
		t.Errorf("refresh by an app: %d %v", status, body)
	}
}

func TestMintApp(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	s := start(t, Options{Now: func() time.Time { return now }})
	tok, err := s.MintApp(agentApp)
	if err != nil {
		t.Fatal(err)
	}
	c := wantAppClaims(t, s, tok, agentApp, "1")
	if c["iat"] != float64(now.Unix()) || c["exp"] != float64(now.Add(time.Hour).Unix()) {
		t.Errorf("times = %v %v", c["iat"], c["exp"])
	}
	for _, k := range []string{"aio", "rh", "uti"} {
		if s, _ := c[k].(string); s == "" {
			t.Errorf("%s missing", k)
		}
	}
	// Options apply as for Mint.
	other := "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
	tok, err = s.MintApp(agentApp, WithVersion(1), WithTenant(other), WithLifetime(5*time.Minute), WithClaims(map[string]any{"appidacr": "2"}))
	if err != nil {
		t.Fatal(err)
	}
	c, _ = claimsOf(t, s, tok)
	if c["ver"] != "1.0" || c["tid"] != other || c["iss"] != s.AuthorityHost()+"/"+other+"/" || c["aud"] != "api://"+s.ClientID() ||
		c["appidacr"] != "2" || c["exp"].(float64)-c["iat"].(float64) != 300 {
		t.Errorf("claims = %v", c)
	}
	if _, err := s.MintApp(App{DisplayName: "nobody"}); err == nil {
		t.Error("minted for an app without ids")
	}
}

func TestStartRefusesBadApps(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string]Options{
		"client id not a GUID": {Apps: []App{{ClientID: "agent", ObjectID: agentApp.ObjectID}}},
		"object id not a GUID": {Apps: []App{{ClientID: agentApp.ClientID, ObjectID: "agent"}}},
		"the API itself":       {Apps: []App{{ClientID: DefaultClientID, ObjectID: agentApp.ObjectID}}},
		"listed twice":         {Apps: []App{agentApp, agentApp}},
		"shared object id":     {Apps: []App{agentApp, {ClientID: idleApp.ClientID, ObjectID: agentApp.ObjectID}}},
		"token version 3":      {AccessTokenVersion: 3},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if s, err := Start(opts); err == nil {
				_ = s.Close()
				t.Errorf("started with %+v", opts)
			}
		})
	}
}
