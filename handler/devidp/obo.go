package devidp

// The on-behalf-of grant (Entra's OAuth 2.0 OBO flow): the API trades the
// access token a caller sent it (the assertion) for a token to a downstream
// API — Microsoft Graph, or one of Options.APIs — for the same user. Entra
// checks that the assertion is a user token issued to the API itself, that
// the scope names permissions of one resource, that the user (or an admin)
// consented to the API using them, and then issues a token whose audience
// is that resource.

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
// is ready: everyone has consented to what each resource's Consented lists
// (Graph's User.Read) and nothing else.
type oboState struct {
	mu sync.Mutex
	// consent overrides the default per user (object id) and permission,
	// keyed "<app id>/<permission>": true granted, false revoked.
	consent map[string]map[string]bool

	graphStatus   atomic.Int32 // forced Graph status while non-zero
	graphRequests atomic.Int64
}

// GrantConsent records that the user with object id oid consented to the
// API using the permission scope: a Graph permission ("Mail.Read", or in
// full "https://graph.microsoft.com/Mail.Read"), or a permission of one of
// Options.APIs in full ("<AppIDURI>/<perm>" or "<AppID>/<perm>"). It
// reports whether the permission is one the stand-in knows.
func (s *Server) GrantConsent(oid, scope string) bool { return s.setConsent(oid, scope, true) }

// RevokeConsent withdraws the user's consent to a permission, named as for
// GrantConsent, including the defaults (Graph's User.Read, an API's
// Consented); an on-behalf-of request for it then fails as Entra's does,
// with AADSTS65001 and suberror consent_required. It reports whether the
// permission is one the stand-in knows.
func (s *Server) RevokeConsent(oid, scope string) bool { return s.setConsent(oid, scope, false) }

func (s *Server) setConsent(oid, scope string, granted bool) bool {
	d, perm, ok := s.consentTarget(scope)
	if !ok {
		return false
	}
	s.obo.set(oid, d.AppID+"/"+perm, granted)
	return true
}

func (o *oboState) set(oid, key string, granted bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.consent == nil {
		o.consent = map[string]map[string]bool{}
	}
	if o.consent[oid] == nil {
		o.consent[oid] = map[string]bool{}
	}
	o.consent[oid][key] = granted
}

// consented reports whether user oid has consented to permission perm of
// d.
func (o *oboState) consented(oid string, d *downstream, perm string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if granted, ok := o.consent[oid][d.AppID+"/"+perm]; ok {
		return granted
	}
	return slices.Contains(d.Consented, perm)
}

// handleOBO answers an on-behalf-of request from the authenticated client
// c. Its errors carry Entra's suberror where Entra sends one, which MSAL
// and our code read to tell consent from other failures.
func (s *Server) handleOBO(w http.ResponseWriter, r *http.Request, form url.Values, c client) {
	resp, err := s.oboGrant(form, c)
	if err != nil {
		s.writeOBOError(w, r, err)
		return
	}
	if form.Get("client_info") != "1" {
		resp.ClientInfo = ""
	}
	writeNoStoreJSON(w, http.StatusOK, resp)
}

// oboGrant checks the request and the assertion presented by c and issues
// a token for the resource the scope names.
func (s *Server) oboGrant(form url.Values, c client) (tokenResponse, *aadError) {
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
	req, err := s.parseOBOScopes(form.Get("scope"))
	if err != nil {
		return tokenResponse{}, err
	}
	// The assertion is checked before consent, as Entra does: consent is
	// about a user, and only a valid assertion names one.
	user, tenant, err := s.verifyUserAssertion(assertion, c.id)
	if err != nil {
		return tokenResponse{}, err
	}
	granted, err := s.consentedPermissions(user.ObjectID, req)
	if err != nil {
		return tokenResponse{}, err
	}
	if req.target.graph {
		return s.issueGraphToken(user, tenant, req.perms, granted)
	}
	return s.issueAPIToken(user, tenant, c, req, granted)
}

// oboRequest is the parsed scope of an on-behalf-of request.
type oboRequest struct {
	target  *downstream
	perms   []string // canonical permission names, or ".default"
	written []string // the target's scopes as the client wrote them
}

// parseOBOScopes reads the scope of an on-behalf-of request: permissions
// of one resource (Graph or an API, named by its Application ID URI or its
// application id), ".default" for all consented ones, and OpenID Connect
// scopes, which MSAL always adds and which shape nothing here. Like Entra
// it refuses a scope naming two resources (AADSTS28000): a token has one
// audience.
func (s *Server) parseOBOScopes(raw string) (oboRequest, *aadError) {
	var req oboRequest
	for _, sc := range strings.Fields(raw) {
		if slices.Contains(oidcScopes, sc) {
			continue
		}
		d, perm, err := s.oboScope(raw, sc)
		if err != nil {
			return oboRequest{}, err
		}
		if req.target != nil && d != req.target {
			return oboRequest{}, newAADError(http.StatusBadRequest, "invalid_scope", 28000,
				"Provided value for the input parameter scope is not valid because it contains more than one resource. Scope %s is not valid.", raw)
		}
		req.target = d
		req.written = append(req.written, sc)
		if !slices.Contains(req.perms, perm) {
			req.perms = append(req.perms, perm)
		}
	}
	switch {
	case req.target == nil:
		return oboRequest{}, newAADError(http.StatusBadRequest, "invalid_scope", 70011,
			"The provided value for the input parameter 'scope' is not valid: it names no permission of %s or of an API of Options.APIs.", GraphResource)
	case !req.target.graph && slices.Contains(req.perms, ".default") && len(req.perms) > 1:
		// Graph's scopes have always been allowed to mix them here.
		return oboRequest{}, newAADError(http.StatusBadRequest, "invalid_scope", 70011,
			"The provided value for the input parameter 'scope' is not valid. The scope %s is not valid. .default scope can't be combined with resource-specific scopes.", raw)
	}
	return req, nil
}

// oboScope resolves one scope of the request raw to its resource and the
// canonical name of the permission, or ".default".
func (s *Server) oboScope(raw, sc string) (*downstream, string, *aadError) {
	i := strings.LastIndex(sc, "/")
	if i <= 0 || sc[:i] == s.appIDURI() || sc[:i] == s.clientID {
		// No resource, or the API's own: sign-in issues its tokens.
		return nil, "", newAADError(http.StatusBadRequest, "invalid_scope", 70011,
			"The provided value for the input parameter 'scope' is not valid. The scope '%s' is not valid. (devidp issues on-behalf-of tokens for %s and Options.APIs only.)", raw, GraphResource)
	}
	d := s.downstreamFor(sc[:i])
	if d == nil {
		return nil, "", newAADError(http.StatusBadRequest, "invalid_resource", 500011,
			"The resource principal named %s was not found in the tenant named %s. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant. (devidp knows %s and Options.APIs.)",
			sc[:i], s.tenantID, GraphResource)
	}
	name := sc[i+1:]
	if name == ".default" {
		return d, name, nil
	}
	perm, ok := d.permission(name)
	if !ok {
		return nil, "", newAADError(http.StatusBadRequest, "invalid_scope", 70011,
			"The provided value for the input parameter 'scope' is not valid. The scope '%s' does not exist on the resource '%s'.", sc, d.AppID)
	}
	return d, perm, nil
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
// user's consent: ".default" means every consented permission of the
// resource. Any missing consent fails the whole request, as Entra's does.
func (s *Server) consentedPermissions(oid string, req oboRequest) ([]string, *aadError) {
	var granted []string
	for _, perm := range req.perms {
		if perm == ".default" {
			for _, p := range req.target.Permissions {
				if s.obo.consented(oid, req.target, p) && !slices.Contains(granted, p) {
					granted = append(granted, p)
				}
			}
			continue
		}
		if !s.obo.consented(oid, req.target, perm) {
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
	at, err := s.Mint(u, WithVersion(1), WithTenant(tenant), WithClientApp(s.clientID), WithScopes(granted...),
		WithLifetime(s.atLifetime), WithIssuedAt(s.now()), WithClaims(map[string]any{
			"aud":             GraphAppID,
			"sub":             pairwiseSubject(u.ObjectID, GraphAppID),
			"roles":           nil,
			"app_displayname": "devidp API",
			"idtyp":           "user",
		}))
	if err != nil {
		return tokenResponse{}, issueFailed(err)
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
	return s.oboResponse(u, tenant, at, scopes)
}

// issueAPIToken mints a v2 access token for u to the API req names, as
// Entra issues one for a web API that asks for v2 tokens: aud its
// application id, the granted permissions in scp, the calling client c in
// azp and azpacr, and none of the user's App Roles of the calling API.
func (s *Server) issueAPIToken(u User, tenant string, c client, req oboRequest, granted []string) (tokenResponse, *aadError) {
	api := req.target
	at, err := s.Mint(u, WithVersion(2), WithTenant(tenant), WithClientApp(c.id), WithScopes(granted...),
		WithLifetime(s.atLifetime), WithIssuedAt(s.now()), WithClaims(map[string]any{
			"aud":    api.AppID,
			"sub":    pairwiseSubject(u.ObjectID, api.AppID),
			"azpacr": c.acr,
			"roles":  nil,
			"idtyp":  "user",
		}))
	if err != nil {
		return tokenResponse{}, issueFailed(err)
	}
	scopes := make([]string, 0, len(granted)+len(req.written))
	for _, p := range granted {
		scopes = append(scopes, api.Scope(p))
	}
	// Each requested scope as the client wrote it too (.default, or the
	// application id form): MSAL Go refuses a response whose scope lacks a
	// requested one ("declined scopes"), comparing case-insensitively, and
	// keys its cache on these.
	for _, sc := range req.written {
		if !slices.ContainsFunc(scopes, func(g string) bool { return strings.EqualFold(g, sc) }) {
			scopes = append(scopes, sc)
		}
	}
	return s.oboResponse(u, tenant, at, scopes)
}

// oboResponse is the token response around an on-behalf-of access token:
// no refresh or ID token, and client_info for MSAL's cache.
func (s *Server) oboResponse(u User, tenant, at string, scopes []string) (tokenResponse, *aadError) {
	info, err := json.Marshal(map[string]string{"uid": u.ObjectID, "utid": tenant})
	if err != nil {
		return tokenResponse{}, issueFailed(err)
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

// issueFailed is Entra's answer when it could not issue a token.
func issueFailed(err error) *aadError {
	return newAADError(http.StatusInternalServerError, "server_error", 90033, "Issuing tokens failed: %v", err)
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
