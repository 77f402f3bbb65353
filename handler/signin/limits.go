package signin

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/clientip"
	"github.com/entra-mcp/functions-mcp/handler/ratelimit"
)

// retrySeconds is a Retry-After value: whole seconds, rounded up, at least 1.
func retrySeconds(d time.Duration) int {
	secs := int(d / time.Second)
	if d%time.Second != 0 || secs == 0 {
		secs++
	}
	return secs
}

// Allow counts one request of r's client address (clientip.KeyOf) against
// l and, over the limit, answers 429 with Retry-After as an OAuth JSON
// error. The limiter logs the first refusal of each address per window.
func Allow(w http.ResponseWriter, r *http.Request, l *ratelimit.Limiter) bool {
	ok, retry, _ := l.Allow(r.Context(), clientip.KeyOf(r))
	if !ok {
		w.Header().Set("Retry-After", strconv.Itoa(retrySeconds(retry)))
		WriteOAuthError(w, http.StatusTooManyRequests, "slow_down", "too many requests; retry later")
	}
	return ok
}

// AllowSignIn counts the start of a sign-in (a login, or an OAuth client's
// authorization or consent request) against the client address's budget.
// Over it, the browser gets a page saying when to try again.
func (s *Service) AllowSignIn(w http.ResponseWriter, r *http.Request) bool {
	return s.allowPage(w, r, s.opts.Limits.SignIn)
}

func (s *Service) allowPage(w http.ResponseWriter, r *http.Request, l *ratelimit.Limiter) bool {
	ok, retry, _ := l.Allow(r.Context(), clientip.KeyOf(r))
	if !ok {
		secs := retrySeconds(retry)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		s.page(w, http.StatusTooManyRequests, errorPage("Too many sign-ins",
			"Too many sign-ins have come from your network in a short time. Wait "+strconv.Itoa(secs)+
				" seconds and start again."))
	}
	return ok
}

// RefuseGrant answers a refused code or refresh token: 400 invalid_grant,
// and one of the client address's refused requests spent. An address that
// has spent them all gets 429 instead, with Retry-After. Good tokens spend
// nothing and are never refused for their address: people behind one NAT
// or /48 are not locked out by a neighbour sending junk.
func (s *Service) RefuseGrant(w http.ResponseWriter, r *http.Request, description string) {
	ok, retry, _ := s.opts.Limits.Failures.Allow(r.Context(), clientip.KeyOf(r))
	if !ok {
		w.Header().Set("Retry-After", strconv.Itoa(retrySeconds(retry)))
		WriteOAuthError(w, http.StatusTooManyRequests, "slow_down", "too many refused requests from this address; retry later")
		return
	}
	WriteOAuthError(w, http.StatusBadRequest, "invalid_grant", description)
}

// SlowDown is a grant refused because its user is over their refresh
// limit: RFC 6749's error is then slow_down with Retry-After, not
// invalid_grant, since the refresh token is still good.
type SlowDown struct {
	RetryAfter time.Duration
}

func (e *SlowDown) Error() string { return "slow_down: retry after " + e.RetryAfter.String() }

// allowRefresh counts a refresh against its user's budget.
func (s *Service) allowRefresh(ctx context.Context, tid, oid string) error {
	ok, retry, _ := s.opts.Limits.Refresh.Allow(ctx, tid+"."+oid)
	if !ok {
		return &SlowDown{RetryAfter: retry}
	}
	return nil
}

// WriteSlowDown answers a SlowDown.
func WriteSlowDown(w http.ResponseWriter, e *SlowDown) {
	w.Header().Set("Retry-After", strconv.Itoa(retrySeconds(e.RetryAfter)))
	WriteOAuthError(w, http.StatusTooManyRequests, "slow_down", "too many refreshes for this user; retry later")
}
