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
	"github.com/entra-mcp/functions-mcp/handler/store"
)

// minTTL is the shortest life worth keeping a token for.
const minTTL = time.Second

// entry is what a cache key holds once opened.
type entry struct {
	Token   string    `json:"at"`
	Expires time.Time `json:"exp"`
}

// slot is where one user's token for one set of scopes is kept: a field of
// the user's hash, whose key store names (store.OBOKey), so that revoking
// the user's sessions deletes their tokens too.
type slot struct {
	key, field string
}

// sealName is what the token is sealed under: a value copied to another
// user's hash or scopes does not open.
func (s slot) sealName() string { return s.key + ":" + s.field }

// slotFor names the token of p for scopes. Entra compares scopes without
// regard to case or order, so neither changes the field.
func slotFor(p *entra.Principal, scopes []string) (slot, error) {
	key, err := store.OBOKey(p.TenantID, p.ObjectID)
	if err != nil {
		return slot{}, fmt.Errorf("obo: %w", err)
	}
	norm := make([]string, len(scopes))
	for i, s := range scopes {
		norm[i] = strings.ToLower(strings.TrimSpace(s))
	}
	slices.Sort(norm)
	sum := sha256.Sum256([]byte(strings.Join(slices.Compact(norm), " ")))
	return slot{key: key, field: hex.EncodeToString(sum[:])}, nil
}

// cached returns the token kept under key if it is good for longer than the
// margin. Any failure is a miss: the caller then asks Entra, so a Redis
// outage or a rotated-away sealing key costs a round trip, not the call.
func (c *Client) cached(ctx context.Context, at slot) (string, bool) {
	sealed, err := c.rdb.HGet(ctx, at.key, at.field).Bytes()
	if errors.Is(err, redis.Nil) {
		return "", false
	}
	if err != nil {
		c.log.LogAttrs(ctx, slog.LevelWarn, "obo: read token cache", slog.String("err", err.Error()))
		return "", false
	}
	plain, err := c.ring.Open(at.sealName(), sealed)
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

// keep stores token, sealed under its slot's name, until the margin before
// it expires. A failure is logged, not returned: the caller has its token.
func (c *Client) keep(ctx context.Context, at slot, token string, expires time.Time) {
	ttl := expires.Sub(c.now()) - c.margin
	if ttl < minTTL {
		return
	}
	plain, err := json.Marshal(entry{Token: token, Expires: expires.UTC()})
	if err != nil {
		c.log.LogAttrs(ctx, slog.LevelError, "obo: encode token for cache", slog.String("err", err.Error()))
		return
	}
	sealed, err := c.ring.Seal(at.sealName(), plain)
	if err != nil {
		c.log.LogAttrs(ctx, slog.LevelError, "obo: seal token for cache", slog.String("err", err.Error()))
		return
	}
	if err := keepScript.Run(ctx, c.rdb, []string{at.key}, at.field, sealed, ttl.Milliseconds()).Err(); err != nil {
		c.log.LogAttrs(ctx, slog.LevelWarn, "obo: write token cache", slog.String("err", err.Error()))
	}
}

// keepScript sets a field of the user's hash and keeps the hash as long as
// its longest-lived token: each token's own expiry is checked on read.
// KEYS: hash. ARGV: field, sealed entry, TTL (ms).
var keepScript = redis.NewScript(`
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
`)

// Forget deletes the kept token of p for scopes, for a caller whose
// downstream API refused it (a 401 after the token was revoked), so that the
// next call asks Entra afresh.
func (c *Client) Forget(ctx context.Context, p *entra.Principal, scopes []string) error {
	if p == nil {
		return errors.New("obo: no principal")
	}
	at, err := slotFor(p, scopes)
	if err != nil {
		return err
	}
	if err := c.rdb.HDel(ctx, at.key, at.field).Err(); err != nil {
		return fmt.Errorf("%w: forget cached token: %w", ErrUnavailable, err)
	}
	return nil
}
