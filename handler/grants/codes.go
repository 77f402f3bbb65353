package grants

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/store"
)

// NewCode mints a one-time code that stands for r, for ttl, and returns it.
// r.Epoch must be the user's current epoch: a code minted after its user's
// sessions were revoked gets store.ErrRevoked. One round trip.
func (s *Records) NewCode(ctx context.Context, r CodeRecord, ttl time.Duration) (string, error) {
	u, err := store.KeysOf(r.TenantID, r.ObjectID)
	if err != nil {
		return "", err
	}
	if err := store.CheckTTL("save code", ttl); err != nil {
		return "", err
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand panics on failure since Go 1.24)
	code := u.Tag + "." + base64.RawURLEncoding.EncodeToString(b)
	key := codeKey(u.Tag, code)
	sealed, err := s.sealJSON(key, r)
	if err != nil {
		return "", fmt.Errorf("grants: save code: %w", err)
	}
	n, err := saveCodeScript.Run(ctx, s.rdb, []string{key, u.Epochs()}, u.ID, int64(r.Epoch), sealed, store.Ms(ttl)).Int()
	if err != nil {
		return "", store.Wrap("save code", err)
	}
	switch n {
	case 1:
		return code, nil
	case -1:
		return "", fmt.Errorf("grants: save code: %w", store.ErrRevoked)
	default:
		return "", errors.New("grants: save code: code already in use")
	}
}

// saveCodeScript stores a code unless its user's epoch has moved.
// KEYS: code, epochs. ARGV: user id, epoch, sealed record, TTL (ms).
// Returns 1 saved, -1 revoked meanwhile, 0 code exists.
var saveCodeScript = redis.NewScript(`
if tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') ~= tonumber(ARGV[2]) then return -1 end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'u', ARGV[1], 'e', ARGV[2], 'd', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`)

// splitCode returns a code's user tag, or false if it is not one of ours.
func splitCode(code string) (string, bool) {
	tag, secret, ok := strings.Cut(code, ".")
	return tag, ok && store.IsTag(tag) && store.CheckSecret("code", secret) == nil
}

// RedeemCode returns what a code stands for and deletes it, leaving a
// tombstone so that a second redemption is recognised: it gets a
// *CodeReusedError (matching ErrCodeReused). An unknown or expired code, or
// one whose user's sessions were revoked since it was minted, gets an error
// matching ErrNotFound. One round trip.
func (s *Records) RedeemCode(ctx context.Context, code string) (CodeRecord, error) {
	tag, ok := splitCode(code)
	if !ok {
		return CodeRecord{}, errCodeNotFound
	}
	key := codeKey(tag, code)
	reply, err := redeemScript.Run(ctx, s.rdb, []string{key, codeUsedKey(tag, code), store.EpochsKey(tag)}, store.Ms(s.codeUsedTTL)).Slice()
	if err != nil {
		return CodeRecord{}, store.Wrap("redeem code", err)
	}
	status, value := scriptReply(reply)
	switch status {
	case redeemOK:
		var r CodeRecord
		if err := s.openJSON(key, []byte(value), &r); err != nil {
			return CodeRecord{}, fmt.Errorf("grants: redeem code: %w", err)
		}
		return r, nil
	case redeemReused:
		chain := ""
		if value != "" && value != codeReusedMark {
			chain = tag + "." + value
		}
		return CodeRecord{}, &CodeReusedError{Chain: chain}
	default:
		return CodeRecord{}, errCodeNotFound
	}
}

// Results of redeemScript; 0 means there is no such code.
const (
	redeemOK     = 1
	redeemReused = 2
)

// redeemScript takes a code and leaves a tombstone in its place; a code
// whose user's epoch has moved since it was minted is deleted and counts as
// unknown. On a second redemption it returns the tombstone, marking it "!"
// if nothing has been issued yet so that the first redemption's
// IssueForCode refuses.
// KEYS: code, tombstone, epochs. ARGV: tombstone TTL (ms).
var redeemScript = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'u', 'e', 'd')
if f[3] then
  redis.call('DEL', KEYS[1])
  if tonumber(redis.call('HGET', KEYS[3], f[1]) or '0') ~= tonumber(f[2]) then return {0} end
  redis.call('SET', KEYS[2], '', 'PX', ARGV[1])
  return {1, f[3]}
end
local t = redis.call('GET', KEYS[2])
if not t then return {0} end
if t == '' then redis.call('SET', KEYS[2], '!', 'XX', 'KEEPTTL') end
return {2, t}
`)
