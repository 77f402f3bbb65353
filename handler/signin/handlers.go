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
	"net/netip"
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

	s.begin(w, r, store.Flow{ReturnTo: returnTo, ClientChallenge: challenge})
}

// begin sends the browser to Entra for the flow f, with our own PKCE,
// state and nonce, and binds the flow to this browser with a cookie.
func (s *Service) begin(w http.ResponseWriter, r *http.Request, f store.Flow) {
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
	f.Verifier, f.Nonce, f.Binding = verifier, nonce, hashHex(binding)
	if err := s.opts.Sessions.SaveFlow(r.Context(), state, f, flowTTL); err != nil {
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

	s.flowCookie.Set(w, binding, flowTTL)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// Callback finishes a sign-in: GET /auth/callback?code=...&state=... (or
// ?error=...). It shows a one-time code, or sends it to the allow-listed
// return_to, or, for a sign-in an OAuth client started, to the client's
// redirect URI.
func (s *Service) Callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" || len(state) > 256 {
		s.page(w, http.StatusBadRequest, errorPage("Sign-in could not be completed", "The sign-in response has no valid state. Start again."))
		return
	}
	binding := s.flowCookie.Value(r)
	// Consume the flow whatever happens next: a state is good for one try.
	flow, ferr := s.opts.Sessions.TakeFlow(r.Context(), state)
	s.flowCookie.Clear(w)
	if ferr != nil && !errors.Is(ferr, store.ErrNotFound) {
		s.failPage(w, r, "load sign-in flow", ferr)
		return
	}
	if ferr != nil || binding == "" || !equal(hashHex(binding), flow.Binding) {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "sign-in callback refused",
			slog.Bool("flow_found", ferr == nil), slog.Bool("cookie_present", binding != ""))
		s.page(w, http.StatusBadRequest, errorPage("Sign-in could not be completed",
			"This sign-in has expired, was already used, or was started in another browser. Start again."))
		return
	}

	tid, oid, res, fail := s.finishEntra(r.Context(), q, flow)
	if flow.ClientID != "" {
		s.finishClient(w, r, flow, tid, oid, res, fail)
		return
	}
	if fail != nil {
		if fail.err != nil {
			s.failPage(w, r, fail.doing, fail.err)
			return
		}
		s.page(w, http.StatusBadRequest, errorPage(fail.title, fail.message))
		return
	}

	oneTime, err := s.mintCode(r.Context(), flow, tid, oid, res)
	if err != nil {
		s.failPage(w, r, "mint one-time code", err)
		return
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "signed in", slog.String("tid", tid), slog.String("oid", oid))
	s.event(r.Context(), "signin", tid, oid)

	if flow.ReturnTo != "" {
		target, err := appendQuery(flow.ReturnTo, url.Values{"code": {oneTime}})
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

// mintCode stores what a one-time code stands for (the user, the access
// token MSAL just got, and, for an OAuth client, the client and redirect
// URI the code is bound to) and returns the code.
func (s *Service) mintCode(ctx context.Context, flow store.Flow, tid, oid string, res confidential.AuthResult) (string, error) {
	code, err := randomString(32)
	if err != nil {
		return "", err
	}
	rec := store.CodeRecord{
		TenantID:        tid,
		ObjectID:        oid,
		HomeAccountID:   homeAccountID(tid, oid),
		Scope:           strings.Join(s.apiScopes, " "),
		ClientID:        flow.ClientID,
		ClientChallenge: flow.ClientChallenge,
		AccessToken:     res.AccessToken,
		ExpiresOn:       res.ExpiresOn,
	}
	if flow.ClientID != "" {
		rec.RedirectURI = flow.ReturnTo
	}
	if err := s.opts.Sessions.SaveCode(ctx, code, rec, codeTTL); err != nil {
		return "", err
	}
	return code, nil
}

// callbackFailure is why a sign-in did not complete: Entra's refusal or
// ours (err nil), or an outage (err set, doing says what failed).
type callbackFailure struct {
	oauthError     string // for an OAuth client: access_denied or temporarily_unavailable
	title, message string // for a person
	doing          string
	err            error
}

func refused(message string) *callbackFailure {
	return &callbackFailure{oauthError: "access_denied", title: "Sign-in could not be completed", message: message}
}

// finishEntra reads Entra's answer to the flow: it redeems the code with
// our PKCE verifier and verifies the ID token.
func (s *Service) finishEntra(ctx context.Context, q url.Values, flow store.Flow) (tid, oid string, res confidential.AuthResult, fail *callbackFailure) {
	if e := q.Get("error"); e != "" {
		s.log.LogAttrs(ctx, slog.LevelInfo, "sign-in refused by Entra", slog.String("error", truncate(e, 64)))
		return "", "", res, &callbackFailure{oauthError: "access_denied", title: "Sign-in was not completed",
			message: "Entra ID answered: " + truncate(e, 64) + ": " + truncate(q.Get("error_description"), 400)}
	}
	code := q.Get("code")
	if code == "" || len(code) > 4096 {
		return "", "", res, refused("The sign-in response has no code. Start again.")
	}
	err := s.pool.with(ctx, "", func(c confidential.Client) error {
		var err error
		res, err = c.AcquireTokenByAuthCode(ctx, code, s.redirectURI, s.apiScopes, confidential.WithChallenge(flow.Verifier))
		return err
	})
	if err != nil {
		if isUnavailable(err) {
			return "", "", res, &callbackFailure{oauthError: "temporarily_unavailable", doing: "redeem authorization code", err: err}
		}
		s.log.LogAttrs(ctx, slog.LevelWarn, "authorization code refused", slog.String("err", err.Error()))
		return "", "", res, refused("Entra ID did not accept the sign-in. Start again.")
	}
	tid, oid, ok := s.checkIDToken(ctx, res, flow.Nonce)
	if !ok {
		s.log.LogAttrs(ctx, slog.LevelWarn, "ID token refused: nonce, audience or identity mismatch")
		return "", "", res, refused("The sign-in response did not match this sign-in. Start again.")
	}
	return tid, oid, res, nil
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
	RefreshToken string `json:"refresh_token,omitempty"`
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
		WriteOAuthError(w, http.StatusBadRequest, "invalid_request", "auth_code is required")
		return
	}
	t, err := s.RedeemCode(r.Context(), req.AuthCode, func(rec store.CodeRecord) string {
		if rec.ClientID != "" {
			return "the code was issued to an OAuth client; redeem it at the token endpoint"
		}
		if rec.ClientChallenge != "" && !PKCEMatches(req.CodeVerifier, rec.ClientChallenge) {
			return "code_verifier does not match the code_challenge of the sign-in"
		}
		return ""
	}, true)
	if err != nil {
		s.grantFailure(w, r, "redeem one-time code", err)
		return
	}
	WriteTokens(w, t)
}

// Refresh rotates a refresh handle and returns a fresh access token:
// POST /auth/refresh {"refresh_token": "..."}.
func (s *Service) Refresh(w http.ResponseWriter, r *http.Request) {
	handle, ok := s.readHandle(w, r)
	if !ok || !s.allow(w, r) {
		return
	}
	t, err := s.RefreshHandle(r.Context(), handle, "")
	if err != nil {
		s.grantFailure(w, r, "refresh", err)
		return
	}
	WriteTokens(w, t)
}

// Logout ends a session: POST /auth/logout {"refresh_token": "..."}. It
// revokes the handle's chain and deletes the user's MSAL cache. The answer
// is the same whether or not the handle was valid (RFC 7009 §2.2).
func (s *Service) Logout(w http.ResponseWriter, r *http.Request) {
	handle, ok := s.readHandle(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	rec, err := s.opts.Sessions.PeekHandle(ctx, handle)
	switch {
	case err == nil:
		if err := s.opts.Sessions.Revoke(ctx, handle); err != nil {
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

// readHandle reads the body of refresh and logout: {"refresh_token": "..."}.
// On failure it has answered.
func (s *Service) readHandle(w http.ResponseWriter, r *http.Request) (string, bool) {
	var req struct {
		RefreshToken string `json:"refresh_token"`
	}
	if !s.readJSON(w, r, &req) {
		return "", false
	}
	if req.RefreshToken == "" || len(req.RefreshToken) > 128 {
		WriteOAuthError(w, http.StatusBadRequest, "invalid_request", "refresh_token is required")
		return "", false
	}
	return req.RefreshToken, true
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

// WriteTokens writes a successful token response (RFC 6749 §5.1).
func WriteTokens(w http.ResponseWriter, t Tokens) {
	expires := int64(time.Until(t.ExpiresOn) / time.Second)
	if expires < 0 {
		expires = 0
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(tokenResponse{
		AccessToken:  t.AccessToken,
		TokenType:    "Bearer",
		ExpiresIn:    expires,
		Scope:        t.Scope,
		RefreshToken: t.RefreshToken,
	})
}

// grantFailure answers a failed grant: invalid_grant for a refusal, 503
// for an outage.
func (s *Service) grantFailure(w http.ResponseWriter, r *http.Request, doing string, err error) {
	var ge *GrantError
	if errors.As(err, &ge) {
		WriteOAuthError(w, http.StatusBadRequest, "invalid_grant", ge.Description)
		return
	}
	s.fail(w, r, doing, err)
}

// readJSON checks method, content type and size, and decodes strictly.
func (s *Service) readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		WriteOAuthError(w, http.StatusUnsupportedMediaType, "invalid_request", "Content-Type must be application/json")
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			WriteOAuthError(w, http.StatusRequestEntityTooLarge, "invalid_request", "request body too large")
			return false
		}
		WriteOAuthError(w, http.StatusBadRequest, "invalid_request", "could not read the request body")
		return false
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil || dec.More() {
		WriteOAuthError(w, http.StatusBadRequest, "invalid_request", "the body must be a JSON object with the documented fields only")
		return false
	}
	return true
}

// allow applies the per-address rate limit of exchange and refresh.
func (s *Service) allow(w http.ResponseWriter, r *http.Request) bool {
	return Allow(w, r, s.opts.Limiter, s.log)
}

// limitKey is what rate limits count by: the caller's address, or for IPv6
// its /64, which one site usually gets whole.
func limitKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.Unmap().Is4() {
		return addr
	}
	p, err := ip.Prefix(64)
	if err != nil {
		return addr
	}
	return p.String()
}

// Allow applies a per-address rate limit (see ClientAddress) and answers
// 429 with Retry-After when it is spent. Redis down means 503: letting
// calls through unlimited would hand attackers the outage.
func Allow(w http.ResponseWriter, r *http.Request, l *store.Limiter, log *slog.Logger) bool {
	ok, retry, err := l.Allow(r.Context(), limitKey(ClientAddress(r)))
	if err != nil {
		log.LogAttrs(r.Context(), slog.LevelError, "check rate limit failed", slog.String("err", err.Error()))
		w.Header().Set("Retry-After", "5")
		WriteOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the service is unavailable; try again shortly")
		return false
	}
	if !ok {
		secs := int(retry / time.Second)
		if retry%time.Second != 0 || secs == 0 {
			secs++
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		WriteOAuthError(w, http.StatusTooManyRequests, "slow_down", "too many requests; retry later")
		return false
	}
	return true
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
	WriteOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the sign-in service is unavailable; try again shortly")
}

// WriteOAuthError writes an RFC 6749 §5.2 error response.
func WriteOAuthError(w http.ResponseWriter, status int, code, desc string) {
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
