package signin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/entra-mcp/functions-mcp/handler/store"
)

// Tokens is what a redeemed code or a refresh gives a client.
type Tokens struct {
	AccessToken  string
	ExpiresOn    time.Time
	Scope        string
	RefreshToken string // our handle; "" when none was issued
}

// GrantError is a code or refresh token refused: RFC 6749's invalid_grant.
// Description is safe to send to the client. Any other error from the
// grant methods is an outage (Redis, the network, Entra answering 5xx).
type GrantError struct {
	Description string
}

func (e *GrantError) Error() string { return "invalid_grant: " + e.Description }

var (
	errCodeInvalid    = &GrantError{"the code is invalid, expired or already used"}
	errHandleInvalid  = &GrantError{"the refresh token is invalid or expired"}
	errSessionEnded   = &GrantError{"the session has ended; sign in again"}
	errOtherClient    = &GrantError{"the refresh token was not issued to this client"}
	errNotForThisPath = &GrantError{"the refresh token was issued to an OAuth client; refresh it at the token endpoint"}
)

// RedeemCode trades a one-time code for tokens. check sees what the code
// stands for before anything is issued and returns why this request may not
// redeem it ("" if it may); the code is spent either way, as a code
// presented with the wrong verifier or by the wrong client may be stolen.
// A second redemption revokes the refresh chain the first one got. With
// refresh false no refresh handle is issued.
func (s *Service) RedeemCode(ctx context.Context, code string, check func(store.CodeRecord) string, refresh bool) (Tokens, error) {
	rec, err := s.opts.Sessions.RedeemCode(ctx, code)
	var reused *store.CodeReusedError
	switch {
	case errors.As(err, &reused):
		// Whoever holds the first redemption's tokens may be an attacker
		// who intercepted the code. End that session.
		if reused.Chain != "" {
			if rerr := s.opts.Sessions.RevokeChain(ctx, reused.Chain); rerr != nil {
				s.log.LogAttrs(ctx, slog.LevelError, "revoke after code reuse failed", slog.String("err", rerr.Error()))
			}
		}
		s.log.LogAttrs(ctx, slog.LevelWarn, "one-time code redeemed twice; its session was revoked")
		return Tokens{}, errCodeInvalid
	case errors.Is(err, store.ErrNotFound):
		return Tokens{}, errCodeInvalid
	case err != nil:
		return Tokens{}, fmt.Errorf("redeem one-time code: %w", err)
	}
	if why := check(rec); why != "" {
		s.log.LogAttrs(ctx, slog.LevelWarn, "one-time code refused", slog.String("reason", why))
		return Tokens{}, &GrantError{why}
	}

	// The access token MSAL got at the callback travels, sealed, with the
	// code; a code that outlived it (it cannot, at two minutes, but a
	// clock can jump) goes to the user's MSAL cache instead.
	res := confidential.AuthResult{AccessToken: rec.AccessToken, ExpiresOn: rec.ExpiresOn}
	if rec.AccessToken == "" || time.Until(rec.ExpiresOn) < 5*time.Minute {
		if res, err = s.acquireSilent(ctx, rec.HomeAccountID, rec.Scope); err != nil {
			return Tokens{}, s.tokenError(ctx, "get access token for code", err)
		}
	}
	t := Tokens{AccessToken: res.AccessToken, ExpiresOn: res.ExpiresOn, Scope: rec.Scope}
	if refresh {
		t.RefreshToken, _, err = s.opts.Sessions.IssueForCode(ctx, code, store.HandleRecord{
			TenantID:      rec.TenantID,
			ObjectID:      rec.ObjectID,
			HomeAccountID: rec.HomeAccountID,
			Scope:         rec.Scope,
			ClientID:      rec.ClientID,
			Epoch:         rec.Epoch,
		})
		if errors.Is(err, store.ErrCodeReused) {
			// Redeemed again while this redemption ran: issue nothing.
			return Tokens{}, errCodeInvalid
		}
		if errors.Is(err, store.ErrRevoked) {
			return Tokens{}, errSessionEnded
		}
		if err != nil {
			return Tokens{}, fmt.Errorf("issue refresh handle: %w", err)
		}
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "code redeemed", slog.String("tid", rec.TenantID), slog.String("oid", rec.ObjectID),
		slog.String("client_id", rec.ClientID))
	s.event(ctx, "exchange", rec.TenantID, rec.ObjectID)
	return t, nil
}

// RefreshHandle rotates a refresh handle issued to clientID ("" for
// /auth/refresh) and returns a fresh access token for the scope first
// granted. Presenting a rotated handle revokes its chain, except within the
// reuse grace after a rotation whose reply was lost (see
// store.Sessions.PeekHandle), which gets the same successor again. A user
// over their refresh limit gets a *SlowDown.
func (s *Service) RefreshHandle(ctx context.Context, handle, clientID string) (Tokens, error) {
	// Look first, get the token, rotate last: if Entra or the network fails
	// in between, the client's handle still works and it can simply retry.
	rec, err := s.opts.Sessions.PeekHandle(ctx, handle)
	if err != nil {
		return Tokens{}, handleError(ctx, s.log, err)
	}
	if rec.ClientID != clientID {
		if clientID == "" {
			return Tokens{}, errNotForThisPath
		}
		return Tokens{}, errOtherClient
	}
	if err := s.allowRefresh(ctx, rec.TenantID, rec.ObjectID); err != nil {
		return Tokens{}, err
	}
	res, err := s.acquireSilent(ctx, rec.HomeAccountID, rec.Scope)
	if err != nil {
		if errors.Is(err, store.ErrRevoked) {
			return Tokens{}, errSessionEnded
		}
		if !isUnavailable(err) {
			// Entra no longer honours the session (revoked, expired,
			// cache deleted): the handle is worthless, end its chain.
			_ = s.opts.Sessions.Revoke(ctx, handle)
		}
		return Tokens{}, s.tokenError(ctx, "get access token for refresh", err)
	}
	// The same successor for every rotation of this handle: a retry after a
	// lost reply gets the handle the lost reply carried.
	next, err := s.opts.Sessions.Advance(ctx, handle, rec)
	if err != nil {
		return Tokens{}, handleError(ctx, s.log, err)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "refreshed", slog.String("tid", rec.TenantID), slog.String("oid", rec.ObjectID),
		slog.String("client_id", rec.ClientID))
	s.event(ctx, "refresh", rec.TenantID, rec.ObjectID)
	return Tokens{AccessToken: res.AccessToken, ExpiresOn: res.ExpiresOn, Scope: rec.Scope, RefreshToken: next}, nil
}

// RevokeHandle ends the chain of a refresh handle issued to clientID (RFC
// 7009). An unknown, expired or already revoked handle is not an error; a
// handle issued to another client is refused with a *GrantError.
func (s *Service) RevokeHandle(ctx context.Context, handle, clientID string) error {
	rec, err := s.opts.Sessions.PeekHandle(ctx, handle)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrHandleReused):
		return nil
	case err != nil:
		return fmt.Errorf("look up refresh handle: %w", err)
	case rec.ClientID != clientID:
		return errOtherClient
	}
	if err := s.opts.Sessions.Revoke(ctx, handle); err != nil {
		return fmt.Errorf("revoke refresh handle: %w", err)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "refresh handle revoked", slog.String("tid", rec.TenantID), slog.String("oid", rec.ObjectID),
		slog.String("client_id", rec.ClientID))
	return nil
}

// handleError turns a handle the store refused into invalid_grant.
func handleError(ctx context.Context, log *slog.Logger, err error) error {
	switch {
	case errors.Is(err, store.ErrHandleReused):
		log.LogAttrs(ctx, slog.LevelWarn, "rotated refresh handle presented again; its chain was revoked")
		return errHandleInvalid
	case errors.Is(err, store.ErrNotFound):
		return errHandleInvalid
	}
	return fmt.Errorf("use refresh handle: %w", err)
}

// tokenError tells our outage (returned wrapped) from a session Entra no
// longer honours (invalid_grant).
func (s *Service) tokenError(ctx context.Context, doing string, err error) error {
	if isUnavailable(err) {
		return fmt.Errorf("%s: %w", doing, err)
	}
	s.log.LogAttrs(ctx, slog.LevelWarn, doing+" failed", slog.String("err", err.Error()))
	return errSessionEnded
}
