package signin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	msalerrors "github.com/AzureAD/microsoft-authentication-library-for-go/apps/errors"

	"github.com/entra-mcp/functions-mcp/handler/store"
)

// maxJSONBody caps the bodies of exchange, refresh and logout: each holds
// one or two short strings.
const maxJSONBody = 4 << 10

// Login starts a sign-in: GET /auth/login[?return_to=...][&code_challenge=...&code_challenge_method=S256].
func (s *Service) Login(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	returnTo := q.Get("return_to")
	if returnTo != "" && !s.returnAllowed(returnTo) {
		s.page(w, http.StatusBadRequest, errorPage("This sign-in link is not allowed",
			"The return_to address is not on this server's list of allowed addresses."))
		return
	}
	challenge := q.Get("code_challenge")
	if challenge != "" && (q.Get("code_challenge_method") != "S256" || !pkceRE.MatchString(challenge) || len(challenge) != 43) {
		s.page(w, http.StatusBadRequest, errorPage("This sign-in link is not valid",
			"code_challenge must be an S256 challenge (43 characters, base64url) with code_challenge_method=S256."))
		return
	}

	state, err1 := randomString(32)
	nonce, err2 := randomString(32)
	verifier, err3 := randomString(32)
	binding, err4 := randomString(32)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		s.failPage(w, r, "start sign-in", err)
		return
	}
	var authURL string
	err := s.pool.with(r.Context(), "", func(c confidential.Client) error {
		var err error
		authURL, err = c.AuthCodeURL(r.Context(), s.opts.Entra.ClientID, s.redirectURI, s.scopes)
		return err
	})
	if err != nil {
		s.failPage(w, r, "build authorize URL", err)
		return
	}
	flow := store.Flow{
		Verifier:        verifier,
		Nonce:           nonce,
		ReturnTo:        returnTo,
		ClientChallenge: challenge,
		Binding:         hashHex(binding),
		Created:         time.Now().UTC(),
	}
	if err := s.opts.Sessions.SaveFlow(r.Context(), state, flow, flowTTL); err != nil {
		s.failPage(w, r, "save sign-in flow", err)
		return
	}

	// MSAL has no options for PKCE, state or nonce: add them to its URL.
	u, err := url.Parse(authURL)
	if err != nil {
		s.failPage(w, r, "parse authorize URL", err)
		return
	}
	v := u.Query()
	v.Set("code_challenge", s256(verifier))
	v.Set("code_challenge_method", "S256")
	v.Set("state", state)
	v.Set("nonce", nonce)
	v.Set("response_mode", "query")
	u.RawQuery = v.Encode()

	http.SetCookie(w, &http.Cookie{
		Name:     s.cookieName(),
		Value:    binding,
		Path:     "/",
		MaxAge:   int(flowTTL / time.Second),
		HttpOnly: true,
		Secure:   s.secure,
		SameSite: http.SameSiteLaxMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// Callback finishes a sign-in: GET /auth/callback?code=...&state=... (or
// ?error=...). It shows a one-time code, or sends it to the allow-listed
// return_to.
func (s *Service) Callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" || len(state) > 256 {
		s.page(w, http.StatusBadRequest, errorPage("Sign-in could not be completed", "The sign-in response has no valid state. Start again."))
		return
	}
	cookie, err := r.Cookie(s.cookieName())
	// Consume the flow whatever happens next: a state is good for one try.
	flow, ferr := s.opts.Sessions.TakeFlow(r.Context(), state)
	s.clearCookie(w)
	if ferr != nil && !errors.Is(ferr, store.ErrNotFound) {
		s.failPage(w, r, "load sign-in flow", ferr)
		return
	}
	if ferr != nil || err != nil || !equal(hashHex(cookie.Value), flow.Binding) {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "sign-in callback refused",
			slog.Bool("flow_found", ferr == nil), slog.Bool("cookie_present", err == nil))
		s.page(w, http.StatusBadRequest, errorPage("Sign-in could not be completed",
			"This sign-in has expired, was already used, or was started in another browser. Start again."))
		return
	}
	if e := q.Get("error"); e != "" {
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "sign-in refused by Entra", slog.String("error", truncate(e, 64)))
		s.page(w, http.StatusBadRequest, errorPage("Sign-in was not completed",
			"Entra ID answered: "+truncate(e, 64)+": "+truncate(q.Get("error_description"), 400)))
		return
	}
	code := q.Get("code")
	if code == "" || len(code) > 4096 {
		s.page(w, http.StatusBadRequest, errorPage("Sign-in could not be completed", "The sign-in response has no code. Start again."))
		return
	}

	var res confidential.AuthResult
	err = s.pool.with(r.Context(), "", func(c confidential.Client) error {
		var err error
		res, err = c.AcquireTokenByAuthCode(r.Context(), code, s.redirectURI, s.apiScopes, confidential.WithChallenge(flow.Verifier))
		return err
	})
	if err != nil {
		if isUnavailable(err) {
			s.failPage(w, r, "redeem authorization code", err)
			return
		}
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "authorization code refused", slog.String("err", err.Error()))
		s.page(w, http.StatusBadRequest, errorPage("Sign-in could not be completed", "Entra ID did not accept the sign-in. Start again."))
		return
	}
	tid, oid, ok := s.checkIDToken(r.Context(), res, flow.Nonce)
	if !ok {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "ID token refused: nonce, audience or identity mismatch")
		s.page(w, http.StatusBadRequest, errorPage("Sign-in could not be completed", "The sign-in response did not match this sign-in. Start again."))
		return
	}

	oneTime, err := randomString(32)
	if err != nil {
		s.failPage(w, r, "mint one-time code", err)
		return
	}
	rec := store.CodeRecord{
		TenantID:        tid,
		ObjectID:        oid,
		HomeAccountID:   homeAccountID(tid, oid),
		Scope:           strings.Join(s.apiScopes, " "),
		ClientChallenge: flow.ClientChallenge,
		AccessToken:     res.AccessToken,
		ExpiresOn:       res.ExpiresOn,
	}
	if err := s.opts.Sessions.SaveCode(r.Context(), oneTime, rec, codeTTL); err != nil {
		s.failPage(w, r, "save one-time code", err)
		return
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "signed in", slog.String("tid", tid), slog.String("oid", oid))
	s.event(r.Context(), "signin", tid, oid)

	if flow.ReturnTo != "" {
		target, err := appendQuery(flow.ReturnTo, "code", oneTime)
		if err != nil {
			s.failPage(w, r, "build return address", err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		http.Redirect(w, r, target, http.StatusFound)
		return
	}
	s.page(w, http.StatusOK, codePage(oneTime, s.opts.PublicBaseURL, flow.ClientChallenge != "", int(codeTTL/time.Second)))
}

// checkIDToken verifies the ID token (signature with the tenant's keys,
// issuer, audience, tenant, times), compares its nonce with the one this
// sign-in sent (MSAL checks neither), and takes the user's identity from it.
func (s *Service) checkIDToken(ctx context.Context, res confidential.AuthResult, nonce string) (tid, oid string, ok bool) {
	id, err := s.opts.IDTokens.VerifyIDToken(ctx, res.IDToken.RawToken)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "ID token refused", slog.String("reason", err.Error()))
		return "", "", false
	}
	if !equal(id.Nonce, nonce) || res.Account.HomeAccountID != homeAccountID(id.TenantID, id.ObjectID) {
		return "", "", false
	}
	return id.TenantID, id.ObjectID, true
}

// tokenResponse is what exchange and refresh return (RFC 6749 §5.1).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"`
	RefreshToken string `json:"refresh_token"`
}

// Exchange trades a one-time code for tokens: POST /auth/exchange
// {"auth_code": "...", "code_verifier": "..."}.
func (s *Service) Exchange(w http.ResponseWriter, r *http.Request) {
	var req struct {
		AuthCode     string `json:"auth_code"`
		CodeVerifier string `json:"code_verifier"`
	}
	if !s.readJSON(w, r, &req) || !s.allow(w, r) {
		return
	}
	if req.AuthCode == "" || len(req.AuthCode) > 128 || len(req.CodeVerifier) > 128 {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "auth_code is required")
		return
	}
	ctx := r.Context()
	rec, err := s.opts.Sessions.RedeemCode(ctx, req.AuthCode)
	var reused *store.CodeReusedError
	switch {
	case errors.As(err, &reused):
		// A second redemption: whoever holds the first one's tokens may be
		// an attacker who intercepted the code. End that session.
		if reused.ChainID != "" {
			if rerr := s.opts.Sessions.RevokeChain(ctx, reused.ChainID); rerr != nil {
				s.log.LogAttrs(ctx, slog.LevelError, "revoke after code reuse failed", slog.String("err", rerr.Error()))
			}
		}
		s.log.LogAttrs(ctx, slog.LevelWarn, "one-time code redeemed twice; its session was revoked")
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "the code is invalid, expired or already used")
		return
	case errors.Is(err, store.ErrNotFound):
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "the code is invalid, expired or already used")
		return
	case err != nil:
		s.fail(w, r, "redeem one-time code", err)
		return
	}
	if rec.ClientChallenge != "" && (req.CodeVerifier == "" || !pkceRE.MatchString(req.CodeVerifier) || !equal(s256(req.CodeVerifier), rec.ClientChallenge)) {
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "code_verifier does not match the code_challenge of the sign-in")
		return
	}

	// The access token MSAL got at the callback travels, sealed, with the
	// code; a code that outlived it (it cannot, at two minutes, but a
	// clock can jump) goes to the user's MSAL cache instead.
	res := confidential.AuthResult{AccessToken: rec.AccessToken, ExpiresOn: rec.ExpiresOn}
	if rec.AccessToken == "" || time.Until(rec.ExpiresOn) < 5*time.Minute {
		if res, err = s.acquireSilent(ctx, rec.HomeAccountID, rec.Scope); err != nil {
			s.tokenFailure(w, r, "get access token for exchange", err)
			return
		}
	}
	handle, _, err := s.opts.Sessions.IssueForCode(ctx, req.AuthCode, store.HandleRecord{
		TenantID:      rec.TenantID,
		ObjectID:      rec.ObjectID,
		HomeAccountID: rec.HomeAccountID,
		Scope:         rec.Scope,
		Created:       time.Now().UTC(),
	})
	if errors.Is(err, store.ErrCodeReused) {
		// Redeemed again while this exchange ran: issue nothing.
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "the code is invalid, expired or already used")
		return
	}
	if err != nil {
		s.fail(w, r, "issue refresh handle", err)
		return
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "code exchanged", slog.String("tid", rec.TenantID), slog.String("oid", rec.ObjectID))
	s.event(ctx, "exchange", rec.TenantID, rec.ObjectID)
	writeTokens(w, res, rec.Scope, handle)
}

// Refresh rotates a refresh handle and returns a fresh access token:
// POST /auth/refresh {"refresh_token": "..."}.
func (s *Service) Refresh(w http.ResponseWriter, r *http.Request) {
	var req struct {
		RefreshToken string `json:"refresh_token"`
	}
	if !s.readJSON(w, r, &req) || !s.allow(w, r) {
		return
	}
	if req.RefreshToken == "" || len(req.RefreshToken) > 128 {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "refresh_token is required")
		return
	}
	ctx := r.Context()
	// Look first, get the token, rotate last: if Entra or the network fails
	// in between, the client's handle still works and it can simply retry.
	rec, err := s.opts.Sessions.PeekHandle(ctx, req.RefreshToken)
	if err != nil {
		s.handleFailure(w, r, err)
		return
	}
	res, err := s.acquireSilent(ctx, rec.HomeAccountID, rec.Scope)
	if err != nil {
		if !isUnavailable(err) {
			// Entra no longer honours the session (revoked, expired,
			// cache deleted): the handle is worthless, end its chain.
			_ = s.opts.Sessions.Revoke(ctx, req.RefreshToken)
		}
		s.tokenFailure(w, r, "get access token for refresh", err)
		return
	}
	next, _, err := s.opts.Sessions.Rotate(ctx, req.RefreshToken)
	if err != nil {
		s.handleFailure(w, r, err)
		return
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "refreshed", slog.String("tid", rec.TenantID), slog.String("oid", rec.ObjectID))
	s.event(ctx, "refresh", rec.TenantID, rec.ObjectID)
	writeTokens(w, res, rec.Scope, next)
}

// Logout ends a session: POST /auth/logout {"refresh_token": "..."}. It
// revokes the handle's chain and deletes the user's MSAL cache. The answer
// is the same whether or not the handle was valid (RFC 7009 §2.2).
func (s *Service) Logout(w http.ResponseWriter, r *http.Request) {
	var req struct {
		RefreshToken string `json:"refresh_token"`
	}
	if !s.readJSON(w, r, &req) {
		return
	}
	if req.RefreshToken == "" || len(req.RefreshToken) > 128 {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "refresh_token is required")
		return
	}
	ctx := r.Context()
	rec, err := s.opts.Sessions.PeekHandle(ctx, req.RefreshToken)
	switch {
	case err == nil:
		if err := s.opts.Sessions.Revoke(ctx, req.RefreshToken); err != nil {
			s.fail(w, r, "revoke refresh handle", err)
			return
		}
		if err := s.opts.Sessions.DeleteMSAL(ctx, rec.TenantID, rec.ObjectID); err != nil {
			s.fail(w, r, "delete token cache", err)
			return
		}
		s.log.LogAttrs(ctx, slog.LevelInfo, "signed out", slog.String("tid", rec.TenantID), slog.String("oid", rec.ObjectID))
		s.event(ctx, "logout", rec.TenantID, rec.ObjectID)
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrHandleReused):
	default:
		s.fail(w, r, "look up refresh handle", err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// acquireSilent gets the user's access token from their MSAL cache,
// refreshing it with Entra when needed. The scope is resent as it was
// granted: Entra requires it on refresh.
func (s *Service) acquireSilent(ctx context.Context, home, scope string) (confidential.AuthResult, error) {
	var res confidential.AuthResult
	err := s.pool.with(ctx, home, func(c confidential.Client) error {
		var err error
		res, err = c.AcquireTokenSilent(ctx, strings.Fields(scope),
			confidential.WithSilentAccount(confidential.Account{HomeAccountID: home}))
		return err
	})
	return res, err
}

func writeTokens(w http.ResponseWriter, res confidential.AuthResult, scope, handle string) {
	expires := int64(time.Until(res.ExpiresOn) / time.Second)
	if expires < 0 {
		expires = 0
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(tokenResponse{
		AccessToken:  res.AccessToken,
		TokenType:    "Bearer",
		ExpiresIn:    expires,
		Scope:        scope,
		RefreshToken: handle,
	})
}

// readJSON checks method, content type and size, and decodes strictly.
func (s *Service) readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		writeOAuthError(w, http.StatusUnsupportedMediaType, "invalid_request", "Content-Type must be application/json")
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeOAuthError(w, http.StatusRequestEntityTooLarge, "invalid_request", "request body too large")
			return false
		}
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "could not read the request body")
		return false
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil || dec.More() {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the body must be a JSON object with the documented fields only")
		return false
	}
	return true
}

// allow applies the per-address rate limit. Redis down means 503: letting
// calls through unlimited would hand attackers the outage.
func (s *Service) allow(w http.ResponseWriter, r *http.Request) bool {
	ok, retry, err := s.opts.Limiter.Allow(r.Context(), clientAddress(r))
	if err != nil {
		s.fail(w, r, "check rate limit", err)
		return false
	}
	if !ok {
		secs := int(retry / time.Second)
		if retry%time.Second != 0 || secs == 0 {
			secs++
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeOAuthError(w, http.StatusTooManyRequests, "slow_down", "too many requests; retry later")
		return false
	}
	return true
}

// handleFailure answers a handle that cannot be used.
func (s *Service) handleFailure(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, store.ErrHandleReused):
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "rotated refresh handle presented again; its chain was revoked")
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "the refresh token is invalid or expired")
	case errors.Is(err, store.ErrNotFound):
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "the refresh token is invalid or expired")
	default:
		s.fail(w, r, "use refresh handle", err)
	}
}

// tokenFailure answers a failed MSAL call: our outage (503) or a session
// Entra no longer honours (invalid_grant).
func (s *Service) tokenFailure(w http.ResponseWriter, r *http.Request, doing string, err error) {
	if isUnavailable(err) {
		s.fail(w, r, doing, err)
		return
	}
	s.log.LogAttrs(r.Context(), slog.LevelWarn, doing+" failed", slog.String("err", err.Error()))
	writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "the session has ended; sign in again")
}

// isUnavailable tells an outage (Redis, the network, Entra answering 5xx
// or 429) from a refusal (Entra answering 4xx, or no tokens for the user).
func isUnavailable(err error) bool {
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var call msalerrors.CallErr
	if errors.As(err, &call) && call.Resp != nil {
		return call.Resp.StatusCode >= 500 || call.Resp.StatusCode == http.StatusTooManyRequests
	}
	var urlErr *url.Error
	var netErr net.Error
	return errors.As(err, &urlErr) || errors.As(err, &netErr)
}

// failPage is fail for the browser routes.
func (s *Service) failPage(w http.ResponseWriter, r *http.Request, doing string, err error) {
	s.log.LogAttrs(r.Context(), slog.LevelError, doing+" failed", slog.String("err", err.Error()))
	w.Header().Set("Retry-After", "5")
	s.page(w, http.StatusServiceUnavailable, errorPage("Sign-in is unavailable right now",
		"A service this server depends on did not answer. Wait a moment and start again."))
}

// fail answers 503 for an outage and logs what was being done.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, doing string, err error) {
	s.log.LogAttrs(r.Context(), slog.LevelError, doing+" failed", slog.String("err", err.Error()))
	w.Header().Set("Retry-After", "5")
	writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the sign-in service is unavailable; try again shortly")
}

func (s *Service) clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
