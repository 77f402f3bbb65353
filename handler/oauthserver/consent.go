package oauthserver

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/oautherr"
	"github.com/entra-mcp/functions-mcp/handler/signin"
	"github.com/entra-mcp/functions-mcp/handler/store"
)

// ConsentTTL is how long a user's approval of an OAuth client is
// remembered in one browser.
const ConsentTTL = 30 * 24 * time.Hour

// rememberedConsent returns "<tid>.<oid>" of the user who approved clientID
// with this exact redirect URI in this browser, or "" if no approval is
// remembered. An error means Redis could not be asked.
//
// The redirect URI is part of what was approved because a loopback one may
// have any port: any program on the user's machine can ask in the name of
// a client the user trusts. With the port in the key, a native app on an
// ephemeral port is asked again; one on a fixed port (VS Code, the MCP
// Inspector) is not.
func (s *Server) rememberedConsent(ctx context.Context, r *http.Request, clientID, redirectURI string) (string, error) {
	browser := s.consentCookie.Value(r)
	if browser == "" {
		return "", nil
	}
	u, err := s.opts.Consents.ConsentedUser(ctx, browser, consentSubject(clientID, redirectURI))
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	return u, err
}

// consentSubject is what an approval is for: a client sending the user
// back to one redirect URI.
func consentSubject(clientID, redirectURI string) string { return clientID + " " + redirectURI }

// rememberConsent records the approval the user just gave, under this
// browser's consent cookie (made now if it has none). A failure only costs
// the user the consent page next time.
func (s *Server) rememberConsent(w http.ResponseWriter, r *http.Request, subject, tid, oid string) {
	browser := s.consentCookie.Value(r)
	if len(browser) < 32 || len(browser) > 64 {
		browser = randomText()
	}
	if err := s.opts.Consents.RememberConsent(r.Context(), browser, subject, tid, oid, ConsentTTL); err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "remember consent failed", slog.String("err", err.Error()))
		return
	}
	s.consentCookie.Set(w, browser, ConsentTTL)
}

// Continue ends a sign-in an approved request started (signin.Continuation):
// the client's redirect URI gets our one-time code, bound to the client, or
// the error.
func (s *Server) Continue(w http.ResponseWriter, r *http.Request, handoff json.RawMessage, user signin.SignedIn, failure *oautherr.Error) {
	ctx := r.Context()
	var c clientSignIn
	err := json.Unmarshal(handoff, &c)
	if err == nil && c.RedirectURI == "" {
		err = errors.New("no redirect URI")
	}
	if err != nil {
		// Only this package writes hand-offs, and they come back sealed:
		// a bug, not an outage a retry would get past.
		s.log.LogAttrs(ctx, slog.LevelError, "read client sign-in failed", slog.String("err", err.Error()))
		s.errorPage(w, http.StatusInternalServerError, "This sign-in cannot be completed. Start again from your app.")
		return
	}
	refuse := func(e *oautherr.Error) { oautherr.Redirect(w, r, c.RedirectURI, s.opts.Issuer, c.State, e) }
	if failure != nil {
		refuse(failure)
		return
	}
	tid, oid := user.TenantID, user.ObjectID
	if c.ConsentUser != "" && c.ConsentUser != strings.ToLower(tid+"."+oid) {
		// The approval remembered here was another account's. Forget it so
		// the next attempt asks this account.
		s.log.LogAttrs(ctx, slog.LevelWarn, "client sign-in refused: signed in as another user than the one who approved the client",
			slog.String("tid", tid), slog.String("oid", oid), slog.String("client_id", c.ClientID))
		s.consentCookie.Clear(w)
		refuse(oautherr.New(oautherr.AccessDenied, "the account that signed in has not approved this client; try again"))
		return
	}

	rec := user.Grant
	rec.ClientID, rec.RedirectURI, rec.ClientChallenge = c.ClientID, c.RedirectURI, c.Challenge
	code, err := s.opts.Grants.NewCode(ctx, rec)
	if errors.Is(err, store.ErrRevoked) {
		refuse(oautherr.New(oautherr.AccessDenied, "the user's sessions were ended while they signed in; try again"))
		return
	}
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, "mint one-time code failed", slog.String("err", err.Error()))
		refuse(&oautherr.Error{Code: oautherr.TemporarilyUnavailable})
		return
	}
	if c.ConsentUser == "" {
		s.rememberConsent(w, r, consentSubject(c.ClientID, c.RedirectURI), tid, oid)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "signed in for client", slog.String("tid", tid), slog.String("oid", oid),
		slog.String("client_id", c.ClientID))
	s.event(ctx, "signin", map[string]string{"tid": tid, "oid": oid})
	oautherr.RedirectClient(w, r, c.RedirectURI, s.opts.Issuer, url.Values{"state": {c.State}, "code": {code}})
}
