package grants

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/store"
)

// splitHandle returns a handle's user tag and chain id, or false if it is
// not one of ours.
func splitHandle(handle string) (tag, chainID string, ok bool) {
	parts := strings.Split(handle, ".")
	if len(parts) != 3 || !store.IsTag(parts[0]) || !isRandText(parts[1], chainIDLen) || !isRandText(parts[2], handleSecretLen) {
		return "", "", false
	}
	return parts[0], parts[1], true
}

func newHandle(tag, chainID string) string { return tag + "." + chainID + "." + rand.Text() }

// NewHandle starts a chain of refresh handles for a signed-in user and
// returns its first handle and a reference to the chain (for RevokeChain).
// rec.Epoch must be the user's current epoch, else store.ErrRevoked. One round
// trip.
func (s *Records) NewHandle(ctx context.Context, rec HandleRecord) (handle, chain string, err error) {
	return s.issue(ctx, rec, "")
}

// IssueForCode is NewHandle for the redemption of code: in the same script
// it records the chain on the code's tombstone. If the code was redeemed
// again since RedeemCode, it issues nothing and returns an error matching
// ErrCodeReused.
func (s *Records) IssueForCode(ctx context.Context, code string, rec HandleRecord) (handle, chain string, err error) {
	if _, ok := splitCode(code); !ok {
		return "", "", errors.New("grants: issue handle: not a one-time code")
	}
	return s.issue(ctx, rec, code)
}

// Results of issueScript.
const (
	issuedOK         = 1
	issuedChainInUse = 0
	issuedCodeReused = -1
	issuedCodeGone   = -2
	issuedRevoked    = -3
)

func (s *Records) issue(ctx context.Context, rec HandleRecord, code string) (string, string, error) {
	u, err := store.KeysOf(rec.TenantID, rec.ObjectID)
	if err != nil {
		return "", "", err
	}
	now := s.now()
	if rec.Created.IsZero() {
		rec.Created = now.UTC()
	}
	rec.RotationKey = make([]byte, 32)
	_, _ = rand.Read(rec.RotationKey) // never fails (crypto/rand panics on failure since Go 1.24)
	chainID := rand.Text()
	handle := newHandle(u.Tag, chainID)
	ck := u.Chain(chainID)
	sealed, err := s.sealJSON(ck, rec)
	if err != nil {
		return "", "", fmt.Errorf("grants: issue handle: %w", err)
	}
	keys := []string{ck, u.Chains(), u.Epochs()}
	if code != "" {
		tag, _ := splitCode(code)
		if tag != u.Tag {
			return "", "", errors.New("grants: issue handle: the code is another user's")
		}
		keys = append(keys, codeUsedKey(tag, code))
	}
	reply, err := issueScript.Run(ctx, s.rdb, keys,
		store.Digest(handle), now.Add(s.lifetime).UnixMilli(), sealed, store.Ms(min(s.idleTTL, s.lifetime)),
		now.UnixMilli(), int64(rec.Epoch), chainID, store.Ms(s.lifetime), u.ID, maxChainsPerUser).Slice()
	if err != nil {
		return "", "", store.Wrap("issue handle", err)
	}
	res, _ := reply[0].(int64)
	s.endEvicted(ctx, u, reply[1:])
	switch res {
	case issuedOK:
		return handle, u.Tag + "." + chainID, nil
	case issuedCodeReused:
		return "", "", &CodeReusedError{}
	case issuedCodeGone:
		return "", "", errors.New("grants: issue handle: the code was not redeemed, or too long ago")
	case issuedRevoked:
		return "", "", fmt.Errorf("grants: issue handle: %w", store.ErrRevoked)
	default:
		return "", "", errors.New("grants: issue handle: chain id already in use")
	}
}

// endEvicted deletes the chains issueScript took out of the user's index
// (beyond their budget, oldest first). If that fails they are still ended
// by the next revocation's epoch, and by their idle TTL.
func (s *Records) endEvicted(ctx context.Context, u store.UserKeys, ids []any) {
	var evicted []string
	for _, v := range ids {
		if id, ok := v.(string); ok && isRandText(id, chainIDLen) {
			evicted = append(evicted, u.Chain(id))
		}
	}
	if len(evicted) > 0 {
		s.rdb.Del(context.WithoutCancel(ctx), evicted...)
	}
}

// issueScript creates a chain, lists it in its user's index (dropping
// chains past their end, keeping the index until its last chain ends),
// keeps the epoch alive as long as the chain may live, and, for a code's
// redemption, records the chain on the code's tombstone; all only if the
// user's epoch is still the one the chain was issued in.
// A user keeps at most maxChainsPerUser chains: the oldest beyond it leave
// the index and are returned for the caller to delete (their keys are not
// declared here).
// KEYS: chain, index, epochs[, code tombstone].
// ARGV: h(first handle), exp (Unix ms), sealed record, TTL (ms), now (Unix ms),
// epoch, chain id, lifetime (ms), user id, most chains per user.
// Returns {status, evicted chain ids...}.
var issueScript = redis.NewScript(`
if tonumber(redis.call('HGET', KEYS[3], ARGV[9]) or '0') ~= tonumber(ARGV[6]) then return {-3} end
if redis.call('EXISTS', KEYS[1]) == 1 then return {0} end
if KEYS[4] then
  local t = redis.call('GET', KEYS[4])
  if not t then return {-2} end
  if t ~= '' then return {-1} end
  redis.call('SET', KEYS[4], ARGV[7], 'XX', 'KEEPTTL')
end
redis.call('HSET', KEYS[1], 'cur', ARGV[1], 'exp', ARGV[2], 'ep', ARGV[6], 'u', ARGV[9], 'data', ARGV[3], 'old', '')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[7])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
local ttl = tonumber(last[2]) - tonumber(ARGV[5])
if ttl < 1 then ttl = 1 end
redis.call('PEXPIRE', KEYS[2], string.format('%.0f', ttl))
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PEXPIRE', KEYS[3], ARGV[8]) end
local out = {1}
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[10])
if over > 0 then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, over - 1)) do
    table.insert(out, id)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
end
return out
`)

// successor is the handle a chain moves on to from handle: an HMAC of the
// handle under the chain's own key, so that every rotation of one handle,
// a retry after a lost reply or a request that arrived late, leads to the
// same successor and never forks the chain.
func successor(tag, chainID string, key []byte, handle string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(handle))
	return tag + "." + chainID + "." + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(mac.Sum(nil))[:handleSecretLen]
}

// Rotate exchanges a refresh handle for its successor and returns what the
// chain stands for: PeekHandle, then Advance. Two round trips.
func (s *Records) Rotate(ctx context.Context, handle string) (string, HandleRecord, error) {
	rec, err := s.PeekHandle(ctx, handle)
	if err != nil {
		return "", HandleRecord{}, err
	}
	next, err := s.Advance(ctx, handle, rec)
	return next, rec, err
}

// PeekHandle returns what a handle stands for without rotating it, so a
// caller can get a token first and Advance only once that worked.
//
// The chain's current handle is good. A rotated handle is good too within
// the reuse grace after its rotation while its successor has not been used:
// the client lost the reply that carried the successor, and Advance hands
// it the same successor again. Any other rotated handle is reuse: the
// chain is revoked and the error is ErrHandleReused. An unknown, expired or
// revoked handle gets an error matching ErrNotFound. One round trip.
func (s *Records) PeekHandle(ctx context.Context, handle string) (HandleRecord, error) {
	tag, chainID, ok := splitHandle(handle)
	if !ok {
		return HandleRecord{}, errHandleNotFound
	}
	ck := store.ChainKey(tag, chainID)
	reply, err := lookScript.Run(ctx, s.rdb, []string{ck, store.EpochsKey(tag)},
		store.Digest(handle), s.now().UnixMilli(), store.Ms(s.grace)).Slice()
	if err != nil {
		return HandleRecord{}, store.Wrap("look up handle", err)
	}
	status, sealed := scriptReply(reply)
	switch status {
	case lookCurrent, lookRetry:
	case lookReused:
		return HandleRecord{}, fmt.Errorf("grants: look up handle: %w", ErrHandleReused)
	default:
		return HandleRecord{}, errHandleNotFound
	}
	var rec HandleRecord
	if err := s.openJSON(ck, []byte(sealed), &rec); err != nil {
		return HandleRecord{}, fmt.Errorf("grants: look up handle: %w", err)
	}
	if len(rec.RotationKey) == 0 {
		return HandleRecord{}, errors.New("grants: look up handle: the chain has no rotation key")
	}
	return rec, nil
}

// Results of lookScript; 0 means there is no such handle.
const (
	lookCurrent = 1
	lookReused  = 2
	lookRetry   = 3
)

// lookScript judges a presented handle. A chain past its end, or issued
// in an epoch that has ended, is deleted. A rotated handle (a tombstone:
// "<rotated ms> <h(successor)>") presented within the grace while its
// successor is still current is a retry; any other is reuse, and revokes
// the chain.
// KEYS: chain, epochs. ARGV: h(presented), now (Unix ms), grace (ms).
// Returns {0} unknown, {1, sealed record} current, {3, sealed record} a
// retry within the grace, {2} reuse (chain revoked).
var lookScript = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'cur', 'exp', 'ep', 'u', 'data')
if not f[1] then return {0} end
local now = tonumber(ARGV[2])
if tonumber(f[2]) - now < 1 or tonumber(redis.call('HGET', KEYS[2], f[4]) or '0') ~= tonumber(f[3]) then
  redis.call('DEL', KEYS[1])
  return {0}
end
if f[1] == ARGV[1] then return {1, f[5]} end
local t = redis.call('HGET', KEYS[1], 't:' .. ARGV[1])
if not t then return {0} end
local at, succ = string.match(t, '^(%d+) (%x+)$')
if at and succ == f[1] and now - tonumber(at) < tonumber(ARGV[3]) then return {3, f[5]} end
redis.call('DEL', KEYS[1])
return {2}
`)

// Advance moves the chain of a handle that PeekHandle found good (rec is
// what it returned) on to the handle's successor, and returns the
// successor. It is idempotent: a handle already moved on to that same
// successor, by a retry or by this very request arriving late, is left as
// it is, even if the chain has moved further since (the caller then holds
// a rotated handle, which PeekHandle judges when it comes back). Advance
// never revokes: judging reuse is PeekHandle's. A chain that is gone gets
// an error matching ErrNotFound. One round trip.
func (s *Records) Advance(ctx context.Context, handle string, rec HandleRecord) (string, error) {
	tag, chainID, ok := splitHandle(handle)
	if !ok || len(rec.RotationKey) == 0 {
		return "", errHandleNotFound
	}
	next := successor(tag, chainID, rec.RotationKey, handle)
	n, err := advanceScript.Run(ctx, s.rdb, []string{store.ChainKey(tag, chainID), store.EpochsKey(tag)},
		store.Digest(handle), store.Digest(next), s.now().UnixMilli(), store.Ms(s.idleTTL), maxTombstones).Int()
	if err != nil {
		return "", store.Wrap("rotate handle", err)
	}
	if n != 1 {
		return "", errHandleNotFound
	}
	return next, nil
}

// advanceScript moves a chain from a handle to its successor, leaving a
// tombstone for the handle (when it was rotated, to what), keeping the
// last tombstones only, and renewing the chain's idle TTL but never past
// its end. A handle already moved on to this successor is success.
// KEYS: chain, epochs. ARGV: h(handle), h(successor), now (Unix ms),
// idle TTL (ms), most tombstones kept. Returns 1 done (or done before), 0
// not (no chain, or the handle is not one of its recent ones).
var advanceScript = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'cur', 'exp', 'ep', 'u', 'old')
if not f[1] then return 0 end
local left = tonumber(f[2]) - tonumber(ARGV[3])
if left < 1 or tonumber(redis.call('HGET', KEYS[2], f[4]) or '0') ~= tonumber(f[3]) then
  redis.call('DEL', KEYS[1])
  return 0
end
if f[1] ~= ARGV[1] then
  local t = redis.call('HGET', KEYS[1], 't:' .. ARGV[1])
  if t and string.match(t, ' (%x+)$') == ARGV[2] then return 1 end
  return 0
end
local old = {}
for d in string.gmatch(f[5] or '', '%x+') do table.insert(old, d) end
table.insert(old, ARGV[1])
redis.call('HSET', KEYS[1], 'cur', ARGV[2], 't:' .. ARGV[1], ARGV[3] .. ' ' .. ARGV[2])
while #old > tonumber(ARGV[5]) do
  redis.call('HDEL', KEYS[1], 't:' .. table.remove(old, 1))
end
redis.call('HSET', KEYS[1], 'old', table.concat(old, ' '))
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.min(tonumber(ARGV[4]), left)))
return 1
`)

// Revoke ends the chain of a handle, current or rotated (logout). It
// returns an error matching ErrNotFound if the handle is unknown.
func (s *Records) Revoke(ctx context.Context, handle string) error {
	tag, chainID, ok := splitHandle(handle)
	if !ok {
		return errHandleNotFound
	}
	n, err := revokeScript.Run(ctx, s.rdb, []string{store.ChainKey(tag, chainID)}, store.Digest(handle)).Int()
	if err != nil {
		return store.Wrap("revoke handle", err)
	}
	if n == 0 {
		return errHandleNotFound
	}
	return nil
}

// revokeScript deletes a chain if the handle belongs to it: the chain's
// current handle or one of its tombstones. Knowing a chain id is not
// enough. KEYS: chain. ARGV: h(handle). Returns 1 if revoked.
var revokeScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'cur') == ARGV[1] or redis.call('HEXISTS', KEYS[1], 't:' .. ARGV[1]) == 1 then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`)

// RevokeChain ends a chain named by the reference NewHandle returned (or a
// CodeReusedError carries). Revoking a chain that does not exist is not an
// error.
func (s *Records) RevokeChain(ctx context.Context, chain string) error {
	tag, chainID, ok := strings.Cut(chain, ".")
	if !ok || !store.IsTag(tag) || !isRandText(chainID, chainIDLen) {
		return errors.New("grants: revoke chain: malformed chain reference")
	}
	return store.Wrap("revoke chain", s.rdb.Del(ctx, store.ChainKey(tag, chainID)).Err())
}
