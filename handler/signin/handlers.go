package signin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	msalerrors "github.com/AzureAD/microsoft-authentication-library-for-go/apps/errors"

	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/grants"
	"github.com/entra-mcp/functions-mcp/handler/httpx"
	"github.com/entra-mcp/functions-mcp/handler/oautherr"
	"github.com/entra-mcp/functions-mcp/handler/outage"
	"github.com/entra-mcp/functions-mcp/handler/store"
)

// maxJSONBody caps the bodies of exchange, refresh and logout: each holds
// one or two short strings.
const maxJSONBody = 4 << 10

// Login starts a sign-in: GET /auth/login[?return_to=...&code_challenge=...&code_challenge_method=S256].
func (s *Service) Login(w http.ResponseWriter, r *http.Request) {
	if !s.AllowSignIn(w, r) {
		return
	}
	q := r.URL.Query()
	returnTo := q.Get("return_to")
	if returnTo != "" && !s.returnAllowed(returnTo) {
		s.page(w, http.StatusBadRequest, errorPage("This sign-in link is not allowed",
			"The return_to address is not on this server's list of allowed addresses."))
		return
	}
	challenge := q.Get("code_challenge")
	if challenge != "" && (q.Get("code_challenge_method") != "S256" || !grants.IsPKCEChallenge(challenge)) {
		s.page(w, http.StatusBadRequest, errorPage("This sign-in link is not valid",
			"code_challenge must be an S256 challenge (43 characters, base64url) with code_challenge_method=S256."))
		return
	}
	if returnTo != "" && challenge == "" {
		// The code goes to return_to in a URL, where another program (on a
		// loopback port, RFC 8252 §8.1) may catch it: only the holder of
		// the verifier may redeem it.
		s.page(w, http.StatusBadRequest, errorPage("This sign-in link is not valid",
			"A sign-in with return_to needs PKCE: add code_challenge (S256) and code_challenge_method=S256."))
		return
	}
	s.begin(w, r, flow{Person: &personFlow{ReturnTo: returnTo, Challenge: challenge}})
}

// begin sends the browser to Entra for the flow f, with our own PKCE,
// state and nonce. The flow travels sealed in a cookie of its own: nothing
// is stored until Entra has accepted the sign-in.
func (s *Service) begin(w http.ResponseWriter, r *http.Request, f flow) {
	state, err1 := randomString(32)
	nonce, err2 := randomString(32)
	verifier, err3 := randomString(32)
	if err := errors.Join(err1, err2, err3); err != nil {
		s.failPage(w, r, "start sign-in", err)
		return
	}
	authURL, err := s.authorizeURL(r.Context())
	if err != nil {
		s.failPage(w, r, "build authorize URL", err)
		return
	}
	f.Verifier, f.Nonce = verifier, nonce
	f.Expires = time.Now().Add(flowTTL).UnixMilli()
	cookie, err := s.sealFlow(state, f)
	if errors.Is(err, errFlowTooLarge) {
		s.page(w, http.StatusBadRequest, errorPage("This sign-in request is too large",
			"The application's request (its client_id, redirect URI and state together) is too long to carry through the sign-in."))
		return
	}
	if err != nil {
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

	s.dropOldFlows(w, r)
	s.flowCookie(state).Set(w, cookie, flowTTL)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// authorizeURL is Entra's authorize URL for our client, from MSAL (which
// takes it from the discovery document, fetched once).
func (s *Service) authorizeURL(ctx context.Context) (string, error) {
	var authURL string
	_, err := s.pool.with(ctx, "", func(c confidential.Client) error {
		var err error
		authURL, err = c.AuthCodeURL(ctx, s.opts.Entra.ClientID, s.redirectURI, s.scopes)
		return err
	})
	return authURL, err
}

// Callback finishes a sign-in: GET /auth/callback?code=...&state=... (or
// ?error=...). It shows a one-time code, or sends it to the allow-listed
// return_to, or, for a hand-off, gives the result to the continuation.
func (s *Service) Callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" || len(state) > 256 {
		s.page(w, http.StatusBadRequest, errorPage("Sign-in could not be completed", "The sign-in response has no valid state. Start again."))
		return
	}
	// Before the code goes to Entra with the app's credential: made-up
	// callbacks must not spend the app's standing with Entra.
	if !s.allowPage(w, r, s.opts.Limits.Callback) {
		return
	}
	f, ok := s.openFlow(r, state, time.Now())
	// The browser drops the cookie whatever happens next, so it tries a
	// state once. A script may resend the cookie: that costs Entra calls
	// within this address's callback limit, and a sign-in still completes
	// only once (MarkFlowDone).
	s.flowCookie(state).Clear(w)
	if !ok {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "sign-in callback refused: no sign-in in progress for this state in this browser")
		s.page(w, http.StatusBadRequest, errorPage("Sign-in could not be completed",
			"This sign-in has expired, was already used, or was started in another browser. Start again."))
		return
	}

	done, fail := s.finishEntra(r.Context(), q, state, f)
	if f.Handoff != nil {
		s.handBack(w, r, f, done, fail)
		return
	}
	s.finishPerson(w, r, *f.Person, done, fail)
}

// finishPerson ends a sign-in through /auth/login: a one-time code on our
// page, or at the allow-listed return_to.
func (s *Service) finishPerson(w http.ResponseWriter, r *http.Request, p personFlow, done signedIn, fail *callbackFailure) {
	if fail != nil {
		if fail.err != nil {
			s.failPage(w, r, fail.doing, fail.err)
			return
		}
		s.page(w, http.StatusBadRequest, errorPage(fail.title, fail.message))
		return
	}

	rec := s.grantOf(done)
	rec.ClientChallenge = p.Challenge
	oneTime, err := s.grants.NewCode(r.Context(), rec)
	if err != nil {
		if errors.Is(err, store.ErrRevoked) {
			s.page(w, http.StatusBadRequest, errorPage("Sign-in could not be completed", msgRevokedMeanwhile))
			return
		}
		s.failPage(w, r, "mint one-time code", err)
		return
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "signed in", slog.String("tid", done.tid), slog.String("oid", done.oid))
	s.event(r.Context(), "signin", done.tid, done.oid)

	if p.ReturnTo != "" {
		target, err := oautherr.AppendQuery(p.ReturnTo, url.Values{"code": {oneTime}})
		if err != nil {
			s.failPage(w, r, "build return address", err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		http.Redirect(w, r, target, http.StatusFound)
		return
	}
	s.page(w, http.StatusOK, codePage(oneTime, s.opts.PublicBaseURL, p.Challenge != "", int(grants.CodeTTL/time.Second)))
}

// msgRevokedMeanwhile explains a sign-in an administrator's revocation
// overtook.
const msgRevokedMeanwhile = "Your sessions were ended by an administrator while you were signing in. Start again."

// signedIn is a sign-in Entra accepted: who, the tokens MSAL got, and the
// user's epoch when their token cache was read.
type signedIn struct {
	tid, oid string
	res      confidential.AuthResult
	epoch    store.Epoch
}

// grantOf is what a one-time code for the sign-in d stands for, before
// anyone binds it to a client or a PKCE challenge.
func (s *Service) grantOf(d signedIn) grants.CodeRecord {
	return grants.CodeRecord{
		TenantID:      d.tid,
		ObjectID:      d.oid,
		HomeAccountID: homeAccountID(d.tid, d.oid),
		Scope:         strings.Join(s.apiScopes, " "),
		AccessToken:   d.res.AccessToken,
		ExpiresOn:     d.res.ExpiresOn,
		Epoch:         d.epoch,
	}
}

// callbackFailure is why a sign-in did not complete: Entra's refusal or
// ours (err nil), or an outage (err set, doing says what failed).
type callbackFailure struct {
	oauth          *oautherr.Error // for a hand-off: errNotSignedIn or errSignInUnavailable
	title, message string          // for a person
	doing          string
	err            error
}

// What a hand-off's continuation is told of a sign-in that did not complete.
var (
	errNotSignedIn       = oautherr.New(oautherr.AccessDenied, "the sign-in with Entra ID was not completed")
	errSignInUnavailable = oautherr.New(oautherr.TemporarilyUnavailable, "the sign-in with Entra ID was not completed")
)

func refused(message string) *callbackFailure {
	return &callbackFailure{oauth: errNotSignedIn, title: "Sign-in could not be completed", message: message}
}

// unavailable is a sign-in that failed because doing failed.
func unavailable(doing string, err error) *callbackFailure {
	return &callbackFailure{oauth: errSignInUnavailable, doing: doing, err: err}
}

// logFailure logs an outage that ended a sign-in.
func (s *Service) logFailure(ctx context.Context, fail *callbackFailure) {
	if fail.err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, fail.doing+" failed", slog.String("err", fail.err.Error()))
	}
}

// finishEntra reads Entra's answer to the flow: it redeems the code with
// our PKCE verifier, verifies the ID token, and marks the sign-in done so
// that it completes once.
func (s *Service) finishEntra(ctx context.Context, q url.Values, state string, f flow) (signedIn, *callbackFailure) {
	var d signedIn
	if e := q.Get("error"); e != "" {
		s.log.LogAttrs(ctx, slog.LevelInfo, "sign-in refused by Entra", slog.String("error", truncate(e, 64)))
		return d, &callbackFailure{oauth: errNotSignedIn, title: "Sign-in was not completed",
			message: "Entra ID answered: " + truncate(e, 64) + ": " + truncate(q.Get("error_description"), 400)}
	}
	code := q.Get("code")
	if code == "" || len(code) > 4096 {
		return d, refused("The sign-in response has no code. Start again.")
	}
	// Redis's clock, as RevokeUser stamps revocations: one that runs while
	// this sign-in is under way refuses it.
	started, err := s.opts.Sessions.Now(ctx)
	if err != nil {
		return d, unavailable("read Redis time", err)
	}
	ep, err := s.pool.redeem(ctx, started, func(c confidential.Client) error {
		var err error
		d.res, err = c.AcquireTokenByAuthCode(ctx, code, s.redirectURI, s.apiScopes, confidential.WithChallenge(f.Verifier))
		return err
	})
	switch {
	case errors.Is(err, store.ErrRevoked):
		return d, refused(msgRevokedMeanwhile)
	case err != nil && isUnavailable(err):
		return d, unavailable("redeem authorization code", err)
	case err != nil:
		s.log.LogAttrs(ctx, slog.LevelWarn, "authorization code refused", slog.String("err", err.Error()))
		return d, refused("Entra ID did not accept the sign-in. Start again.")
	}
	d.epoch = ep
	var fail *callbackFailure
	if d.tid, d.oid, fail = s.checkIDToken(ctx, d.res, f.Nonce); fail != nil {
		return d, fail
	}
	first, err := s.opts.Sessions.MarkFlowDone(ctx, state, max(time.Until(time.UnixMilli(f.Expires)), time.Second))
	if err != nil {
		return d, unavailable("mark sign-in done", err)
	}
	if !first {
		s.log.LogAttrs(ctx, slog.LevelWarn, "sign-in callback refused: this sign-in was completed before")
		return d, refused("This sign-in was already completed. Start again.")
	}
	return d, nil
}

// checkIDToken verifies the ID token (signature with the tenant's keys,
// issuer, audience, tenant, times), compares its nonce with the one this
// sign-in sent (MSAL checks neither), and takes the user's identity from it.
func (s *Service) checkIDToken(ctx context.Context, res confidential.AuthResult, nonce string) (tid, oid string, fail *callbackFailure) {
	id, err := s.opts.IDTokens.VerifyIDToken(ctx, res.IDToken.RawToken)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "ID token refused", slog.String("reason", err.Error()))
		return "", "", idTokenFailure(err)
	}
	if !equal(id.Nonce, nonce) {
		s.log.LogAttrs(ctx, slog.LevelWarn, "ID token refused: its nonce is not this sign-in's")
		return "", "", refused("The sign-in response did not match this sign-in. Start again.")
	}
	if res.Account.HomeAccountID != homeAccountID(id.TenantID, id.ObjectID) {
		s.log.LogAttrs(ctx, slog.LevelWarn, "ID token refused: its identity is not the account Entra returned")
		return "", "", refused("The sign-in response did not match this sign-in. Start again.")
	}
	return id.TenantID, id.ObjectID, nil
}

// Exchange trades a one-time code for tokens: POST /auth/exchange
// {"auth_code": "...", "code_verifier": "..."}.
func (s *Service) Exchange(w http.ResponseWriter, r *http.Request) {
	var req struct {
		AuthCode     string `json:"auth_code"`
		CodeVerifier string `json:"code_verifier"`
	}
	if !s.readJSON(w, r, &req) {
		return
	}
	if req.AuthCode == "" || len(req.AuthCode) > 128 || len(req.CodeVerifier) > 128 {
		oautherr.Write(w, oautherr.New(oautherr.InvalidRequest, "auth_code is required"))
		return
	}
	t, err := s.grants.RedeemCode(r.Context(), req.AuthCode, func(rec grants.CodeRecord) string {
		if rec.ClientID != "" {
			return "the code was issued to an OAuth client; redeem it at the token endpoint"
		}
		if rec.ClientChallenge != "" && !grants.PKCEMatches(req.CodeVerifier, rec.ClientChallenge) {
			return "code_verifier does not match the code_challenge of the sign-in"
		}
		return ""
	}, true)
	if err != nil {
		s.grants.Answer(w, r, "redeem one-time code", err,
			"the service did not answer in time; the code may have been used up: if exchanging it again fails, sign in again")
		return
	}
	grants.WriteTokens(w, t)
}

// Refresh rotates a refresh handle and returns a fresh access token:
// POST /auth/refresh {"refresh_token": "..."}.
func (s *Service) Refresh(w http.ResponseWriter, r *http.Request) {
	handle, ok := s.readHandle(w, r)
	if !ok {
		return
	}
	t, err := s.grants.Refresh(r.Context(), handle, "")
	if err != nil {
		s.grants.Answer(w, r, "refresh", err, s.grants.RefreshRetryHint())
		return
	}
	grants.WriteTokens(w, t)
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
	rec, found, err := s.grants.EndSession(ctx, handle)
	if err != nil {
		s.fail(w, r, "end session", err)
		return
	}
	if found {
		if err := s.opts.Sessions.DeleteMSAL(ctx, rec.TenantID, rec.ObjectID); err != nil {
			s.fail(w, r, "delete token cache", err)
			return
		}
		s.log.LogAttrs(ctx, slog.LevelInfo, "signed out", slog.String("tid", rec.TenantID), slog.String("oid", rec.ObjectID))
		s.event(ctx, "logout", rec.TenantID, rec.ObjectID)
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
		oautherr.Write(w, oautherr.New(oautherr.InvalidRequest, "refresh_token is required"))
		return "", false
	}
	return req.RefreshToken, true
}

// acquireSilent gets the user's access token from their MSAL cache,
// refreshing it with Entra when needed. The scope is resent as it was
// granted: Entra requires it on refresh.
func (s *Service) acquireSilent(ctx context.Context, home, scope string) (confidential.AuthResult, error) {
	var res confidential.AuthResult
	_, err := s.pool.with(ctx, home, func(c confidential.Client) error {
		var err error
		res, err = c.AcquireTokenSilent(ctx, strings.Fields(scope),
			confidential.WithSilentAccount(confidential.Account{HomeAccountID: home}))
		return err
	})
	return res, err
}

// readJSON checks content type and size, and decodes strictly.
func (s *Service) readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, refusal := httpx.Body{MediaType: "application/json", Max: maxJSONBody}.Read(w, r)
	if refusal != nil {
		oautherr.Write(w, refusal)
		return false
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil || dec.More() {
		oautherr.Write(w, oautherr.New(oautherr.InvalidRequest, "the body must be a JSON object with the documented fields only"))
		return false
	}
	return true
}

// isUnavailable tells an outage (Redis, the network, Entra answering 5xx
// or 429) from a refusal (Entra answering 4xx, or no tokens for the user).
func isUnavailable(err error) bool {
	if errors.Is(err, outage.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
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
	oautherr.Write(w, oautherr.Unavailable("the sign-in service is unavailable; try again shortly"))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// idTokenFailure says why an ID token was refused in words that help: our
// outage, or a refusal.
func idTokenFailure(err error) *callbackFailure {
	switch {
	case errors.Is(err, entra.ErrUnavailable):
		return unavailable("verify ID token", err)
	case errors.Is(err, entra.ErrUnknownKey):
		// Entra published a new signing key this instance has not loaded
		// yet (it refreshes at most every 30 s for unknown keys).
		return &callbackFailure{oauth: errSignInUnavailable, title: "Sign-in could not be completed",
			message: "Entra ID signed the sign-in with a key this server has not loaded yet. Wait 30 seconds and start again."}
	}
	return refused("The sign-in response could not be verified. Start again.")
}
