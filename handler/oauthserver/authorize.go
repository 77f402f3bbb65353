package oauthserver

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/clientip"
	"github.com/entra-mcp/functions-mcp/handler/httpx"
	"github.com/entra-mcp/functions-mcp/handler/oauthclients"
	"github.com/entra-mcp/functions-mcp/handler/oautherr"
	"github.com/entra-mcp/functions-mcp/handler/webpage"
)

const (
	// consentTTL is how long a consent page stays answerable.
	consentTTL = 10 * time.Minute
	// maxState bounds the client's state, which travels back in a URL.
	maxState = 1024
	// maxConsentFormBody caps the consent form, which carries the sealed
	// request (client_id, redirect URI and state of up to a few KiB).
	maxConsentFormBody = 24 << 10
	// armDelay is how long the Allow button stays inert after the page is
	// visible and focused: a click meant for another page (the second
	// click of a double-click whose first one swapped the window, i.e.
	// double-clickjacking) lands on nothing.
	armDelay = 700 * time.Millisecond
)

// challengeRE is an S256 code_challenge: 32 bytes in base64url.
var challengeRE = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// Authorize serves /oauth/authorize: GET checks a client's authorization
// request and asks the user to approve the client (or goes straight to
// Entra when this user approved it before in this browser); POST is the
// consent form's answer.
func (s *Server) Authorize(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		s.decide(w, r)
		return
	}
	// Every authorization request may start a sign-in: it counts against
	// the address's sign-in budget before anything else is done for it.
	if !s.opts.SignIn.AllowSignIn(w, r) {
		return
	}
	ctx := r.Context()
	q := r.URL.Query()
	client, redirect, ok := s.clientAndRedirect(w, r, q)
	if !ok {
		return
	}
	req, refusal := s.checkRequest(q, client, redirect)
	if refusal != nil {
		state := q.Get("state")
		if len(state) > maxState || len(q["state"]) != 1 {
			state = ""
		}
		s.log.LogAttrs(ctx, slog.LevelInfo, "authorization request refused", slog.String("client_id", client.ClientID),
			slog.String("error", refusal.Code), slog.String("reason", refusal.Description))
		s.refuseAuthorization(w, r, redirect, state, refusal)
		return
	}

	user, err := s.rememberedConsent(ctx, r, client.ClientID, redirect)
	if err != nil {
		// Asking again is the safe way round.
		s.log.LogAttrs(ctx, slog.LevelWarn, "look up remembered consent failed", slog.String("err", err.Error()))
	}
	if user != "" {
		s.startSignIn(w, r, clientSignIn{authRequest: req, ConsentUser: user})
		return
	}
	s.askConsent(w, r, client, req)
}

// refuseAuthorization answers an authorization request from a known
// client and redirect URI with refusal. The client hears of it at its
// redirect URI (RFC 6749 §4.1.2.1): automatically where the redirect URI is
// trusted, else through a page with a link the user follows (RFC 9700
// §4.11.2). An error that may not travel by redirect is a page.
func (s *Server) refuseAuthorization(w http.ResponseWriter, r *http.Request, redirect, state string, refusal *oautherr.Error) {
	switch {
	case !refusal.Redirectable():
		s.errorPage(w, http.StatusBadRequest, "The authorization request is not valid ("+refusal.Code+": "+refusal.Description+").")
	case oauthclients.RedirectTrusted(redirect):
		oautherr.Redirect(w, r, redirect, s.opts.Issuer, state, refusal)
	default:
		s.errorReturnPage(w, redirect, state, refusal)
	}
}

// startSignIn sends the browser to Entra for an approved request; the
// sign-in comes back to Continue.
func (s *Server) startSignIn(w http.ResponseWriter, r *http.Request, c clientSignIn) {
	handoff, err := json.Marshal(c)
	if err != nil {
		s.unavailablePage(w, r, "encode client sign-in", err)
		return
	}
	s.opts.SignIn.StartFor(w, r, handoff)
}

// clientAndRedirect finds the client and checks the redirect URI. Until
// both are known good, errors are pages: a redirect would send the browser
// wherever the request says. On failure it has answered.
func (s *Server) clientAndRedirect(w http.ResponseWriter, r *http.Request, q url.Values) (oauthclients.Client, string, bool) {
	ctx := r.Context()
	if len(q["client_id"]) > 1 || len(q["redirect_uri"]) > 1 {
		s.errorPage(w, http.StatusBadRequest, "client_id and redirect_uri may appear only once.")
		return oauthclients.Client{}, "", false
	}
	clientID := q.Get("client_id")
	if clientID == "" || len(clientID) > 2048 {
		s.errorPage(w, http.StatusBadRequest, "The request names no valid client (client_id).")
		return oauthclients.Client{}, "", false
	}
	// A client_id that is a URL costs an outbound fetch: count it before.
	if strings.Contains(clientID, ":") && !httpx.Allow(w, r, s.opts.Limiter) {
		return oauthclients.Client{}, "", false
	}
	client, err := s.opts.Clients.Lookup(ctx, clientID, clientip.KeyOf(r))
	if err != nil {
		var ce *oautherr.Error
		if errors.As(err, &ce) {
			s.log.LogAttrs(ctx, slog.LevelWarn, "authorization refused: unknown client", slog.String("reason", ce.Description))
			// A registration can expire; a metadata document is the
			// client's own to fix, and is fetched afresh on the next try.
			hint := ". If it worked before, its registration may have expired: remove this server from the application and add it again."
			if strings.Contains(clientID, ":") {
				hint = ". The application's metadata document must be fixed by its publisher; it is fetched again on the next try."
			}
			s.errorPage(w, http.StatusBadRequest, "The application asking for access is not known to this server: "+ce.Description+hint)
			return oauthclients.Client{}, "", false
		}
		s.unavailablePage(w, r, "look up client", err)
		return oauthclients.Client{}, "", false
	}
	// Always required, though OAuth 2.1 lets a client with one redirect URI
	// leave it out: every MCP client sends it, and the token request then
	// always has one to match.
	redirect := q.Get("redirect_uri")
	if redirect == "" {
		s.errorPage(w, http.StatusBadRequest, "The request has no redirect_uri.")
		return oauthclients.Client{}, "", false
	}
	if !oauthclients.RedirectAllowed(client, redirect) {
		s.log.LogAttrs(ctx, slog.LevelWarn, "authorization refused: redirect_uri not registered", slog.String("client_id", clientID))
		s.errorPage(w, http.StatusBadRequest, "The redirect_uri is not registered for this application.")
		return oauthclients.Client{}, "", false
	}
	return client, redirect, true
}

// checkRequest checks the rest of an authorization request from a known
// client and redirect URI. It returns the request, or the refusal of the
// first problem.
func (s *Server) checkRequest(q url.Values, client oauthclients.Client, redirect string) (authRequest, *oautherr.Error) {
	invalid := func(desc string) (authRequest, *oautherr.Error) {
		return authRequest{}, oautherr.New(oautherr.InvalidRequest, desc)
	}
	if k := repeated(q); k != "" {
		return invalid(k + " appears more than once")
	}
	switch rt := q.Get("response_type"); {
	case rt == "":
		return invalid("response_type is required")
	case rt != "code":
		return authRequest{}, oautherr.New(oautherr.UnsupportedResponseType, "response_type must be code")
	}
	if !client.AllowsGrant("authorization_code") {
		return authRequest{}, oautherr.New(oautherr.UnauthorizedClient, "the client did not register the authorization_code grant")
	}
	// state is optional: PKCE, required here, protects the redirect
	// (OAuth 2.1 §7.5.1), and an MCP client may rely on it alone (the
	// TypeScript SDK sends state only if its provider makes one). A
	// request without it gets an answer without it (RFC 6749 §4.1.2).
	state := q.Get("state")
	if len(state) > maxState {
		return invalid("state must be at most 1024 characters")
	}
	challenge := q.Get("code_challenge")
	switch {
	case challenge == "":
		return invalid("code_challenge is required: PKCE with S256")
	case q.Get("code_challenge_method") != "S256":
		return invalid("code_challenge_method must be S256")
	case !challengeRE.MatchString(challenge):
		return invalid("code_challenge is not an S256 challenge")
	}
	if desc := s.checkResource(q["resource"]); desc != "" {
		return authRequest{}, oautherr.New(oautherr.InvalidTarget, desc)
	}
	scope, ok := s.grantedScope(q.Get("scope"))
	if !ok {
		return authRequest{}, oautherr.New(oautherr.InvalidScope, "scope must be "+s.opts.Scope)
	}
	req := authRequest{ClientID: client.ClientID, RedirectURI: redirect, State: state, Challenge: challenge, Scope: scope}
	if !s.fitsInCookie(req) {
		// The sign-in travels in a cookie (4 KiB): refused now, not after
		// the user approved.
		return invalid("the request is too large: client_id, redirect_uri and state together must stay under about 2.5 KiB")
	}
	return req, nil
}

// authRequest is a client's authorization request, checked.
type authRequest struct {
	ClientID    string `json:"c"`
	RedirectURI string `json:"r"`           // registered for the client
	State       string `json:"s,omitempty"` // the client's, returned unchanged; "" when it sent none
	Challenge   string `json:"p"`           // the client's PKCE S256 challenge
	Scope       string `json:"o"`           // granted to the client
}

// clientSignIn is the record of an approved request's sign-in, handed to
// package signin (StartFor) and back to Continue: it travels sealed in the
// sign-in's cookie.
type clientSignIn struct {
	authRequest
	// ConsentUser is "<tid>.<oid>" when the approval was remembered rather
	// than given just now: the sign-in must then be by that user.
	ConsentUser string `json:"u,omitempty"`
}

// fitsInCookie reports whether the sign-in of req would fit in its cookie,
// whoever's remembered consent it carries.
func (s *Server) fitsInCookie(req authRequest) bool {
	handoff, err := json.Marshal(clientSignIn{authRequest: req, ConsentUser: strings.Repeat("0", 73)})
	return err == nil && s.opts.SignIn.FitsInCookie(handoff)
}

// consentRequest is an authorization request waiting for the user's
// answer. It is not stored: it travels sealed in the consent form, good
// only in the browser it was shown in (the binding cookie's hash), with
// the page's own CSRF token, until it expires.
type consentRequest struct {
	Request authRequest `json:"q"`
	Binding string      `json:"b"` // h(binding cookie)
	CSRF    string      `json:"c"` // h(CSRF token)
	Expires int64       `json:"x"` // Unix ms
}

// consentSealName is the additional data of a consent request's seal. Its
// version changes with the record's shape, so a form sealed by an older
// instance fails to open (an expired request) instead of decoding empty.
const consentSealName = "oauth-consent-request/2"

// askConsent shows the consent page, the request sealed into its form.
func (s *Server) askConsent(w http.ResponseWriter, r *http.Request, c oauthclients.Client, req authRequest) {
	binding := ""
	if v := s.bindCookie.Value(r); len(v) == 43 {
		// Reuse the browser's cookie, so two consent pages open at once
		// both stay answerable.
		binding = v
	}
	csrf := randomText()
	if binding == "" {
		binding = randomText()
	}
	plain, err := json.Marshal(consentRequest{Request: req, Binding: hashHex(binding), CSRF: hashHex(csrf),
		Expires: time.Now().Add(consentTTL).UnixMilli()})
	if err != nil {
		s.unavailablePage(w, r, "encode authorization request", err)
		return
	}
	sealed, err := s.opts.Sealer.Seal(consentSealName, plain)
	if err != nil {
		s.unavailablePage(w, r, "seal authorization request", err)
		return
	}
	// Chromium applies form-action to the redirects that answer the form
	// too: to Entra on approval, to the client on denial.
	entraOrigin, err := s.opts.SignIn.AuthorizeOrigin(r.Context())
	if err != nil {
		s.unavailablePage(w, r, "find Entra's authorize endpoint", err)
		return
	}
	s.bindCookie.Set(w, binding, consentTTL)
	d := consentData(c, req)
	d.Request, d.CSRF, d.Nonce, d.ArmDelayMS = base64.RawURLEncoding.EncodeToString(sealed), csrf, webpage.Nonce(), armDelay.Milliseconds()
	webpage.Write(w, http.StatusOK, consentTemplate, d, d.Nonce, strings.Join([]string{"'self'", entraOrigin, originOf(req.RedirectURI)}, " "))
}

// openConsentRequest opens the request a consent form carries, or fails
// for one that is forged, expired or sealed with a key no longer held.
func (s *Server) openConsentRequest(v string) (consentRequest, bool) {
	sealed, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return consentRequest{}, false
	}
	plain, err := s.opts.Sealer.Open(consentSealName, sealed)
	if err != nil {
		return consentRequest{}, false
	}
	var cr consentRequest
	if json.Unmarshal(plain, &cr) != nil || time.Now().UnixMilli() >= cr.Expires ||
		cr.Request.ClientID == "" || cr.Request.RedirectURI == "" {
		return consentRequest{}, false
	}
	return cr, true
}

// decide handles the consent form: POST /oauth/authorize.
func (s *Server) decide(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if o := r.Header.Get("Origin"); o != "" && o != s.origin {
		s.log.LogAttrs(ctx, slog.LevelWarn, "consent form refused: foreign Origin")
		s.errorPage(w, http.StatusForbidden, "This form was sent from another site.")
		return
	}
	if !s.opts.SignIn.AllowSignIn(w, r) {
		return
	}
	form, ok := s.readConsentForm(w, r)
	if !ok {
		return
	}
	sealed, csrf, decision := form.Get("request"), form.Get("csrf_token"), form.Get("decision")
	if sealed == "" || csrf == "" {
		s.log.LogAttrs(ctx, slog.LevelWarn, "consent form refused: request or CSRF token missing")
		s.errorPage(w, http.StatusForbidden, "This form could not be verified. Go back to the application and start again.")
		return
	}
	if decision != "approve" && decision != "deny" {
		s.errorPage(w, http.StatusBadRequest, "The form's decision must be approve or deny.")
		return
	}
	cr, ok := s.openConsentRequest(sealed)
	if !ok {
		s.errorPage(w, http.StatusBadRequest, "This request has expired or is not valid. Go back to the application and start again.")
		return
	}
	binding := s.bindCookie.Value(r)
	if binding == "" || !equal(hashHex(binding), cr.Binding) || !equal(hashHex(csrf), cr.CSRF) {
		s.log.LogAttrs(ctx, slog.LevelWarn, "consent form refused: browser binding or CSRF token does not match",
			slog.Bool("cookie_present", binding != ""))
		s.errorPage(w, http.StatusForbidden, "This form could not be verified. Go back to the application and start again.")
		return
	}
	req := cr.Request
	s.event(ctx, "oauth.consent", map[string]string{"client_id": req.ClientID, "decision": decision})
	if decision == "deny" {
		s.log.LogAttrs(ctx, slog.LevelInfo, "client denied by the user", slog.String("client_id", req.ClientID))
		oautherr.Redirect(w, r, req.RedirectURI, s.opts.Issuer, req.State,
			oautherr.New(oautherr.AccessDenied, "the user denied access"))
		return
	}
	s.startSignIn(w, r, clientSignIn{authRequest: req})
}

// readConsentForm reads the consent form: form encoding, size capped, no
// field twice. On failure it has answered with a page.
func (s *Server) readConsentForm(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	body, refusal := httpx.Body{MediaType: "application/x-www-form-urlencoded", Max: maxConsentFormBody}.Read(w, r)
	if refusal != nil && refusal.Status == http.StatusUnsupportedMediaType {
		s.errorPage(w, http.StatusUnsupportedMediaType, "The form must be sent as application/x-www-form-urlencoded.")
		return nil, false
	}
	var form url.Values
	err := errors.New("unreadable")
	if refusal == nil {
		form, err = url.ParseQuery(string(body))
	}
	if err != nil || repeated(form) != "" {
		s.errorPage(w, http.StatusBadRequest, "The form could not be read.")
		return nil, false
	}
	return form, true
}

// errorReturnPage shows an authorization error for a client whose redirect
// URI is not trusted, with a link that returns it to the client if the user
// chooses to follow it.
func (s *Server) errorReturnPage(w http.ResponseWriter, redirect, state string, refusal *oautherr.Error) {
	target, err := oautherr.ClientURL(redirect, s.opts.Issuer, refusal.Params(state))
	u, perr := url.Parse(target)
	if err != nil || perr != nil {
		s.errorPage(w, http.StatusBadRequest, "The authorization request is not valid.")
		return
	}
	d := pageData{Title: "Authorization failed", Message: "The application's request is not valid (" + refusal.Code + ": " + refusal.Description + ").",
		ReturnURL: target, ReturnHost: u.Host, Nonce: webpage.Nonce()}
	webpage.Write(w, http.StatusBadRequest, consentTemplate, d, d.Nonce, "'none'")
}

func (s *Server) errorPage(w http.ResponseWriter, status int, message string) {
	d := pageData{Title: "Authorization failed", Message: message, Nonce: webpage.Nonce()}
	webpage.Write(w, status, consentTemplate, d, d.Nonce, "'none'")
}

func (s *Server) unavailablePage(w http.ResponseWriter, r *http.Request, doing string, err error) {
	s.log.LogAttrs(r.Context(), slog.LevelError, doing+" failed", slog.String("err", err.Error()))
	w.Header().Set("Retry-After", "5")
	d := pageData{Title: "Authorization is unavailable right now",
		Message: "A service this server depends on did not answer. Wait a moment and try again.", Nonce: webpage.Nonce()}
	webpage.Write(w, http.StatusServiceUnavailable, consentTemplate, d, d.Nonce, "'none'")
}

// pageData fills the consent page, or an error page when Message is set.
type pageData struct {
	Title, Message string
	Nonce          string

	ClientName   string // as the client declares it
	ClientHost   string // host of client_uri, or of the metadata document URL
	Verified     bool   // identified by a metadata document on ClientHost
	RedirectHost string
	Loopback     bool // the redirect URI is on this computer: any program there could have asked
	Scope        string
	Request      string // the sealed request
	CSRF         string
	ArmDelayMS   int64

	ReturnURL  string // the client's redirect URI with the error, for a link
	ReturnHost string
}

func consentData(c oauthclients.Client, req authRequest) pageData {
	d := pageData{
		Title:        "Authorize access",
		ClientName:   c.ClientName,
		ClientHost:   hostOf(c.ClientURI),
		RedirectHost: hostOf(req.RedirectURI),
		Scope:        req.Scope,
	}
	if c.Source == oauthclients.SourceMetadataDocument {
		d.ClientHost, d.Verified = hostOf(c.ClientID), true
	}
	if u, err := url.Parse(req.RedirectURI); err == nil && u.Scheme == "http" {
		d.Loopback = true // registered http redirect URIs are loopback only
	}
	if d.ClientName == "" {
		d.ClientName = "An unnamed application"
	}
	if u, err := url.Parse(req.RedirectURI); err == nil && u.Scheme != "http" && u.Scheme != "https" {
		// A custom scheme (a native app): the scheme says which app.
		d.RedirectHost = u.Scheme + ":"
		if u.Host != "" {
			d.RedirectHost += "//" + u.Host
		}
	}
	return d
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}

func originOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

var consentTemplate = template.Must(template.New("consent").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style nonce="{{.Nonce}}">
body{font:16px/1.5 system-ui,sans-serif;max-width:38rem;margin:3rem auto;padding:0 1rem;color:#1b1b1b}
h1{font-size:1.6rem}dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}dt{color:#555}dd{margin:0;overflow-wrap:anywhere}
code{font:14px/1.4 ui-monospace,monospace}.warn{background:#fff4e5;border-left:4px solid #e8a33d;padding:.6rem .8rem}
.actions{display:flex;gap:.75rem;margin-top:1.5rem}button{font:inherit;padding:.5rem 1.2rem;cursor:pointer}
button.approve{background:#0b5cad;color:#fff;border:1px solid #0b5cad}button:disabled{opacity:.5;cursor:default}.muted{color:#555;font-size:.9rem}
</style></head><body>
<h1>{{.Title}}</h1>
{{if .Message}}<p id="message">{{.Message}}</p>
{{if .ReturnURL}}<p><a id="return" href="{{.ReturnURL}}" rel="noreferrer">Return to the application at {{.ReturnHost}}</a></p>{{end}}{{else}}
<p><strong id="client-name">{{.ClientName}}</strong> wants to use this server's MCP tools as you.</p>
<dl>
<dt>Application</dt><dd id="client-host">{{if .ClientHost}}{{.ClientHost}}{{if .Verified}} (identified by its metadata document there){{else}} (as the application says; not verified){{end}}{{else}}no web site given{{end}}</dd>
<dt>Sends you back to</dt><dd id="redirect-host"><code>{{.RedirectHost}}</code></dd>
<dt>Access</dt><dd id="scope"><code>{{.Scope}}</code></dd>
</dl>
{{if .Loopback}}<p class="warn" id="loopback">It sends you back to a program on this computer. Any program here can ask in an application's name: allow only if you just started the sign-in yourself.</p>{{end}}
<p class="warn">Allow only if you started this from an application you trust. It will be able to call the tools your roles allow, as you, until you sign out or the access is revoked.</p>
<form method="post" action="/oauth/authorize">
<input type="hidden" name="request" value="{{.Request}}">
<input type="hidden" name="csrf_token" value="{{.CSRF}}">
<div class="actions">
<button type="submit" name="decision" value="deny">Deny</button>
<button type="submit" name="decision" value="approve" class="approve" id="approve" disabled>Allow</button>
</div>
</form>
<script nonce="{{.Nonce}}">
// Allow works once this page has been visible and focused for a moment,
// so a click aimed at another window cannot land on it.
(function () {
  var b = document.getElementById("approve"), t = null;
  function arm() {
    clearTimeout(t);
    b.disabled = true;
    if (document.visibilityState === "visible" && document.hasFocus()) {
      t = setTimeout(function () { b.disabled = false; }, {{.ArmDelayMS}});
    }
  }
  window.addEventListener("focus", arm);
  window.addEventListener("pageshow", arm);
  window.addEventListener("blur", arm);
  document.addEventListener("visibilitychange", arm);
  arm();
})();
</script>
<p class="muted">After you allow, you sign in with your organization's account.</p>
{{end}}
</body></html>
`))

// randomText is 32 random bytes in base64url (43 characters).
func randomText() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func hashHex(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:])
}
