package signin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/store"
)

// ConsentTTL is how long a user's approval of an OAuth client is
// remembered in one browser.
const ConsentTTL = 30 * 24 * time.Hour

// ClientRequest is an OAuth client's authorization request, checked by the
// OAuth front and approved by the user: the sign-in it starts ends at the
// client's redirect URI.
type ClientRequest struct {
	ClientID    string
	RedirectURI string // registered for the client
	State       string // the client's, returned unchanged; "" when it sent none
	Challenge   string // the client's PKCE S256 challenge
	Scope       string // granted to the client
	// ConsentUser is "<tid>.<oid>" when the approval was remembered rather
	// than given just now: the sign-in must then be by that user.
	ConsentUser string
}

// StartClientSignIn sends the browser to Entra for an approved client
// request. Its callback redirects to the client with our one-time code.
func (s *Service) StartClientSignIn(w http.ResponseWriter, r *http.Request, c ClientRequest) {
	s.begin(w, r, flow{
		ReturnTo:        c.RedirectURI,
		ClientID:        c.ClientID,
		ClientState:     c.State,
		ClientChallenge: c.Challenge,
		Scope:           c.Scope,
		ConsentUser:     c.ConsentUser,
	})
}

// AuthorizeOrigin is the origin of Entra's authorize endpoint, where
// StartClientSignIn sends the browser (pages whose forms lead there must
// allow it in their CSP). It comes from MSAL's discovery, once.
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

// RememberedConsent returns "<tid>.<oid>" of the user who approved clientID
// with this exact redirect URI in this browser, or "" if no approval is
// remembered. An error means Redis could not be asked.
//
// The redirect URI is part of what was approved because a loopback one may
// have any port: any program on the user's machine can ask in the name of
// a client the user trusts. With the port in the key, a native app on an
// ephemeral port is asked again; one on a fixed port (VS Code, the MCP
// Inspector) is not.
func (s *Service) RememberedConsent(ctx context.Context, r *http.Request, clientID, redirectURI string) (string, error) {
	browser := s.consentCookie.Value(r)
	if browser == "" {
		return "", nil
	}
	u, err := s.opts.Sessions.ConsentedUser(ctx, browser, consentSubject(clientID, redirectURI))
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	return u, err
}

// finishClient ends a sign-in an OAuth client started: the client's
// redirect URI gets our one-time code, bound to the client, or the error.
func (s *Service) finishClient(w http.ResponseWriter, r *http.Request, flow flow, d signedIn, fail *callbackFailure) {
	ctx := r.Context()
	tid, oid := d.tid, d.oid
	back := url.Values{"state": {flow.ClientState}}
	if fail != nil {
		if fail.err != nil {
			s.log.LogAttrs(ctx, slog.LevelError, fail.doing+" failed", slog.String("err", fail.err.Error()))
		}
		back.Set("error", fail.oauthError)
		back.Set("error_description", "the sign-in with Entra ID was not completed")
		RedirectClient(w, r, flow.ReturnTo, s.opts.PublicBaseURL, back)
		return
	}
	user := strings.ToLower(tid + "." + oid)
	if flow.ConsentUser != "" && flow.ConsentUser != user {
		// The approval remembered here was another account's. Forget it so
		// the next attempt asks this account.
		s.log.LogAttrs(ctx, slog.LevelWarn, "client sign-in refused: signed in as another user than the one who approved the client",
			slog.String("tid", tid), slog.String("oid", oid), slog.String("client_id", flow.ClientID))
		s.consentCookie.Clear(w)
		back.Set("error", "access_denied")
		back.Set("error_description", "the account that signed in has not approved this client; try again")
		RedirectClient(w, r, flow.ReturnTo, s.opts.PublicBaseURL, back)
		return
	}

	oneTime, err := s.mintCode(ctx, flow, d)
	if errors.Is(err, store.ErrRevoked) {
		back.Set("error", "access_denied")
		back.Set("error_description", "the user's sessions were ended while they signed in; try again")
		RedirectClient(w, r, flow.ReturnTo, s.opts.PublicBaseURL, back)
		return
	}
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, "mint one-time code failed", slog.String("err", err.Error()))
		back.Set("error", "temporarily_unavailable")
		RedirectClient(w, r, flow.ReturnTo, s.opts.PublicBaseURL, back)
		return
	}
	if flow.ConsentUser == "" {
		s.rememberConsent(w, r, consentSubject(flow.ClientID, flow.ReturnTo), tid, oid)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "signed in for client", slog.String("tid", tid), slog.String("oid", oid),
		slog.String("client_id", flow.ClientID))
	s.event(ctx, "signin", tid, oid)
	back.Set("code", oneTime)
	RedirectClient(w, r, flow.ReturnTo, s.opts.PublicBaseURL, back)
}

// consentSubject is what an approval is for: a client sending the user
// back to one redirect URI.
func consentSubject(clientID, redirectURI string) string { return clientID + " " + redirectURI }

// rememberConsent records the approval the user just gave, under this
// browser's consent cookie (made now if it has none). A failure only costs
// the user the consent page next time.
func (s *Service) rememberConsent(w http.ResponseWriter, r *http.Request, subject, tid, oid string) {
	browser := s.consentCookie.Value(r)
	if len(browser) < 32 || len(browser) > 64 {
		var err error
		if browser, err = randomString(32); err != nil {
			return
		}
	}
	if err := s.opts.Sessions.RememberConsent(r.Context(), browser, subject, tid, oid, ConsentTTL); err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "remember consent failed", slog.String("err", err.Error()))
		return
	}
	s.consentCookie.Set(w, browser, ConsentTTL)
}

// RedirectClient sends the browser back to an OAuth client's registered
// redirect URI with params, the issuer added as iss (RFC 9207), so the
// client can tell which authorization server answered. An empty state is
// left out: the client sent none, and gets none back (RFC 6749 §4.1.2).
func RedirectClient(w http.ResponseWriter, r *http.Request, redirectURI, issuer string, params url.Values) {
	if params.Get("state") == "" {
		params.Del("state")
	}
	params.Set("iss", issuer)
	target, err := appendQuery(redirectURI, params)
	if err != nil {
		// Registered redirect URIs were parsed when registered.
		http.Error(w, "bad redirect URI", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, target, http.StatusFound)
}
