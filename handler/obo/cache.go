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

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/valid"
)

// minTTL is the shortest life worth keeping a token for.
const minTTL = time.Second

// entry is what a cache key holds once opened.
type entry struct {
	Token   string    `json:"at"`
	Expires time.Time `json:"exp"`
}

// userID checks the principal's tenant and object id, which become part of
// key names, and returns "<tid>.<oid>" in lower case.
func userID(p *entra.Principal) (string, error) {
	tid, oid := strings.ToLower(p.TenantID), strings.ToLower(p.ObjectID)
	if !valid.LowerGUID(tid) || !valid.LowerGUID(oid) {
		return "", errors.New("obo: principal's tenant or object id is not a GUID")
	}
	return tid + "." + oid, nil
}

// cacheKey names the token of user for scopes. Entra compares scopes
// without regard to case or order, so neither changes the key.
func cacheKey(user string, scopes []string) string {
	norm := make([]string, len(scopes))
	for i, s := range scopes {
		norm[i] = strings.ToLower(strings.TrimSpace(s))
	}
	slices.Sort(norm)
	sum := sha256.Sum256([]byte(strings.Join(slices.Compact(norm), " ")))
	return "obo:" + user + ":" + hex.EncodeToString(sum[:])
}

// cached returns the token kept under key if it is good for longer than the
// margin. Any failure is a miss: the caller then asks Entra, so a Redis
// outage or a rotated-away sealing key costs a round trip, not the call.
func (c *Client) cached(ctx context.Context, key string) (string, bool) {
	sealed, err := c.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return "", false
	}
	if err != nil {
		c.log.LogAttrs(ctx, slog.LevelWarn, "obo: read token cache", slog.String("err", err.Error()))
		return "", false
	}
	plain, err := c.ring.Open(key, sealed)
	if err != nil {
		c.log.LogAttrs(ctx, slog.LevelWarn, "obo: open cached token", slog.String("err", err.Error()))
		return "", false
	}
	var e entry
	if err := json.Unmarshal(plain, &e); err != nil || e.Token == "" {
		c.log.LogAttrs(ctx, slog.LevelWarn, "obo: cached token is not readable")
		return "", false
	}
	// The TTL already ends the key before the margin; this check covers a
	// Redis clock that runs behind ours.
	if !c.now().Add(c.margin).Before(e.Expires) {
		return "", false
	}
	return e.Token, true
}

// keep stores token, sealed under its key name, until the margin before it
// expires. A failure is logged, not returned: the caller has its token.
func (c *Client) keep(ctx context.Context, key, token string, expires time.Time) {
	ttl := expires.Sub(c.now()) - c.margin
	if ttl < minTTL {
		return
	}
	plain, err := json.Marshal(entry{Token: token, Expires: expires.UTC()})
	if err != nil {
		c.log.LogAttrs(ctx, slog.LevelError, "obo: encode token for cache", slog.String("err", err.Error()))
		return
	}
	sealed, err := c.ring.Seal(key, plain)
	if err != nil {
		c.log.LogAttrs(ctx, slog.LevelError, "obo: seal token for cache", slog.String("err", err.Error()))
		return
	}
	if err := c.rdb.Set(ctx, key, sealed, ttl).Err(); err != nil {
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
	user, err := userID(p)
	if err != nil {
		return err
	}
	if err := c.rdb.Del(ctx, cacheKey(user, scopes)).Err(); err != nil {
		return fmt.Errorf("%w: forget cached token: %w", ErrUnavailable, err)
	}
	return nil
}
