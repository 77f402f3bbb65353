package devidp

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/golang-jwt/jwt/v5"
)

// Downstream APIs in these tests, as upstream MCP servers register them.
var (
	// notesAPI has a named Application ID URI, three permissions of which
	// one is consented by default, and App Roles for app-only callers.
	notesAPI = API{
		AppID: "4b5c6d7e-8f9a-4b0c-9d1e-2f3a4b5c6d7e", AppIDURI: "api://notes.demo", Name: "Notes",
		Permissions: []string{"Notes.Read", "Notes.Write", "Notes.Share"}, Consented: []string{"Notes.Read"},
		AppRoles: []string{"Notes.Read.All", "Notes.ReadWrite.All"},
	}
	// tasksAPI has the default-shaped Application ID URI, a permission
	// named as one of Graph's, and no App Roles.
	tasksAPI = API{
		AppID: "5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f", AppIDURI: "api://5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f", Name: "Tasks",
		Permissions: []string{"Tasks.Read", "User.Read"}, Consented: []string{"Tasks.Read"},
	}
)

// startAPIs starts a stand-in with the test APIs and applications.
func startAPIs(t *testing.T, opts Options) *Server {
	t.Helper()
	opts.APIs = []API{notesAPI, tasksAPI}
	return startApps(t, opts)
}

// apiOBO posts an on-behalf-of request for scope with user u's token.
func apiOBO(t *testing.T, s *Server, u User, scope string, opts ...MintOption) (int, map[string]any) {
	t.Helper()
	return postToken(t, s, oboForm(s, mint(t, s, u, opts...), "scope", scope+" openid offline_access profile"))
}

// wantAPIToken checks that an on-behalf-of answer carries u's v2 token
// for api with scp, issued in tenant, and returns its claims.
func wantAPIToken(t *testing.T, s *Server, status int, body map[string]any, api API, u User, tenant, scp string) jwt.MapClaims {
	t.Helper()
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, body)
	}
	if body["token_type"] != "Bearer" || body["expires_in"] != float64(3600) || body["client_info"] == nil ||
		body["refresh_token"] != nil || body["id_token"] != nil {
		t.Errorf("response = %v", body)
	}
	at, _ := body["access_token"].(string)
	iss := s.AuthorityHost() + "/" + tenant + "/v2.0"
	// Verified as the API would: its audience, the tenant's v2 issuer, and
	// the keys the stand-in publishes.
	c := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(at, c, func(tok *jwt.Token) (any, error) { return s.PublicKey(tok.Header["kid"].(string)) },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience(api.AppID), jwt.WithIssuer(iss), jwt.WithExpirationRequired()); err != nil {
		t.Fatalf("API token: %v", err)
	}
	want := map[string]any{
		"aud": api.AppID, "iss": iss, "ver": "2.0", "scp": scp, "azp": s.ClientID(), "azpacr": "1", "idtyp": "user",
		"oid": u.ObjectID, "tid": tenant, "name": u.Name, "preferred_username": u.Username,
		"sub": pairwiseSubject(u.ObjectID, api.AppID),
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("%s = %v, want %v", k, c[k], v)
		}
	}
	for _, k := range []string{"roles", "appid", "upn", "app_displayname"} {
		if _, ok := c[k]; ok {
			t.Errorf("%s in an API token: %v", k, c[k])
		}
	}
	if c["exp"].(float64)-c["iat"].(float64) != 3600 {
		t.Errorf("lifetime = %v s", c["exp"].(float64)-c["iat"].(float64))
	}
	return c
}

func TestOBOForAnAPI(t *testing.T) {
	t.Parallel()
	s := startAPIs(t, Options{})
	reader, _ := DemoUser("reader")
	guestTenant := "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
	for _, tc := range []struct {
		name      string
		api       API
		scope     string
		opts      []MintOption
		tenant    string
		scp       string
		respScope string
	}{
		{"by Application ID URI", notesAPI, notesAPI.Scope("Notes.Read"), nil, "", "Notes.Read", "api://notes.demo/Notes.Read"},
		{"by application id, echoed as written", notesAPI, notesAPI.AppID + "/Notes.Read", nil, "",
			"Notes.Read", "api://notes.demo/Notes.Read " + notesAPI.AppID + "/Notes.Read"},
		{"permission in another case", notesAPI, "api://notes.demo/notes.read", nil, "", "Notes.Read", "api://notes.demo/Notes.Read"},
		{".default is the consented permissions", notesAPI, notesAPI.Scope(".default"), nil, "",
			"Notes.Read", "api://notes.demo/Notes.Read api://notes.demo/.default"},
		{".default by application id", notesAPI, notesAPI.AppID + "/.default", nil, "",
			"Notes.Read", "api://notes.demo/Notes.Read " + notesAPI.AppID + "/.default"},
		{"v1 assertion, v2 token", notesAPI, notesAPI.Scope("Notes.Read"), []MintOption{WithVersion(1)}, "", "Notes.Read", "api://notes.demo/Notes.Read"},
		{"guest from another tenant", notesAPI, notesAPI.Scope("Notes.Read"), []MintOption{WithTenant(guestTenant)}, guestTenant,
			"Notes.Read", "api://notes.demo/Notes.Read"},
		{"a permission named as Graph's is the API's", tasksAPI, tasksAPI.Scope("Tasks.Read"), nil, "", "Tasks.Read", tasksAPI.Scope("Tasks.Read")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tenant := tc.tenant
			if tenant == "" {
				tenant = s.TenantID()
			}
			status, body := apiOBO(t, s, reader, tc.scope, tc.opts...)
			wantAPIToken(t, s, status, body, tc.api, reader, tenant, tc.scp)
			if body["scope"] != tc.respScope {
				t.Errorf("scope = %v, want %q", body["scope"], tc.respScope)
			}
		})
	}
	t.Run("several permissions once consented", func(t *testing.T) {
		t.Parallel()
		writer, _ := DemoUser("writer")
		if !s.GrantConsent(writer.ObjectID, notesAPI.Scope("Notes.Write")) {
			t.Fatal("GrantConsent refused Notes.Write")
		}
		status, body := apiOBO(t, s, writer, notesAPI.Scope("Notes.Write")+" "+notesAPI.Scope("Notes.Read"))
		wantAPIToken(t, s, status, body, notesAPI, writer, s.TenantID(), "Notes.Write Notes.Read")
		status, body = apiOBO(t, s, writer, notesAPI.Scope(".default"))
		wantAPIToken(t, s, status, body, notesAPI, writer, s.TenantID(), "Notes.Read Notes.Write")
		if body["scope"] != "api://notes.demo/Notes.Read api://notes.demo/Notes.Write api://notes.demo/.default" {
			t.Errorf(".default scope = %v", body["scope"])
		}
	})
	t.Run("azpacr of a federated client assertion", func(t *testing.T) {
		t.Parallel()
		fs := startAPIs(t, Options{FederatedCredentials: []FederatedCredential{{Subject: miSubject}}})
		form := oboForm(fs, mint(t, fs, reader), "scope", notesAPI.Scope("Notes.Read"), "client_secret", "",
			"client_assertion_type", ClientAssertionType, "client_assertion", miToken(t, fs, miSubject))
		status, body := postToken(t, fs, form)
		if status != http.StatusOK {
			t.Fatalf("%d %v", status, body)
		}
		if c, _ := claimsOf(t, fs, body["access_token"].(string)); c["azpacr"] != "2" || c["aud"] != notesAPI.AppID {
			t.Errorf("claims = %v", c)
		}
	})
}

// TestOBOForAnAPIWithMSAL exchanges tokens as handler/obo does, through
// MSAL's confidential client, whose checks of the response (declined
// scopes, client_info, the cache) the stand-in must pass.
func TestOBOForAnAPIWithMSAL(t *testing.T) {
	t.Parallel()
	s := startAPIs(t, Options{})
	reader, _ := DemoUser("reader")
	for _, tc := range []struct {
		name   string
		scopes []string
		scp    string
	}{
		{"named permission", []string{notesAPI.Scope("Notes.Read")}, "Notes.Read"},
		{".default", []string{notesAPI.Scope(".default")}, "Notes.Read"},
		{"by application id", []string{notesAPI.AppID + "/.default"}, "Notes.Read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := secretClient(t, s, s.ClientSecret())
			assertion := mint(t, s, reader)
			res, err := c.AcquireTokenOnBehalfOf(context.Background(), assertion, tc.scopes)
			if err != nil {
				t.Fatalf("AcquireTokenOnBehalfOf: %v", err)
			}
			if cl, _ := claimsOf(t, s, res.AccessToken); cl["aud"] != notesAPI.AppID || cl["scp"] != tc.scp || cl["ver"] != "2.0" {
				t.Errorf("claims = %v", cl)
			}
			again, err := c.AcquireTokenOnBehalfOf(context.Background(), assertion, tc.scopes)
			if err != nil || again.AccessToken != res.AccessToken {
				t.Errorf("second call: %v, from the cache %v", err, err == nil && again.AccessToken == res.AccessToken)
			}
		})
	}
	t.Run("consent missing", func(t *testing.T) {
		t.Parallel()
		_, err := secretClient(t, s, s.ClientSecret()).AcquireTokenOnBehalfOf(context.Background(), mint(t, s, reader),
			[]string{notesAPI.Scope("Notes.Share")})
		wantAADError(t, err, http.StatusBadRequest, "invalid_grant", "AADSTS65001")
	})
}

// wantConsentRequired checks an on-behalf-of answer is Entra's refusal for
// missing consent.
func wantConsentRequired(t *testing.T, status int, body map[string]any) {
	t.Helper()
	desc, _ := body["error_description"].(string)
	if status != http.StatusBadRequest || body["error"] != "invalid_grant" || body["suberror"] != "consent_required" ||
		!strings.HasPrefix(desc, "AADSTS65001: ") || body["access_token"] != nil {
		t.Errorf("want consent_required: %d %v", status, body)
	}
}

func TestOBOAPIConsent(t *testing.T) {
	t.Parallel()
	t.Run("revoked", func(t *testing.T) {
		t.Parallel()
		s := startAPIs(t, Options{})
		reader, _ := DemoUser("reader")
		writer, _ := DemoUser("writer")
		if !s.RevokeConsent(reader.ObjectID, notesAPI.Scope("Notes.Read")) {
			t.Fatal("RevokeConsent refused Notes.Read")
		}
		status, body := apiOBO(t, s, reader, notesAPI.Scope("Notes.Read"))
		wantConsentRequired(t, status, body)
		// Nothing is left for .default either.
		status, body = apiOBO(t, s, reader, notesAPI.Scope(".default"))
		wantConsentRequired(t, status, body)
		// Consent is per user, and per resource: Graph's User.Read and
		// the Tasks API's consented permission are untouched.
		if status, body := apiOBO(t, s, writer, notesAPI.Scope("Notes.Read")); status != http.StatusOK {
			t.Errorf("another user: %d %v", status, body)
		}
		if status, body := apiOBO(t, s, reader, GraphResource+"/User.Read"); status != http.StatusOK {
			t.Errorf("Graph: %d %v", status, body)
		}
		if status, body := apiOBO(t, s, reader, tasksAPI.Scope("Tasks.Read")); status != http.StatusOK {
			t.Errorf("another API: %d %v", status, body)
		}
		// Granted back, by application id and in another case.
		if !s.GrantConsent(reader.ObjectID, notesAPI.AppID+"/notes.read") {
			t.Fatal("GrantConsent refused the application id form")
		}
		if status, body := apiOBO(t, s, reader, notesAPI.Scope("Notes.Read")); status != http.StatusOK {
			t.Errorf("after GrantConsent: %d %v", status, body)
		}
	})
	t.Run("not consented by default", func(t *testing.T) {
		t.Parallel()
		s := startAPIs(t, Options{})
		reader, _ := DemoUser("reader")
		// One permission without consent fails the whole request.
		status, body := apiOBO(t, s, reader, notesAPI.Scope("Notes.Read")+" "+notesAPI.Scope("Notes.Write"))
		wantConsentRequired(t, status, body)
		// A Graph permission of the same name says nothing of the API's.
		status, body = apiOBO(t, s, reader, tasksAPI.Scope("User.Read"))
		wantConsentRequired(t, status, body)
		s.GrantConsent(reader.ObjectID, tasksAPI.Scope("User.Read"))
		if status, body := apiOBO(t, s, reader, tasksAPI.Scope("User.Read")); status != http.StatusOK {
			t.Errorf("after GrantConsent: %d %v", status, body)
		}
		s.RevokeConsent(reader.ObjectID, "User.Read") // Graph's
		if status, body := apiOBO(t, s, reader, tasksAPI.Scope("User.Read")); status != http.StatusOK {
			t.Errorf("after revoking Graph's User.Read: %d %v", status, body)
		}
		status, body = apiOBO(t, s, reader, GraphResource+"/User.Read")
		wantConsentRequired(t, status, body)
	})
	t.Run("what GrantConsent knows", func(t *testing.T) {
		t.Parallel()
		s := startAPIs(t, Options{})
		for _, tc := range []struct {
			scope string
			known bool
		}{
			{notesAPI.Scope("Notes.Share"), true},
			{notesAPI.AppID + "/Notes.Share", true},
			{strings.ToUpper(notesAPI.AppID) + "/Notes.Share", true},
			{"Mail.Read", true},
			{GraphResource + "/Mail.Read", true},
			{GraphAppID + "/Mail.Read", true},
			{notesAPI.Scope("Notes.Delete"), false},
			{notesAPI.Scope(".default"), false},
			{"Notes.Read", false}, // a bare name is Graph's
			{"api://unknown.demo/Notes.Read", false},
			{s.Scope(), false},
		} {
			t.Run(tc.scope, func(t *testing.T) {
				if got := s.GrantConsent(DemoUsers()[0].ObjectID, tc.scope); got != tc.known {
					t.Errorf("GrantConsent(%q) = %v, want %v", tc.scope, got, tc.known)
				}
			})
		}
	})
}

func TestOBOAPIScopeErrors(t *testing.T) {
	t.Parallel()
	s := startAPIs(t, Options{})
	reader, _ := DemoUser("reader")
	notes := notesAPI.Scope("Notes.Read")
	for _, tc := range []struct {
		name   string
		scope  string
		code   string
		aadsts string
	}{
		{"unknown permission", notesAPI.Scope("Notes.Delete"), "invalid_scope", "AADSTS70011"},
		{"unknown permission by application id", notesAPI.AppID + "/Notes.Delete", "invalid_scope", "AADSTS70011"},
		{"an App Role is no delegated permission", notesAPI.Scope("Notes.Read.All"), "invalid_scope", "AADSTS70011"},
		{"API and Graph", notes + " " + GraphResource + "/User.Read", "invalid_scope", "AADSTS28000"},
		{"Graph and API", GraphResource + "/User.Read " + notes, "invalid_scope", "AADSTS28000"},
		{"two APIs", notes + " " + tasksAPI.Scope("Tasks.Read"), "invalid_scope", "AADSTS28000"},
		{"two APIs by .default", notesAPI.Scope(".default") + " " + tasksAPI.Scope(".default"), "invalid_scope", "AADSTS28000"},
		{"unknown resource", "api://unknown.demo/Notes.Read", "invalid_resource", "AADSTS500011"},
		{"unknown application id", "6d7e8f9a-0b1c-4d2e-8f3a-4b5c6d7e8f9a/.default", "invalid_resource", "AADSTS500011"},
		{"known, then unknown resource", notes + " api://unknown.demo/x", "invalid_resource", "AADSTS500011"},
		{".default with a named permission", notesAPI.Scope(".default") + " " + notes, "invalid_scope", "AADSTS70011"},
		{"bare permission name", "Notes.Read", "invalid_scope", "AADSTS70011"},
		{"the API itself", s.Scope(), "invalid_scope", "AADSTS70011"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			status, body := apiOBO(t, s, reader, tc.scope)
			desc, _ := body["error_description"].(string)
			if status != http.StatusBadRequest || body["error"] != tc.code || !strings.HasPrefix(desc, tc.aadsts+": ") ||
				body["suberror"] != nil || body["access_token"] != nil {
				t.Errorf("%d %v, want 400 %s %s", status, body, tc.code, tc.aadsts)
			}
		})
	}
	t.Run("scope is checked before the assertion", func(t *testing.T) {
		t.Parallel()
		status, body := postToken(t, s, oboForm(s, "not.a.jwt", "scope", "api://unknown.demo/x"))
		if desc, _ := body["error_description"].(string); status != 400 || !strings.HasPrefix(desc, "AADSTS500011: ") {
			t.Errorf("%d %v", status, body)
		}
	})
}

// TestOBOGraphBesideAPIs checks that configuring APIs leaves Graph as it
// was, and that the tokens of one resource are no good at another.
func TestOBOGraphBesideAPIs(t *testing.T) {
	t.Parallel()
	s := startAPIs(t, Options{})
	reader, _ := DemoUser("reader")
	t.Run("Graph token", func(t *testing.T) {
		t.Parallel()
		status, body := apiOBO(t, s, reader, GraphResource+"/User.Read")
		if status != http.StatusOK || body["scope"] != GraphResource+"/User.Read" {
			t.Fatalf("%d %v", status, body)
		}
		c, _ := claimsOf(t, s, body["access_token"].(string))
		if c["aud"] != GraphAppID || c["ver"] != "1.0" || c["appid"] != s.ClientID() || c["scp"] != "User.Read" {
			t.Errorf("Graph token = %v", c)
		}
		if status, _, me := getGraph(t, s, body["access_token"].(string)); status != http.StatusOK || me["id"] != reader.ObjectID {
			t.Errorf("Graph /me: %d %v", status, me)
		}
	})
	t.Run("API token", func(t *testing.T) {
		t.Parallel()
		_, body := apiOBO(t, s, reader, notesAPI.Scope("Notes.Read"))
		at, _ := body["access_token"].(string)
		if status, _, _ := getGraph(t, s, at); status != http.StatusUnauthorized {
			t.Errorf("Graph /me with an API token: %d", status)
		}
		// Nor is it an assertion the API can exchange: it is not for the
		// API.
		status, body := postToken(t, s, oboForm(s, at))
		if desc, _ := body["error_description"].(string); status != 400 || !strings.HasPrefix(desc, "AADSTS50013: ") {
			t.Errorf("API token as assertion: %d %v", status, body)
		}
	})
}

// wantAPIAppClaims checks that tok is app's v2 app-only token for api.
func wantAPIAppClaims(t *testing.T, s *Server, tok string, api API, app App, acr string) {
	t.Helper()
	c, _ := claimsOf(t, s, tok)
	want := map[string]any{
		"aud": api.AppID, "iss": s.Issuer(), "ver": "2.0", "tid": s.TenantID(), "idtyp": "app",
		"oid": app.ObjectID, "sub": app.ObjectID, "azp": app.ClientID, "azpacr": acr,
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("%s = %v, want %v", k, c[k], v)
		}
	}
	for _, k := range []string{"scp", "name", "preferred_username", "appid", "appidacr"} {
		if _, ok := c[k]; ok {
			t.Errorf("%s in an app-only token: %v", k, c[k])
		}
	}
	var roles []string
	for _, r := range asSlice(c["roles"]) {
		roles = append(roles, r.(string))
	}
	_, hasRoles := c["roles"]
	if !slices.Equal(roles, api.AppRoles) || hasRoles != (len(api.AppRoles) > 0) {
		t.Errorf("roles = %v, want %v", c["roles"], api.AppRoles)
	}
}

func TestClientCredentialsForAnAPI(t *testing.T) {
	t.Parallel()
	s := startAPIs(t, Options{})
	v1 := startAPIs(t, Options{AccessTokenVersion: 1})
	for _, tc := range []struct {
		name  string
		s     *Server
		app   App
		api   API
		scope string
	}{
		{"by Application ID URI", s, agentApp, notesAPI, notesAPI.Scope(".default")},
		{"by application id", s, agentApp, notesAPI, notesAPI.AppID + "/.default"},
		{"an app with no role of the API's own", s, idleApp, notesAPI, notesAPI.Scope(".default")},
		{"an API without App Roles", s, agentApp, tasksAPI, tasksAPI.Scope(".default") + " openid profile offline_access"},
		{"v2 whatever the API's version", v1, agentApp, notesAPI, notesAPI.Scope(".default")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			status, body := postToken(t, tc.s, ccForm(tc.s, tc.app, "scope", tc.scope))
			wantAPIAppClaims(t, tc.s, wantAppResponse(t, status, body), tc.api, tc.app, "1")
		})
	}
	t.Run("managed identity's assertion", func(t *testing.T) {
		t.Parallel()
		form := ccForm(s, miApp, "scope", notesAPI.Scope(".default"), "client_secret", "",
			"client_assertion_type", ClientAssertionType, "client_assertion", miToken(t, s, miSubject))
		status, body := postToken(t, s, form)
		wantAPIAppClaims(t, s, wantAppResponse(t, status, body), notesAPI, miApp, "2")
	})
	t.Run("MSAL", func(t *testing.T) {
		t.Parallel()
		cred, err := confidential.NewCredFromSecret(agentApp.Secret)
		if err != nil {
			t.Fatal(err)
		}
		res, err := appMSAL(t, s, agentApp, cred).AcquireTokenByCredential(context.Background(), []string{notesAPI.Scope(".default")})
		if err != nil {
			t.Fatalf("AcquireTokenByCredential: %v", err)
		}
		wantAPIAppClaims(t, s, res.AccessToken, notesAPI, agentApp, "1")
	})
	t.Run("the API's own tokens unchanged", func(t *testing.T) {
		t.Parallel()
		status, body := postToken(t, s, ccForm(s, agentApp))
		wantAppClaims(t, s, wantAppResponse(t, status, body), agentApp, "1")
	})
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		code   string
		aadsts string
	}{
		{"a delegated permission", ccForm(s, agentApp, "scope", notesAPI.Scope("Notes.Read")), 400, "invalid_scope", "AADSTS1002012"},
		{"two APIs", ccForm(s, agentApp, "scope", notesAPI.Scope(".default")+" "+tasksAPI.Scope(".default")), 400, "invalid_scope", "AADSTS70011"},
		{"an API and the API", ccForm(s, agentApp, "scope", notesAPI.Scope(".default")+" api://"+s.ClientID()+"/.default"), 400, "invalid_scope", "AADSTS70011"},
		{"unknown API", ccForm(s, agentApp, "scope", "api://unknown.demo/.default"), 400, "invalid_resource", "AADSTS500011"},
		{"Graph still", ccForm(s, agentApp, "scope", GraphResource+"/.default"), 400, "invalid_resource", "AADSTS500011"},
		{"the API application as a client", ccForm(s, App{ClientID: s.ClientID(), Secret: s.ClientSecret()}, "scope", notesAPI.Scope(".default")),
			401, "invalid_client", "AADSTS7000229"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			status, body := postToken(t, s, tc.form)
			desc, _ := body["error_description"].(string)
			if status != tc.status || body["error"] != tc.code || !strings.HasPrefix(desc, tc.aadsts+": ") || body["access_token"] != nil {
				t.Errorf("%d %v, want %d %s %s", status, body, tc.status, tc.code, tc.aadsts)
			}
		})
	}
}

func TestStartRefusesBadAPIs(t *testing.T) {
	t.Parallel()
	with := func(change func(*API)) []API {
		a := notesAPI
		a.Permissions = slices.Clone(a.Permissions)
		change(&a)
		return []API{a}
	}
	for name, apis := range map[string][]API{
		"app id not a GUID":                with(func(a *API) { a.AppID = "notes" }),
		"no Application ID URI":            with(func(a *API) { a.AppIDURI = "" }),
		"trailing slash":                   with(func(a *API) { a.AppIDURI += "/" }),
		"space in the URI":                 with(func(a *API) { a.AppIDURI = "api://notes demo" }),
		"the API's client id":              with(func(a *API) { a.AppID = DefaultClientID }),
		"the API's Application ID URI":     with(func(a *API) { a.AppIDURI = "api://" + DefaultClientID }),
		"Graph's app id":                   with(func(a *API) { a.AppID = GraphAppID }),
		"Graph's URI":                      with(func(a *API) { a.AppIDURI = GraphResource }),
		"listed twice":                     {notesAPI, notesAPI},
		"URI of another":                   {notesAPI, {AppID: tasksAPI.AppID, AppIDURI: notesAPI.AppIDURI}},
		"URI another's app id":             {notesAPI, {AppID: tasksAPI.AppID, AppIDURI: notesAPI.AppID}},
		"empty permission":                 with(func(a *API) { a.Permissions = append(a.Permissions, "") }),
		"permission with a slash":          with(func(a *API) { a.Permissions = append(a.Permissions, "Notes/Read") }),
		".default as permission":           with(func(a *API) { a.Permissions = append(a.Permissions, ".default") }),
		"permission twice":                 with(func(a *API) { a.Permissions = append(a.Permissions, "notes.read") }),
		"consent to an unknown permission": with(func(a *API) { a.Consented = []string{"Notes.Delete"} }),
		"App Role with a space":            with(func(a *API) { a.AppRoles = []string{"Notes Read"} }),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if s, err := Start(Options{APIs: apis}); err == nil {
				_ = s.Close()
				t.Errorf("started with %+v", apis)
			}
		})
	}
	t.Run("Options.APIs is copied", func(t *testing.T) {
		t.Parallel()
		apis := []API{notesAPI}
		apis[0].Permissions = slices.Clone(notesAPI.Permissions)
		s := start(t, Options{APIs: apis})
		apis[0].Permissions[0] = "Changed"
		reader, _ := DemoUser("reader")
		if status, body := apiOBO(t, s, reader, notesAPI.Scope("Notes.Read")); status != http.StatusOK {
			t.Errorf("after changing the caller's slice: %d %v", status, body)
		}
	})
}

func TestAPIScope(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ perm, want string }{
		{"Notes.Read", "api://notes.demo/Notes.Read"},
		{".default", "api://notes.demo/.default"},
	} {
		t.Run(tc.perm, func(t *testing.T) {
			if got := notesAPI.Scope(tc.perm); got != tc.want {
				t.Errorf("Scope(%q) = %q, want %q", tc.perm, got, tc.want)
			}
		})
	}
}
