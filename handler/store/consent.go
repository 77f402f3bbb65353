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
	ep, err := s.epoch(ctx, u)
	if err != nil {
		return err
	}
	key := consentKey(browserID)
	// The key lives as long as its newest approval; older fields carry
	// their own expiry, checked on read. A RevokeUser between reading the
	// epoch and writing leaves this approval in the old epoch: void. The
	// epoch key lives for the chain lifetime from its last change, longer
	// than any approval.
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, Digest(clientID), fmt.Sprintf("%s %d %d", u.ID, s.now().Add(ttl).UnixMilli(), ep))
		p.PExpire(ctx, key, ttl)
		return nil
	})
	if err != nil {
		return wrap("remember consent", err)
	}
	return nil
}

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
