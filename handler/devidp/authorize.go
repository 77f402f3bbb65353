package devidp

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// authRequest is a validated authorize request.
type authRequest struct {
	clientID    string
	redirectURI string
	scopes      scopeSet
	state       string
	nonce       string
	challenge   string
}

// authError is an authorize-endpoint failure. Entra shows a page instead of
// redirecting when the client or the redirect URI is wrong, since a redirect
// then could go anywhere; every other failure goes back to the client.
type authError struct {
	*aadError
	redirect bool
}

// knownTenant reports whether tenant names the home tenant, by id or by one
// of Entra's multi-tenant aliases. Tokens are always issued in the home
// tenant.
func (s *Server) knownTenant(tenant string) bool {
	return tenant == s.tenantID || tenant == "common" || tenant == "organizations"
}

// single returns the one value of key in q, and whether there is exactly one.
// Repeated client_id or redirect_uri parameters are refused rather than
// resolved, so two parsers can never disagree on where a code goes.
func single(q url.Values, key string) (string, bool) {
	v := q[key]
	return strings.Join(v, ""), len(v) == 1 && v[0] != ""
}

// parseAuthorize validates an authorize request's query in Entra's order:
// tenant, client and redirect URI (page errors), then the rest (redirect
// errors).
func (s *Server) parseAuthorize(tenant string, q url.Values) (authRequest, *authError) {
	req, err := s.parseClient(tenant, q)
	if err != nil {
		return authRequest{}, &authError{aadError: err}
	}
	req.state = q.Get("state")
	req.nonce = q.Get("nonce")
	back := func(e *aadError) (authRequest, *authError) { return req, &authError{aadError: e, redirect: true} }
	if err := checkResponseShape(q); err != nil {
		return back(err)
	}
	if req.scopes, err = s.authorizeScopes(q); err != nil {
		return back(err)
	}
	if req.challenge, err = pkceChallenge(q); err != nil {
		return back(err)
	}
	return req, nil
}

// parseClient checks the tenant, the client and its redirect URI: the
// errors Entra shows on its own page, since a redirect URI it cannot trust
// is no place to send them.
func (s *Server) parseClient(tenant string, q url.Values) (authRequest, *aadError) {
	if !s.knownTenant(tenant) {
		return authRequest{}, newAADError(http.StatusBadRequest, "invalid_tenant", 90002,
			"Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant)
	}
	var req authRequest
	var ok bool
	if req.clientID, ok = single(q, "client_id"); !ok {
		return authRequest{}, missingParam("client_id")
	}
	if req.clientID != s.clientID {
		return authRequest{}, newAADError(http.StatusBadRequest, "unauthorized_client", 700016,
			"Application with identifier '%s' was not found in the directory '%s'.", req.clientID, s.tenantID)
	}
	if req.redirectURI, ok = single(q, "redirect_uri"); !ok || !slices.Contains(s.redirectURIs, req.redirectURI) {
		return authRequest{}, newAADError(http.StatusBadRequest, "invalid_request", 50011,
			"The redirect URI '%s' specified in the request does not match the redirect URIs configured for the application '%s'.", req.redirectURI, s.clientID)
	}
	return req, nil
}

// checkResponseShape refuses the resource parameter, as Entra does with
// v2 scopes, and any response type or mode but a code in the query.
func checkResponseShape(q url.Values) *aadError {
	if q.Has("resource") {
		if q.Has("scope") {
			return newAADError(http.StatusBadRequest, "invalid_target", 9010010,
				"The resource parameter provided in the request doesn't match with the requested scopes.")
		}
		return newAADError(http.StatusBadRequest, "invalid_request", 901002,
			"The 'resource' request parameter is not supported.")
	}
	switch rt := q.Get("response_type"); rt {
	case "":
		return missingParam("response_type")
	case "code":
	default:
		return newAADError(http.StatusBadRequest, "unsupported_response_type", 90023,
			"The response_type '%s' is not supported by devidp; use 'code'.", rt)
	}
	if rm := q.Get("response_mode"); rm != "" && rm != "query" {
		return newAADError(http.StatusBadRequest, "invalid_request", 90023,
			"The response_mode '%s' is not supported by devidp; use 'query'.", rm)
	}
	return nil
}

// authorizeScopes parses the requested scopes, which must include openid
// and a scope of this API.
func (s *Server) authorizeScopes(q url.Values) (scopeSet, *aadError) {
	if !q.Has("scope") {
		return scopeSet{}, missingParam("scope")
	}
	scopes, err := s.parseScopes(q.Get("scope"))
	if err != nil {
		return scopes, err
	}
	// Entra would sign in without openid and simply send no id_token; our
	// sign-in needs the id_token's nonce, so the stand-in insists.
	if !scopes.openID {
		return scopes, newAADError(http.StatusBadRequest, "invalid_scope", 70011,
			"The provided value for the input parameter 'scope' is not valid: devidp requires 'openid'.")
	}
	if len(scopes.api) == 0 {
		return scopes, newAADError(http.StatusBadRequest, "invalid_scope", 70011,
			"The provided value for the input parameter 'scope' is not valid: devidp requires a scope of %s.", s.appIDURI())
	}
	return scopes, nil
}

// pkceChallenge returns the request's S256 code challenge. Entra accepts a
// code flow without PKCE, and plain PKCE, from a confidential client; we
// hold ourselves to S256 (RFC 9700), so the stand-in refuses anything less.
func pkceChallenge(q url.Values) (string, *aadError) {
	challenge := q.Get("code_challenge")
	if challenge == "" {
		return "", missingParam("code_challenge")
	}
	if m := q.Get("code_challenge_method"); m != "S256" {
		return challenge, newAADError(http.StatusBadRequest, "invalid_request", 90023,
			"The code_challenge_method '%s' is not accepted by devidp; use 'S256'.", m)
	}
	if !challengePattern.MatchString(challenge) {
		return challenge, newAADError(http.StatusBadRequest, "invalid_request", 501491,
			"Invalid size of Code_Challenge parameter.")
	}
	return challenge, nil
}

// challengePattern is an S256 code challenge: base64url of 32 bytes.
var challengePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// handleAuthorize serves the sign-in page (GET) and acts on the user's choice
// (POST). The form posts back to the page's own URL, query included, so the
// POST re-validates the very request the user saw and the server keeps no
// state for pending sign-ins.
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	req, aerr := s.parseAuthorize(r.PathValue("tenant"), r.URL.Query())
	if aerr != nil {
		if aerr.redirect {
			s.redirectError(w, r, req.redirectURI, req.state, aerr.aadError, "")
			return
		}
		s.writePage(w, aerr.status, pageData{Title: "Sign-in failed", Error: aerr.Error()}, "")
		return
	}
	if r.Method == http.MethodGet {
		s.writePage(w, http.StatusOK, pageData{
			Title:    "Pick an account",
			ClientID: req.clientID,
			Scopes:   s.grantedScopes(req.scopes.api),
			Users:    s.users,
		}, req.redirectURI)
		return
	}

	// A browser sends Origin on a form POST; refusing a foreign one keeps
	// another site from signing the visitor in with a forged form.
	if o := r.Header.Get("Origin"); o != "" && o != requestOrigin(r) {
		s.writePage(w, http.StatusForbidden, pageData{Title: "Sign-in failed", Error: "The form was posted from another site."}, "")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.writePage(w, http.StatusBadRequest, pageData{Title: "Sign-in failed", Error: "The form could not be read."}, "")
		return
	}
	if r.PostForm.Has("cancel") {
		s.redirectError(w, r, req.redirectURI, req.state, newAADError(http.StatusBadRequest, "access_denied", 65004,
			"User declined to consent to access the app."), "cancel")
		return
	}
	u, ok := findUser(s.users, r.PostForm.Get("user"))
	if !ok {
		s.writePage(w, http.StatusBadRequest, pageData{Title: "Sign-in failed", Error: "Unknown user."}, "")
		return
	}
	session := newUUID()
	code := s.grants.addCode(authCode{
		grant: grant{
			user:      u,
			clientID:  req.clientID,
			scopes:    req.scopes.api,
			openID:    req.scopes.openID,
			offline:   req.scopes.offline,
			sessionID: session,
		},
		redirectURI: req.redirectURI,
		challenge:   req.challenge,
		nonce:       req.nonce,
		expires:     s.now().Add(codeLifetime),
	}, s.now())
	params := url.Values{"code": {code}, "session_state": {session}}
	if req.state != "" {
		params.Set("state", req.state)
	}
	http.Redirect(w, r, withQuery(req.redirectURI, params), http.StatusFound)
}

// redirectError sends e back to the client's redirect URI as Entra does:
// error, error_description (with trace and correlation ids), error_uri, the
// state, and for a user's cancel error_subcode=cancel.
func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, redirectURI, state string, e *aadError, subcode string) {
	params := url.Values{
		"error":             {e.code},
		"error_description": {e.description(s.details(r))},
		"error_uri":         {s.errorURI(e)},
	}
	if subcode != "" {
		params.Set("error_subcode", subcode)
	}
	if state != "" {
		params.Set("state", state)
	}
	http.Redirect(w, r, withQuery(redirectURI, params), http.StatusFound)
}

// withQuery adds params to the query of uri, a registered redirect URI.
func withQuery(uri string, params url.Values) string {
	u, err := url.Parse(uri)
	if err != nil {
		return uri // unreachable: registered URIs are compared, not parsed, and come from config
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// requestOrigin is the origin the request was addressed to. The listeners are
// on loopback, so Host is what the browser used.
func requestOrigin(r *http.Request) string {
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// grantedScopes writes API scope names in full, as the token response's
// scope parameter does.
func (s *Server) grantedScopes(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = s.appIDURI() + "/" + n
	}
	return out
}

// pageCSS is the page's only style. It is inline and allowed by its hash,
// so the page loads nothing and the CSP allows nothing else. (No CSS
// comments: html/template would strip them and break the hash.)
const pageCSS = `body{font:16px/1.4 system-ui,sans-serif;margin:0;background:#f3f2f1;color:#1b1b1b}
main{max-width:28rem;margin:3rem auto;background:#fff;padding:2rem;box-shadow:0 2px 6px rgba(0,0,0,.2)}
h1{font-size:1.5rem;margin-top:0}
button{display:block;width:100%;margin:.5rem 0;padding:.75rem;text-align:left;font:inherit;background:#fff;border:1px solid #8a8886;cursor:pointer}
button:hover,button:focus{background:#edebe9}
button span{display:block;font-size:.875rem;color:#605e5c}
button.cancel{text-align:center;background:#f3f2f1}
code{font-size:.875rem;word-break:break-all}
.error{color:#a4262c;white-space:pre-wrap}
.note{font-size:.75rem;color:#605e5c}`

// pageCSSHash is pageCSS's CSP hash source.
var pageCSSHash = func() string {
	sum := sha256.Sum256([]byte(pageCSS))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}()

// pageData fills pageTemplate.
type pageData struct {
	Title    string
	Error    string
	ClientID string
	Scopes   []string
	Users    []User
}

var pageTemplate = template.Must(template.New("authorize").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>{{.Title}} · devidp</title>
<style>` + pageCSS + `</style></head>
<body><main>
<h1>{{.Title}}</h1>
{{if .Error}}<p class="error">{{.Error}}</p>{{end}}
{{if .Users}}<p>Application <code>{{.ClientID}}</code> asks to sign you in and for {{range .Scopes}}<code>{{.}}</code> {{end}}</p>
<form method="post">
{{range .Users}}<button type="submit" name="user" value="{{.Key}}">{{.Name}}<span>{{.Username}}</span><span>Roles: {{range $i, $r := .Roles}}{{if $i}}, {{end}}{{$r}}{{end}}</span></button>
{{end}}<button type="submit" name="cancel" value="1" class="cancel">Cancel</button>
</form>{{end}}
<p class="note">devidp is a local stand-in for Microsoft Entra ID: no password, no real accounts.</p>
</main></body></html>
`))

// writePage renders the page with a CSP that allows its one style and,
// when it has a form, posting to itself. Chrome applies form-action to the
// redirect that follows the POST too, so the redirect URI's origin must be
// allowed as well, or the browser would block the way back to the client.
func (s *Server) writePage(w http.ResponseWriter, status int, data pageData, redirectURI string) {
	formAction := "'none'"
	if data.Users != nil {
		formAction = "'self'"
		if u, err := url.Parse(redirectURI); err == nil && u.Scheme != "" && u.Host != "" {
			formAction += " " + u.Scheme + "://" + u.Host
		}
		// The redirect URI may redirect on in turn: the OAuth front's
		// callback sends the browser to its client's redirect URI, which we
		// cannot know here, on loopback in dev mode. (Entra sets no
		// form-action at all.)
		formAction += " http://127.0.0.1:* http://localhost:*"
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src "+pageCSSHash+"; form-action "+formAction+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// same-origin, not no-referrer: under no-referrer Chromium posts the
	// form with "Origin: null", which the check against forged forms must
	// refuse. Other sites still get no referrer.
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	_ = pageTemplate.Execute(w, data)
}

// SignIn drives the authorize page at authURL over real HTTP as a browser
// would: it loads the page, picks the demo user userKey, and returns the
// Location the page redirects to, normally redirect_uri?code=...&state=....
// When the request is refused with a redirect (an error for the client) it
// returns that Location, also with a nil error; when the page shows an error
// (unknown client or redirect URI) it returns an error holding the AADSTS
// message. authURL may be on either listener.
func (s *Server) SignIn(ctx context.Context, authURL, userKey string) (redirectLocation string, err error) {
	return s.drivePage(ctx, authURL, url.Values{"user": {userKey}})
}

// CancelSignIn is SignIn pressing "Cancel": the Location then carries
// error=access_denied.
func (s *Server) CancelSignIn(ctx context.Context, authURL string) (redirectLocation string, err error) {
	return s.drivePage(ctx, authURL, url.Values{"cancel": {"1"}})
}

func (s *Server) drivePage(ctx context.Context, authURL string, form url.Values) (string, error) {
	c := s.HTTPClient()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	u, err := url.Parse(authURL)
	if err != nil {
		return "", fmt.Errorf("devidp: sign-in URL: %w", err)
	}

	get, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return "", fmt.Errorf("devidp: sign-in: %w", err)
	}
	loc, err := pageStep(c, get)
	if err != nil || loc != "" {
		return loc, err
	}

	post, err := http.NewRequestWithContext(ctx, http.MethodPost, authURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("devidp: sign-in: %w", err)
	}
	post.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	post.Header.Set("Origin", u.Scheme+"://"+u.Host)
	loc, err = pageStep(c, post)
	if err == nil && loc == "" {
		err = errors.New("devidp: sign-in: the form post did not redirect")
	}
	return loc, err
}

// pageStep sends req and returns the Location of a 302, "" for a 200 page,
// or an error naming what the page says went wrong.
func pageStep(c *http.Client, req *http.Request) (string, error) {
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("devidp: sign-in: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch resp.StatusCode {
	case http.StatusFound:
		return resp.Header.Get("Location"), nil
	case http.StatusOK:
		return "", nil
	}
	msg := http.StatusText(resp.StatusCode)
	if m := pageErrorPattern.FindSubmatch(body); m != nil {
		msg = html.UnescapeString(string(m[1]))
	}
	return "", fmt.Errorf("devidp: sign-in: %s %s: %d: %s", req.Method, req.URL.Path, resp.StatusCode, msg)
}

var pageErrorPattern = regexp.MustCompile(`<p class="error">([^<]*)</p>`)
