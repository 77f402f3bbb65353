package devidp

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// mintConfig collects MintOptions.
type mintConfig struct {
	version   int
	lifetime  time.Duration
	issuedAt  time.Time
	tenant    string
	clientApp string
	scopes    []string
	kid       string
	claims    map[string]any

	// Set by the client credentials grant for MintApp; see apps.go.
	appACR string // azpacr / appidacr; "1" (a secret) when empty
	appAud string // v1 aud, the resource as requested; api://<client id> when empty
}

// MintOption changes one aspect of a minted token.
type MintOption func(*mintConfig)

// WithVersion mints a v1 (1) or v2 (2) access token; the default is
// Options.AccessTokenVersion, 2 unless set. A v1 token has iss
// AuthorityHost()/<tid>/, aud api://<client id>, ver "1.0", appid instead of
// azp, and upn.
func WithVersion(v int) MintOption { return func(c *mintConfig) { c.version = v } }

// WithLifetime sets exp to iat + d (default one hour). A negative d mints an
// already expired token.
func WithLifetime(d time.Duration) MintOption { return func(c *mintConfig) { c.lifetime = d } }

// WithIssuedAt sets iat and nbf to t instead of the server clock's now.
func WithIssuedAt(t time.Time) MintOption { return func(c *mintConfig) { c.issuedAt = t } }

// WithTenant issues the token in tenant tid (tid claim and issuer) instead of
// the home tenant, as for a guest or a multi-tenant app.
func WithTenant(tid string) MintOption { return func(c *mintConfig) { c.tenant = tid } }

// WithClientApp sets the client the token was issued to (azp, or appid in v1);
// DefaultClientAppID when not given.
func WithClientApp(id string) MintOption { return func(c *mintConfig) { c.clientApp = id } }

// WithScopes sets the delegated scopes (scp claim); "access_as_user" when not
// given. No scopes omits the claim, as in an app-only token.
func WithScopes(scopes ...string) MintOption {
	return func(c *mintConfig) { c.scopes = append([]string{}, scopes...) }
}

// WithKeyID signs with the server's key kid instead of the current key,
// including a retired key.
func WithKeyID(kid string) MintOption { return func(c *mintConfig) { c.kid = kid } }

// WithClaims adds or overrides claims after all others are set. A nil value
// removes the claim.
func WithClaims(claims map[string]any) MintOption {
	return func(c *mintConfig) {
		if c.claims == nil {
			c.claims = map[string]any{}
		}
		for k, v := range claims {
			c.claims[k] = v
		}
	}
}

// Mint issues an RS256 access token for u with Entra's claims, signed with
// the current key unless WithKeyID says otherwise.
func (s *Server) Mint(u User, opts ...MintOption) (string, error) {
	c := s.mintConfig(opts)
	if u.ObjectID == "" {
		return "", fmt.Errorf("devidp: minting token: user %q has no object id", u.Key)
	}
	if c.version != 1 && c.version != 2 {
		return "", fmt.Errorf("devidp: minting token: unknown version %d", c.version)
	}
	iat := c.issuedAt
	if iat.IsZero() {
		iat = s.now()
	}
	claims := map[string]any{
		"iat":  iat.Unix(),
		"nbf":  iat.Unix(),
		"exp":  iat.Add(c.lifetime).Unix(),
		"aio":  randomString(48),
		"name": u.Name,
		"oid":  u.ObjectID,
		"rh":   "0." + randomString(40) + ".",
		"sub":  pairwiseSubject(u.ObjectID, s.clientID),
		"tid":  c.tenant,
		"uti":  randomString(16),
	}
	if len(u.Roles) > 0 {
		claims["roles"] = append([]string{}, u.Roles...)
	}
	if len(c.scopes) > 0 {
		claims["scp"] = strings.Join(c.scopes, " ")
	}
	if c.version == 2 {
		claims["aud"] = s.clientID
		claims["iss"] = s.issuerV2(c.tenant)
		claims["azp"] = c.clientApp
		claims["azpacr"] = "0"
		claims["preferred_username"] = u.Username
		claims["ver"] = "2.0"
	} else {
		claims["aud"] = "api://" + s.clientID
		claims["iss"] = s.issuerV1(c.tenant)
		claims["appid"] = c.clientApp
		claims["appidacr"] = "0"
		claims["acr"] = "1"
		claims["amr"] = []string{"pwd"}
		claims["upn"] = u.Username
		claims["unique_name"] = u.Username
		claims["ver"] = "1.0"
	}
	return s.signMinted(claims, c)
}

// mintConfig applies opts to the defaults of a minted token.
func (s *Server) mintConfig(opts []MintOption) mintConfig {
	c := mintConfig{version: s.atVersion, lifetime: time.Hour, tenant: s.tenantID, clientApp: DefaultClientAppID, scopes: []string{"access_as_user"}}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// signMinted applies WithClaims to claims and signs them as Entra signs an
// access token of c's version, with c's key.
func (s *Server) signMinted(claims map[string]any, c mintConfig) (string, error) {
	for k, v := range c.claims {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	key, err := s.keys.key(c.kid)
	if err != nil {
		return "", err
	}
	header := map[string]any{"typ": "JWT", "alg": "RS256", "kid": key.kid}
	if c.version == 1 {
		header["x5t"] = key.kid // Entra's v1 tokens repeat the thumbprint
	}
	return sign(header, claims, key)
}

// Sign encodes header and claims exactly as given and signs them with RS256
// under the current key, whatever the header's alg and kid say. It is for
// tests that forge tokens a verifier must refuse.
func (s *Server) Sign(header, claims map[string]any) (string, error) {
	key, err := s.keys.key("")
	if err != nil {
		return "", err
	}
	return sign(header, claims, key)
}

func sign(header, claims map[string]any, key *signingKey) (string, error) {
	h, err := json.Marshal(header)
	if err != nil {
		return "", fmt.Errorf("devidp: encoding header: %w", err)
	}
	p, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("devidp: encoding claims: %w", err)
	}
	signing := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p)
	sig, err := jwt.SigningMethodRS256.Sign(signing, key.priv)
	if err != nil {
		return "", fmt.Errorf("devidp: signing token: %w", err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// pairwiseSubject derives a sub that, like Entra's, is stable for a user and
// an application and differs between applications.
func pairwiseSubject(oid, app string) string {
	sum := sha256.Sum256([]byte(oid + "|" + app))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// randomString returns n random bytes, base64url encoded.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}
