package entra

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/golang-jwt/jwt/v5"
)

func TestVerifyValidV2(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	u := user(t, "writer")
	tok := e.mint(devidp.WithScopes("access_as_user", "other"))
	p, err := e.v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := Principal{
		Kind: CallerUser, TenantID: e.idp.TenantID(), ObjectID: u.ObjectID, Name: u.Name, Username: u.Username,
		AppID: devidp.DefaultClientAppID, Roles: u.Roles, Scopes: []string{"access_as_user", "other"},
		Expires: e.clock.Now().Add(time.Hour),
	}
	if p.Kind != want.Kind || p.TenantID != want.TenantID || p.ObjectID != want.ObjectID || p.Name != want.Name ||
		p.Username != want.Username || p.AppID != want.AppID || !slices.Equal(p.Roles, want.Roles) ||
		!slices.Equal(p.Scopes, want.Scopes) || !p.Expires.Equal(want.Expires) {
		t.Errorf("principal = %+v\nwant        %+v", *p, want)
	}
}

func TestVerifyValidV1(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.TokenVersion = 1 })
	u := user(t, "reader")
	tok, err := e.idp.Mint(u, devidp.WithVersion(1))
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if p.Kind != CallerUser || p.Username != u.Username || p.AppID != devidp.DefaultClientAppID || !slices.Equal(p.Roles, []string{"Task.Read"}) {
		t.Errorf("principal = %+v", *p)
	}
	// A custom App ID URI replaces api://<client id>.
	custom := e.newVerifier(func(c *Config) { c.TokenVersion = 1; c.AppIDURI = "https://contoso.example/api" })
	if _, err := custom.verify(context.Background(), tok); !errors.Is(err, errAudience) {
		t.Errorf("api:// token on custom App ID URI verifier: %v", err)
	}
	tok2, _ := e.idp.Mint(u, devidp.WithVersion(1), devidp.WithClaims(map[string]any{"aud": "https://contoso.example/api"}))
	if _, err := custom.verify(context.Background(), tok2); err != nil {
		t.Errorf("custom App ID URI: %v", err)
	}
}

// TestAttackMatrix feeds the verifier tokens it must refuse, and checks each
// is refused for the reason the case is about (so that a case cannot pass by
// tripping over an unrelated check).
func TestAttackMatrix(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.AllowedTenants = []string{devidp.DefaultTenantID, secondTenant} })
	attacker := startIdP(t, e.clock, attackerKey()) // a second issuer whose keys we must never use
	kid := e.idp.CurrentKeyID()
	valid := e.claims()
	pubDER, err := x509.MarshalPKIXPublicKey(must(e.idp.PublicKey("")))
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	attackerPub := must(attacker.PublicKey(""))
	attackerJWKS := attacker.Authority() + "/discovery/v2.0/keys"
	attackerSign := func(header map[string]any) string {
		tok, err := attacker.Sign(header, valid)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	hmac := func(secret []byte) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(valid))
		tok.Header["kid"] = kid
		s, err := tok.SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := e.sign(e.rs256Header(), valid)
	parts := strings.Split(good, ".")

	cases := []struct {
		name  string
		token string
		want  error // nil: must verify
	}{
		{"control: minted", e.mint(), nil},
		{"control: forged with the real key", good, nil},
		{"control: second allowed tenant", e.mint(devidp.WithTenant(secondTenant)), nil},
		{"control: exp within leeway", e.sign(e.rs256Header(), with(valid, "exp", e.clock.Now().Add(-30*time.Second).Unix())), nil},
		{"control: nbf within leeway", e.sign(e.rs256Header(), with(valid, "nbf", e.clock.Now().Add(30*time.Second).Unix())), nil},
		{"control: no typ", e.sign(with(e.rs256Header(), "typ", nil), valid), nil},

		{"alg none, no signature", unsigned(map[string]any{"alg": "none", "kid": kid}, valid, ""), errMalformed},
		{"alg none, junk signature", unsigned(map[string]any{"alg": "none", "kid": kid}, valid, "AAAA"), errAlg},
		{"alg None", unsigned(map[string]any{"alg": "None", "kid": kid}, valid, "AAAA"), errAlg},
		{"HS256 keyed with public key PEM", hmac(pubPEM), errAlg},
		{"HS256 keyed with public key DER", hmac(pubDER), errAlg},
		{"RS384 header", e.sign(with(e.rs256Header(), "alg", "RS384"), valid), errAlg},
		{"PS256 header", e.sign(with(e.rs256Header(), "alg", "PS256"), valid), errAlg},
		{"ES256 header", e.sign(with(e.rs256Header(), "alg", "ES256"), valid), errAlg},
		{"alg missing", e.sign(with(e.rs256Header(), "alg", nil), valid), errAlg},
		{"alg not a string", e.sign(with(e.rs256Header(), "alg", 256), valid), errMalformed},
		{"unknown kid", e.sign(with(e.rs256Header(), "kid", "no-such-kid"), valid), ErrUnknownKey},
		{"no kid", e.sign(with(e.rs256Header(), "kid", nil), valid), errHeader},
		{"huge kid", e.sign(with(e.rs256Header(), "kid", strings.Repeat("k", 4096)), valid), errHeader},
		{"typ not JWT", e.sign(with(e.rs256Header(), "typ", "at+jwt+evil"), valid), errHeader},
		{"crit header", e.sign(with(e.rs256Header(), "crit", []string{"exp"}), valid), errHeader},

		{"attacker key, attacker kid", attackerSign(map[string]any{"alg": "RS256", "kid": attacker.CurrentKeyID()}), ErrUnknownKey},
		{"attacker key, our kid", attackerSign(map[string]any{"alg": "RS256", "kid": kid}), errSignature},
		{"jku to attacker JWKS", attackerSign(map[string]any{"alg": "RS256", "kid": attacker.CurrentKeyID(), "jku": attackerJWKS}), errHeader},
		{"jku to attacker JWKS, our kid", attackerSign(map[string]any{"alg": "RS256", "kid": kid, "jku": attackerJWKS}), errHeader},
		{"x5u to attacker", attackerSign(map[string]any{"alg": "RS256", "kid": attacker.CurrentKeyID(), "x5u": attacker.AuthorityHost() + "/cert.pem"}), errHeader},
		{"jwk embeds attacker key", attackerSign(map[string]any{"alg": "RS256", "kid": attacker.CurrentKeyID(), "jwk": map[string]any{
			"kty": "RSA", "kid": attacker.CurrentKeyID(), "e": "AQAB",
			"n": base64.RawURLEncoding.EncodeToString(attackerPub.N.Bytes())}}), errHeader},
		{"x5c carries attacker cert", attackerSign(map[string]any{"alg": "RS256", "kid": attacker.CurrentKeyID(),
			"x5c": []string{base64.StdEncoding.EncodeToString(attacker.CertPEM())}}), errHeader},
		{"jku on a genuine token", e.sign(with(e.rs256Header(), "jku", attackerJWKS), valid), errHeader},
		{"jku null", e.sign(with(e.rs256Header(), "jku", json.RawMessage("null")), valid), errHeader},
		{"jku upper case", e.sign(with(e.rs256Header(), "JKU", attackerJWKS), valid), errHeader},

		{"expired", e.mint(devidp.WithIssuedAt(e.clock.Now().Add(-2 * time.Hour))), errExpired},
		{"expired beyond leeway", e.sign(e.rs256Header(), with(valid, "exp", e.clock.Now().Add(-61*time.Second).Unix())), errExpired},
		{"nbf in the future", e.sign(e.rs256Header(), with(valid, "nbf", e.clock.Now().Add(5*time.Minute).Unix())), errNotYetValid},
		{"missing exp", e.sign(e.rs256Header(), with(valid, "exp", nil)), errMissingExpiry},
		{"exp zero", e.sign(e.rs256Header(), with(valid, "exp", 0)), errMissingExpiry},
		{"exp as string", e.sign(e.rs256Header(), with(valid, "exp", "9999999999")), errClaims},
		{"exp at int64 limit", e.sign(e.rs256Header(), with(valid, "exp", int64(1<<63-1))), errExpired},
		{"nbf at int64 limit", e.sign(e.rs256Header(), with(valid, "nbf", int64(1<<63-1))), errNotYetValid},
		{"exp negative", e.sign(e.rs256Header(), with(valid, "exp", -1)), errExpired},
		{"exp fractional", e.sign(e.rs256Header(), with(valid, "exp", 9999999999.5)), errClaims},
		{"wrong aud", e.sign(e.rs256Header(), with(valid, "aud", "00000000-0000-4000-8000-000000000000")), errAudience},
		{"api:// aud on v2 token", e.sign(e.rs256Header(), with(valid, "aud", "api://"+e.idp.ClientID())), errAudience},
		{"aud as array", e.sign(e.rs256Header(), with(valid, "aud", []string{e.idp.ClientID()})), errClaims},
		{"wrong iss host", e.sign(e.rs256Header(), with(valid, "iss", "https://login.microsoftonline.com/"+e.idp.TenantID()+"/v2.0")), errIssuer},
		{"v1 iss on v2 token", e.sign(e.rs256Header(), with(valid, "iss", e.idp.AuthorityHost()+"/"+e.idp.TenantID()+"/")), errIssuer},
		{"iss tenant differs from tid", e.sign(e.rs256Header(), with(valid, "tid", secondTenant)), errIssuer},
		{"tenant not allowed", e.mint(devidp.WithTenant(otherTenant)), errTenant},
		{"tid upper case", e.sign(e.rs256Header(), with(valid, "tid", strings.ToUpper(e.idp.TenantID()))), errTenant},
		{"tid missing", e.sign(e.rs256Header(), with(valid, "tid", nil)), errTenant},
		{"oid missing", e.sign(e.rs256Header(), with(valid, "oid", nil)), errIdentity},
		{"oid not a GUID", e.sign(e.rs256Header(), with(valid, "oid", "admin@contoso.com")), errIdentity},
		{"roles as a string", e.mint(devidp.WithClaims(map[string]any{"roles": "MCPServer.Admin"})), errClaims},
		{"roles with a number", e.mint(devidp.WithClaims(map[string]any{"roles": []any{"Task.Read", 7}})), errClaims},
		{"v1 token on v2 verifier", e.mint(devidp.WithVersion(1)), errVersion},
		{"ver missing", e.sign(e.rs256Header(), with(valid, "ver", nil)), errVersion},

		{"claims tampered after signing", parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"roles":["MCPServer.Admin"]}`)) + "." + parts[2], errSignature},
		{"signature truncated", parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(must(base64.RawURLEncoding.DecodeString(parts[2]))[:255]), errSignature},
		{"signature bit-flipped", parts[0] + "." + parts[1] + "." + flipLastByte(parts[2]), errSignature},
		{"non-canonical base64 tail", parts[0] + "." + parts[1] + "." + strayBits(parts[2]), errMalformed},
		{"oversize junk", strings.Repeat("a", MaxTokenBytes+1), errTooLarge},
		{"oversize signed token", e.mint(devidp.WithClaims(map[string]any{"pad": strings.Repeat("p", MaxTokenBytes)})), errTooLarge},
		{"bad base64 in header", "!" + good[1:], errMalformed},
		{"std base64 alphabet", parts[0] + "." + parts[1] + "." + strings.ReplaceAll(strings.ReplaceAll(parts[2], "-", "+"), "_", "/") + "+/", errMalformed},
		{"padding", parts[0] + "." + parts[1] + "=." + parts[2], errMalformed},
		{"newline in signature", parts[0] + "." + parts[1] + "." + parts[2][:10] + "\n" + parts[2][10:], errMalformed},
		{"header not JSON", base64.RawURLEncoding.EncodeToString([]byte("RS256")) + "." + parts[1] + "." + parts[2], errMalformed},
		{"two segments", parts[0] + "." + parts[1], errMalformed},
		{"four segments", good + "." + parts[2], errMalformed},
		{"empty", "", errMalformed},
		{"empty payload", parts[0] + ".." + parts[2], errMalformed},
	}
	ctx := context.Background()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := e.v.verify(ctx, tc.token)
			if tc.want == nil {
				if err != nil || p == nil {
					t.Fatalf("valid token refused: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if p != nil {
				t.Fatal("principal returned with an error")
			}
			// The public method says nothing but "invalid token".
			if _, err := e.v.Verify(ctx, tc.token); err != ErrInvalidToken {
				t.Fatalf("Verify error = %v, want exactly ErrInvalidToken", err)
			}
		})
	}
	if n := attacker.JWKSFetches(); n != 0 {
		t.Errorf("verifier fetched the attacker's JWKS %d times", n)
	}
}

func TestV2TokenOnV1Verifier(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.TokenVersion = 1 })
	if _, err := e.v.verify(context.Background(), e.mint()); !errors.Is(err, errVersion) {
		t.Fatalf("got %v, want errVersion", err)
	}
	// A v1 token whose aud is the bare client id is refused too.
	tok, _ := e.idp.Mint(user(t, "reader"), devidp.WithVersion(1), devidp.WithClaims(map[string]any{"aud": e.idp.ClientID()}))
	if _, err := e.v.verify(context.Background(), tok); !errors.Is(err, errAudience) {
		t.Fatalf("got %v, want errAudience", err)
	}
}

// TestRejectionLogged checks that the reason reaches the log and the token
// does not.
func TestRejectionLogged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := e.mint(devidp.WithClaims(map[string]any{"aud": "api://wrong"}))
	if _, err := e.v.Verify(context.Background(), tok); err != ErrInvalidToken {
		t.Fatalf("Verify: %v", err)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "wrong audience") {
		t.Errorf("reason not logged: %s", logs)
	}
	sig := tok[strings.LastIndexByte(tok, '.')+1:]
	if strings.Contains(logs, sig) || strings.Contains(logs, tok[:40]) {
		t.Error("token written to the log")
	}
}

// TestForgedTokenWarningsAreLimited: a bad signature under a published kid
// is a warning (an attack, or a misconfigured issuer), but anyone can send
// such tokens, so a flood of them costs a few lines, not one per request,
// and the next line that goes out counts the ones left out.
func TestForgedTokenWarningsAreLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	good := e.mint()
	forged := good[:len(good)-4] + "AAAA" // the signature's last bytes changed
	const msg = `level=WARN msg="entra: token refused"`
	warnings := func() (n int, last string) {
		for line := range strings.Lines(e.logs.String()) {
			if strings.Contains(line, msg) {
				n, last = n+1, line
			}
		}
		return n, last
	}
	const flood = 100
	for range flood {
		if _, err := e.v.Verify(context.Background(), forged); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("forged token: %v", err)
		}
	}
	if n, _ := warnings(); n != maxRefusalWarnings {
		t.Errorf("%d warnings for %d forged tokens, want %d", n, flood, maxRefusalWarnings)
	}
	if n := strings.Count(e.logs.String(), `level=DEBUG msg="entra: token refused"`); n != flood-maxRefusalWarnings {
		t.Errorf("%d refusals at DEBUG, want the %d not warned about", n, flood-maxRefusalWarnings)
	}
	e.clock.Add(refusalWarningWindow)
	_, _ = e.v.Verify(context.Background(), forged)
	n, last := warnings()
	if want := fmt.Sprintf("similar_not_logged=%d", flood-maxRefusalWarnings); n != maxRefusalWarnings+1 || !strings.Contains(last, want) {
		t.Errorf("after the window: %d warnings, the last %q; want %d, the last with %s", n, last, maxRefusalWarnings+1, want)
	}
}

// TestRefusalBudgetsArePerReason: anyone can send forged signatures, but
// a flood of them must not hide a real client's wrong audience (a
// misconfiguration the operator has to see): each reason has its own
// budget.
func TestRefusalBudgetsArePerReason(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	good := e.mint()
	forged := good[:len(good)-4] + "AAAA"
	for range 2 * maxRefusalWarnings {
		_, _ = e.v.Verify(context.Background(), forged)
	}
	_, _ = e.v.Verify(context.Background(), e.mint(devidp.WithClaims(map[string]any{"aud": "api://wrong"})))
	for line := range strings.Lines(e.logs.String()) {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "wrong audience") {
			return
		}
	}
	t.Errorf("a wrong-audience refusal was not warned about during a flood of forged signatures:\n%s", e.logs.String())
}

func TestIssuerFor(t *testing.T) {
	t.Parallel()
	const tid = "11111111-2222-4333-8444-555555555555"
	cases := []struct{ authority, version, want string }{
		{"https://login.microsoftonline.com", "2.0", "https://login.microsoftonline.com/" + tid + "/v2.0"},
		{"https://login.microsoftonline.us", "2.0", "https://login.microsoftonline.us/" + tid + "/v2.0"},
		{"https://login.microsoftonline.com", "1.0", "https://sts.windows.net/" + tid + "/"},
		{"https://login.microsoftonline.us", "1.0", "https://sts.windows.net/" + tid + "/"},
		{"https://login.chinacloudapi.cn", "1.0", "https://sts.chinacloudapi.cn/" + tid + "/"},
		{"https://127.0.0.1:8443", "1.0", "https://127.0.0.1:8443/" + tid + "/"},
	}
	for _, c := range cases {
		t.Run(c.authority+" "+c.version, func(t *testing.T) {
			v, err := NewVerifier(Config{AuthorityHost: c.authority, TenantID: tid, ClientID: tid, TokenVersion: map[string]int{"1.0": 1, "2.0": 2}[c.version]})
			if err != nil {
				t.Fatal(err)
			}
			if got := v.issuers[tid]; got != c.want {
				t.Errorf("%s v%s: iss %s, want %s", c.authority, c.version, got, c.want)
			}
			if want := c.authority + "/" + tid + "/v2.0"; v.Issuer() != want {
				t.Errorf("Issuer() = %s, want %s", v.Issuer(), want)
			}
		})
	}
}

func TestNewVerifierConfig(t *testing.T) {
	t.Parallel()
	const guid = "11111111-2222-4333-8444-555555555555"
	ok := Config{AuthorityHost: "https://login.microsoftonline.com/", TenantID: guid, ClientID: guid}
	if _, err := NewVerifier(ok); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, host := range []string{"http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9"} {
		t.Run(host, func(t *testing.T) {
			if _, err := NewVerifier(with2(ok, func(c *Config) { c.AuthorityHost = host })); err != nil {
				t.Errorf("loopback http %s refused: %v", host, err)
			}
		})
	}
	bad := map[string]func(*Config){
		"plain http remote":    func(c *Config) { c.AuthorityHost = "http://login.microsoftonline.com" },
		"plain http lookalike": func(c *Config) { c.AuthorityHost = "http://localhost.evil.example" },
		"no scheme":            func(c *Config) { c.AuthorityHost = "login.microsoftonline.com" },
		"path":                 func(c *Config) { c.AuthorityHost = "https://login.microsoftonline.com/tenant" },
		"query":                func(c *Config) { c.AuthorityHost = "https://login.microsoftonline.com?x=1" },
		"userinfo":             func(c *Config) { c.AuthorityHost = "https://u:p@login.microsoftonline.com" },
		"tenant not GUID":      func(c *Config) { c.TenantID = "common" },
		"client not GUID":      func(c *Config) { c.ClientID = "api://x" },
		"allowed not GUID":     func(c *Config) { c.AllowedTenants = []string{guid, "organizations"} },
		"version 3":            func(c *Config) { c.TokenVersion = 3 },
	}
	for name, edit := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := NewVerifier(with2(ok, edit)); err == nil {
				t.Errorf("%s: accepted", name)
			}
		})
	}
}

func with2(c Config, edit func(*Config)) Config {
	edit(&c)
	return c
}

func TestRSAKeyChecks(t *testing.T) {
	t.Parallel()
	b := func(n *big.Int) string { return base64.RawURLEncoding.EncodeToString(n.Bytes()) }
	n2048 := new(big.Int).Lsh(big.NewInt(1), 2047)
	n1024 := new(big.Int).Lsh(big.NewInt(1), 1023)
	if _, err := rsaKey(b(n2048), "AQAB"); err != nil {
		t.Errorf("2048-bit key: %v", err)
	}
	if _, err := rsaKey(b(n1024), "AQAB"); err == nil {
		t.Error("1024-bit key accepted")
	}
	if _, err := rsaKey(b(n2048), "AQ"); err == nil {
		t.Error("exponent 1 accepted")
	}
	if _, err := rsaKey(b(n2048), "AQAAAAAAAAAB"); err == nil {
		t.Error("huge exponent accepted")
	}
}

func flipLastByte(seg string) string {
	b := must(base64.RawURLEncoding.DecodeString(seg))
	b[len(b)-1] ^= 1
	return base64.RawURLEncoding.EncodeToString(b)
}

// strayBits sets one of the unused low bits of seg's last character, which a
// lenient decoder ignores: the same signature, spelled differently.
func strayBits(seg string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, seg[len(seg)-1])
	return seg[:len(seg)-1] + string(alphabet[i|1])
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
