package devidp

// The on-behalf-of grant (Entra's OAuth 2.0 OBO flow): the API trades the
// access token a caller sent it (the assertion) for a token to a downstream
// API, Microsoft Graph here, for the same user. Entra checks that the
// assertion is a user token issued to the API itself, that the user (or an
// admin) consented to the API using the downstream permissions, and then
// issues a token whose audience is the downstream API.

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// GrantJWTBearer is the grant_type of the on-behalf-of request (RFC 7523),
// as TokenRequests counts it.
const GrantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// Microsoft Graph as Entra names it.
const (
	// GraphResource is Graph's resource URI, the prefix of its scopes:
	// "https://graph.microsoft.com/User.Read".
	GraphResource = "https://graph.microsoft.com"
	// GraphAppID is Graph's application id, the aud of the tokens the
	// stand-in issues for Graph (as Entra's v2 endpoint does).
	GraphAppID = "00000003-0000-0000-c000-000000000000"
	// GraphUserRead is the delegated permission to read the signed-in
	// user's profile. Every user has consented to it unless RevokeConsent
	// says otherwise, so dev mode's profile tool works out of the box.
	GraphUserRead = "User.Read"
)

// graphPermissions are the Graph delegated permissions the stand-in knows,
// spelt as Graph spells them. Any other name is refused as Entra refuses a
// scope that does not exist, so a typo shows up in dev mode.
var graphPermissions = []string{"User.Read", "User.ReadBasic.All", "Mail.Read", "Calendars.Read", "Files.Read"}

// oboState is the stand-in's on-behalf-of and Graph state. Its zero value
// is ready: everyone has consented to User.Read and nothing else.
type oboState struct {
	mu sync.Mutex
	// consent overrides the default per user (object id) and permission:
	// true granted, false revoked.
	consent map[string]map[string]bool

	graphStatus   atomic.Int32 // forced Graph status while non-zero
	graphRequests atomic.Int64
}

// GrantConsent records that the user with object id oid consented to the
// API using the Graph permission scope ("Mail.Read", or in full
// "https://graph.microsoft.com/Mail.Read"). It reports whether the
// permission is one the stand-in knows.
func (s *Server) GrantConsent(oid, scope string) bool { return s.obo.set(oid, scope, true) }

// RevokeConsent withdraws the user's consent to a Graph permission,
// including the default User.Read; an on-behalf-of request for it then
// fails as Entra's does, with AADSTS65001 and suberror consent_required.
// It reports whether the permission is one the stand-in knows.
func (s *Server) RevokeConsent(oid, scope string) bool { return s.obo.set(oid, scope, false) }

func (o *oboState) set(oid, scope string, granted bool) bool {
	perm, ok := graphPermission(strings.TrimPrefix(scope, GraphResource+"/"))
	if !ok {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.consent == nil {
		o.consent = map[string]map[string]bool{}
	}
	if o.consent[oid] == nil {
		o.consent[oid] = map[string]bool{}
	}
	o.consent[oid][perm] = granted
	return true
}

// consented reports whether user oid has consented to perm.
func (o *oboState) consented(oid, perm string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if granted, ok := o.consent[oid][perm]; ok {
		return granted
	}
	return perm == GraphUserRead
}

// graphPermission returns the canonical spelling of a Graph permission
// name; Entra compares them case-insensitively.
func graphPermission(name string) (string, bool) {
	for _, p := range graphPermissions {
		if strings.EqualFold(p, name) {
			return p, true
		}
	}
	return "", false
}

// handleOBO answers an on-behalf-of request whose client, clientID, has
// been authenticated. Its errors carry Entra's suberror where Entra sends
// one, which MSAL and our code read to tell consent from other failures.
func (s *Server) handleOBO(w http.ResponseWriter, r *http.Request, form url.Values, clientID string) {
	resp, err := s.oboGrant(form, clientID)
	if err != nil {
		s.writeOBOError(w, r, err)
		return
	}
	if form.Get("client_info") != "1" {
		resp.ClientInfo = ""
	}
	writeNoStoreJSON(w, http.StatusOK, resp)
}

// oboGrant checks the request and the assertion presented by clientID and
// issues a Graph token.
func (s *Server) oboGrant(form url.Values, clientID string) (tokenResponse, *aadError) {
	switch use := form.Get("requested_token_use"); use {
	case "on_behalf_of":
	case "":
		return tokenResponse{}, missingParam("requested_token_use")
	default:
		return tokenResponse{}, newAADError(http.StatusBadRequest, "invalid_request", 90023,
			"The requested_token_use '%s' is not supported; use 'on_behalf_of'.", use)
	}
	assertion := form.Get("assertion")
	if assertion == "" {
		return tokenResponse{}, missingParam("assertion")
	}
	if !form.Has("scope") {
		return tokenResponse{}, missingParam("scope")
	}
	requested, err := s.parseGraphScopes(form.Get("scope"))
	if err != nil {
		return tokenResponse{}, err
	}
	// The assertion is checked before consent, as Entra does: consent is
	// about a user, and only a valid assertion names one.
	user, tenant, err := s.verifyUserAssertion(assertion, clientID)
	if err != nil {
		return tokenResponse{}, err
	}
	granted, err := s.consentedPermissions(user.ObjectID, requested)
	if err != nil {
		return tokenResponse{}, err
	}
	return s.issueGraphToken(user, tenant, requested, granted)
}

// parseGraphScopes reads the scope of an on-behalf-of request: Graph
// permissions (full or as Graph's app id), ".default" for all consented
// ones, and OpenID Connect scopes, which MSAL always adds and which shape
// nothing here. The result holds permission names, or ".default".
func (s *Server) parseGraphScopes(raw string) ([]string, *aadError) {
	var perms []string
	for _, sc := range strings.Fields(raw) {
		if slices.Contains(oidcScopes, sc) {
			continue
		}
		name, ok := strings.CutPrefix(sc, GraphResource+"/")
		if !ok {
			name, ok = strings.CutPrefix(sc, GraphAppID+"/")
		}
		if !ok {
			return nil, newAADError(http.StatusBadRequest, "invalid_scope", 70011,
				"The provided value for the input parameter 'scope' is not valid. The scope '%s' is not valid. (devidp issues on-behalf-of tokens for %s only.)", raw, GraphResource)
		}
		if name == ".default" {
			perms = append(perms, name)
			continue
		}
		perm, ok := graphPermission(name)
		if !ok {
			return nil, newAADError(http.StatusBadRequest, "invalid_scope", 70011,
				"The provided value for the input parameter 'scope' is not valid. The scope '%s' does not exist on the resource '%s'.", sc, GraphAppID)
		}
		if !slices.Contains(perms, perm) {
			perms = append(perms, perm)
		}
	}
	if len(perms) == 0 {
		return nil, newAADError(http.StatusBadRequest, "invalid_scope", 70011,
			"The provided value for the input parameter 'scope' is not valid: it names no permission of %s.", GraphResource)
	}
	return perms, nil
}

// assertionClaims are the claims of an assertion the stand-in reads.
type assertionClaims struct {
	jwt.RegisteredClaims
	TenantID          string `json:"tid"`
	ObjectID          string `json:"oid"`
	Name              string `json:"name"`
	PreferredUsername string `json:"preferred_username"`
	UPN               string `json:"upn"`
	Scp               string `json:"scp"`
	Ver               string `json:"ver"`
}

// verifyUserAssertion checks that assertion is a delegated access token the
// stand-in issued to the presenting client, clientID, in its time range,
// and returns its user and tenant. Like Entra it refuses tokens for other
// audiences (such as a Graph token, an id_token's client, or the API's
// token presented by another application), app-only tokens and expired
// ones.
func (s *Server) verifyUserAssertion(assertion, clientID string) (User, string, *aadError) {
	var c assertionClaims
	_, err := jwt.ParseWithClaims(assertion, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		return s.keys.publishedKey(kid)
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithExpirationRequired(), jwt.WithTimeFunc(s.now), jwt.WithLeeway(time.Minute))
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return User{}, "", newAADError(http.StatusBadRequest, "invalid_grant", 50027, "JWT token is invalid or malformed.")
	case errors.Is(err, jwt.ErrTokenExpired), errors.Is(err, jwt.ErrTokenNotValidYet):
		exp := "unknown"
		if c.ExpiresAt != nil {
			exp = c.ExpiresAt.UTC().Format(time.RFC1123)
		}
		return User{}, "", newAADError(http.StatusBadRequest, "invalid_grant", 500133,
			"Assertion is not within its valid time range. Ensure that the access token is not expired before using it for user assertion, or request a new token. Current time: %s, expiry time of assertion %s.",
			s.now().UTC().Format(time.RFC1123), exp)
	case err != nil:
		return User{}, "", newAADError(http.StatusBadRequest, "invalid_grant", 50013,
			"Assertion failed signature validation. [Reason - The key was not found.]")
	}
	if c.Issuer != s.issuerV2(c.TenantID) && c.Issuer != s.issuerV1(c.TenantID) {
		return User{}, "", newAADError(http.StatusBadRequest, "invalid_grant", 50013,
			"Assertion failed signature validation. [Reason - The issuer '%s' is not accepted.]", c.Issuer)
	}
	// Only the API has an Application ID URI here.
	ownAud := slices.Contains(c.Audience, clientID) || clientID == s.clientID && slices.Contains(c.Audience, s.appIDURI())
	if !ownAud {
		return User{}, "", newAADError(http.StatusBadRequest, "invalid_grant", 50013,
			"Assertion audience does not match the Client app presenting the assertion. The audience in the assertion was '%s' and the expected audience is '%s' or one of the Application Id URIs of this application.",
			strings.Join(c.Audience, ","), clientID)
	}
	if c.Scp == "" || c.ObjectID == "" {
		// An app-only token has roles but no scp; an id_token has neither.
		return User{}, "", newAADError(http.StatusBadRequest, "invalid_grant", 50013,
			"Assertion is not a delegated user access token: on-behalf-of needs a token with scp and oid. (devidp)")
	}
	if u, ok := s.directoryUser(c.ObjectID); ok {
		return u, c.TenantID, nil
	}
	username := c.PreferredUsername
	if username == "" {
		username = c.UPN
	}
	return User{Name: c.Name, Username: username, ObjectID: c.ObjectID}, c.TenantID, nil
}

// directoryUser finds a demo user by object id.
func (s *Server) directoryUser(oid string) (User, bool) {
	for _, u := range s.users {
		if u.ObjectID == oid {
			return u, true
		}
	}
	return User{}, false
}

// consentedPermissions resolves the requested permissions against the
// user's consent: ".default" means every consented permission. Any missing
// consent fails the whole request, as Entra's does.
func (s *Server) consentedPermissions(oid string, requested []string) ([]string, *aadError) {
	var granted []string
	for _, perm := range requested {
		if perm == ".default" {
			for _, p := range graphPermissions {
				if s.obo.consented(oid, p) && !slices.Contains(granted, p) {
					granted = append(granted, p)
				}
			}
			continue
		}
		if !s.obo.consented(oid, perm) {
			return nil, consentRequired(s.clientID)
		}
		if !slices.Contains(granted, perm) {
			granted = append(granted, perm)
		}
	}
	if len(granted) == 0 {
		return nil, consentRequired(s.clientID)
	}
	return granted, nil
}

// consentRequired is Entra's answer when the user has not consented to a
// permission the API asks for on their behalf.
func consentRequired(clientID string) *aadError {
	return newAADError(http.StatusBadRequest, "invalid_grant", 65001,
		"The user or administrator has not consented to use the application with ID '%s' named 'devidp API'. Send an interactive authorization request for this user and resource.", clientID)
}

// issueGraphToken mints a Graph access token for u. Graph's tokens are v1
// tokens whatever endpoint issued them; they carry the permissions in scp,
// the API as appid, and none of the API's App Roles.
func (s *Server) issueGraphToken(u User, tenant string, requested, granted []string) (tokenResponse, *aadError) {
	internal := func(err error) *aadError {
		return newAADError(http.StatusInternalServerError, "server_error", 90033, "Issuing tokens failed: %v", err)
	}
	now := s.now()
	at, err := s.Mint(u, WithVersion(1), WithTenant(tenant), WithClientApp(s.clientID), WithScopes(granted...),
		WithLifetime(s.atLifetime), WithIssuedAt(now), WithClaims(map[string]any{
			"aud":             GraphAppID,
			"sub":             pairwiseSubject(u.ObjectID, GraphAppID),
			"roles":           nil,
			"app_displayname": "devidp API",
			"idtyp":           "user",
		}))
	if err != nil {
		return tokenResponse{}, internal(err)
	}
	info, err := json.Marshal(map[string]string{"uid": u.ObjectID, "utid": tenant})
	if err != nil {
		return tokenResponse{}, internal(err)
	}
	scopes := make([]string, 0, len(granted)+1)
	for _, p := range granted {
		scopes = append(scopes, GraphResource+"/"+p)
	}
	if slices.Contains(requested, ".default") {
		// MSAL Go refuses a response whose scope lacks a requested scope
		// ("declined scopes"), so the expanded list keeps .default too.
		scopes = append(scopes, GraphResource+"/.default")
	}
	return tokenResponse{
		TokenType:    "Bearer",
		Scope:        strings.Join(scopes, " "),
		ExpiresIn:    int64(s.atLifetime.Seconds()),
		ExtExpiresIn: int64(s.atLifetime.Seconds()),
		AccessToken:  at,
		ClientInfo:   base64.RawURLEncoding.EncodeToString(info),
	}, nil
}

// writeOBOError writes e as writeTokenError does, adding Entra's suberror:
// consent_required for AADSTS65001.
func (s *Server) writeOBOError(w http.ResponseWriter, r *http.Request, e *aadError) {
	body := s.tokenErrorBody(r, e)
	if e.number == 65001 {
		body["suberror"] = "consent_required"
	}
	writeNoStoreJSON(w, e.status, body)
}
