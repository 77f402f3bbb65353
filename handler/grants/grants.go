// Package grants issues and redeems what a signed-in user's clients hold:
// one-time codes and rotating refresh handles. Both the /auth routes
// (package signin) and the OAuth front (package oauthserver) use it, so a
// code or a handle means the same and is refused the same on either path.
// Records keeps them in Redis, in each user's keyspace (package store),
// every write checking the user's revocation epoch in the same script;
// Service decides who may redeem what, gets the access token each grant
// hands out, and answers a refused grant.
//
// Entra's refresh tokens never leave the server: they live in each user's
// MSAL cache, sealed in Redis. Clients only ever hold our handles.
package grants

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/httpx"
	"github.com/entra-mcp/functions-mcp/handler/oautherr"
	"github.com/entra-mcp/functions-mcp/handler/store"
)

// CodeTTL is how long a one-time code may be redeemed.
const CodeTTL = 120 * time.Second

// AccessToken is an access token for the API and when it expires.
type AccessToken struct {
	Token     string
	ExpiresOn time.Time
}

// TokenSource gets a user's access token for scope from their MSAL cache,
// refreshing it with Entra when needed (package signin's MSAL pool). An
// error matching ErrSessionRefused means Entra no longer honours the
// session; one matching store.ErrRevoked means the user's sessions were
// revoked meanwhile; any other is an outage.
type TokenSource interface {
	AccessToken(ctx context.Context, homeAccountID, scope string) (AccessToken, error)
}

// ErrSessionRefused is a TokenSource's refusal: the session is over
// (revoked, expired, its cache deleted) and retrying cannot help.
var ErrSessionRefused = errors.New("the session is no longer honoured")

// Limiter counts requests per key (a *ratelimit.Limiter).
type Limiter = httpx.Limiter

// Events records custom events (Application Insights in Azure).
type Events interface {
	Event(ctx context.Context, name string, props map[string]string)
}

// Options configure the grants. All are required but Logger and Events.
type Options struct {
	Records *Records
	Tokens  TokenSource
	// Failures counts refused codes and refresh tokens per client address;
	// an address over it is refused before any work is done. Successes do
	// not count, so a shared address is not a shared budget for people
	// whose tokens are good.
	Failures Limiter
	// Refresh counts refreshes per user (tid and oid).
	Refresh Limiter
	Logger  *slog.Logger
	// Events receives a custom event per exchange and refresh (tid and
	// oid only); nil sends none.
	Events Events
}

// Service issues and redeems codes and handles.
type Service struct {
	opts Options
	log  *slog.Logger
}

// New builds the service.
func New(opts Options) (*Service, error) {
	if opts.Records == nil || opts.Tokens == nil || opts.Failures == nil || opts.Refresh == nil {
		return nil, errors.New("grants: records, token source and limits are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{opts: opts, log: opts.Logger}, nil
}

// Tokens is what a redeemed code or a refresh gives a client.
type Tokens struct {
	AccessToken  string
	ExpiresOn    time.Time
	Scope        string
	RefreshToken string // our handle; "" when none was issued
	// User is whose tokens these are, "<tid>.<oid>"; never sent.
	User string
}

// Refusals: RFC 6749's invalid_grant, with a description safe to send.
// Any other error from the grant methods is an outage (Redis, the network,
// Entra answering 5xx), or a *oautherr.Error slow_down for a user over
// their refresh limit.
var (
	errCodeInvalid    = oautherr.New(oautherr.InvalidGrant, "the code is invalid, expired or already used")
	errHandleInvalid  = oautherr.New(oautherr.InvalidGrant, "the refresh token is invalid or expired")
	errSessionEnded   = oautherr.New(oautherr.InvalidGrant, "the session has ended; sign in again")
	errOtherClient    = oautherr.New(oautherr.InvalidGrant, "the refresh token was not issued to this client")
	errNotForThisPath = oautherr.New(oautherr.InvalidGrant, "the refresh token was issued to an OAuth client; refresh it at the token endpoint")
)

// Refused is an invalid_grant with why, for a code's check.
func Refused(why string) *oautherr.Error { return oautherr.New(oautherr.InvalidGrant, why) }

// NewCode mints a one-time code that stands for rec, for CodeTTL. A user
// whose sessions were revoked since rec.Epoch gets an error matching
// store.ErrRevoked.
func (s *Service) NewCode(ctx context.Context, rec CodeRecord) (string, error) {
	return s.opts.Records.NewCode(ctx, rec, CodeTTL)
}

// RedeemCode trades a one-time code for tokens. check sees what the code
// stands for before anything is issued and returns why this request may not
// redeem it ("" if it may); the code is spent either way, as a code
// presented with the wrong verifier or by the wrong client may be stolen.
// A second redemption revokes the refresh chain the first one got. With
// refresh false no refresh handle is issued.
func (s *Service) RedeemCode(ctx context.Context, code string, check func(CodeRecord) string, refresh bool) (Tokens, error) {
	rec, err := s.redeem(ctx, code)
	if err != nil {
		return Tokens{}, err
	}
	if why := check(rec); why != "" {
		s.log.LogAttrs(ctx, slog.LevelWarn, "one-time code refused", slog.String("reason", why))
		return Tokens{}, Refused(why)
	}

	// The access token MSAL got at the callback travels, sealed, with the
	// code; a code that outlived it (it cannot, at two minutes, but a
	// clock can jump) goes to the user's MSAL cache instead.
	at := AccessToken{Token: rec.AccessToken, ExpiresOn: rec.ExpiresOn}
	if rec.AccessToken == "" || time.Until(rec.ExpiresOn) < 5*time.Minute {
		if at, err = s.opts.Tokens.AccessToken(ctx, rec.HomeAccountID, rec.Scope); err != nil {
			return Tokens{}, s.tokenError(ctx, "get access token for code", err)
		}
	}
	t := Tokens{AccessToken: at.Token, ExpiresOn: at.ExpiresOn, Scope: rec.Scope, User: rec.TenantID + "." + rec.ObjectID}
	if refresh {
		if t.RefreshToken, err = s.issueForCode(ctx, code, rec); err != nil {
			return Tokens{}, err
		}
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "code redeemed", slog.String("tid", rec.TenantID), slog.String("oid", rec.ObjectID),
		slog.String("client_id", rec.ClientID))
	s.event(ctx, "exchange", rec.TenantID, rec.ObjectID)
	return t, nil
}

// redeem spends a code and returns what it stands for.
func (s *Service) redeem(ctx context.Context, code string) (CodeRecord, error) {
	rec, err := s.opts.Records.RedeemCode(ctx, code)
	var reused *CodeReusedError
	switch {
	case errors.As(err, &reused):
		// Whoever holds the first redemption's tokens may be an attacker
		// who intercepted the code. End that session.
		if reused.Chain != "" {
			if rerr := s.opts.Records.RevokeChain(ctx, reused.Chain); rerr != nil {
				s.log.LogAttrs(ctx, slog.LevelError, "revoke after code reuse failed", slog.String("err", rerr.Error()))
			}
		}
		s.log.LogAttrs(ctx, slog.LevelWarn, "one-time code redeemed twice; its session was revoked")
		return CodeRecord{}, errCodeInvalid
	case errors.Is(err, store.ErrNotFound):
		return CodeRecord{}, errCodeInvalid
	case err != nil:
		return CodeRecord{}, fmt.Errorf("redeem one-time code: %w", err)
	}
	return rec, nil
}

// issueForCode starts the refresh chain of a redeemed code.
func (s *Service) issueForCode(ctx context.Context, code string, rec CodeRecord) (string, error) {
	handle, _, err := s.opts.Records.IssueForCode(ctx, code, HandleRecord{
		TenantID:      rec.TenantID,
		ObjectID:      rec.ObjectID,
		HomeAccountID: rec.HomeAccountID,
		Scope:         rec.Scope,
		ClientID:      rec.ClientID,
		Epoch:         rec.Epoch,
	})
	switch {
	case errors.Is(err, ErrCodeReused):
		// Redeemed again while this redemption ran: issue nothing.
		return "", errCodeInvalid
	case errors.Is(err, store.ErrRevoked):
		return "", errSessionEnded
	case err != nil:
		return "", fmt.Errorf("issue refresh handle: %w", err)
	}
	return handle, nil
}

// Refresh rotates a refresh handle issued to clientID ("" for
// /auth/refresh) and returns a fresh access token for the scope first
// granted. Presenting a rotated handle revokes its chain, except within the
// reuse grace after a rotation whose reply was lost (see
// Records.PeekHandle), which gets the same successor again. A user
// over their refresh limit gets a slow_down *oautherr.Error.
func (s *Service) Refresh(ctx context.Context, handle, clientID string) (Tokens, error) {
	// Look first, get the token, rotate last: if Entra or the network fails
	// in between, the client's handle still works and it can simply retry.
	rec, err := s.opts.Records.PeekHandle(ctx, handle)
	if err != nil {
		return Tokens{}, s.handleError(ctx, err)
	}
	if rec.ClientID != clientID {
		if clientID == "" {
			return Tokens{}, errNotForThisPath
		}
		return Tokens{}, errOtherClient
	}
	if ok, retry, _ := s.opts.Refresh.Allow(ctx, rec.TenantID+"."+rec.ObjectID); !ok {
		// The refresh token is still good: slow_down, not invalid_grant.
		return Tokens{}, oautherr.TooManyRequests("too many refreshes for this user; retry later", retry)
	}
	at, err := s.opts.Tokens.AccessToken(ctx, rec.HomeAccountID, rec.Scope)
	if err != nil {
		if errors.Is(err, ErrSessionRefused) {
			// The handle is worthless now: end its chain.
			_ = s.opts.Records.Revoke(ctx, handle)
		}
		return Tokens{}, s.tokenError(ctx, "get access token for refresh", err)
	}
	// The same successor for every rotation of this handle: a retry after a
	// lost reply gets the handle the lost reply carried.
	next, err := s.opts.Records.Advance(ctx, handle, rec)
	if err != nil {
		return Tokens{}, s.handleError(ctx, err)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "refreshed", slog.String("tid", rec.TenantID), slog.String("oid", rec.ObjectID),
		slog.String("client_id", rec.ClientID))
	s.event(ctx, "refresh", rec.TenantID, rec.ObjectID)
	return Tokens{AccessToken: at.Token, ExpiresOn: at.ExpiresOn, Scope: rec.Scope, RefreshToken: next,
		User: rec.TenantID + "." + rec.ObjectID}, nil
}

// Revoke ends the chain of a refresh handle issued to clientID (RFC 7009).
// An unknown, expired or already revoked handle is not an error; a handle
// issued to another client is refused with an invalid_grant
// *oautherr.Error.
func (s *Service) Revoke(ctx context.Context, handle, clientID string) error {
	rec, found, err := s.peek(ctx, handle)
	switch {
	case err != nil || !found:
		return err
	case rec.ClientID != clientID:
		return errOtherClient
	}
	if err := s.opts.Records.Revoke(ctx, handle); err != nil {
		return fmt.Errorf("revoke refresh handle: %w", err)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "refresh handle revoked", slog.String("tid", rec.TenantID), slog.String("oid", rec.ObjectID),
		slog.String("client_id", rec.ClientID))
	return nil
}

// EndSession revokes the chain of a handle, whoever it was issued to
// (/auth/logout), and returns whose it was; found is false for an unknown,
// expired or already revoked handle.
func (s *Service) EndSession(ctx context.Context, handle string) (rec HandleRecord, found bool, err error) {
	rec, found, err = s.peek(ctx, handle)
	if err != nil || !found {
		return rec, false, err
	}
	if err := s.opts.Records.Revoke(ctx, handle); err != nil {
		return rec, false, fmt.Errorf("revoke refresh handle: %w", err)
	}
	return rec, true, nil
}

// peek looks a handle up; a handle that is gone (or reused, which revoked
// its chain) is not found.
func (s *Service) peek(ctx context.Context, handle string) (HandleRecord, bool, error) {
	rec, err := s.opts.Records.PeekHandle(ctx, handle)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, ErrHandleReused):
		return rec, false, nil
	case err != nil:
		return rec, false, fmt.Errorf("look up refresh handle: %w", err)
	}
	return rec, true, nil
}

// handleError turns a handle the store refused into invalid_grant.
func (s *Service) handleError(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, ErrHandleReused):
		s.log.LogAttrs(ctx, slog.LevelWarn, "rotated refresh handle presented again; its chain was revoked")
		return errHandleInvalid
	case errors.Is(err, store.ErrNotFound):
		return errHandleInvalid
	}
	return fmt.Errorf("use refresh handle: %w", err)
}

// tokenError tells our outage (returned wrapped) from a session that has
// ended (invalid_grant).
func (s *Service) tokenError(ctx context.Context, doing string, err error) error {
	switch {
	case errors.Is(err, store.ErrRevoked):
		return errSessionEnded
	case errors.Is(err, ErrSessionRefused):
		s.log.LogAttrs(ctx, slog.LevelWarn, doing+" failed", slog.String("err", err.Error()))
		return errSessionEnded
	}
	return fmt.Errorf("%s: %w", doing, err)
}

// event records one custom event, if anyone listens.
func (s *Service) event(ctx context.Context, name, tid, oid string) {
	if s.opts.Events != nil {
		s.opts.Events.Event(ctx, name, map[string]string{"tid": tid, "oid": oid})
	}
}

// Answer answers a failed grant: invalid_grant for a refusal, with one of
// the client address's refused requests spent (an address that has spent
// them all gets 429 instead: good tokens spend nothing and are never
// refused for their address, so people behind one NAT or /48 are not
// locked out by a neighbour sending junk); slow_down for a user over their
// refresh limit; 503 for an outage, whose description is retryHint: what
// the client may safely do about a write whose outcome is unknown.
func (s *Service) Answer(w http.ResponseWriter, r *http.Request, doing string, err error, retryHint string) {
	var oe *oautherr.Error
	switch {
	case errors.As(err, &oe) && oe.Code == oautherr.InvalidGrant:
		if ok, retry := httpx.Spend(r, s.opts.Failures); !ok {
			oautherr.Write(w, oautherr.TooManyRequests("too many refused requests from this address; retry later", retry))
			return
		}
		oautherr.Write(w, oe)
	case errors.As(err, &oe):
		oautherr.Write(w, oe)
	default:
		s.log.LogAttrs(r.Context(), slog.LevelError, doing+" failed", slog.String("err", err.Error()))
		oautherr.Write(w, oautherr.Unavailable(retryHint))
	}
}

// RefreshRetryHint is what a client is told when a refresh's outcome is
// unknown: a retry with the same refresh token is safe for a while.
func (s *Service) RefreshRetryHint() string {
	return fmt.Sprintf("the service did not answer in time; retrying with the same refresh_token within %d seconds is safe",
		int(s.opts.Records.ReuseGrace()/time.Second))
}

// tokenResponse is a successful token response (RFC 6749 §5.1).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// WriteTokens writes a successful token response (RFC 6749 §5.1).
func WriteTokens(w http.ResponseWriter, t Tokens) {
	expires := max(int64(time.Until(t.ExpiresOn)/time.Second), 0)
	w.Header().Set("Pragma", "no-cache")
	httpx.WriteJSON(w, http.StatusOK, tokenResponse{
		AccessToken:  t.AccessToken,
		TokenType:    "Bearer",
		ExpiresIn:    expires,
		Scope:        t.Scope,
		RefreshToken: t.RefreshToken,
	})
}

// PKCEMatches reports whether verifier is an RFC 7636 code_verifier whose
// S256 transform is challenge.
func PKCEMatches(verifier, challenge string) bool {
	if challenge == "" || !pkceRE.MatchString(verifier) {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) == 1
}

// pkceRE is RFC 7636's shape for a verifier or an S256 challenge.
var pkceRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

// IsPKCEChallenge reports whether challenge is an S256 code_challenge in
// RFC 7636's shape (43 characters of base64url).
func IsPKCEChallenge(challenge string) bool {
	return len(challenge) == 43 && pkceRE.MatchString(challenge)
}
