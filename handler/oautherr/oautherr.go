// Package oautherr is the one OAuth error of the handler (RFC 6749 §4.1.2.1
// and §5.2, RFC 7591 §3.2.2, RFC 6750 §3.1): a code, a description safe to
// show the client, the HTTP status it is answered with, and the cause for
// logs. It has one JSON writer (token, registration and /auth endpoints,
// and the HTTP guards) and one redirect writer (authorization responses).
// It sits below every package that refuses a request, so a refusal is
// built where it is decided and written where the request is answered.
package oautherr

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Error codes.
const (
	// RFC 6749.
	InvalidRequest          = "invalid_request"
	InvalidClient           = "invalid_client"
	InvalidGrant            = "invalid_grant"
	UnauthorizedClient      = "unauthorized_client"
	UnsupportedGrantType    = "unsupported_grant_type"
	UnsupportedResponseType = "unsupported_response_type"
	InvalidScope            = "invalid_scope"
	AccessDenied            = "access_denied"
	ServerError             = "server_error"
	TemporarilyUnavailable  = "temporarily_unavailable"
	// SlowDown is RFC 8628's code, used here for every rate limit.
	SlowDown = "slow_down"
	// InvalidTarget is RFC 8707's: the resource parameter names another
	// resource.
	InvalidTarget = "invalid_target"
	// UnsupportedTokenType is RFC 7009's.
	UnsupportedTokenType = "unsupported_token_type"
	// InvalidRedirectURI and InvalidClientMetadata are RFC 7591's.
	InvalidRedirectURI    = "invalid_redirect_uri"
	InvalidClientMetadata = "invalid_client_metadata"
	// InvalidToken is RFC 6750's, for a bearer token refused.
	InvalidToken = "invalid_token"
)

// Error is one refused request.
type Error struct {
	Code string
	// Description is sent to the client: it must hold no token, code,
	// secret or address we resolved.
	Description string
	// Status is the HTTP status of a JSON answer (0: 400).
	Status int
	// RetryAfter, when positive, is sent as Retry-After (whole seconds,
	// rounded up).
	RetryAfter time.Duration
	// Err is the cause, for logs only.
	Err error
}

// New returns a 400 error with code and description.
func New(code, description string) *Error { return &Error{Code: code, Description: description} }

// WithStatus returns a copy of e answered with status.
func (e *Error) WithStatus(status int) *Error {
	c := *e
	c.Status = status
	return &c
}

// WithRetryAfter returns a copy of e that tells the client when to retry.
func (e *Error) WithRetryAfter(d time.Duration) *Error {
	c := *e
	c.RetryAfter = d
	return &c
}

// Unavailable is our outage: 503 temporarily_unavailable, retry in 5 s.
// description says what the client may safely do about a request whose
// outcome is unknown.
func Unavailable(description string) *Error {
	return &Error{Code: TemporarilyUnavailable, Description: description, Status: http.StatusServiceUnavailable,
		RetryAfter: 5 * time.Second}
}

// TooManyRequests is a rate limit: 429 slow_down with Retry-After.
func TooManyRequests(description string, retry time.Duration) *Error {
	// Retry-After is always sent, at least 1 s, whatever the limiter said.
	return &Error{Code: SlowDown, Description: description, Status: http.StatusTooManyRequests, RetryAfter: max(retry, time.Second)}
}

func (e *Error) Error() string {
	msg := e.Code + ": " + e.Description
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// HTTPStatus is the status a JSON answer carries.
func (e *Error) HTTPStatus() int {
	if e.Status == 0 {
		return http.StatusBadRequest
	}
	return e.Status
}

// Redirectable reports whether the error may go to a client's redirect
// URI as an authorization response (RFC 6749 §4.1.2.1, RFC 8707 §2): the
// others belong to other endpoints, and an authorization request that
// earns one is answered with a page.
func (e *Error) Redirectable() bool {
	switch e.Code {
	case InvalidRequest, UnauthorizedClient, AccessDenied, UnsupportedResponseType, InvalidScope,
		ServerError, TemporarilyUnavailable, InvalidTarget:
		return true
	}
	return false
}

// body is the JSON answer; error_description is always present, as it
// always was.
type body struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// Write answers with e as JSON (RFC 6749 §5.2), never cached.
func Write(w http.ResponseWriter, e *Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(RetrySeconds(e.RetryAfter)))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(e.HTTPStatus())
	_ = json.NewEncoder(w).Encode(body{Error: e.Code, Description: e.Description})
}

// RetrySeconds is a Retry-After value: whole seconds, rounded up, at least 1.
func RetrySeconds(d time.Duration) int {
	secs := int(d / time.Second)
	if d%time.Second != 0 || secs == 0 {
		secs++
	}
	return secs
}

// Params are e's authorization-response parameters with the client's
// state ("" when it sent none: then none goes back, RFC 6749 §4.1.2). An
// empty description is left out.
func (e *Error) Params(state string) url.Values {
	v := url.Values{"error": {e.Code}}
	if e.Description != "" {
		v.Set("error_description", e.Description)
	}
	if state != "" {
		v.Set("state", state)
	}
	return v
}

// Redirect sends the browser back to a client's registered redirect URI
// with e (see Params) and iss.
func Redirect(w http.ResponseWriter, r *http.Request, redirectURI, issuer, state string, e *Error) {
	RedirectClient(w, r, redirectURI, issuer, e.Params(state))
}

// RedirectClient sends the browser back to an OAuth client's registered
// redirect URI with params, the issuer added as iss (RFC 9207), so the
// client can tell which authorization server answered. An empty state is
// left out: the client sent none, and gets none back (RFC 6749 §4.1.2).
func RedirectClient(w http.ResponseWriter, r *http.Request, redirectURI, issuer string, params url.Values) {
	target, err := ClientURL(redirectURI, issuer, params)
	if err != nil {
		// Registered redirect URIs were parsed when registered.
		http.Error(w, "bad redirect URI", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, target, http.StatusFound)
}

// ClientURL is redirectURI with params and iss added to what its query
// already holds, an empty state left out.
func ClientURL(redirectURI, issuer string, params url.Values) (string, error) {
	if params.Get("state") == "" {
		params.Del("state")
	}
	params.Set("iss", issuer)
	return AppendQuery(redirectURI, params)
}

// AppendQuery adds params to the query of raw, an allow-listed or
// registered URL, keeping what its query already holds.
func AppendQuery(raw string, params url.Values) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}
