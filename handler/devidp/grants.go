package devidp

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// ScopeName is the one delegated scope the API exposes; clients request it
// as Server.Scope(), "api://<client id>/access_as_user".
const ScopeName = "access_as_user"

// Lifetimes of what the endpoints hand out.
const (
	codeLifetime    = 5 * time.Minute
	refreshLifetime = 90 * 24 * time.Hour // Entra's inactivity limit for refresh tokens
	idTokenLifetime = time.Hour
)

// oidcScopes are the OpenID Connect scopes Entra accepts next to a
// resource's scopes; they shape the response instead of the access token.
var oidcScopes = []string{"openid", "profile", "email", "offline_access"}

// scopeSet is a parsed scope parameter.
type scopeSet struct {
	api     []string // the API's scope names granted, e.g. ["access_as_user"]
	openID  bool     // an id_token is wanted
	offline bool     // a refresh token is wanted
}

// appIDURI is the API's Application ID URI, the prefix of its scopes.
func (s *Server) appIDURI() string { return "api://" + s.clientID }

// parseScopes splits a space-separated scope parameter into the API's scopes
// and the OpenID Connect ones. A scope of the API may be written with the App
// ID URI or the bare client id, as Entra accepts; ".default" means every
// scope the API exposes. Any other resource's scope is refused: the
// stand-in issues tokens for its own API only.
func (s *Server) parseScopes(raw string) (scopeSet, *aadError) {
	var set scopeSet
	for _, sc := range strings.Fields(raw) {
		if slices.Contains(oidcScopes, sc) {
			set.openID = set.openID || sc == "openid"
			set.offline = set.offline || sc == "offline_access"
			continue
		}
		name, ok := strings.CutPrefix(sc, s.appIDURI()+"/")
		if !ok {
			name, ok = strings.CutPrefix(sc, s.clientID+"/")
		}
		if !ok {
			return scopeSet{}, newAADError(http.StatusBadRequest, "invalid_scope", 70011,
				"The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope '%s' is not valid. (devidp issues tokens for %s only.)", raw, s.appIDURI())
		}
		switch name {
		case ScopeName, ".default":
			if !slices.Contains(set.api, ScopeName) {
				set.api = append(set.api, ScopeName)
			}
		default:
			return scopeSet{}, newAADError(http.StatusBadRequest, "invalid_scope", 65005,
				"The application '%s' asked for scope '%s' that doesn't exist on the resource '%s'. Contact the app vendor.", s.clientID, name, s.clientID)
		}
	}
	return set, nil
}

// grant is what a user signed in to a client for: the basis of every token
// issued from a code or a refresh token.
type grant struct {
	user      User
	clientID  string
	scopes    []string // API scope names
	openID    bool
	offline   bool
	sessionID string // the sign-in session: session_state and the sid claim
}

// authCode is an authorization code and what it is bound to.
type authCode struct {
	grant
	redirectURI string
	challenge   string // PKCE S256 code_challenge
	nonce       string
	expires     time.Time
	redeemed    bool
}

// refreshRecord is a live refresh token.
type refreshRecord struct {
	grant
	expires time.Time
	revoked bool
}

// grantStore holds the codes and refresh tokens handed out. Redeemed codes
// stay until they expire so that a second redemption gets Entra's "already
// redeemed" error. Used refresh tokens stay valid, as Entra's do, unless
// singleUse is set (a stricter mode tests use to catch a cache that loses
// the newest refresh token).
type grantStore struct {
	singleUse bool
	mu        sync.Mutex
	codes     map[string]*authCode
	rts       map[string]*refreshRecord
}

// addCode stores a new code for c and returns it.
func (g *grantStore) addCode(c authCode, now time.Time) string {
	code := randomString(48)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sweep(now)
	if g.codes == nil {
		g.codes = map[string]*authCode{}
	}
	g.codes[code] = &c
	return code
}

// redeemCode marks code redeemed and returns what it is bound to. A code is
// used up by its first presentation, even one that fails a later check
// (wrong verifier, wrong redirect URI): a stolen code gets one try.
func (g *grantStore) redeemCode(code string, now time.Time) (authCode, *aadError) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.codes[code]
	switch {
	case !ok:
		return authCode{}, newAADError(http.StatusBadRequest, "invalid_grant", 70000,
			"The provided value for the 'code' parameter is not valid.")
	case c.redeemed:
		return authCode{}, newAADError(http.StatusBadRequest, "invalid_grant", 54005,
			"OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.")
	case !now.Before(c.expires):
		return authCode{}, newAADError(http.StatusBadRequest, "invalid_grant", 70008,
			"The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.")
	}
	c.redeemed = true
	return *c, nil
}

// addRefreshToken stores a new refresh token for gr and returns it.
func (g *grantStore) addRefreshToken(gr grant, now time.Time) string {
	// Entra's refresh tokens are opaque and long; the length is part of what
	// a store for them (Redis, sealed) must cope with.
	rt := "1.devidp." + randomString(384)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sweep(now)
	if g.rts == nil {
		g.rts = map[string]*refreshRecord{}
	}
	g.rts[rt] = &refreshRecord{grant: gr, expires: now.Add(refreshLifetime)}
	return rt
}

// takeRefreshToken checks rt for clientID, and in single-use mode deletes
// it. The response carries the next one either way.
func (g *grantStore) takeRefreshToken(rt, clientID string, now time.Time) (grant, *aadError) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.rts[rt]
	switch {
	case !ok:
		return grant{}, newAADError(http.StatusBadRequest, "invalid_grant", 9002313,
			"Invalid request. Request is malformed or invalid.")
	case r.revoked:
		return grant{}, newAADError(http.StatusBadRequest, "invalid_grant", 50173,
			"The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.")
	case !now.Before(r.expires):
		return grant{}, newAADError(http.StatusBadRequest, "invalid_grant", 700082,
			"The refresh token has expired due to inactivity.")
	case r.clientID != clientID:
		return grant{}, newAADError(http.StatusBadRequest, "invalid_grant", 70000,
			"Provided grant is invalid or malformed.")
	}
	if g.singleUse {
		delete(g.rts, rt)
	}
	return r.grant, nil
}

// issued lists the live refresh tokens, for tests that check none of them
// leaks.
func (g *grantStore) issued() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, 0, len(g.rts))
	for rt := range g.rts {
		out = append(out, rt)
	}
	return out
}

// revoke marks every refresh token of the user objectID revoked and returns
// how many there were.
func (g *grantStore) revoke(objectID string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, r := range g.rts {
		if r.user.ObjectID == objectID && !r.revoked {
			r.revoked = true
			n++
		}
	}
	return n
}

// sweep drops expired codes and refresh tokens so that a long dev session
// does not grow the maps without bound. Callers hold g.mu.
func (g *grantStore) sweep(now time.Time) {
	for k, c := range g.codes {
		if !now.Before(c.expires) {
			delete(g.codes, k)
		}
	}
	for k, r := range g.rts {
		if !now.Before(r.expires) {
			delete(g.rts, k)
		}
	}
}

// RevokeRefreshTokens revokes every refresh token issued to the user with
// object id objectID, as a password reset or an admin's "revoke sessions"
// does in Entra; redeeming one then fails with AADSTS50173. It returns the
// number revoked.
func (s *Server) RevokeRefreshTokens(objectID string) int { return s.grants.revoke(objectID) }

// IssuedRefreshTokens returns every refresh token the stand-in has issued
// and still honours, so tests can check that none is stored or sent where
// it must not be.
func (s *Server) IssuedRefreshTokens() []string { return s.grants.issued() }
