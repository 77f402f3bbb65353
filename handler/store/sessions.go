package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/valid"
)

// DefaultChainLifetime is how long a refresh chain may live from sign-in
// (package grants), and so how long a user's revocation epoch is kept
// after its last change: it must outlive everything issued in it.
const DefaultChainLifetime = 90 * 24 * time.Hour

const (
	minSecretLen = 22 // 128 bits in base64url; rand.Text gives 26 base32 characters (130 bits)
	maxSecretLen = 512
	tagLen       = 16
	// maxConsentsPerUser bounds a user's remembered consents (one client
	// approved in one browser each): what a signed-in user signing in
	// from fresh browsers can park in Redis. A new one past it forgets the
	// oldest.
	maxConsentsPerUser = 100
)

var (
	// ErrNotFound means the record asked for (a one-time code, a refresh
	// handle, a remembered consent) does not exist, or no longer does.
	// Errors matching it name which record.
	ErrNotFound = errors.New("not found")
	// ErrRevoked means the user's sessions were revoked (RevokeUser) after
	// the operation began: nothing it would have written was kept.
	ErrRevoked = errors.New("the user's sessions were revoked meanwhile")
)

// NotFoundError matches ErrNotFound with a message that says which record
// was missing.
type NotFoundError string

func (e NotFoundError) Error() string { return "store: " + string(e) + " not found" }

// Is makes errors.Is(err, ErrNotFound) hold.
func (e NotFoundError) Is(target error) bool { return target == ErrNotFound }

const errConsentNotFound = NotFoundError("consent")

// Sealer seals values for Redis: a *seal.Ring, or anything that always uses
// the current ring (such as the Key Vault backed secrets store, whose keys
// rotate while the handler runs).
type Sealer interface {
	Seal(name string, plaintext []byte) ([]byte, error)
	Open(name string, sealed []byte) ([]byte, error)
}

// Epoch counts how often a user's sessions were revoked. Everything issued
// to a user carries the epoch it was issued in, and every write that issues
// something checks, in the same script, that the epoch has not moved: so
// nothing issued before or during a RevokeUser outlives it. A counter, not
// a time: instances' clocks differ.
type Epoch int64

// Sessions keeps a signed-in user's state in Redis: the user's keyspace
// and revocation epoch, MSAL token caches, remembered consent, and markers
// of completed sign-ins. One-time codes and refresh chains are package
// grants' (Records), in the same keyspace. Sign-ins in progress keep
// nothing here: their state travels sealed with the browser, so an
// anonymous request writes nothing.
//
// A user's keys share the hash tag {T}, T = 16 hex of SHA-256 of
// "<tid>.<oid>", so one script may read and write them together on a
// cluster; the full ids are in the names too, so two users whose tags
// collide still have keys of their own. Codes and handles carry T, so the
// keys they name can be found from them alone. h(x) is hex SHA-256 of x:
// no state, code or handle is stored as it is.
//
//	flowdone:<h(state)>        a completed sign-in's state; until the flow would have expired
//	code:{T}:<h(code)>         (grants) hash u = "<tid>.<oid>", e = epoch, d = sealed CodeRecord;
//	                           TTL given; single use
//	codeused:{T}:<h(code)>     (grants) tombstone of a redeemed code: "", "!" or a chain id
//	msal:{T}:<tid>.<oid>       sealed MSAL cache of one user; TTL given by the caller
//	rev:{T}                    hash "<tid>.<oid>" -> the user's Epoch (a hash named by the tag
//	                           alone, so a script that knows only a code's tag can check it);
//	                           lives as long as anything issued in it
//	rt:{T}:<chain>             (grants) hash of one refresh chain: cur = h(current handle),
//	                           exp = absolute end (Unix ms), ep = epoch, u = user,
//	                           data = sealed HandleRecord (with the key that derives
//	                           successors), t:<h(old handle)> = "<rotated ms> <h(successor)>"
//	                           for the last 32 rotations, old = their order;
//	                           TTL = idle TTL, never past exp
//	rtu:{T}:<tid>.<oid>        (grants) sorted set of the user's chain ids by exp (at most 100: a new
//	                           chain past that ends the oldest); TTL = last exp
//	obo:{T}:<tid>.<oid>        the user's on-behalf-of tokens (OBOTokens); deleted by RevokeUser
//	consent:<h(browser)>       hash h(what was approved) -> "<tid>.<oid> <expiry ms> <epoch>":
//	                           the OAuth clients a user approved in one browser; TTL = last expiry
//	consentu:{T}:<tid>.<oid>   sorted set of the user's remembered consents, "<h(browser)>:<h(what)>",
//	                           by expiry (at most 100: a new one past that forgets the oldest);
//	                           TTL = last expiry
//
// A handle is "<T>.<chain id>.<secret>" and a code "<T>.<secret>"; neither
// T nor the chain id grants anything. Sealed values are sealed under their
// own key name, so a value copied to another key does not open.
type Sessions struct {
	rdb      redis.UniversalClient
	ring     Sealer
	now      func() time.Time
	lifetime time.Duration
}

// SessionsOption configures Sessions.
type SessionsOption func(*Sessions)

// WithSessionsClock sets the clock used for consent expiry.
func WithSessionsClock(now func() time.Time) SessionsOption {
	return func(s *Sessions) { s.now = now }
}

// NewSessions returns sign-in state over rdb, sealed with ring (not nil).
func NewSessions(rdb redis.UniversalClient, ring Sealer, opts ...SessionsOption) *Sessions {
	s := &Sessions{rdb: rdb, ring: ring, now: time.Now, lifetime: DefaultChainLifetime}
	for _, o := range opts {
		o(s)
	}
	return s
}

// --- key names ---

// Digest is hex SHA-256: what key names hold instead of a secret.
func Digest(secret string) string { return digest(secret) }

func digest(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// UserKeys names the keys of one user: all in the slot of {Tag}.
type UserKeys struct {
	Tag string // 16 hex of h("<tid>.<oid>")
	ID  string // "<tid>.<oid>", lower case
}

// KeysOf checks a tenant and object id, which become part of key names.
func KeysOf(tid, oid string) (UserKeys, error) {
	tid, oid = strings.ToLower(tid), strings.ToLower(oid)
	if !valid.LowerGUID(tid) || !valid.LowerGUID(oid) {
		return UserKeys{}, errors.New("store: tenant or object id is not a GUID")
	}
	id := tid + "." + oid
	return UserKeys{Tag: Digest(id)[:tagLen], ID: id}, nil
}

// keysOfID is KeysOf for "<tid>.<oid>".
func keysOfID(id string) (UserKeys, error) {
	tid, oid, _ := strings.Cut(id, ".")
	return KeysOf(tid, oid)
}

func (u UserKeys) slot() string { return "{" + u.Tag + "}:" }
func (u UserKeys) msal() string { return "msal:" + u.slot() + u.ID }
func (u UserKeys) obo() string  { return "obo:" + u.slot() + u.ID }

// consents is the index of the user's remembered consents.
func (u UserKeys) consents() string { return "consentu:" + u.slot() + u.ID }

// Epochs is the hash of the epochs of the users whose tag is u.Tag (field
// u.ID).
func (u UserKeys) Epochs() string { return EpochsKey(u.Tag) }

// Chains is the index of the user's refresh chains.
func (u UserKeys) Chains() string { return "rtu:" + u.slot() + u.ID }

// Chain is the key of one of the user's refresh chains.
func (u UserKeys) Chain(id string) string { return ChainKey(u.Tag, id) }

// EpochsKey is UserKeys.Epochs for a tag alone: codes and handles carry
// the tag, not the user.
func EpochsKey(tag string) string { return "rev:{" + tag + "}" }

// ChainKey is UserKeys.Chain for a tag alone.
func ChainKey(tag, chainID string) string { return "rt:{" + tag + "}:" + chainID }

func flowDoneKey(state string) string  { return "flowdone:" + Digest(state) }
func consentKey(browser string) string { return consentKeyOfDigest(Digest(browser)) }

// consentKeyOfDigest is consentKey for h(browser id), as the consent
// index lists it.
func consentKeyOfDigest(h string) string { return "consent:" + h }

// IsTag reports whether s is a user tag.
func IsTag(s string) bool {
	return len(s) == tagLen && strings.Trim(s, "0123456789abcdef") == ""
}

// CheckSecret refuses states and codes too short to be unguessable: their
// hash is all that protects the key name.
func CheckSecret(what, s string) error {
	if len(s) < minSecretLen || len(s) > maxSecretLen {
		return fmt.Errorf("store: %s must be %d to %d characters of a ≥128-bit random value", what, minSecretLen, maxSecretLen)
	}
	return nil
}

// CheckTTL refuses a TTL Redis would take as none.
func CheckTTL(what string, ttl time.Duration) error {
	if ttl < time.Millisecond {
		// go-redis treats 0 as "no expiry", which no key here may have.
		return fmt.Errorf("store: %s: TTL must be at least 1ms, got %v", what, ttl)
	}
	return nil
}

// Ms is a duration as Redis's millisecond arguments take it.
func Ms(d time.Duration) string { return fmt.Sprint(d.Milliseconds()) }

// Wrap adds what was being done to a Redis error, and marks it with
// ErrUnavailable when Redis could not serve the request.
func Wrap(op string, err error) error { return wrap(op, err) }

// --- completed sign-ins ---

// MarkFlowDone records that the sign-in with this state has completed, for
// ttl (what is left of the flow's life), and reports whether it is the
// first to: a sign-in completes once. The flow itself lives sealed in the
// browser; this marker is written only once Entra has accepted the sign-in,
// so anonymous requests never write one.
func (s *Sessions) MarkFlowDone(ctx context.Context, state string, ttl time.Duration) (bool, error) {
	if err := errors.Join(CheckSecret("state", state), CheckTTL("mark sign-in done", ttl)); err != nil {
		return false, err
	}
	ok, err := s.rdb.SetNX(ctx, flowDoneKey(state), "1", ttl).Result()
	if err != nil {
		return false, wrap("mark sign-in done", err)
	}
	return ok, nil
}
