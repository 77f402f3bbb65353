package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RememberConsent records that the user (tid, oid) approved clientID (or
// whatever names what was approved: the caller decides) in the browser
// identified by browserID (a random secret in a cookie), for ttl. The
// approval carries the user's epoch: a RevokeUser voids it.
//
// A user keeps at most maxConsentsPerUser remembered approvals (one client
// in one browser each): a new one past it forgets the oldest, which only
// means the consent page is shown again there. So a user who signs in from
// fresh browsers again and again, from however many addresses, parks a
// bounded amount in Redis.
//
// Three steps, because the user's index and the browser's hash lie in
// different hash slots and no script may span them:
//
//  1. on the user's slot, one script reads the epoch, drops index entries
//     past their expiry, lists this approval and returns the oldest past
//     the budget (without unlisting them);
//  2. one pipeline writes the approval into the browser's hash and forgets
//     the evicted approvals in theirs;
//  3. on the user's slot, the evicted approvals whose forgetting succeeded
//     leave the index, each only if its entry is still the one step 1 saw.
//
// The order keeps every approval of the user in the index for as long as
// it is stored: it is listed before it is written, and unlisted only after
// it is gone. A lost reply or a failure after step 1 leaves at most an
// entry with nothing behind it, which counts against the user's own budget
// until it is evicted or expires; after step 2, evicted approvals stay
// listed, so the next call returns them again and forgets them again
// (forgetting is idempotent). A retry lists the same member (browser and
// client) again, so it moves that entry rather than counting twice. The
// check in step 3 keeps the entry of an approval given again in between.
// Two round trips; three when something is evicted.
func (s *Sessions) RememberConsent(ctx context.Context, browserID, clientID, tid, oid string, ttl time.Duration) error {
	u, err := KeysOf(tid, oid)
	if err != nil {
		return err
	}
	if err := errors.Join(CheckSecret("browser id", browserID), CheckTTL("remember consent", ttl)); err != nil {
		return err
	}
	if ttl > s.lifetime {
		// The epoch key must outlive every approval it voids.
		return fmt.Errorf("store: remember consent: TTL %v is longer than the chain lifetime %v", ttl, s.lifetime)
	}
	now := s.now()
	exp := now.Add(ttl).UnixMilli()
	browser, field := Digest(browserID), Digest(clientID)
	member := browser + ":" + field
	reply, err := listConsentScript.Run(ctx, s.rdb, []string{u.consents(), u.Epochs()},
		u.ID, member, exp, now.UnixMilli(), maxConsentsPerUser).Slice()
	if err != nil {
		return wrap("remember consent", err)
	}
	ep, out, err := parseListReply(reply)
	if err != nil {
		return fmt.Errorf("store: remember consent: %w", err)
	}
	// A RevokeUser between step 1 and the write leaves this approval in
	// the old epoch: void. The epoch key lives for the chain lifetime from
	// its last change, longer than any approval.
	value := fmt.Sprintf("%s %d %d", u.ID, exp, ep)
	gone, err := s.writeAndForget(ctx, browser, field, value, u.ID, now, exp, out)
	if err != nil {
		return wrap("remember consent", err)
	}
	if len(gone) > 0 {
		// Failing here only leaves them listed: the next call forgets
		// them again.
		unlistConsentScript.Run(context.WithoutCancel(ctx), s.rdb, []string{u.consents()}, gone...)
	}
	return nil
}

// evictedConsent is an approval step 1 of RememberConsent found past the
// user's budget: its index member and score, and the command forgetting it.
type evictedConsent struct {
	member, score string
	forget        *redis.Cmd
}

// parseListReply reads listConsentScript's answer: the epoch, then
// member and score pairs.
func parseListReply(reply []any) (Epoch, []evictedConsent, error) {
	if len(reply) == 0 || len(reply)%2 != 1 {
		return 0, nil, errors.New("unexpected reply")
	}
	ep, err := parseEpoch(reply[0])
	if err != nil {
		return 0, nil, err
	}
	var out []evictedConsent
	for i := 1; i+1 < len(reply); i += 2 {
		m, _ := reply[i].(string)
		sc, _ := reply[i+1].(string)
		if sc != "" {
			out = append(out, evictedConsent{member: m, score: sc})
		}
	}
	return ep, out, nil
}

// writeAndForget is step 2 of RememberConsent, in one pipeline: it writes
// the approval into the browser's hash and forgets the evicted ones in
// theirs. It returns the member and score pairs of those forgotten, for
// step 3.
func (s *Sessions) writeAndForget(ctx context.Context, browser, field, value, user string, now time.Time, exp int64,
	out []evictedConsent) ([]any, error) {
	// EVAL, not EVALSHA: inside a pipeline go-redis cannot fall back on
	// NOSCRIPT. The scripts are short.
	var write *redis.Cmd
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		write = writeConsentScript.Eval(ctx, p, []string{consentKeyOfDigest(browser)}, field, value, now.UnixMilli(), exp)
		for i := range out {
			// A member not of this code's making has nothing to forget,
			// and just leaves the index.
			if b, f, ok := strings.Cut(out[i].member, ":"); ok && b != "" && f != "" {
				out[i].forget = forgetConsentScript.Eval(ctx, p, []string{consentKeyOfDigest(b)}, f, user)
			}
		}
		return nil
	})
	if err := write.Err(); err != nil {
		return nil, err
	}
	var gone []any
	for _, e := range out {
		if e.forget == nil || e.forget.Err() == nil {
			gone = append(gone, e.member, e.score)
		}
	}
	return gone, nil
}

// listConsentScript is step 1 of RememberConsent.
// KEYS: the user's consent index, epochs.
// ARGV: user id, member ("<h(browser)>:<h(client)>"), expiry (Unix ms),
// now (Unix ms), most approvals per user.
// Returns {epoch, evicted member, its score, ...}: the oldest entries past
// the budget, never the one just listed. The index lives until its last
// entry expires.
var listConsentScript = redis.NewScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
local out = {redis.call('HGET', KEYS[2], ARGV[1]) or '0'}
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[5])
if over > 0 then
  local old = redis.call('ZRANGE', KEYS[1], 0, over, 'WITHSCORES')
  for i = 1, #old, 2 do
    if over == 0 then break end
    if old[i] ~= ARGV[2] then
      table.insert(out, old[i])
      table.insert(out, old[i + 1])
      over = over - 1
    end
  end
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local ttl = tonumber(last[2]) - tonumber(ARGV[4])
if ttl < 1 then ttl = 1 end
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', ttl))
return out
`)

// writeConsentScript stores one approval in a browser's hash, drops the
// hash's approvals past their expiry, and keeps the hash until its last
// approval expires.
// KEYS: the browser's consent hash. ARGV: h(client), value, now (Unix ms),
// the approval's expiry (Unix ms).
var writeConsentScript = redis.NewScript(`
local now = tonumber(ARGV[3])
local last = tonumber(ARGV[4])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if all[i] ~= ARGV[1] then
    local exp = tonumber(string.match(all[i + 1], '^%S+ (%d+) %d+$') or '0')
    if exp <= now then
      redis.call('HDEL', KEYS[1], all[i])
    elseif exp > last then
      last = exp
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local ttl = last - now
if ttl < 1 then ttl = 1 end
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', ttl))
return 1
`)

// forgetConsentScript deletes one approval from a browser's hash if it is
// the user's (another user may have approved the same client there since).
// KEYS: the browser's consent hash. ARGV: h(client), user id.
var forgetConsentScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and string.sub(v, 1, #ARGV[2] + 1) == ARGV[2] .. ' ' then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
`)

// unlistConsentScript is step 3 of RememberConsent: each member leaves the
// index only if its score is still the one given (an approval given again
// since has a new one, and stays listed).
// KEYS: the user's consent index. ARGV: member, score, ...
var unlistConsentScript = redis.NewScript(`
local n = 0
for i = 1, #ARGV, 2 do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) == tonumber(ARGV[i + 1]) then
    n = n + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return n
`)

// ConsentedUser returns "<tid>.<oid>" of the user who approved clientID in
// the browser identified by browserID, or an error matching ErrNotFound if
// no approval is remembered (or it was voided by a RevokeUser).
func (s *Sessions) ConsentedUser(ctx context.Context, browserID, clientID string) (string, error) {
	if CheckSecret("browser id", browserID) != nil {
		return "", errConsentNotFound
	}
	v, err := s.rdb.HGet(ctx, consentKey(browserID), Digest(clientID)).Result()
	if errors.Is(err, redis.Nil) {
		return "", errConsentNotFound
	}
	if err != nil {
		return "", wrap("look up consent", err)
	}
	parts := strings.Fields(v)
	if len(parts) != 3 {
		return "", errConsentNotFound
	}
	u, err := keysOfID(parts[0])
	exp, err1 := strconv.ParseInt(parts[1], 10, 64)
	ep, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || err1 != nil || err2 != nil || s.now().UnixMilli() >= exp {
		return "", errConsentNotFound
	}
	current, err := s.epoch(ctx, u)
	if err != nil {
		return "", err
	}
	if Epoch(ep) != current {
		return "", errConsentNotFound
	}
	return parts[0], nil
}
