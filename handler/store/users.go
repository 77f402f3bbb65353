package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// LoadMSAL returns a user's MSAL cache, false if there is none, and the
// user's current epoch and last revocation, read together: a SaveMSAL of
// what this call's MSAL operation produced passes that epoch, so that a
// RevokeUser in between wins. A cache that does not open (for example,
// sealed with a key since removed from the ring) is an error matching
// seal.ErrOpen, with the epoch still returned.
func (s *Sessions) LoadMSAL(ctx context.Context, tid, oid string) ([]byte, bool, UserState, error) {
	u, err := KeysOf(tid, oid)
	if err != nil {
		return nil, false, UserState{}, err
	}
	key := u.msal()
	reply, err := loadMSALScript.Run(ctx, s.rdb, []string{key, u.Epochs()}, u.ID, u.ID+revokedAtSuffix).Slice()
	if err != nil {
		return nil, false, UserState{}, wrap("load MSAL cache", err)
	}
	if len(reply) != 3 {
		return nil, false, UserState{}, errors.New("store: load MSAL cache: unexpected reply")
	}
	ep, err1 := parseEpoch(reply[1])
	at, err2 := parseEpoch(reply[2])
	if err := errors.Join(err1, err2); err != nil {
		return nil, false, UserState{}, fmt.Errorf("store: load MSAL cache: %w", err)
	}
	st := UserState{Epoch: ep, RevokedAt: time.UnixMilli(int64(at))}
	sealed, ok := reply[0].(string)
	if !ok {
		return nil, false, st, nil
	}
	data, err := s.ring.Open(key, []byte(sealed))
	if err != nil {
		return nil, false, st, fmt.Errorf("store: load MSAL cache: %w", err)
	}
	return data, true, st, nil
}

// UserState is what LoadMSAL reads about a user besides their cache.
type UserState struct {
	Epoch Epoch
	// RevokedAt is when RevokeUser last ran for the user, on Redis's
	// clock (the zero Unix time if never).
	RevokedAt time.Time
}

// revokedAtSuffix names the field of the epochs hash that holds a user's
// last revocation time.
const revokedAtSuffix = ":at"

// loadMSALScript reads a cache and its user's epoch at one instant.
// KEYS: cache, epochs. ARGV: user id, revocation-time field.
// Returns {cache or nil, epoch, revoked at (Unix ms)}.
var loadMSALScript = redis.NewScript(`
return {redis.call('GET', KEYS[1]), redis.call('HGET', KEYS[2], ARGV[1]) or '0', redis.call('HGET', KEYS[2], ARGV[2]) or '0'}
`)

// Now is Redis's clock, to the millisecond: the one RevokeUser stamps revocations with, so
// that instances whose clocks differ still agree what came first.
func (s *Sessions) Now(ctx context.Context) (time.Time, error) {
	t, err := s.rdb.Time(ctx).Result()
	if err != nil {
		return time.Time{}, wrap("read Redis time", err)
	}
	// Revocations are stamped in whole milliseconds: so is this, rounded
	// down, so that one in the same millisecond counts as after it.
	return t.Truncate(time.Millisecond), nil
}

func parseEpoch(v any) (Epoch, error) {
	str, _ := v.(string)
	n, err := strconv.ParseInt(str, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("epoch %q is not a number", str)
	}
	return Epoch(n), nil
}

// SaveMSAL stores a user's MSAL cache for ttl (the refresh token's
// lifetime), unless the user's epoch is no longer ep (their sessions were
// revoked since the cache was loaded): then nothing is written and the
// error matches ErrRevoked.
func (s *Sessions) SaveMSAL(ctx context.Context, tid, oid string, data []byte, ttl time.Duration, ep Epoch) error {
	u, err := KeysOf(tid, oid)
	if err != nil {
		return err
	}
	if err := CheckTTL("save MSAL cache", ttl); err != nil {
		return err
	}
	key := u.msal()
	sealed, err := s.ring.Seal(key, data)
	if err != nil {
		return fmt.Errorf("store: save MSAL cache: %w", err)
	}
	n, err := saveMSALScript.Run(ctx, s.rdb, []string{key, u.Epochs()}, u.ID, int64(ep), sealed, Ms(ttl)).Int()
	if err != nil {
		return wrap("save MSAL cache", err)
	}
	if n != 1 {
		return fmt.Errorf("store: save MSAL cache: %w", ErrRevoked)
	}
	return nil
}

// saveMSALScript writes a cache if its user's epoch is the one given.
// KEYS: cache, epochs. ARGV: user id, epoch, sealed cache, TTL (ms).
var saveMSALScript = redis.NewScript(`
if tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') ~= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
return 1
`)

// DeleteMSAL deletes a user's MSAL cache.
func (s *Sessions) DeleteMSAL(ctx context.Context, tid, oid string) error {
	u, err := KeysOf(tid, oid)
	if err != nil {
		return err
	}
	return wrap("delete MSAL cache", s.rdb.Del(ctx, u.msal()).Err())
}

// CurrentEpoch is the user's epoch now (0 before any revocation).
func (s *Sessions) CurrentEpoch(ctx context.Context, tid, oid string) (Epoch, error) {
	u, err := KeysOf(tid, oid)
	if err != nil {
		return 0, err
	}
	return s.epoch(ctx, u)
}

func (s *Sessions) epoch(ctx context.Context, u UserKeys) (Epoch, error) {
	v, err := s.rdb.HGet(ctx, u.Epochs(), u.ID).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, wrap("read epoch", err)
	}
	return parseEpoch(v)
}

// RevokeUser ends everything a user holds: every refresh chain, the MSAL
// cache (and so Entra's refresh token), the on-behalf-of tokens and, by
// moving the user's epoch, every one-time code and remembered consent, and
// every sign-in, refresh or redemption under way (they are refused when
// they try to write). It returns how many live chains it ended.
//
// All of a user's keys share one hash slot, so each round is one script.
// Scripts name their keys up front, so the chains are listed first. The
// first round moves the epoch and returns what the index still lists:
// chains issued between the listing and the move. The second round ends
// exactly those. Nothing of the old epoch can appear after the first
// round (issueScript checks the epoch in the same script that lists a
// chain), and what appears later is a sign-in after the revocation, which
// is not ours to end; so two rounds always suffice, however busy the user.
func (s *Sessions) RevokeUser(ctx context.Context, tid, oid string) (int, error) {
	u, err := KeysOf(tid, oid)
	if err != nil {
		return 0, err
	}
	chains, err := s.rdb.ZRange(ctx, u.Chains(), 0, -1).Result()
	if err != nil {
		return 0, wrap("revoke user", err)
	}
	total := 0
	for _, first := range []string{"1", "0"} {
		keys := []string{u.Epochs(), u.msal(), u.Chains(), u.obo()}
		args := []any{u.ID, first, Ms(s.lifetime), u.ID + revokedAtSuffix}
		for _, c := range chains {
			keys = append(keys, u.Chain(c))
			args = append(args, c)
		}
		reply, err := revokeUserScript.Run(ctx, s.rdb, keys, args...).Slice()
		if err != nil {
			return total, wrap("revoke user", err)
		}
		if len(reply) != 2 {
			return total, errors.New("store: revoke user: unexpected reply")
		}
		n, _ := reply[0].(int64)
		total += int(n)
		var left []string
		if list, ok := reply[1].([]any); ok {
			for _, v := range list {
				if c, ok := v.(string); ok {
					left = append(left, c)
				}
			}
		}
		if len(left) == 0 || first == "0" {
			return total, nil
		}
		chains = left
	}
	return total, nil
}

// revokeUserScript moves the user's epoch (first round only), deletes the
// MSAL cache, the on-behalf-of tokens and the listed chains, and returns
// how many chains it ended and which the index still lists.
// The first round also stamps the revocation with Redis's time, so that a
// sign-in whose callback began before it (and so read no epoch yet) is
// refused too.
// KEYS: epochs, cache, index, obo tokens, chain keys...
// ARGV: user id, "1" to move the epoch, lifetime (ms), revocation-time
// field, chain ids (as KEYS[5..]).
var revokeUserScript = redis.NewScript(`
if ARGV[2] == '1' then
  redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], ARGV[4], string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('DEL', KEYS[2], KEYS[4])
local n = 0
for i = 5, #KEYS do
  n = n + redis.call('DEL', KEYS[i])
  redis.call('ZREM', KEYS[3], ARGV[i])
end
return {n, redis.call('ZRANGE', KEYS[3], 0, -1)}
`)
