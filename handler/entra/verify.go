package entra

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unsafe"

	"github.com/entra-mcp/functions-mcp/handler/valid"
	"github.com/golang-jwt/jwt/v5"
)

// Reasons a token is refused. They go to the log, never to the caller.
var (
	errTooLarge      = errors.New("token too large")
	errMalformed     = errors.New("malformed token")
	errHeader        = errors.New("unacceptable header")
	errAlg           = errors.New("algorithm not RS256")
	errSignature     = errors.New("bad signature")
	errClaims        = errors.New("malformed claims")
	errVersion       = errors.New("wrong token version")
	errTenant        = errors.New("tenant not allowed")
	errIssuer        = errors.New("wrong issuer")
	errAudience      = errors.New("wrong audience")
	errExpired       = errors.New("token expired")
	errNotYetValid   = errors.New("token not yet valid")
	errMissingExpiry = errors.New("token has no exp")
	errIdentity      = errors.New("oid or tid missing or not a GUID")
	errNoScope       = errors.New("no scp: not a delegated access token (an ID token or an app-only token)")

	// Refusals of tokens without scp when app-only tokens are accepted, and
	// of tokens whose scp and idtyp disagree (see checkCaller).
	errAppWithScope  = errors.New("scp with idtyp app: neither a user token nor an app-only token")
	errIDType        = errors.New("no scp and idtyp is not app: not an app-only access token")
	errNoClientAuth  = errors.New("no scp, no idtyp, and azpacr/appidacr missing or not 0, 1 or 2: not an access token (an ID token?)")
	errAppNoRoles    = errors.New("app-only token without roles: nothing to authorise")
	errAppSubjectOid = errors.New("app-only token whose sub is not its oid: not an app-only token")
)

// b64 is the only base64 a JWT may use: URL alphabet, no padding, no stray
// bits. CR and LF, which it would skip, are refused first (see wellFormed).
var b64 = base64.RawURLEncoding.Strict()

// header is the JOSE header. The fields that could point at a key are
// decoded only to notice that they are there.
type header struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Jku  json.RawMessage `json:"jku"`
	X5u  json.RawMessage `json:"x5u"`
	Jwk  json.RawMessage `json:"jwk"`
	X5c  json.RawMessage `json:"x5c"`
	Crit json.RawMessage `json:"crit"`
}

// claims are the access-token claims we read. Types are strict: a roles
// claim that is a string, or an exp that is a string or a fraction, fails to
// decode rather than being coerced. A zero Exp or Nbf means absent (a token
// with exp 0 is long expired anyway).
//
// Sub, Idtyp, Azpacr and Appidacr are read only to tell an app-only access
// token from the other tokens without scp (see checkCaller).
type claims struct {
	Aud               string   `json:"aud"`
	Iss               string   `json:"iss"`
	Ver               string   `json:"ver"`
	Exp               int64    `json:"exp"`
	Nbf               int64    `json:"nbf"`
	Tid               string   `json:"tid"`
	Oid               string   `json:"oid"`
	Sub               string   `json:"sub"`
	Name              string   `json:"name"`
	PreferredUsername string   `json:"preferred_username"`
	Upn               string   `json:"upn"`
	Azp               string   `json:"azp"`
	Azpacr            string   `json:"azpacr"`
	Appid             string   `json:"appid"`
	Appidacr          string   `json:"appidacr"`
	Idtyp             string   `json:"idtyp"`
	Roles             []string `json:"roles"`
	Scp               string   `json:"scp"`
}

// Verify checks an access token (without the "Bearer " prefix) and returns
// its principal. Every refusal is ErrInvalidToken, except ErrUnavailable when
// no signing keys could ever be loaded. The returned Principal may be shared
// with other requests bearing the same token: treat it as read-only.
func (v *Verifier) Verify(ctx context.Context, token string) (*Principal, error) {
	p, err := v.verify(ctx, token)
	if err == nil {
		return p, nil
	}
	// Expired tokens are routine, and junk or unknown kids are what a flood
	// looks like: keep those out of the operators' way (unknown kids get a
	// warning of their own, limited per kid; see warnUnknownKid). The rest
	// (bad signature, wrong issuer, audience or tenant) point at an attack
	// or a misconfiguration, and are warned about; but anyone can forge
	// those too (the kids are public), so the warnings are limited (see
	// refusalWarnings) and the rest go to DEBUG.
	level := slog.LevelDebug
	attrs := []slog.Attr{slog.String("reason", err.Error())}
	if !errors.Is(err, errExpired) && !errors.Is(err, errTooLarge) && !errors.Is(err, errMalformed) &&
		!errors.Is(err, ErrUnknownKey) {
		if ok, skipped := v.refusals.take(reasonOf(err), v.now()); ok {
			level = slog.LevelWarn
			attrs = append(attrs, slog.Int64("similar_not_logged", skipped))
		}
	}
	v.log.LogAttrs(ctx, level, "entra: token refused", attrs...)
	if errors.Is(err, ErrUnavailable) {
		return nil, ErrUnavailable
	}
	return nil, ErrInvalidToken
}

// reasons are the refusals verify names; reasonOf maps an error to one of
// them, so that budgets keyed by reason stay a fixed set.
var reasons = []error{errHeader, errAlg, errSignature, errClaims, errVersion, errTenant, errIssuer, errAudience,
	errNotYetValid, errMissingExpiry, errIdentity, errNoScope, errAppWithScope, errIDType, errNoClientAuth,
	errAppNoRoles, errAppSubjectOid, ErrUnavailable}

func reasonOf(err error) error {
	for _, r := range reasons {
		if errors.Is(err, r) {
			return r
		}
	}
	return nil
}

// verify does the work of Verify and says why it refuses.
func (v *Verifier) verify(ctx context.Context, token string) (*Principal, error) {
	if len(token) > MaxTokenBytes {
		return nil, errTooLarge
	}
	now := v.now()
	sum := sha256.Sum256(stringBytes(token))
	if v.cache != nil {
		if p, ok := v.cache.get(sum, now, v.keys); ok {
			return p, nil
		}
	}

	pb, kid, key, err := v.signedPayload(ctx, token, now)
	if err != nil {
		return nil, err
	}

	// Only now, with the signature good, are the claims read.
	var c claims
	if err := json.Unmarshal(pb, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", errClaims, err)
	}
	kind, err := v.checkClaims(&c, now)
	if err != nil {
		return nil, err
	}

	p := &Principal{
		Kind:     kind,
		TenantID: c.Tid,
		ObjectID: strings.ToLower(c.Oid),
		Name:     c.Name,
		Username: c.PreferredUsername,
		AppID:    c.Azp,
		Roles:    c.Roles,
		Scopes:   strings.Fields(c.Scp),
		Expires:  time.Unix(c.Exp, 0),
	}
	if v.version == "1.0" {
		p.Username = c.Upn
		p.AppID = c.Appid
	}
	if v.cache != nil && now.Unix() < c.Exp {
		v.cache.put(sum, cacheEntry{principal: p, exp: c.Exp, kid: kid, key: key}, now)
	}
	return p, nil
}

// signedPayload checks a compact JWS the way every Entra token is checked
// (shape, header, RS256 signature with a key of the tenant's JWKS chosen by
// kid) and returns its payload bytes, which are trustworthy only because
// this returned no error.
func (v *Verifier) signedPayload(ctx context.Context, token string, now time.Time) (payload []byte, kid string, key *rsa.PublicKey, err error) {
	h64, p64, s64, ok := split(token)
	if !ok || !wellFormed(token) {
		return nil, "", nil, errMalformed
	}
	h, err := parseHeader(h64)
	if err != nil {
		return nil, "", nil, err
	}
	sig, err := b64.DecodeString(s64)
	if err != nil {
		return nil, "", nil, fmt.Errorf("%w: signature: %v", errMalformed, err)
	}
	// Decoded now so that junk is refused before the costly RSA check; the
	// claims are not read until the signature is good.
	pb, err := b64.DecodeString(p64)
	if err != nil {
		return nil, "", nil, fmt.Errorf("%w: claims: %v", errMalformed, err)
	}
	key, err = v.keys.Key(ctx, h.Kid, now)
	if err != nil {
		return nil, "", nil, fmt.Errorf("%w (kid %q)", err, shortKid(h.Kid))
	}
	// golang-jwt does the RSA check; parsing around it is ours because its
	// Parse costs more allocations than the budget allows.
	if err := jwt.SigningMethodRS256.Verify(token[:len(h64)+1+len(p64)], sig, key); err != nil {
		return nil, "", nil, fmt.Errorf("%w (kid %q)", errSignature, shortKid(h.Kid))
	}
	return pb, h.Kid, key, nil
}

// parseHeader decodes a JOSE header and refuses any that an Entra token
// would not carry.
func parseHeader(h64 string) (header, error) {
	var h header
	hb, err := b64.DecodeString(h64)
	if err != nil {
		return h, fmt.Errorf("%w: header: %v", errMalformed, err)
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return h, fmt.Errorf("%w: header: %v", errMalformed, err)
	}
	// Refuse key-carrying headers instead of merely ignoring them: a token
	// that tries to name its own key is an attack, not a token from Entra.
	if h.Jku != nil || h.X5u != nil || h.Jwk != nil || h.X5c != nil || h.Crit != nil {
		return h, fmt.Errorf("%w: carries jku, x5u, jwk, x5c or crit", errHeader)
	}
	if h.Alg != jwt.SigningMethodRS256.Alg() {
		return h, fmt.Errorf("%w: %.20q", errAlg, h.Alg)
	}
	if h.Typ != "" && !strings.EqualFold(h.Typ, "JWT") {
		return h, fmt.Errorf("%w: typ %.20q", errHeader, h.Typ)
	}
	if h.Kid == "" || len(h.Kid) > maxKidBytes {
		return h, fmt.Errorf("%w: kid missing or longer than %d bytes", errHeader, maxKidBytes)
	}
	return h, nil
}

// checkClaims applies the rules for version, tenant, issuer, audience, times
// and identity, and says what kind of caller the token is for.
func (v *Verifier) checkClaims(c *claims, now time.Time) (CallerKind, error) {
	if c.Ver != v.version {
		return "", fmt.Errorf("%w: %.10q, want %q", errVersion, c.Ver, v.version)
	}
	// The allow-list holds lower-case GUIDs, so a tid that is not one (or is
	// upper case) is simply not allowed.
	wantIss, ok := v.issuers[c.Tid]
	if !ok {
		return "", fmt.Errorf("%w: %.40q", errTenant, c.Tid)
	}
	// iss names the tenant too; checking it against the tid's issuer also
	// proves the two agree.
	if c.Iss != wantIss {
		return "", fmt.Errorf("%w: %.100q, want %q", errIssuer, c.Iss, wantIss)
	}
	if c.Aud != v.audience {
		return "", fmt.Errorf("%w: %.100q, want %q", errAudience, c.Aud, v.audience)
	}
	if c.Exp == 0 {
		return "", errMissingExpiry
	}
	// Whole seconds, as in the token. Integer arithmetic cannot wrap for any
	// exp or nbf a token could carry the way time.Time arithmetic can; an exp
	// near the int64 limit overflows to negative and so counts as expired.
	nowS, leeway := now.Unix(), int64(Leeway/time.Second)
	if nowS >= c.Exp+leeway {
		return "", errExpired
	}
	if c.Nbf != 0 && nowS+leeway < c.Nbf {
		return "", errNotYetValid
	}
	if !valid.GUID(c.Oid) || !valid.GUID(c.Tid) {
		return "", errIdentity
	}
	return v.checkCaller(c)
}

// checkCaller says whether c is a user's token or an app-only token, and
// refuses tokens that are neither. Every access token a user's client gets
// for this API carries scp. An ID token issued to this app has the same
// audience and issuer but no scp, and so has an app-only token: without scp
// a token is refused unless app-only tokens are accepted and it passes the
// checks below.
//
// What the checks rely on, from Microsoft's access token claims reference
// and optional claims reference (learn.microsoft.com/entra/identity-platform:
// access-token-claims-reference, optional-claims, id-token-claims-reference,
// v2-oauth2-client-creds-grant-flow):
//   - scp is "only included for user tokens"; app-only tokens from the client
//     credentials grant carry roles "in place of user scopes", and they "can
//     be issued without a roles claim" when the client has no App Role of
//     the API assigned. Authorisation here is by roles, so an app-only token
//     without roles has nothing to authorise and is refused.
//   - idtyp is an optional claim of access tokens, present only when the API
//     configures it; its value is "app" for app-only tokens, which makes it
//     "the most accurate way for an API to determine if a token is an app
//     token or an app+user token". Any other value without scp is refused,
//     and so is idtyp "app" with scp, which no Entra token carries (refused
//     only when app-only tokens are accepted: off, the rule stays exactly
//     what it was, scp or nothing).
//   - azpacr (in v2.0 access tokens) and appidacr (in v1.0 ones) say how
//     the client authenticated: "0" public client, "1" secret, "2"
//     certificate. ID tokens carry neither (nor azp or appid), so without
//     idtyp their presence is what tells an access token from an ID token.
//   - oid is the verified identity of "the user or service principal"; sub
//     is pairwise, "unique to a particular application ID", so in user and
//     ID tokens it differs from oid. In app-only tokens both are the service
//     principal's object id (not stated in the reference; observed in
//     Entra's tokens and noted in design.md §9), so sub must equal oid.
//
// The signature, issuer, audience, tenant and time checks are the same for
// both kinds and have passed before this is called.
func (v *Verifier) checkCaller(c *claims) (CallerKind, error) {
	if c.Scp != "" {
		// Delegated scopes in a token that says it is app-only: Entra
		// issues no such token, so it is refused whatever the setting.
		if c.Idtyp == "app" {
			return "", errAppWithScope
		}
		return CallerUser, nil
	}
	if !v.acceptApp {
		return "", errNoScope
	}
	switch c.Idtyp {
	case "app":
	case "":
		acr := c.Azpacr
		if v.version == "1.0" {
			acr = c.Appidacr
		}
		if acr != "0" && acr != "1" && acr != "2" {
			return "", errNoClientAuth
		}
	default:
		return "", fmt.Errorf("%w: %.10q", errIDType, c.Idtyp)
	}
	if len(c.Roles) == 0 {
		return "", errAppNoRoles
	}
	if c.Sub != c.Oid {
		return "", errAppSubjectOid
	}
	return CallerApp, nil
}

// IDToken is what sign-in takes from a verified ID token.
type IDToken struct {
	TenantID string
	ObjectID string
	Nonce    string
}

// VerifyIDToken checks an ID token issued to this app by Entra's v2
// endpoint (the sign-in callback receives one): signature with the tenant's
// keys, issuer, audience (the client id), allowed tenant, times and
// identity. The nonce is returned for the caller to compare.
//
// A refused token's error matches ErrInvalidToken and says why; it also
// matches ErrUnknownKey when the token was signed with a key this verifier
// has not loaded, which after a key rollover usually heals within
// MinRefreshInterval. ErrUnavailable means no keys could be loaded at all.
// Unlike Verify it explains itself because its caller is the sign-in
// callback, which logs the reason and picks the message, not a client.
func (v *Verifier) VerifyIDToken(ctx context.Context, token string) (IDToken, error) {
	id, err := v.verifyIDToken(ctx, token)
	if err != nil && !errors.Is(err, ErrUnavailable) {
		return IDToken{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return id, err
}

// verifyIDToken does the work of VerifyIDToken.
func (v *Verifier) verifyIDToken(ctx context.Context, token string) (IDToken, error) {
	if len(token) > MaxTokenBytes {
		return IDToken{}, errTooLarge
	}
	now := v.now()
	pb, _, _, err := v.signedPayload(ctx, token, now)
	if err != nil {
		return IDToken{}, err
	}
	var c struct {
		Iss   string `json:"iss"`
		Aud   string `json:"aud"`
		Exp   int64  `json:"exp"`
		Nbf   int64  `json:"nbf"`
		Tid   string `json:"tid"`
		Oid   string `json:"oid"`
		Nonce string `json:"nonce"`
	}
	if err := json.Unmarshal(pb, &c); err != nil {
		return IDToken{}, fmt.Errorf("%w: %v", errClaims, err)
	}
	wantIss, ok := v.idIssuers[c.Tid]
	switch {
	case !ok:
		return IDToken{}, fmt.Errorf("%w: %.40q", errTenant, c.Tid)
	case c.Iss != wantIss:
		return IDToken{}, fmt.Errorf("%w: %.100q, want %q", errIssuer, c.Iss, wantIss)
	case c.Aud != v.clientID:
		return IDToken{}, fmt.Errorf("%w: %.100q, want %q", errAudience, c.Aud, v.clientID)
	case c.Exp == 0:
		return IDToken{}, errMissingExpiry
	}
	nowS, leeway := now.Unix(), int64(Leeway/time.Second)
	if nowS >= c.Exp+leeway {
		return IDToken{}, errExpired
	}
	if c.Nbf != 0 && nowS+leeway < c.Nbf {
		return IDToken{}, errNotYetValid
	}
	if !valid.GUID(c.Oid) || !valid.GUID(c.Tid) {
		return IDToken{}, errIdentity
	}
	return IDToken{TenantID: c.Tid, ObjectID: strings.ToLower(c.Oid), Nonce: c.Nonce}, nil
}

// split cuts a compact JWS into its three parts; ok is false unless there are
// exactly three, all non-empty.
func split(token string) (h, p, s string, ok bool) {
	h, rest, ok1 := strings.Cut(token, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || h == "" || p == "" || s == "" || strings.IndexByte(s, '.') >= 0 {
		return "", "", "", false
	}
	return h, p, s, true
}

// wellFormed reports whether token is free of CR and LF. The strict base64
// decoder refuses every other character outside the URL alphabet, but it
// skips CR and LF, which would let many strings decode to one token;
// refusing them keeps one token, one spelling.
func wellFormed(token string) bool {
	return strings.IndexByte(token, '\n') < 0 && strings.IndexByte(token, '\r') < 0
}

// stringBytes views s as bytes without copying it. The cache key is hashed on
// every request, and copying a token of a few KiB was a third of the
// verifier's garbage; sha256 only reads its input, so sharing is safe.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
