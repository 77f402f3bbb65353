package signin

import (
	"net/http"
	"strconv"

	"github.com/entra-mcp/functions-mcp/handler/httpx"
	"github.com/entra-mcp/functions-mcp/handler/oautherr"
)

// AllowSignIn counts the start of a sign-in (a login, or an OAuth client's
// authorization or consent request) against the client address's budget.
// Over it, the browser gets a page saying when to try again.
func (s *Service) AllowSignIn(w http.ResponseWriter, r *http.Request) bool {
	return s.allowPage(w, r, s.opts.Limits.SignIn)
}

func (s *Service) allowPage(w http.ResponseWriter, r *http.Request, l httpx.Limiter) bool {
	ok, retry := httpx.Spend(r, l)
	if !ok {
		secs := oautherr.RetrySeconds(retry)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		s.page(w, http.StatusTooManyRequests, errorPage("Too many sign-ins",
			"Too many sign-ins have come from your network in a short time. Wait "+strconv.Itoa(secs)+
				" seconds and start again."))
	}
	return ok
}
