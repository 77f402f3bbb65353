package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// OBOTokens keeps users' on-behalf-of tokens, sealed by the caller (package
// obo), one hash per user in the user's slot: obo:{T}:<tid>.<oid>, one field
// per set of scopes. A token is kept only if the user's epoch has not moved
// since its lookup began, so one that Entra issued while RevokeUser ran
// does not outlive the revocation; RevokeUser deletes the hash.
//
// They are kept here, with the user's other keys, rather than beside
// package obo: they share the user's hash slot and epoch, and RevokeUser
// deletes them in the same script that moves the epoch, so the key layout
// of a user stays in one place.
type OBOTokens struct {
	rdb redis.UniversalClient
}

// NewOBOTokens returns the on-behalf-of token store over rdb.
func NewOBOTokens(rdb redis.UniversalClient) *OBOTokens { return &OBOTokens{rdb: rdb} }

// OBOSlot names where one user's token for one set of scopes is kept.
type OBOSlot struct {
	u     UserKeys
	field string
}

// SlotFor names the slot of the user (tid, oid) for field, a digest of the
// scopes chosen by the caller.
func (o *OBOTokens) SlotFor(tid, oid, field string) (OBOSlot, error) {
	u, err := KeysOf(tid, oid)
	if err != nil {
		return OBOSlot{}, err
	}
	if field == "" || len(field) > 128 {
		return OBOSlot{}, errors.New("store: on-behalf-of token: bad field")
	}
	return OBOSlot{u: u, field: field}, nil
}

// SealName is what a token in the slot is sealed under: one copied to
// another user or scope does not open.
func (s OBOSlot) SealName() string { return s.u.obo() + ":" + s.field }

// Get returns the sealed token in the slot (nil if none) and the user's
// epoch, read together; Put takes that epoch back.
func (o *OBOTokens) Get(ctx context.Context, at OBOSlot) ([]byte, Epoch, error) {
	reply, err := oboGetScript.Run(ctx, o.rdb, []string{at.u.obo(), at.u.Epochs()}, at.field, at.u.ID).Slice()
	if err != nil {
		return nil, 0, wrap("read on-behalf-of token", err)
	}
	if len(reply) != 2 {
		return nil, 0, errors.New("store: read on-behalf-of token: unexpected reply")
	}
	ep, err := parseEpoch(reply[1])
	if err != nil {
		return nil, 0, fmt.Errorf("store: read on-behalf-of token: %w", err)
	}
	sealed, _ := reply[0].(string)
	if sealed == "" {
		return nil, ep, nil
	}
	return []byte(sealed), ep, nil
}

// oboGetScript reads a token and its user's epoch. KEYS: tokens, epochs.
// ARGV: field, user id. Returns {token or nil, epoch}.
var oboGetScript = redis.NewScript(`
return {redis.call('HGET', KEYS[1], ARGV[1]), redis.call('HGET', KEYS[2], ARGV[2]) or '0'}
`)

// Put keeps a sealed token in the slot for ttl, unless the user's epoch is
// no longer ep (ErrRevoked). The hash lives as long as its longest-lived
// token; each token's own expiry is the caller's to check.
func (o *OBOTokens) Put(ctx context.Context, at OBOSlot, sealed []byte, ttl time.Duration, ep Epoch) error {
	if err := CheckTTL("keep on-behalf-of token", ttl); err != nil {
		return err
	}
	n, err := oboPutScript.Run(ctx, o.rdb, []string{at.u.obo(), at.u.Epochs()}, at.field, sealed, Ms(ttl), at.u.ID, int64(ep)).Int()
	if err != nil {
		return wrap("keep on-behalf-of token", err)
	}
	if n != 1 {
		return fmt.Errorf("store: keep on-behalf-of token: %w", ErrRevoked)
	}
	return nil
}

// oboPutScript keeps a token if its user's epoch is the one given.
// KEYS: tokens, epochs. ARGV: field, sealed token, TTL (ms), user id, epoch.
var oboPutScript = redis.NewScript(`
if tonumber(redis.call('HGET', KEYS[2], ARGV[4]) or '0') ~= tonumber(ARGV[5]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
`)

// Delete forgets the token in the slot.
func (o *OBOTokens) Delete(ctx context.Context, at OBOSlot) error {
	return wrap("forget on-behalf-of token", o.rdb.HDel(ctx, at.u.obo(), at.field).Err())
}
