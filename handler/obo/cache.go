package obo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/outage"
	"github.com/entra-mcp/functions-mcp/handler/store"
)

// minTTL is the shortest life worth keeping a token for.
const minTTL = time.Second

// entry is what a cache key holds once opened.
type entry struct {
	Token   string    `json:"at"`
	Expires time.Time `json:"exp"`
}

// slotFor names where the token of p for scopes is kept. Entra compares
// scopes without regard to case or order, so neither changes the slot.
func (c *Client) slotFor(p *entra.Principal, scopes []string) (store.OBOSlot, error) {
	norm := make([]string, len(scopes))
	for i, s := range scopes {
		norm[i] = strings.ToLower(strings.TrimSpace(s))
	}
	slices.Sort(norm)
	sum := sha256.Sum256([]byte(strings.Join(slices.Compact(norm), " ")))
	at, err := c.tokens.SlotFor(p.TenantID, p.ObjectID, hex.EncodeToString(sum[:]))
	if err != nil {
		return store.OBOSlot{}, fmt.Errorf("obo: %w", err)
	}
	return at, nil
}

// cached returns the token kept in the slot if it is good for longer than
// the margin, and the user's epoch as it was read with it (keep takes it
// back, so that a revocation in between wins). Any failure is a miss: the
// caller then asks Entra, so a Redis outage or a rotated-away sealing key
// costs a round trip, not the call.
func (c *Client) cached(ctx context.Context, at store.OBOSlot) (string, store.Epoch, bool) {
	sealed, ep, err := c.tokens.Get(ctx, at)
	if err != nil {
		c.log.LogAttrs(ctx, slog.LevelWarn, "obo: read token cache", slog.String("err", err.Error()))
		return "", ep, false
	}
	if sealed == nil {
		return "", ep, false
	}
	plain, err := c.ring.Open(at.SealName(), sealed)
	if err != nil {
		c.log.LogAttrs(ctx, slog.LevelWarn, "obo: open cached token", slog.String("err", err.Error()))
		return "", ep, false
	}
	var e entry
	if err := json.Unmarshal(plain, &e); err != nil || e.Token == "" {
		c.log.LogAttrs(ctx, slog.LevelWarn, "obo: cached token is not readable")
		return "", ep, false
	}
	// The hash lives as long as its longest-lived token; each token's own
	// expiry, less the margin, is checked here.
	if !c.now().Add(c.margin).Before(e.Expires) {
		return "", ep, false
	}
	return e.Token, ep, true
}

// keep stores token, sealed under its slot's name, until the margin before
// it expires, unless the user's sessions were revoked since ep was read. A
// failure is logged, not returned: the caller has its token.
func (c *Client) keep(ctx context.Context, at store.OBOSlot, token string, expires time.Time, ep store.Epoch) {
	ttl := expires.Sub(c.now()) - c.margin
	if ttl < minTTL {
		return
	}
	plain, err := json.Marshal(entry{Token: token, Expires: expires.UTC()})
	if err != nil {
		c.log.LogAttrs(ctx, slog.LevelError, "obo: encode token for cache", slog.String("err", err.Error()))
		return
	}
	sealed, err := c.ring.Seal(at.SealName(), plain)
	if err != nil {
		c.log.LogAttrs(ctx, slog.LevelError, "obo: seal token for cache", slog.String("err", err.Error()))
		return
	}
	switch err := c.tokens.Put(ctx, at, sealed, ttl, ep); {
	case errors.Is(err, store.ErrRevoked):
		c.log.LogAttrs(ctx, slog.LevelInfo, "obo: token not kept: the user's sessions were revoked meanwhile")
	case err != nil:
		c.log.LogAttrs(ctx, slog.LevelWarn, "obo: write token cache", slog.String("err", err.Error()))
	}
}

// Forget deletes the kept token of p for scopes, for a caller whose
// downstream API refused it (a 401 after the token was revoked), so that the
// next call asks Entra afresh.
func (c *Client) Forget(ctx context.Context, p *entra.Principal, scopes []string) error {
	if p == nil {
		return errors.New("obo: no principal")
	}
	at, err := c.slotFor(p, scopes)
	if err != nil {
		return err
	}
	if err := c.tokens.Delete(ctx, at); err != nil {
		// Any failure here is Redis's: an outage of Redis, not of Entra.
		if !errors.Is(err, outage.ErrUnavailable) {
			err = outage.New(store.Dependency, err)
		}
		return fmt.Errorf("obo: forget cached token: %w", err)
	}
	return nil
}
