package oauthserver

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/entra-mcp/functions-mcp/handler/clientip"
	"github.com/entra-mcp/functions-mcp/handler/oauthclients"
	"github.com/entra-mcp/functions-mcp/handler/oautherr"
	"github.com/entra-mcp/functions-mcp/handler/signin"
	"github.com/entra-mcp/functions-mcp/handler/store"
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
	if desc := s.checkResource(form["resource"]); desc != "" {
		signin.WriteOAuthError(w, http.StatusBadRequest, "invalid_target", desc)
		return
	}
	grant := form.Get("grant_type")
	switch grant {
	case "":
		signin.WriteOAuthError(w, http.StatusBadRequest, "invalid_request", "grant_type is required")
		return
	case "authorization_code", "refresh_token":
	default:
		signin.WriteOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token")
		return
	}
	if !client.AllowsGrant(grant) {
		signin.WriteOAuthError(w, http.StatusBadRequest, "unauthorized_client", "the client did not register the "+grant+" grant")
		return
	}

	var (
		t   signin.Tokens
		err error
	)
	if grant == "authorization_code" {
		code, verifier, redirect := form.Get("code"), form.Get("code_verifier"), form.Get("redirect_uri")
		if code == "" || verifier == "" || redirect == "" {
			signin.WriteOAuthError(w, http.StatusBadRequest, "invalid_request", "code, code_verifier and redirect_uri are required")
			return
		}
		t, err = s.opts.SignIn.RedeemCode(r.Context(), code, func(rec store.CodeRecord) string {
			switch {
			case rec.ClientID != client.ClientID:
				return "the code was not issued to this client"
			case rec.RedirectURI != redirect:
				return "redirect_uri does not match the authorization request"
			case !signin.PKCEMatches(verifier, rec.ClientChallenge):
				return "code_verifier does not match the code_challenge"
			}
			return ""
		}, client.AllowsGrant("refresh_token"))
	} else {
		handle := form.Get("refresh_token")
		if handle == "" {
			signin.WriteOAuthError(w, http.StatusBadRequest, "invalid_request", "refresh_token is required")
			return
		}
		// A refresh may narrow the scope, never widen it; there is one.
		if sc := form.Get("scope"); sc != "" && sc != s.opts.Scope {
			signin.WriteOAuthError(w, http.StatusBadRequest, "invalid_scope", "scope must be "+s.opts.Scope+" or left out")
			return
		}
		t, err = s.opts.SignIn.RefreshHandle(r.Context(), handle, client.ClientID)
	}
	if err != nil {
		var ge *signin.GrantError
		var slow *signin.SlowDown
		switch {
		case errors.As(err, &ge):
			s.opts.SignIn.RefuseGrant(w, r, ge.Description)
		case errors.As(err, &slow):
			signin.WriteSlowDown(w, slow)
		case grant == "refresh_token":
			s.unavailableHint(w, r, "refresh_token grant", err, s.opts.SignIn.RefreshRetryHint())
		default:
			s.unavailableHint(w, r, "authorization_code grant", err,
				"the service did not answer in time; the code may have been used up: if redeeming it again fails, start the authorization again")
		}
		return
	}
	// The registration is in use: keep it 90 days from now. Done on every
	// grant, so a client that only refreshes never reaches the last day,
	// where lookups stop extending (they cannot tell it from an unused one).
	if err := s.opts.Clients.Confirm(r.Context(), client); err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "confirm client failed", slog.String("err", err.Error()))
	}
	s.event(r.Context(), "oauth.token", map[string]string{"client_id": client.ClientID, "grant_type": grant})
	signin.WriteTokens(w, t)
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
		signin.WriteOAuthError(w, http.StatusBadRequest, "invalid_request", "token is required")
		return
	}
	if strings.HasPrefix(token, "eyJ") {
		// A JWT (its header is base64url JSON): the access tokens are Entra's, which nobody but Entra can
		// revoke. They expire within about an hour; revoke the refresh token.
		signin.WriteOAuthError(w, http.StatusBadRequest, "unsupported_token_type", "access tokens cannot be revoked here; revoke the refresh token")
		return
	}
	if err := s.opts.SignIn.RevokeHandle(r.Context(), token, client.ClientID); err != nil {
		var ge *signin.GrantError
		if errors.As(err, &ge) {
			signin.WriteOAuthError(w, http.StatusBadRequest, "invalid_grant", ge.Description)
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
	if !ok || !signin.Allow(w, r, s.opts.Limiter) {
		return nil, oauthclients.Client{}, false
	}
	c, ok := s.client(w, r, form)
	return form, c, ok
}

// client identifies the calling client: a public client sends its
// client_id and no secret. On failure it has answered.
func (s *Server) client(w http.ResponseWriter, r *http.Request, form url.Values) (oauthclients.Client, bool) {
	if authz := r.Header.Get("Authorization"); authz != "" || form.Has("client_secret") || form.Has("client_assertion") {
		if authz != "" {
			// RFC 6749 §5.2: answer the scheme the client tried.
			scheme, _, _ := strings.Cut(authz, " ")
			if scheme != "Basic" {
				scheme = "Bearer"
			}
			w.Header().Set("WWW-Authenticate", scheme+` realm="`+s.opts.Issuer+`"`)
		}
		// 401 only with the WWW-Authenticate set above (RFC 6749 §5.2,
		// RFC 9110 §15.5.2); a secret in the body gets 400.
		status := http.StatusBadRequest
		if authz != "" {
			status = http.StatusUnauthorized
		}
		signin.WriteOAuthError(w, status, "invalid_client",
			"clients of this server are public: send client_id and no secret or assertion")
		return oauthclients.Client{}, false
	}
	id := form.Get("client_id")
	if id == "" {
		signin.WriteOAuthError(w, http.StatusBadRequest, "invalid_request", "client_id is required")
		return oauthclients.Client{}, false
	}
	// A client_id that is a URL may cost an outbound fetch: count it before.
	if strings.Contains(id, ":") && !signin.Allow(w, r, s.opts.Limiter) {
		return oauthclients.Client{}, false
	}
	c, err := s.opts.Clients.Lookup(r.Context(), id, clientip.KeyOf(r))
	if err != nil {
		var ce *oautherr.Error
		if errors.As(err, &ce) {
			// 400, not 401: no HTTP authentication scheme would help.
			signin.WriteOAuthError(w, http.StatusBadRequest, "invalid_client", ce.Description)
			return oauthclients.Client{}, false
		}
		s.unavailable(w, r, "look up client", err)
		return oauthclients.Client{}, false
	}
	return c, true
}
