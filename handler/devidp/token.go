package devidp

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// Grant types the token endpoint knows, as TokenRequests counts them.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
)

// tokenResponse is Entra's v2 token response, fields in Entra's order. A
// client credentials response has no scope.
type tokenResponse struct {
	TokenType    string `json:"token_type"`
	Scope        string `json:"scope,omitempty"`
	ExpiresIn    int64  `json:"expires_in"`
	ExtExpiresIn int64  `json:"ext_expires_in"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
	ClientInfo   string `json:"client_info,omitempty"`
}

// SetTokenFailing makes the token endpoint answer 503 while failing is true,
// to simulate an outage.
func (s *Server) SetTokenFailing(failing bool) { s.tokenFailing.Store(failing) }

// TokenRequests is the number of requests the token endpoint has received
// with grant_type grantType (such as GrantRefreshToken), including failed
// ones; "" counts requests without a grant type.
func (s *Server) TokenRequests(grantType string) int64 { return s.tokenRequests.get(grantType) }

// handleToken is the v2 token endpoint: it checks the request and the client,
// then hands the grant to its handler.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	form, ferr := tokenForm(r)
	s.tokenRequests.add(form.Get("grant_type"))
	if s.tokenFailing.Load() {
		w.Header().Set("Retry-After", "1")
		s.writeTokenError(w, r, newAADError(http.StatusServiceUnavailable, "temporarily_unavailable", 90033,
			"A transient error has occurred. Please try again."))
		return
	}
	if ferr != nil {
		s.writeTokenError(w, r, ferr)
		return
	}
	if tenant := r.PathValue("tenant"); !s.knownTenant(tenant) {
		s.writeTokenError(w, r, newAADError(http.StatusBadRequest, "invalid_request", 90002,
			"Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
		return
	}
	grantType := form.Get("grant_type")
	if grantType == "" {
		s.writeTokenError(w, r, missingParam("grant_type"))
		return
	}
	// Entra's v2 endpoint takes the resource from the scopes; it refuses an
	// RFC 8707 resource next to them (and on its own).
	if form.Has("resource") {
		if form.Has("scope") {
			s.writeTokenError(w, r, newAADError(http.StatusBadRequest, "invalid_target", 9010010,
				"The resource parameter provided in the request doesn't match with the requested scopes."))
		} else {
			s.writeTokenError(w, r, newAADError(http.StatusBadRequest, "invalid_request", 901002,
				"The 'resource' request parameter is not supported."))
		}
		return
	}
	c, err := s.authenticateClient(r, form)
	if err != nil {
		s.writeTokenError(w, r, err)
		return
	}

	// Codes and refresh tokens are bound to the client they were issued to,
	// and an on-behalf-of assertion must be addressed to the client
	// presenting it, so an application other than the API gets Entra's
	// errors for those grants from the checks they already make.
	var resp tokenResponse
	switch grantType {
	case GrantAuthorizationCode:
		resp, err = s.codeGrant(form, c.id)
	case GrantRefreshToken:
		resp, err = s.refreshGrant(form, c.id)
	case GrantClientCredentials:
		resp, err = s.clientCredentialsGrant(form, c)
	case GrantJWTBearer:
		s.handleOBO(w, r, form, c) // writes its own response: its errors carry a suberror
		return
	default:
		err = newAADError(http.StatusBadRequest, "unsupported_grant_type", 70003,
			"The app requested an unsupported grant type '%s'.", grantType)
	}
	if err != nil {
		s.writeTokenError(w, r, err)
		return
	}
	if form.Get("client_info") != "1" {
		resp.ClientInfo = "" // Entra sends client_info only when asked; MSAL always asks
	}
	writeNoStoreJSON(w, http.StatusOK, resp)
}

// tokenForm reads the form-encoded body. Query parameters are ignored, as a
// secret in a URL would be logged on the way.
func tokenForm(r *http.Request) (url.Values, *aadError) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/x-www-form-urlencoded" {
		return nil, newAADError(http.StatusBadRequest, "invalid_request", 900144,
			"The request body must contain the following parameter: 'grant_type'.")
	}
	if err := r.ParseForm(); err != nil {
		return nil, newAADError(http.StatusBadRequest, "invalid_request", 90023,
			"The request body could not be read.")
	}
	return r.PostForm, nil
}

// codeGrant redeems an authorization code: single use, bound to the client,
// the redirect URI and the PKCE challenge.
func (s *Server) codeGrant(form url.Values, clientID string) (tokenResponse, *aadError) {
	code := form.Get("code")
	if code == "" {
		return tokenResponse{}, missingParam("code")
	}
	redirectURI := form.Get("redirect_uri")
	if redirectURI == "" {
		return tokenResponse{}, missingParam("redirect_uri")
	}
	// Entra reads the token request's scope for which resource to issue the
	// access token for; the only resource here is the API, so the scopes of
	// the sign-in stand. The scope is still checked, before the code is
	// spent, so that a typo fails here.
	if form.Has("scope") {
		if _, err := s.parseScopes(form.Get("scope")); err != nil {
			return tokenResponse{}, err
		}
	}
	c, err := s.grants.redeemCode(code, s.now())
	if err != nil {
		return tokenResponse{}, err
	}
	if c.clientID != clientID {
		return tokenResponse{}, newAADError(http.StatusBadRequest, "invalid_grant", 70000,
			"Provided grant is invalid or malformed.")
	}
	if c.redirectURI != redirectURI {
		return tokenResponse{}, newAADError(http.StatusBadRequest, "invalid_grant", 500112,
			"The reply address '%s' does not match the reply address '%s' provided when requesting Authorization code.", redirectURI, c.redirectURI)
	}
	if !pkceMatches(form.Get("code_verifier"), c.challenge) {
		return tokenResponse{}, newAADError(http.StatusBadRequest, "invalid_grant", 501481,
			"The Code_Verifier does not match the code_challenge supplied in the authorization request.")
	}
	return s.issue(c.grant, c.nonce, scopeWantsOffline(form.Get("scope")))
}

// refreshGrant redeems a refresh token. Entra requires the scope again on
// every refresh. Rotation is stricter than Entra, whose old refresh tokens
// keep working: here the old one stops working, so a store that saves the
// new token wrongly, or a client that replays an old one, fails in tests.
func (s *Server) refreshGrant(form url.Values, clientID string) (tokenResponse, *aadError) {
	rt := form.Get("refresh_token")
	if rt == "" {
		return tokenResponse{}, missingParam("refresh_token")
	}
	if !form.Has("scope") {
		return tokenResponse{}, missingParam("scope")
	}
	if _, err := s.parseScopes(form.Get("scope")); err != nil {
		return tokenResponse{}, err
	}
	g, err := s.grants.takeRefreshToken(rt, clientID, s.now())
	if err != nil {
		return tokenResponse{}, err
	}
	// An id_token on refresh carries no nonce, like Entra's.
	return s.issue(g, "", false)
}

// scopeWantsOffline reports whether a token request's scope has
// offline_access. Entra issues a refresh token when the sign-in or the
// redemption asks for it; MSAL always puts it in the redemption.
func scopeWantsOffline(scope string) bool {
	for _, sc := range strings.Fields(scope) {
		if sc == "offline_access" {
			return true
		}
	}
	return false
}

// pkceRE is RFC 7636's code_verifier: 43 to 128 unreserved characters.
var pkceRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

// pkceMatches reports whether verifier hashes (S256) to challenge.
func pkceMatches(verifier, challenge string) bool {
	if !pkceRE.MatchString(verifier) {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}

// issue makes the tokens of g: an access token for the API, an id_token if
// openid was granted, a refresh token if offline_access was asked for at
// sign-in or now, and client_info, from which MSAL takes the account's home
// id "<uid>.<utid>".
func (s *Server) issue(g grant, nonce string, offline bool) (tokenResponse, *aadError) {
	internal := func(err error) *aadError {
		return newAADError(http.StatusInternalServerError, "server_error", 90033, "Issuing tokens failed: %v", err)
	}
	now := s.now()
	at, err := s.Mint(g.user, WithClientApp(g.clientID), WithScopes(g.scopes...), WithLifetime(s.atLifetime), WithIssuedAt(now))
	if err != nil {
		return tokenResponse{}, internal(err)
	}
	info, err := json.Marshal(map[string]string{"uid": g.user.ObjectID, "utid": s.tenantID})
	if err != nil {
		return tokenResponse{}, internal(err)
	}
	resp := tokenResponse{
		TokenType:    "Bearer",
		Scope:        strings.Join(s.grantedScopes(g.scopes), " "),
		ExpiresIn:    int64(s.atLifetime.Seconds()),
		ExtExpiresIn: int64(s.atLifetime.Seconds()),
		AccessToken:  at,
		ClientInfo:   base64.RawURLEncoding.EncodeToString(info),
	}
	if g.openID {
		if resp.IDToken, err = s.idToken(g, nonce); err != nil {
			return tokenResponse{}, internal(err)
		}
	}
	if g.offline || offline {
		g.offline = true // the next refresh keeps issuing refresh tokens
		resp.RefreshToken = s.grants.addRefreshToken(g, now)
	}
	return resp, nil
}

// idToken signs a v2 id_token for g with the access tokens' keys.
func (s *Server) idToken(g grant, nonce string) (string, error) {
	now := s.now()
	claims := map[string]any{
		"aud":                g.clientID,
		"iss":                s.issuerV2(s.tenantID),
		"iat":                now.Unix(),
		"nbf":                now.Unix(),
		"exp":                now.Add(idTokenLifetime).Unix(),
		"aio":                randomString(48),
		"name":               g.user.Name,
		"oid":                g.user.ObjectID,
		"preferred_username": g.user.Username,
		"rh":                 "0." + randomString(40) + ".",
		"sid":                g.sessionID,
		"sub":                pairwiseSubject(g.user.ObjectID, g.clientID),
		"tid":                s.tenantID,
		"uti":                randomString(16),
		"ver":                "2.0",
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	key, err := s.keys.key("")
	if err != nil {
		return "", err
	}
	return sign(map[string]any{"typ": "JWT", "alg": "RS256", "kid": key.kid}, claims, key)
}
