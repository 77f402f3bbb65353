package signin

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/entra-mcp/functions-mcp/handler/grants"
	"github.com/entra-mcp/functions-mcp/handler/oautherr"
)

// A hand-off is a sign-in someone else started: the OAuth front, for a
// client whose request the user approved. This package signs the user in
// with Entra as for /auth/login and, at the callback, hands the result and
// the starter's own record back to its Continuation: what a client gets,
// and where, is the starter's business.

// Continuation finishes the sign-ins handed off with StartFor.
type Continuation interface {
	// Continue answers the browser at the end of a handed-off sign-in.
	// handoff is the record given to StartFor. A sign-in that did not
	// complete comes with failure (access_denied or
	// temporarily_unavailable; the cause is logged already), else with
	// who signed in.
	Continue(w http.ResponseWriter, r *http.Request, handoff json.RawMessage, user SignedIn, failure *oautherr.Error)
}

// SignedIn is a sign-in Entra accepted.
type SignedIn struct {
	TenantID, ObjectID string
	// Grant is what a one-time code for this sign-in stands for: the
	// user, the access token MSAL just got, and the user's epoch. The
	// continuation binds it to its client before minting the code.
	Grant grants.CodeRecord
}

// HandOffTo names the Continuation of the sign-ins StartFor starts. Call
// it once, while wiring, before serving: a Service without one refuses
// hand-offs.
func (s *Service) HandOffTo(c Continuation) { s.continuation.Store(&c) }

// StartFor sends the browser to Entra for a sign-in whose callback hands
// handoff (the caller's record, JSON; it travels sealed in a cookie, see
// FitsInCookie) back to the Continuation.
func (s *Service) StartFor(w http.ResponseWriter, r *http.Request, handoff json.RawMessage) {
	if s.continuation.Load() == nil {
		// Refused before the browser goes to Entra: no retry would help.
		s.wiringPage(w, r)
		return
	}
	s.begin(w, r, flow{Handoff: handoff})
}

// wiringPage answers a hand-off this Service was never given a
// Continuation for: a wiring error, logged as one.
func (s *Service) wiringPage(w http.ResponseWriter, r *http.Request) {
	s.log.LogAttrs(r.Context(), slog.LevelError, "handed-off sign-in refused: no continuation registered (HandOffTo)")
	s.page(w, http.StatusInternalServerError, errorPage("Sign-in cannot be completed",
		"This server is not set up to finish this sign-in. Tell its operator."))
}

// AuthorizeOrigin is the origin of Entra's authorize endpoint, where
// StartFor sends the browser (pages whose forms lead there must allow it in
// their CSP). It comes from MSAL's discovery, once.
func (s *Service) AuthorizeOrigin(ctx context.Context) (string, error) {
	if o := s.authorizeOrigin.Load(); o != nil {
		return *o, nil
	}
	authURL, err := s.authorizeURL(ctx)
	if err != nil {
		return "", fmt.Errorf("build authorize URL: %w", err)
	}
	u, err := url.Parse(authURL)
	if err != nil {
		return "", fmt.Errorf("parse authorize URL: %w", err)
	}
	o := u.Scheme + "://" + u.Host
	s.authorizeOrigin.Store(&o)
	return o, nil
}

// handBack ends a handed-off sign-in at its continuation.
func (s *Service) handBack(w http.ResponseWriter, r *http.Request, f flow, d signedIn, fail *callbackFailure) {
	c := s.continuation.Load()
	if c == nil {
		s.wiringPage(w, r)
		return
	}
	if fail != nil {
		s.logFailure(r.Context(), fail)
		(*c).Continue(w, r, f.Handoff, SignedIn{}, fail.oauth)
		return
	}
	(*c).Continue(w, r, f.Handoff, SignedIn{TenantID: d.tid, ObjectID: d.oid, Grant: s.grantOf(d)}, nil)
}
