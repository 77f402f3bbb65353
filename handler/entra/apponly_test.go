package entra

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
)

// An agent calling the API as itself: its application (client) id and the
// object id of its service principal.
const (
	agentAppID = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"
	agentOID   = "6b7c8d9e-0f1a-4b2c-8d3e-4f5a6b7c8d9e"
)

// acceptApps turns app-only tokens on.
func acceptApps(c *Config) { c.AcceptAppTokens = true }

// appClaims is a valid v2 app-only claim set as Entra issues it for the
// client credentials grant with a secret, without the optional idtyp claim.
func (e *env) appClaims() map[string]any {
	now := e.clock.Now()
	return map[string]any{
		"aud": e.idp.ClientID(), "iss": e.idp.Issuer(), "ver": "2.0", "tid": e.idp.TenantID(),
		"oid": agentOID, "sub": agentOID, "azp": agentAppID, "azpacr": "1", "roles": []string{"Task.Read"},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

// appClaimsV1 is appClaims as a v1 token: the v1 issuer and audience, appid
// and appidacr instead of azp and azpacr.
func (e *env) appClaimsV1() map[string]any {
	return with(e.appClaims(),
		"aud", "api://"+e.idp.ClientID(), "iss", e.idp.AuthorityHost()+"/"+e.idp.TenantID()+"/", "ver", "1.0",
		"azp", nil, "azpacr", nil, "appid", agentAppID, "appidacr", "1")
}

// checkApp checks that p is the agent with the given roles.
func checkApp(t *testing.T, p *Principal, tenant string, roles ...string) {
	t.Helper()
	if p.Kind != CallerApp || p.TenantID != tenant || p.ObjectID != agentOID || p.AppID != agentAppID ||
		!slices.Equal(p.Roles, roles) || len(p.Scopes) != 0 || p.Name != "" || p.Username != "" {
		t.Errorf("principal = %+v, want the agent (%s, %s) with roles %v", *p, agentOID, agentAppID, roles)
	}
}

// TestAppTokensRefusedByDefault checks that without AcceptAppTokens every
// token without scp is refused for the reason it was before the option
// existed, and a token with scp is a user's whatever its idtyp says.
func TestAppTokensRefusedByDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	app := e.appClaims()
	for _, tc := range []struct {
		name  string
		token string
	}{
		{"v2 app-only token", e.sign(e.rs256Header(), app)},
		{"v2 app-only token with idtyp app", e.sign(e.rs256Header(), with(app, "idtyp", "app"))},
		{"app-only token with azpacr 2", e.sign(e.rs256Header(), with(app, "azpacr", "2"))},
		{"ID token", e.mint(devidp.WithClaims(map[string]any{"scp": nil, "azp": nil, "azpacr": nil, "nonce": "n"}))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := e.v.verify(context.Background(), tc.token); !errors.Is(err, errNoScope) {
				t.Fatalf("got %v, want errNoScope", err)
			}
			if _, err := e.v.Verify(context.Background(), tc.token); err != ErrInvalidToken {
				t.Fatalf("Verify error = %v, want exactly ErrInvalidToken", err)
			}
		})
	}
	t.Run("v1 app-only token on a v1 verifier", func(t *testing.T) {
		t.Parallel()
		v1 := e.newVerifier(func(c *Config) { c.TokenVersion = 1 })
		if _, err := v1.verify(context.Background(), e.sign(e.rs256Header(), e.appClaimsV1())); !errors.Is(err, errNoScope) {
			t.Fatalf("got %v, want errNoScope", err)
		}
	})
	t.Run("scp with idtyp app is refused, app tokens accepted or not", func(t *testing.T) {
		t.Parallel()
		if _, err := e.v.verify(context.Background(), e.sign(e.rs256Header(), with(e.claims(), "idtyp", "app"))); !errors.Is(err, errAppWithScope) {
			t.Fatalf("got %v, want errAppWithScope", err)
		}
	})
}

// TestAppTokensAccepted checks the app-only tokens Entra issues, v2 and v1,
// with and without the idtyp optional claim.
func TestAppTokensAccepted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, acceptApps)
	v1 := e.newVerifier(func(c *Config) { acceptApps(c); c.TokenVersion = 1 })
	app, appV1 := e.appClaims(), e.appClaimsV1()
	tid := e.idp.TenantID()
	for _, tc := range []struct {
		name   string
		v      *Verifier
		claims map[string]any
	}{
		{"v2, secret", e.v, app},
		{"v2, certificate or assertion", e.v, with(app, "azpacr", "2")},
		{"v2, idtyp app", e.v, with(app, "idtyp", "app")},
		{"v2, idtyp app and no azpacr", e.v, with(app, "idtyp", "app", "azpacr", nil)},
		{"v2, two roles", e.v, with(app, "roles", []string{"Task.Read", "Task.Write"})},
		{"v1, secret", v1, appV1},
		{"v1, certificate, idtyp app", v1, with(appV1, "appidacr", "2", "idtyp", "app")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := tc.v.verify(context.Background(), e.sign(e.rs256Header(), tc.claims))
			if err != nil {
				t.Fatalf("app-only token refused: %v", err)
			}
			roles, _ := tc.claims["roles"].([]string)
			checkApp(t, p, tid, roles...)
			if want := time.Unix(tc.claims["exp"].(int64), 0); !p.Expires.Equal(want) {
				t.Errorf("Expires = %v, want %v", p.Expires, want)
			}
		})
	}
	t.Run("user tokens are still users", func(t *testing.T) {
		t.Parallel()
		for _, tok := range []string{e.mint(), e.mint(devidp.WithClaims(map[string]any{"idtyp": "user"}))} {
			p, err := e.v.verify(context.Background(), tok)
			if err != nil || p.Kind != CallerUser || len(p.Scopes) == 0 {
				t.Fatalf("user token: %+v, %v", p, err)
			}
		}
		tok, err := e.idp.Mint(user(t, "reader"), devidp.WithVersion(1))
		if err != nil {
			t.Fatal(err)
		}
		if p, err := v1.verify(context.Background(), tok); err != nil || p.Kind != CallerUser {
			t.Fatalf("v1 user token: %+v, %v", p, err)
		}
	})
}

// TestAppTokensRefused feeds a verifier that accepts app-only tokens the
// tokens without scp that are not app-only tokens for this API, and checks
// each is refused for the reason the case is about.
func TestAppTokensRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, acceptApps)
	v1 := e.newVerifier(func(c *Config) { acceptApps(c); c.TokenVersion = 1 })
	app, appV1 := e.appClaims(), e.appClaimsV1()
	writer := user(t, "writer")
	// An ID token issued to this app, as Entra's v2 endpoint makes it: the
	// API's audience and issuer, the user's roles, no scp, no azp or azpacr,
	// and a pairwise sub.
	idToken := with(e.claims(), "scp", nil, "nonce", "n", "sub", "pairwise-"+writer.ObjectID[:8])
	for _, tc := range []struct {
		name  string
		v     *Verifier
		token string
		want  error
	}{
		{"ID token", e.v, e.sign(e.rs256Header(), idToken), errNoClientAuth},
		{"ID token minted by the stand-in", e.v, e.mint(devidp.WithClaims(map[string]any{"scp": nil, "azp": nil, "azpacr": nil})), errNoClientAuth},
		{"ID token whose sub is its oid", e.v, e.sign(e.rs256Header(), with(idToken, "sub", writer.ObjectID)), errNoClientAuth},
		{"user token stripped of scp", e.v, e.mint(devidp.WithScopes()), errAppSubjectOid},
		{"no roles", e.v, e.sign(e.rs256Header(), with(app, "roles", nil)), errAppNoRoles},
		{"empty roles", e.v, e.sign(e.rs256Header(), with(app, "roles", []string{})), errAppNoRoles},
		{"idtyp app, no roles", e.v, e.sign(e.rs256Header(), with(app, "idtyp", "app", "roles", nil)), errAppNoRoles},
		{"idtyp user without scp", e.v, e.sign(e.rs256Header(), with(app, "idtyp", "user")), errIDType},
		{"idtyp upper case", e.v, e.sign(e.rs256Header(), with(app, "idtyp", "APP")), errIDType},
		{"idtyp app with scp", e.v, e.sign(e.rs256Header(), with(app, "idtyp", "app", "scp", "access_as_user")), errAppWithScope},
		{"user token with idtyp app", e.v, e.mint(devidp.WithClaims(map[string]any{"idtyp": "app"})), errAppWithScope},
		{"sub differs from oid", e.v, e.sign(e.rs256Header(), with(app, "sub", "7c8d9e0f-1a2b-4c3d-8e4f-5a6b7c8d9e0f")), errAppSubjectOid},
		{"sub missing", e.v, e.sign(e.rs256Header(), with(app, "sub", nil)), errAppSubjectOid},
		{"sub in other case", e.v, e.sign(e.rs256Header(), with(app, "sub", strings.ToUpper(agentOID))), errAppSubjectOid},
		{"no azpacr", e.v, e.sign(e.rs256Header(), with(app, "azpacr", nil)), errNoClientAuth},
		{"azpacr 3", e.v, e.sign(e.rs256Header(), with(app, "azpacr", "3")), errNoClientAuth},
		{"appidacr on a v2 token", e.v, e.sign(e.rs256Header(), with(app, "azpacr", nil, "appidacr", "1")), errNoClientAuth},
		{"azpacr on a v1 token", v1, e.sign(e.rs256Header(), with(appV1, "appidacr", nil, "azpacr", "1")), errNoClientAuth},
		{"azpacr as a number", e.v, e.sign(e.rs256Header(), with(app, "azpacr", 1)), errClaims},
		{"roles as a string", e.v, e.sign(e.rs256Header(), with(app, "roles", "Task.Read")), errClaims},
		{"wrong audience", e.v, e.sign(e.rs256Header(), with(app, "aud", "00000000-0000-4000-8000-000000000000")), errAudience},
		{"Graph's audience", e.v, e.sign(e.rs256Header(), with(app, "aud", devidp.GraphAppID)), errAudience},
		{"v1 audience on a v2 token", e.v, e.sign(e.rs256Header(), with(app, "aud", "api://"+e.idp.ClientID())), errAudience},
		{"other tenant", e.v, e.sign(e.rs256Header(), with(app, "tid", otherTenant, "iss", e.idp.AuthorityHost()+"/"+otherTenant+"/v2.0")), errTenant},
		{"iss of another tenant", e.v, e.sign(e.rs256Header(), with(app, "iss", e.idp.AuthorityHost()+"/"+otherTenant+"/v2.0")), errIssuer},
		{"v1 app token on the v2 verifier", e.v, e.sign(e.rs256Header(), appV1), errVersion},
		{"expired", e.v, e.sign(e.rs256Header(), with(app, "exp", e.clock.Now().Add(-2*time.Minute).Unix())), errExpired},
		{"no exp", e.v, e.sign(e.rs256Header(), with(app, "exp", nil)), errMissingExpiry},
		{"oid not a GUID", e.v, e.sign(e.rs256Header(), with(app, "oid", "agent", "sub", "agent")), errIdentity},
		{"signed by a key not the tenant's", e.v, signedByAttacker(t, e, app), errSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := tc.v.verify(context.Background(), tc.token)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if p != nil {
				t.Fatal("principal returned with an error")
			}
			if _, err := tc.v.Verify(context.Background(), tc.token); err != ErrInvalidToken {
				t.Fatalf("Verify error = %v, want exactly ErrInvalidToken", err)
			}
		})
	}
}

// signedByAttacker signs claims with another issuer's key under the
// tenant's current kid.
func signedByAttacker(t *testing.T, e *env, claims map[string]any) string {
	t.Helper()
	attacker := startIdP(t, e.clock, attackerKey())
	tok, err := attacker.Sign(e.rs256Header(), claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestAppTokenRefusalLogged checks that the reason for refusing an app-only
// token reaches the log, and the token does not.
func TestAppTokenRefusalLogged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, acceptApps)
	tok := e.sign(e.rs256Header(), with(e.appClaims(), "roles", nil))
	if _, err := e.v.Verify(context.Background(), tok); err != ErrInvalidToken {
		t.Fatalf("Verify: %v", err)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, errAppNoRoles.Error()) {
		t.Errorf("reason not logged: %s", logs)
	}
	if strings.Contains(logs, tok[strings.LastIndexByte(tok, '.')+1:]) || strings.Contains(logs, tok[:40]) {
		t.Error("token written to the log")
	}
}

// TestAppTokenCached checks that a repeated app-only token is answered from
// the verified-token cache with the same read-only principal.
func TestAppTokenCached(t *testing.T) {
	t.Parallel()
	e := newEnv(t, acceptApps)
	ctx := context.Background()
	tok := e.sign(e.rs256Header(), e.appClaims())
	p1, err := e.v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := e.v.Verify(ctx, tok)
	if err != nil || p2 != p1 {
		t.Fatalf("second Verify: %v, from the cache %v", err, p2 == p1)
	}
	checkApp(t, p2, e.idp.TenantID(), "Task.Read")
	if n := e.v.Stats().CachedTokens; n != 1 {
		t.Errorf("CachedTokens = %d, want 1", n)
	}
	// A verifier with app tokens off does not serve them, cached elsewhere
	// or not: the caches are per verifier.
	off := e.newVerifier(nil)
	if _, err := off.verify(ctx, tok); !errors.Is(err, errNoScope) {
		t.Errorf("verifier without AcceptAppTokens: %v, want errNoScope", err)
	}
}

// newAppEnv starts a stand-in with opts (on the env's clock and the shared
// test key) and a verifier of its tokens; edit adjusts the config.
func newAppEnv(t *testing.T, opts devidp.Options, edit func(*Config)) *env {
	t.Helper()
	e := &env{t: t, clock: newClock(), logs: &testkit.SyncBuffer{}}
	opts.Now, opts.SigningKey = e.clock.Now, testkit.RSAKey()
	idp, err := devidp.Start(opts)
	if err != nil {
		t.Fatalf("devidp.Start: %v", err)
	}
	t.Cleanup(func() { _ = idp.Close() })
	e.idp = idp
	e.v = e.newVerifier(edit)
	return e
}

// clientCredentials asks the stand-in's token endpoint, over HTTPS, for an
// app-only token for the API, as client authenticating with cred (name and
// value pairs: client_secret, or client_assertion_type and
// client_assertion).
func (e *env) clientCredentials(scope, client string, cred ...string) string {
	e.t.Helper()
	form := url.Values{"grant_type": {devidp.GrantClientCredentials}, "client_id": {client}, "scope": {scope}}
	for i := 0; i < len(cred); i += 2 {
		form.Set(cred[i], cred[i+1])
	}
	resp, err := e.idp.HTTPClient().PostForm(e.idp.TokenURL(), form)
	if err != nil {
		e.t.Fatalf("token request: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error_description"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK || body.AccessToken == "" {
		e.t.Fatalf("token request: %d %s (%v)", resp.StatusCode, body.Error, err)
	}
	return body.AccessToken
}

// TestStandInAppTokens gets app-only tokens from the stand-in's client
// credentials grant over HTTPS — by secret and by a managed identity's
// assertion, v1 and v2, with and without idtyp — and checks that the
// verifier accepts them with AcceptAppTokens, and only then; and that a
// token Entra issues to an application with no App Role assigned is refused.
func TestStandInAppTokens(t *testing.T) {
	t.Parallel()
	const miSubject = "1a2b3c4d-5e6f-4a7b-8c8d-9e0f1a2b3c4d"
	agent := devidp.App{ClientID: agentAppID, ObjectID: agentOID, DisplayName: "Task agent", Secret: "agent-secret",
		Roles: []string{"Task.Read", "Task.Write"}}
	mi := devidp.App{ClientID: "7c8d9e0f-1a2b-4c3d-8e4f-5a6b7c8d9e0f", ObjectID: "8d9e0f1a-2b3c-4d4e-8f5a-6b7c8d9e0f1a",
		DisplayName: "Nightly job", FederatedCredentials: []devidp.FederatedCredential{{Subject: miSubject}}, Roles: []string{"Task.Read"}}
	idle := devidp.App{ClientID: "9e0f1a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b", ObjectID: "0f1a2b3c-4d5e-4f6a-8b7c-8d9e0f1a2b3c",
		DisplayName: "Unassigned", Secret: "idle-secret"}
	for _, tc := range []struct {
		name    string
		version int
		idtyp   bool
	}{
		{"v2", 2, false},
		{"v2 with idtyp", 2, true},
		{"v1", 1, false},
		{"v1 with idtyp", 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			version := func(c *Config) { c.TokenVersion = tc.version }
			e := newAppEnv(t, devidp.Options{Apps: []devidp.App{agent, mi, idle}, AccessTokenVersion: tc.version, IDTypClaim: tc.idtyp},
				func(c *Config) { version(c); acceptApps(c) })
			off := e.newVerifier(version)
			ctx := context.Background()
			scope := "api://" + e.idp.ClientID() + "/.default"
			miToken, err := e.idp.Mint(devidp.User{Key: "mi", ObjectID: miSubject}, devidp.WithVersion(2), devidp.WithScopes(),
				devidp.WithClaims(map[string]any{"aud": devidp.TokenExchangeAudience, "sub": miSubject}))
			if err != nil {
				t.Fatal(err)
			}

			byAgent := e.clientCredentials(scope, agent.ClientID, "client_secret", agent.Secret)
			p, err := e.v.Verify(ctx, byAgent)
			if err != nil {
				t.Fatalf("agent's token refused: %v\n%s", err, e.logs)
			}
			if p.Kind != CallerApp || p.ObjectID != agent.ObjectID || p.AppID != agent.ClientID || p.TenantID != e.idp.TenantID() ||
				!slices.Equal(p.Roles, agent.Roles) || len(p.Scopes) != 0 {
				t.Errorf("agent = %+v", *p)
			}
			byMI := e.clientCredentials(scope, mi.ClientID, "client_assertion_type", devidp.ClientAssertionType, "client_assertion", miToken)
			if p, err := e.v.Verify(ctx, byMI); err != nil || p.Kind != CallerApp || p.ObjectID != mi.ObjectID || p.AppID != mi.ClientID {
				t.Errorf("managed identity's app: %+v, %v", p, err)
			}

			for name, tok := range map[string]string{"agent": byAgent, "managed identity": byMI} {
				t.Run(name, func(t *testing.T) {
					if _, err := off.Verify(ctx, tok); err != ErrInvalidToken {
						t.Errorf("%s's token without AcceptAppTokens: %v, want ErrInvalidToken", name, err)
					}
					if _, err := off.verify(ctx, tok); !errors.Is(err, errNoScope) {
						t.Errorf("%s's token without AcceptAppTokens: %v, want errNoScope", name, err)
					}
				})
			}
			byIdle := e.clientCredentials(scope, idle.ClientID, "client_secret", idle.Secret)
			if _, err := e.v.verify(ctx, byIdle); !errors.Is(err, errAppNoRoles) {
				t.Errorf("token without roles: %v, want errAppNoRoles", err)
			}
			// The stand-in's user tokens still verify as users beside them.
			u := user(t, "reader")
			userTok, err := e.idp.Mint(u)
			if err != nil {
				t.Fatal(err)
			}
			if p, err := e.v.Verify(ctx, userTok); err != nil || p.Kind != CallerUser || p.ObjectID != u.ObjectID {
				t.Errorf("user token: %+v, %v", p, err)
			}
		})
	}
}
