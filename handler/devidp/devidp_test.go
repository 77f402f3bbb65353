package devidp

import (
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/golang-jwt/jwt/v5"
)

func start(t *testing.T, opts Options) *Server {
	t.Helper()
	if opts.SigningKey == nil {
		opts.SigningKey = testkit.RSAKey()
	}
	s, err := Start(opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestTLSTrustsOnlyOwnCert(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	url := s.Issuer() + "/.well-known/openid-configuration"
	if _, err := http.Get(url); err == nil {
		t.Fatal("default client trusted the self-signed certificate")
	}
	var doc map[string]any
	if code := testkit.GetJSON(t, s.HTTPClient(), url, &doc).Status; code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	block, _ := pem.Decode(s.CertPEM())
	if block == nil {
		t.Fatal("CertPEM is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.VerifyHostname("localhost"); err != nil {
		t.Errorf("localhost: %v", err)
	}
	if err := cert.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("127.0.0.1: %v", err)
	}
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	s := start(t, Options{TenantID: "11111111-2222-3333-4444-555555555555"})
	c := s.HTTPClient()
	if !strings.HasPrefix(s.AuthorizeURL(), "http://127.0.0.1:") || s.TokenURL() != s.Authority()+"/oauth2/v2.0/token" {
		t.Errorf("AuthorizeURL() = %s, TokenURL() = %s", s.AuthorizeURL(), s.TokenURL())
	}
	if s.Issuer() != s.AuthorityHost()+"/11111111-2222-3333-4444-555555555555/v2.0" {
		t.Errorf("Issuer() = %s", s.Issuer())
	}
	var v2 struct {
		Issuer  string   `json:"issuer"`
		JWKSURI string   `json:"jwks_uri"`
		Auth    string   `json:"authorization_endpoint"`
		Token   string   `json:"token_endpoint"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	testkit.GetJSON(t, c, s.Issuer()+"/.well-known/openid-configuration", &v2)
	if v2.Issuer != s.Issuer() || v2.JWKSURI != s.Authority()+"/discovery/v2.0/keys" ||
		v2.Auth != s.AuthorizeURL() || v2.Token != s.TokenURL() ||
		!slices.Equal(v2.Algs, []string{"RS256"}) {
		t.Errorf("v2 discovery = %+v", v2)
	}
	var v1 struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	testkit.GetJSON(t, c, s.Authority()+"/.well-known/openid-configuration", &v1)
	if v1.Issuer != s.Authority()+"/" || v1.JWKSURI != s.Authority()+"/discovery/keys" {
		t.Errorf("v1 discovery = %+v", v1)
	}
}

type jwksDoc struct {
	Keys []jwk `json:"keys"`
}

func kids(t *testing.T, s *Server) []string {
	t.Helper()
	var set jwksDoc
	if code := testkit.GetJSON(t, s.HTTPClient(), s.Authority()+"/discovery/v2.0/keys", &set).Status; code != http.StatusOK {
		t.Fatalf("JWKS status %d", code)
	}
	var out []string
	for _, k := range set.Keys {
		if k.Kty != "RSA" || k.Use != "sig" || k.N == "" || k.E != "AQAB" {
			t.Errorf("bad key %+v", k)
		}
		out = append(out, k.Kid)
	}
	return out
}

func TestKeyRotationAndOutage(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	first := s.CurrentKeyID()
	if got := kids(t, s); !slices.Equal(got, []string{first}) {
		t.Fatalf("kids = %v, want [%s]", got, first)
	}
	second, err := s.RotateKey()
	if err != nil {
		t.Fatal(err)
	}
	if second == first || s.CurrentKeyID() != second {
		t.Fatalf("rotate: first %s second %s current %s", first, second, s.CurrentKeyID())
	}
	if got := kids(t, s); !slices.Equal(got, []string{first, second}) {
		t.Fatalf("after rotate kids = %v", got)
	}
	s.RetireKey(first)
	if got := kids(t, s); !slices.Equal(got, []string{second}) {
		t.Fatalf("after retire kids = %v", got)
	}
	s.SetJWKSFailing(true)
	var set jwksDoc
	if code := testkit.GetJSON(t, s.HTTPClient(), s.Authority()+"/discovery/keys", &set).Status; code != http.StatusServiceUnavailable {
		t.Fatalf("failing JWKS status %d", code)
	}
	if n := s.JWKSFetches(); n != 4 {
		t.Errorf("JWKSFetches = %d, want 4", n)
	}
}

// claimsOf verifies tok with golang-jwt's own parser, independently of the
// project's verifier, and returns its claims.
func claimsOf(t *testing.T, s *Server, tok string) (jwt.MapClaims, *jwt.Token) {
	t.Helper()
	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(tok, claims, func(tk *jwt.Token) (any, error) {
		kid, _ := tk.Header["kid"].(string)
		return s.PublicKey(kid)
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(s.now))
	if err != nil || !parsed.Valid {
		t.Fatalf("parse: %v", err)
	}
	return claims, parsed
}

func TestMintV2(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	s := start(t, Options{Now: func() time.Time { return now }})
	u, _ := DemoUser("writer")
	tok, err := s.Mint(u)
	if err != nil {
		t.Fatal(err)
	}
	c, parsed := claimsOf(t, s, tok)
	if parsed.Header["typ"] != "JWT" || parsed.Header["kid"] != s.CurrentKeyID() {
		t.Errorf("header = %v", parsed.Header)
	}
	want := map[string]any{
		"aud": s.ClientID(), "iss": s.Issuer(), "ver": "2.0", "tid": s.TenantID(), "oid": u.ObjectID,
		"name": u.Name, "preferred_username": u.Username, "azp": DefaultClientAppID, "azpacr": "0",
		"scp": "access_as_user", "iat": float64(now.Unix()), "nbf": float64(now.Unix()),
		"exp": float64(now.Add(time.Hour).Unix()),
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("%s = %v, want %v", k, c[k], v)
		}
	}
	if roles, _ := c["roles"].([]any); len(roles) != 1 || roles[0] != "Task.Write" {
		t.Errorf("roles = %v", c["roles"])
	}
	for _, k := range []string{"aio", "rh", "sub", "uti"} {
		if s, _ := c[k].(string); s == "" {
			t.Errorf("%s missing", k)
		}
	}
	tok2, _ := s.Mint(u)
	c2, _ := claimsOf(t, s, tok2)
	if c2["uti"] == c["uti"] || c2["sub"] != c["sub"] {
		t.Errorf("uti must differ and sub match: %v %v / %v %v", c["uti"], c2["uti"], c["sub"], c2["sub"])
	}
}

func TestMintV1AndOptions(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	u, _ := DemoUser("reader")
	other := "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
	tok, err := s.Mint(u, WithVersion(1), WithTenant(other), WithLifetime(5*time.Minute),
		WithClaims(map[string]any{"name": nil, "extra": "x"}), WithScopes())
	if err != nil {
		t.Fatal(err)
	}
	c, parsed := claimsOf(t, s, tok)
	if parsed.Header["x5t"] != s.CurrentKeyID() {
		t.Errorf("x5t = %v", parsed.Header["x5t"])
	}
	want := map[string]any{
		"aud": "api://" + s.ClientID(), "iss": s.AuthorityHost() + "/" + other + "/", "ver": "1.0",
		"tid": other, "appid": DefaultClientAppID, "upn": u.Username, "extra": "x",
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("%s = %v, want %v", k, c[k], v)
		}
	}
	for _, k := range []string{"name", "azp", "preferred_username", "scp"} {
		if _, ok := c[k]; ok {
			t.Errorf("%s present", k)
		}
	}
	if exp, iat := c["exp"].(float64), c["iat"].(float64); exp-iat != 300 {
		t.Errorf("lifetime = %v", exp-iat)
	}
}

func TestMintWithOldKeyAndSign(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	u, _ := DemoUser("admin")
	old := s.CurrentKeyID()
	if _, err := s.RotateKey(); err != nil {
		t.Fatal(err)
	}
	tok, err := s.Mint(u, WithKeyID(old))
	if err != nil {
		t.Fatal(err)
	}
	if _, parsed := claimsOf(t, s, tok); parsed.Header["kid"] != old {
		t.Errorf("kid = %v, want %s", parsed.Header["kid"], old)
	}
	if _, err := s.Mint(u, WithKeyID("nope")); err == nil {
		t.Error("minted with an unknown kid")
	}
	raw, err := s.Sign(map[string]any{"alg": "RS256", "kid": s.CurrentKeyID(), "jku": "https://evil"}, map[string]any{"a": 1})
	if err != nil {
		t.Fatal(err)
	}
	c, parsed := claimsOf(t, s, raw)
	if parsed.Header["jku"] != "https://evil" || c["a"] != float64(1) {
		t.Errorf("Sign changed its input: %v %v", parsed.Header, c)
	}
	if _, err := s.Mint(User{Key: "x"}); err == nil {
		t.Error("minted for a user without object id")
	}
}

func TestDemoUsers(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, u := range DemoUsers() {
		if u.ObjectID == "" || len(u.Roles) != 1 || seen[u.ObjectID] {
			t.Errorf("bad demo user %+v", u)
		}
		seen[u.ObjectID] = true
	}
	for key, role := range map[string]string{"reader": "Task.Read", "writer": "Task.Write", "all": "Task.All", "admin": "MCPServer.Admin"} {
		if u, ok := DemoUser(key); !ok || u.Roles[0] != role {
			t.Errorf("DemoUser(%s) = %+v", key, u)
		}
	}
}
