package entra

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
)

// newClock is a settable clock shared by the issuer and the verifier.
func newClock() *testkit.Clock { return testkit.NewClock(time.Unix(1_800_000_000, 0)) }

// env is an issuer and a verifier of its tokens, on one clock.
type env struct {
	t     testing.TB
	idp   *devidp.Server
	clock *testkit.Clock
	v     *Verifier
	logs  *testkit.SyncBuffer
}

// Tenants used across tests besides the issuer's home tenant.
const (
	otherTenant  = "22222222-3333-4444-8555-666666666666"
	secondTenant = "bbbbbbbb-cccc-4ddd-8eee-ffffffffffff"
)

// startIdP starts an issuer signing with key first (a key of its own when
// nil: two issuers that must not trust each other need two keys).
func startIdP(t testing.TB, c *testkit.Clock, key *rsa.PrivateKey) *devidp.Server {
	t.Helper()
	idp, err := devidp.Start(devidp.Options{Now: c.Now, SigningKey: key})
	if err != nil {
		t.Fatalf("devidp.Start: %v", err)
	}
	t.Cleanup(func() { _ = idp.Close() })
	return idp
}

// attackerKey is the key of the issuers whose tokens the tests' verifiers
// must refuse, made once for the binary as testkit.RSAKey is: they only
// need a key that is not the trusted issuer's, and each RSA-2048 key costs
// tens of milliseconds of CPU to make.
var attackerKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// newEnv starts an issuer and a warmed verifier; edit adjusts the config.
func newEnv(t testing.TB, edit func(*Config)) *env {
	t.Helper()
	e := &env{t: t, clock: newClock(), logs: &testkit.SyncBuffer{}}
	e.idp = startIdP(t, e.clock, testkit.RSAKey())
	e.v = e.newVerifier(edit)
	if err := e.v.Warm(context.Background()); err != nil {
		t.Fatalf("Warm: %v", err)
	}
	return e
}

func (e *env) config() Config {
	return Config{
		AuthorityHost: e.idp.AuthorityHost(),
		TenantID:      e.idp.TenantID(),
		ClientID:      e.idp.ClientID(),
		HTTPClient:    e.idp.HTTPClient(),
		Now:           e.clock.Now,
		Logger:        slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// newVerifier makes another (cold) verifier against e's issuer.
func (e *env) newVerifier(edit func(*Config)) *Verifier {
	e.t.Helper()
	cfg := e.config()
	if edit != nil {
		edit(&cfg)
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		e.t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

func user(t testing.TB, key string) devidp.User {
	t.Helper()
	u, ok := devidp.DemoUser(key)
	if !ok {
		t.Fatalf("no demo user %q", key)
	}
	return u
}

func (e *env) mint(opts ...devidp.MintOption) string {
	e.t.Helper()
	tok, err := e.idp.Mint(user(e.t, "writer"), opts...)
	if err != nil {
		e.t.Fatalf("Mint: %v", err)
	}
	return tok
}

// rs256Header is the header Entra would send, signed by the current key.
func (e *env) rs256Header() map[string]any {
	return map[string]any{"typ": "JWT", "alg": "RS256", "kid": e.idp.CurrentKeyID()}
}

// claims is a valid v2 claim set for the writer; tests edit it to forge.
func (e *env) claims() map[string]any {
	u := user(e.t, "writer")
	now := e.clock.Now()
	return map[string]any{
		"aud": e.idp.ClientID(), "iss": e.idp.Issuer(), "ver": "2.0", "tid": e.idp.TenantID(),
		"oid": u.ObjectID, "roles": u.Roles, "scp": "access_as_user",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

// sign signs header and claims with the issuer's current key, as given.
func (e *env) sign(header, claims map[string]any) string {
	e.t.Helper()
	tok, err := e.idp.Sign(header, claims)
	if err != nil {
		e.t.Fatalf("Sign: %v", err)
	}
	return tok
}

// with returns a copy of m with the given entries set (nil deletes).
func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

// unsigned encodes header and claims with an arbitrary signature, for tests
// that must fail before the signature is checked.
func unsigned(header, claims map[string]any, sig string) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "." + sig
}
