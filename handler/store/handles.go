package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// splitHandle returns a handle's user tag and chain id, or false if it is
// not one of ours.
func splitHandle(handle string) (tag, chainID string, ok bool) {
	parts := strings.Split(handle, ".")
	if len(parts) != 3 || !isTag(parts[0]) || !isRandText(parts[1], chainIDLen) || !isRandText(parts[2], handleSecretLen) {
		return "", "", false
	}
	return parts[0], parts[1], true
}

func newHandle(tag, chainID string) string { return tag + "." + chainID + "." + rand.Text() }

// NewHandle starts a chain of refresh handles for a signed-in user and
// returns its first handle and a reference to the chain (for RevokeChain).
// rec.Epoch must be the user's current epoch, else ErrRevoked. One round
// trip.
func (s *Sessions) NewHandle(ctx context.Context, rec HandleRecord) (handle, chain string, err error) {
	return s.issue(ctx, rec, "")
}

// IssueForCode is NewHandle for the redemption of code: in the same script
// it records the chain on the code's tombstone. If the code was redeemed
// again since RedeemCode, it issues nothing and returns an error matching
// ErrCodeReused.
func (s *Sessions) IssueForCode(ctx context.Context, code string, rec HandleRecord) (handle, chain string, err error) {
	if _, ok := splitCode(code); !ok {
		return "", "", errors.New("store: issue handle: not a one-time code")
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

func (s *Sessions) issue(ctx context.Context, rec HandleRecord, code string) (string, string, error) {
	u, err := keysOf(rec.TenantID, rec.ObjectID)
	if err != nil {
		return "", "", err
	}
	now := s.now()
	if rec.Created.IsZero() {
		rec.Created = now.UTC()
	}
	chainID := rand.Text()
	handle := newHandle(u.tag, chainID)
	ck := u.chain(chainID)
	sealed, err := s.sealJSON(ck, rec)
	if err != nil {
		return "", "", fmt.Errorf("store: issue handle: %w", err)
	}
	keys := []string{ck, u.chains(), u.epoch()}
	if code != "" {
		tag, _ := splitCode(code)
		if tag != u.tag {
			return "", "", errors.New("store: issue handle: the code is another user's")
		}
		keys = append(keys, codeUsedKey(tag, code))
	}
	res, err := issueScript.Run(ctx, s.rdb, keys,
		digest(handle), now.Add(s.lifetime).UnixMilli(), sealed, ms(min(s.idleTTL, s.lifetime)),
		now.UnixMilli(), int64(rec.Epoch), chainID, ms(s.lifetime), u.id).Int()
	if err != nil {
		return "", "", wrap("issue handle", err)
	}
	switch res {
	case issuedOK:
		return handle, u.tag + "." + chainID, nil
	case issuedCodeReused:
		return "", "", &CodeReusedError{}
	case issuedCodeGone:
		return "", "", errors.New("store: issue handle: the code was not redeemed, or too long ago")
	case issuedRevoked:
		return "", "", fmt.Errorf("store: issue handle: %w", ErrRevoked)
	default:
		return "", "", errors.New("store: issue handle: chain id already in use")
	}
}

// issueScript creates a chain, lists it in its user's index (dropping
// chains past their end, keeping the index until its last chain ends),
// keeps the epoch alive as long as the chain may live, and, for a code's
// redemption, records the chain on the code's tombstone; all only if the
// user's epoch is still the one the chain was issued in.
// KEYS: chain, index, epochs[, code tombstone].
// ARGV: h(first handle), exp (Unix ms), sealed record, TTL (ms), now (Unix ms),
// epoch, chain id, lifetime (ms), user id.
var issueScript = redis.NewScript(`
if tonumber(redis.call('HGET', KEYS[3], ARGV[9]) or '0') ~= tonumber(ARGV[6]) then return -3 end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if KEYS[4] then
  local t = redis.call('GET', KEYS[4])
  if not t then return -2 end
  if t ~= '' then return -1 end
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
return 1
`)

// Rotate exchanges a refresh handle for a new one of the same chain and
// returns what the chain stands for. The old handle stops working, except
// that within the reuse grace after its rotation, and while its successor
// has not been used, it gets a new successor: the client lost the reply
// that carried the first one. Any other return of a rotated handle revokes
// the chain and returns ErrHandleReused; an unknown, expired or revoked
// handle gets an error matching ErrNotFound. One round trip.
func (s *Sessions) Rotate(ctx context.Context, handle string) (string, HandleRecord, error) {
	tag, chainID, ok := splitHandle(handle)
	if !ok {
		return "", HandleRecord{}, errHandleNotFound
	}
	next := newHandle(tag, chainID)
	rec, err := s.useHandle(ctx, "rotate handle", tag, chainID, handle, digest(next))
	if err != nil {
		return "", HandleRecord{}, err
	}
	return next, rec, nil
}

// PeekHandle returns what a current handle stands for without rotating it,
// so a caller can get a token first and Rotate only once that worked. Like
// Rotate it accepts a rotated handle within the grace, and treats any other
// rotated handle as reuse: it revokes the chain and returns ErrHandleReused.
// One round trip.
func (s *Sessions) PeekHandle(ctx context.Context, handle string) (HandleRecord, error) {
	tag, chainID, ok := splitHandle(handle)
	if !ok {
		return HandleRecord{}, errHandleNotFound
	}
	return s.useHandle(ctx, "look up handle", tag, chainID, handle, "")
}

// useHandle runs handleScript for a handle: it rotates to nextDigest, or
// only looks when nextDigest is "".
func (s *Sessions) useHandle(ctx context.Context, doing, tag, chainID, handle, nextDigest string) (HandleRecord, error) {
	ck := chainKey(tag, chainID)
	reply, err := handleScript.Run(ctx, s.rdb, []string{ck, epochKey(tag)},
		digest(handle), s.now().UnixMilli(), ms(s.idleTTL), nextDigest, ms(s.grace), maxTombstones).Slice()
	if err != nil {
		return HandleRecord{}, wrap(doing, err)
	}
	status, sealed := scriptReply(reply)
	switch status {
	case rotateOK:
	case rotateReused:
		return HandleRecord{}, fmt.Errorf("store: %s: %w", doing, ErrHandleReused)
	default:
		return HandleRecord{}, errHandleNotFound
	}
	var rec HandleRecord
	if err := s.openJSON(ck, []byte(sealed), &rec); err != nil {
		return HandleRecord{}, fmt.Errorf("store: %s: %w", doing, err)
	}
	return rec, nil
}

// Results of handleScript; 0 means there is no such handle.
const (
	rotateOK     = 1
	rotateReused = 2
)

// handleScript checks a presented handle and, given a new one, moves the
// chain on to it. The handle moved away from becomes a tombstone naming
// its successor and when it was rotated. A tombstoned handle coming back
// within the grace, while its successor is still the chain's current
// handle, is a retry after a lost reply: it counts as current, and both it
// and the successor it never received then lead to the new handle, with
// the grace still counted from the first rotation, so a thief and the
// owner taking turns cannot stretch it. Any other tombstoned handle coming
// back revokes the chain (reuse), whether rotating or only looking.
// A chain past its end, or issued in an epoch that has ended, is deleted.
// The new handle lives for the idle TTL but never past the end.
// KEYS: chain, epochs.
// ARGV: h(presented), now (Unix ms), idle TTL (ms), h(new) or "" to only
// look, grace (ms), most tombstones kept.
// Returns {0} unknown, {1, sealed record} valid (rotated if asked), {2} reuse (chain revoked).
var handleScript = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'cur', 'exp', 'ep', 'u', 'data', 'old')
if not f[1] then return {0} end
local now = tonumber(ARGV[2])
local left = tonumber(f[2]) - now
if left < 1 or tonumber(redis.call('HGET', KEYS[2], f[4]) or '0') ~= tonumber(f[3]) then
  redis.call('DEL', KEYS[1])
  return {0}
end
local presented = ARGV[1]
local rotated = ARGV[2]
if f[1] ~= presented then
  local t = redis.call('HGET', KEYS[1], 't:' .. presented)
  if not t then return {0} end
  local at, succ = string.match(t, '^(%d+) (%x+)$')
  if not (at and succ == f[1] and now - tonumber(at) < tonumber(ARGV[5])) then
    redis.call('DEL', KEYS[1])
    return {2}
  end
  rotated = at
end
if ARGV[4] ~= '' then
  local old = {}
  for d in string.gmatch(f[6] or '', '%x+') do table.insert(old, d) end
  table.insert(old, f[1])
  redis.call('HSET', KEYS[1], 'cur', ARGV[4], 't:' .. f[1], rotated .. ' ' .. ARGV[4])
  if presented ~= f[1] then
    redis.call('HSET', KEYS[1], 't:' .. presented, rotated .. ' ' .. ARGV[4])
  end
  while #old > tonumber(ARGV[6]) do
    redis.call('HDEL', KEYS[1], 't:' .. table.remove(old, 1))
  end
  redis.call('HSET', KEYS[1], 'old', table.concat(old, ' '))
  redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.min(tonumber(ARGV[3]), left)))
end
return {1, f[5]}
`)

// Revoke ends the chain of a handle, current or rotated (logout). It
// returns an error matching ErrNotFound if the handle is unknown.
func (s *Sessions) Revoke(ctx context.Context, handle string) error {
	tag, chainID, ok := splitHandle(handle)
	if !ok {
		return errHandleNotFound
	}
	n, err := revokeScript.Run(ctx, s.rdb, []string{chainKey(tag, chainID)}, digest(handle)).Int()
	if err != nil {
		return wrap("revoke handle", err)
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
func (s *Sessions) RevokeChain(ctx context.Context, chain string) error {
	tag, chainID, ok := strings.Cut(chain, ".")
	if !ok || !isTag(tag) || !isRandText(chainID, chainIDLen) {
		return errors.New("store: revoke chain: malformed chain reference")
	}
	return wrap("revoke chain", s.rdb.Del(ctx, chainKey(tag, chainID)).Err())
}
