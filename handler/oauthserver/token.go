package oauthserver

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/entra-mcp/functions-mcp/handler/clientip"
	"github.com/entra-mcp/functions-mcp/handler/grants"
	"github.com/entra-mcp/functions-mcp/handler/httpx"
	"github.com/entra-mcp/functions-mcp/handler/oauthclients"
	"github.com/entra-mcp/functions-mcp/handler/oautherr"
)

// Token serves POST /oauth/token: the authorization_code and refresh_token
// grants for public clients.
func (s *Server) Token(w http.ResponseWriter, r *http.Request) {
	form, ok := readForm(w, r)
	if !ok {
		return
	}
	client, ok := s.client(w, r, form)
	if !ok {
		return
	}
	grant := form.Get("grant_type")
	if refusal := s.checkTokenRequest(form, client, grant); refusal != nil {
		oautherr.Write(w, refusal)
		return
	}
	var (
		t         grants.Tokens
		err       error
		retryHint string
	)
	if grant == "authorization_code" {
		t, err = s.opts.Grants.RedeemCode(r.Context(), form.Get("code"), codeCheck(client, form), client.AllowsGrant("refresh_token"))
		retryHint = "the service did not answer in time; the code may have been used up: if redeeming it again fails, start the authorization again"
	} else {
		t, err = s.opts.Grants.Refresh(r.Context(), form.Get("refresh_token"), client.ClientID)
		retryHint = s.opts.Grants.RefreshRetryHint()
	}
	if err != nil {
		s.opts.Grants.Answer(w, r, grant+" grant", err, retryHint)
		return
	}
	// The registration is in use: keep it 90 days from now. Done on every
	// grant, so a client that only refreshes never reaches the last day,
	// where lookups stop extending (they cannot tell it from an unused one).
	if err := s.opts.Clients.Confirm(r.Context(), client, t.User); err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "confirm client failed", slog.String("err", err.Error()))
	}
	s.event(r.Context(), "oauth.token", map[string]string{"client_id": client.ClientID, "grant_type": grant})
	grants.WriteTokens(w, t)
}

// checkTokenRequest checks what a token request asks for before any grant
// is looked at: the resource, a grant type the client registered, and the
// grant's parameters.
func (s *Server) checkTokenRequest(form url.Values, client oauthclients.Client, grant string) *oautherr.Error {
	if desc := s.checkResource(form["resource"]); desc != "" {
		return oautherr.New(oautherr.InvalidTarget, desc)
	}
	switch grant {
	case "":
		return oautherr.New(oautherr.InvalidRequest, "grant_type is required")
	case "authorization_code", "refresh_token":
	default:
		return oautherr.New(oautherr.UnsupportedGrantType, "grant_type must be authorization_code or refresh_token")
	}
	if !client.AllowsGrant(grant) {
		return oautherr.New(oautherr.UnauthorizedClient, "the client did not register the "+grant+" grant")
	}
	if grant == "authorization_code" {
		if form.Get("code") == "" || form.Get("code_verifier") == "" || form.Get("redirect_uri") == "" {
			return oautherr.New(oautherr.InvalidRequest, "code, code_verifier and redirect_uri are required")
		}
		return nil
	}
	if form.Get("refresh_token") == "" {
		return oautherr.New(oautherr.InvalidRequest, "refresh_token is required")
	}
	// A refresh may narrow the scope, never widen it; there is one.
	if sc := form.Get("scope"); sc != "" && sc != s.opts.Scope {
		return oautherr.New(oautherr.InvalidScope, "scope must be "+s.opts.Scope+" or left out")
	}
	return nil
}

// codeCheck is what a code redeemed at the token endpoint must match: the
// client it was issued to, the redirect URI of the authorization request,
// and the client's PKCE challenge.
func codeCheck(client oauthclients.Client, form url.Values) func(grants.CodeRecord) string {
	verifier, redirect := form.Get("code_verifier"), form.Get("redirect_uri")
	return func(rec grants.CodeRecord) string {
		switch {
		case rec.ClientID != client.ClientID:
			return "the code was not issued to this client"
		case rec.RedirectURI != redirect:
			return "redirect_uri does not match the authorization request"
		case !grants.PKCEMatches(verifier, rec.ClientChallenge):
			return "code_verifier does not match the code_challenge"
		}
		return ""
	}
}

// Revoke serves POST /oauth/revoke (RFC 7009): it ends the chain of a
// refresh token. An unknown or expired token is not an error.
func (s *Server) Revoke(w http.ResponseWriter, r *http.Request) {
	form, client, ok := s.clientRequest(w, r)
	if !ok {
		return
	}
	token := form.Get("token")
	if token == "" {
		oautherr.Write(w, oautherr.New(oautherr.InvalidRequest, "token is required"))
		return
	}
	if strings.HasPrefix(token, "eyJ") {
		// A JWT (its header is base64url JSON): the access tokens are Entra's, which nobody but Entra can
		// revoke. They expire within about an hour; revoke the refresh token.
		oautherr.Write(w, oautherr.New(oautherr.UnsupportedTokenType, "access tokens cannot be revoked here; revoke the refresh token"))
		return
	}
	if err := s.opts.Grants.Revoke(r.Context(), token, client.ClientID); err != nil {
		var refusal *oautherr.Error
		if errors.As(err, &refusal) {
			oautherr.Write(w, refusal)
			return
		}
		s.unavailable(w, r, "revoke", err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// clientRequest reads a revocation request (form, rate limit) and
// identifies the calling client. On failure it has answered.
func (s *Server) clientRequest(w http.ResponseWriter, r *http.Request) (url.Values, oauthclients.Client, bool) {
	form, ok := readForm(w, r)
	if !ok || !httpx.Allow(w, r, s.opts.Limiter) {
		return nil, oauthclients.Client{}, false
	}
	c, ok := s.client(w, r, form)
	return form, c, ok
}

// errPublicClients refuses client authentication: every client is public.
var errPublicClients = oautherr.New(oautherr.InvalidClient, "clients of this server are public: send client_id and no secret or assertion")

// client identifies the calling client: a public client sends its
// client_id and no secret. On failure it has answered.
func (s *Server) client(w http.ResponseWriter, r *http.Request, form url.Values) (oauthclients.Client, bool) {
	if authz := r.Header.Get("Authorization"); authz != "" {
		// RFC 6749 §5.2: answer the scheme the client tried, with 401 only
		// alongside that WWW-Authenticate (RFC 9110 §15.5.2).
		scheme, _, _ := strings.Cut(authz, " ")
		if scheme != "Basic" {
			scheme = "Bearer"
		}
		w.Header().Set("WWW-Authenticate", scheme+` realm="`+s.opts.Issuer+`"`)
		oautherr.Write(w, errPublicClients.WithStatus(http.StatusUnauthorized))
		return oauthclients.Client{}, false
	}
	if form.Has("client_secret") || form.Has("client_assertion") {
		// A secret in the body gets 400.
		oautherr.Write(w, errPublicClients)
		return oauthclients.Client{}, false
	}
	id := form.Get("client_id")
	if id == "" {
		oautherr.Write(w, oautherr.New(oautherr.InvalidRequest, "client_id is required"))
		return oauthclients.Client{}, false
	}
	// A client_id that is a URL may cost an outbound fetch: count it before.
	if strings.Contains(id, ":") && !httpx.Allow(w, r, s.opts.Limiter) {
		return oauthclients.Client{}, false
	}
	c, err := s.opts.Clients.Lookup(r.Context(), id, clientip.KeyOf(r))
	if err != nil {
		var refusal *oautherr.Error
		if errors.As(err, &refusal) {
			// 400 invalid_client, not 401: no HTTP authentication scheme
			// would help.
			oautherr.Write(w, oautherr.New(oautherr.InvalidClient, refusal.Description))
			return oauthclients.Client{}, false
		}
		s.unavailable(w, r, "look up client", err)
		return oauthclients.Client{}, false
	}
	return c, true
}
