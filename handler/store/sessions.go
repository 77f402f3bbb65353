package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/valid"
)

// Defaults for Sessions.
const (
	DefaultHandleIdleTTL = 14 * 24 * time.Hour
	DefaultChainLifetime = 90 * 24 * time.Hour
	DefaultCodeUsedTTL   = 10 * time.Minute
	// DefaultReuseGrace is how long after a rotation the handle it replaced
	// still gets a successor instead of revoking its chain, as long as the
	// successor has not been used: a client whose reply was lost retries
	// with the handle it has (Auth0's reuse interval, Okta's grace period).
	DefaultReuseGrace = 30 * time.Second
	// maxTombstones is how many rotated handles a chain remembers. A
	// rotated handle presented again is theft (or a bug) and revokes the
	// chain; one older than the last 32 is merely unknown.
	maxTombstones = 32
	// maxChainsPerUser bounds a user's live refresh chains (sign-ins):
	// what a signed-in user can park in Redis. A new one past it ends the
	// oldest.
	maxChainsPerUser = 100
	minSecretLen     = 22 // 128 bits in base64url; rand.Text gives 26 base32 characters (130 bits)
	maxSecretLen     = 512
	tagLen           = 16
	chainIDLen       = 26 // rand.Text
	handleSecretLen  = 26 // rand.Text
	randTextAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	// codeReusedMark on a tombstone means a second redemption came before
	// the first issued a chain ("" means redeemed, nothing issued yet).
	codeReusedMark = "!"
)

var (
	// ErrNotFound means the record asked for (a one-time code, a refresh
	// handle, a remembered consent) does not exist, or no longer does.
	// Errors matching it name which record.
	ErrNotFound = errors.New("not found")
	// ErrCodeReused means a one-time code was redeemed before. RedeemCode
	// returns it as a *CodeReusedError.
	ErrCodeReused = errors.New("one-time code already redeemed")
	// ErrHandleReused means a refresh handle that had already been rotated
	// was presented again; its whole chain has been revoked.
	ErrHandleReused = errors.New("refresh handle reused; chain revoked")
	// ErrRevoked means the user's sessions were revoked (RevokeUser) after
	// the operation began: nothing it would have written was kept.
	ErrRevoked = errors.New("the user's sessions were revoked meanwhile")
)

// CodeReusedError is RedeemCode's error for a code that was redeemed
// before. It matches ErrCodeReused. Chain names the refresh chain the first
// redemption issued (for RevokeChain), or is empty if it has issued none yet
// (IssueForCode will then refuse to issue one). Revoke the chain: either
// redemption may have been an attacker's.
type CodeReusedError struct {
	Chain string
}

func (e *CodeReusedError) Error() string { return "store: redeem code: " + ErrCodeReused.Error() }

// Is makes errors.Is(err, ErrCodeReused) hold.
func (e *CodeReusedError) Is(target error) bool { return target == ErrCodeReused }

// notFoundError matches ErrNotFound with a message that says which record
// was missing.
type notFoundError string

func (e notFoundError) Error() string        { return "store: " + string(e) + " not found" }
func (e notFoundError) Is(target error) bool { return target == ErrNotFound }

const (
	errCodeNotFound    = notFoundError("one-time code")
	errHandleNotFound  = notFoundError("refresh handle")
	errConsentNotFound = notFoundError("consent")
)

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

// CodeRecord is what a one-time code stands for until the client redeems it.
type CodeRecord struct {
	TenantID        string `json:"tid"`
	ObjectID        string `json:"oid"`
	HomeAccountID   string `json:"homeAccountId"`
	Scope           string `json:"scope"`
	ClientID        string `json:"clientId"`
	RedirectURI     string `json:"redirectUri"`
	ClientChallenge string `json:"clientChallenge"`
	// AccessToken is the token MSAL got when the code was minted, handed out
	// by the redemption: it is seconds old, and keeping it here (sealed,
	// for two minutes) spares the exchange a round trip to the MSAL cache.
	AccessToken string    `json:"at,omitempty"`
	ExpiresOn   time.Time `json:"exp,omitempty"`
	// Epoch is the user's epoch when the sign-in read their token cache.
	Epoch Epoch `json:"epoch"`
}

// HandleRecord is what a refresh handle stands for: whose MSAL cache to use
// and which scope to refresh.
type HandleRecord struct {
	TenantID      string    `json:"tid"`
	ObjectID      string    `json:"oid"`
	HomeAccountID string    `json:"homeAccountId"`
	Scope         string    `json:"scope"`
	Created       time.Time `json:"created"`
	// ClientID is the OAuth client the chain was issued to ("" for
	// /auth/exchange); only that client may refresh or revoke it.
	ClientID string `json:"clientId,omitempty"`
	// Epoch is the user's epoch the chain was issued in.
	Epoch Epoch `json:"epoch"`
	// RotationKey derives each handle's successor (Advance); it never
	// leaves the server, and is sealed with the rest of the record.
	RotationKey []byte `json:"rk,omitempty"`
}

// Sessions keeps sign-in state in Redis: one-time codes, MSAL token caches,
// rotating refresh handles, remembered consent, and markers of completed
// sign-ins. Sign-ins in progress keep nothing here: their state travels
// sealed with the browser, so an anonymous request writes nothing.
//
// A user's keys share the hash tag {T}, T = 16 hex of SHA-256 of
// "<tid>.<oid>", so one script may read and write them together on a
// cluster; the full ids are in the names too, so two users whose tags
// collide still have keys of their own. Codes and handles carry T, so the
// keys they name can be found from them alone. h(x) is hex SHA-256 of x:
// no state, code or handle is stored as it is.
//
//	flowdone:<h(state)>        a completed sign-in's state; until the flow would have expired
//	code:{T}:<h(code)>         hash u = "<tid>.<oid>", e = epoch, d = sealed CodeRecord;
//	                           TTL given; single use
//	codeused:{T}:<h(code)>     tombstone of a redeemed code: "", "!" or a chain id
//	msal:{T}:<tid>.<oid>       sealed MSAL cache of one user; TTL given by the caller
//	rev:{T}                    hash "<tid>.<oid>" -> the user's Epoch (a hash named by the tag
//	                           alone, so a script that knows only a code's tag can check it);
//	                           lives as long as anything issued in it
//	rt:{T}:<chain>             hash of one refresh chain: cur = h(current handle),
//	                           exp = absolute end (Unix ms), ep = epoch, u = user,
//	                           data = sealed HandleRecord (with the key that derives
//	                           successors), t:<h(old handle)> = "<rotated ms> <h(successor)>"
//	                           for the last 32 rotations, old = their order;
//	                           TTL = idle TTL, never past exp
//	rtu:{T}:<tid>.<oid>        sorted set of the user's chain ids by exp (at most 100: a new
//	                           chain past that ends the oldest); TTL = last exp
//	obo:{T}:<tid>.<oid>        the user's on-behalf-of tokens (OBOTokens); deleted by RevokeUser
//	consent:<h(browser)>       hash h(what was approved) -> "<tid>.<oid> <expiry ms> <epoch>":
//	                           the OAuth clients a user approved in one browser; TTL = last expiry
//
// A handle is "<T>.<chain id>.<secret>" and a code "<T>.<secret>"; neither
// T nor the chain id grants anything. Sealed values are sealed under their
// own key name, so a value copied to another key does not open.
type Sessions struct {
	rdb         redis.UniversalClient
	ring        Sealer
	now         func() time.Time
	idleTTL     time.Duration
	lifetime    time.Duration
	codeUsedTTL time.Duration
	grace       time.Duration
}

// SessionsOption configures Sessions.
type SessionsOption func(*Sessions)

// WithSessionsClock sets the clock used for chain lifetimes and timestamps.
func WithSessionsClock(now func() time.Time) SessionsOption {
	return func(s *Sessions) { s.now = now }
}

// WithHandleIdleTTL sets how long an unused refresh handle stays valid.
func WithHandleIdleTTL(d time.Duration) SessionsOption {
	return func(s *Sessions) { s.idleTTL = d }
}

// WithChainLifetime sets how long a chain of refresh handles may live from
// sign-in, however often it rotates.
func WithChainLifetime(d time.Duration) SessionsOption {
	return func(s *Sessions) { s.lifetime = d }
}

// WithCodeUsedTTL sets how long a redeemed code's tombstone is kept, during
// which a second redemption is recognised as reuse.
func WithCodeUsedTTL(d time.Duration) SessionsOption {
	return func(s *Sessions) { s.codeUsedTTL = d }
}

// WithReuseGrace sets how long a rotated handle presented again gets a
// successor instead of revoking its chain (DefaultReuseGrace). 0 turns
// the grace off: every reuse revokes.
func WithReuseGrace(d time.Duration) SessionsOption {
	return func(s *Sessions) { s.grace = d }
}

// NewSessions returns sign-in state over rdb, sealed with ring (not nil).
// It panics if a TTL option is under 1ms or the grace is negative.
func NewSessions(rdb redis.UniversalClient, ring Sealer, opts ...SessionsOption) *Sessions {
	s := &Sessions{
		rdb: rdb, ring: ring, now: time.Now,
		idleTTL: DefaultHandleIdleTTL, lifetime: DefaultChainLifetime, codeUsedTTL: DefaultCodeUsedTTL,
		grace: DefaultReuseGrace,
	}
	for _, o := range opts {
		o(s)
	}
	for _, d := range []time.Duration{s.idleTTL, s.lifetime, s.codeUsedTTL} {
		if d < time.Millisecond {
			// A programming error: Redis would take 0 as "expire now" or
			// "never", and no key here may live forever.
			panic(fmt.Sprintf("store: NewSessions: TTL options must be at least 1ms, got %v", d))
		}
	}
	if s.grace < 0 {
		panic("store: NewSessions: negative reuse grace")
	}
	return s
}

// ReuseGrace is the configured reuse grace.
func (s *Sessions) ReuseGrace() time.Duration { return s.grace }

// --- key names ---

func digest(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// userKeys names the keys of one user: all in the slot of {tag}.
type userKeys struct {
	tag string // 16 hex of h("<tid>.<oid>")
	id  string // "<tid>.<oid>", lower case
}

// keysOf checks a tenant and object id, which become part of key names.
func keysOf(tid, oid string) (userKeys, error) {
	tid, oid = strings.ToLower(tid), strings.ToLower(oid)
	if !valid.LowerGUID(tid) || !valid.LowerGUID(oid) {
		return userKeys{}, errors.New("store: tenant or object id is not a GUID")
	}
	id := tid + "." + oid
	return userKeys{tag: digest(id)[:tagLen], id: id}, nil
}

// keysOfID is keysOf for "<tid>.<oid>".
func keysOfID(id string) (userKeys, error) {
	tid, oid, _ := strings.Cut(id, ".")
	return keysOf(tid, oid)
}

func (u userKeys) slot() string           { return "{" + u.tag + "}:" }
func (u userKeys) msal() string           { return "msal:" + u.slot() + u.id }
func (u userKeys) epoch() string          { return epochKey(u.tag) } // field: u.id
func (u userKeys) chains() string         { return "rtu:" + u.slot() + u.id }
func (u userKeys) obo() string            { return "obo:" + u.slot() + u.id }
func (u userKeys) chain(id string) string { return chainKey(u.tag, id) }

func epochKey(tag string) string          { return "rev:{" + tag + "}" }
func chainKey(tag, chainID string) string { return "rt:{" + tag + "}:" + chainID }
func codeKey(tag, code string) string     { return "code:{" + tag + "}:" + digest(code) }
func codeUsedKey(tag, code string) string { return "codeused:{" + tag + "}:" + digest(code) }
func flowDoneKey(state string) string     { return "flowdone:" + digest(state) }
func consentKey(browser string) string    { return "consent:" + digest(browser) }

func isTag(s string) bool {
	return len(s) == tagLen && strings.Trim(s, "0123456789abcdef") == ""
}

func isRandText(s string, n int) bool {
	return len(s) == n && strings.Trim(s, randTextAlphabet) == ""
}

// checkSecret refuses states and codes too short to be unguessable: their
// hash is all that protects the key name.
func checkSecret(what, s string) error {
	if len(s) < minSecretLen || len(s) > maxSecretLen {
		return fmt.Errorf("store: %s must be %d to %d characters of a ≥128-bit random value", what, minSecretLen, maxSecretLen)
	}
	return nil
}

func checkTTL(what string, ttl time.Duration) error {
	if ttl < time.Millisecond {
		// go-redis treats 0 as "no expiry", which no key here may have.
		return fmt.Errorf("store: %s: TTL must be at least 1ms, got %v", what, ttl)
	}
	return nil
}

// --- sealing ---

func (s *Sessions) sealJSON(name string, v any) ([]byte, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return s.ring.Seal(name, plain)
}

func (s *Sessions) openJSON(name string, sealed []byte, v any) error {
	plain, err := s.ring.Open(name, sealed)
	if err != nil {
		return err
	}
	return json.Unmarshal(plain, v)
}

// scriptReply splits a script's {status, value} reply.
func scriptReply(reply []any) (int64, string) {
	var status int64
	var value string
	if len(reply) > 0 {
		status, _ = reply[0].(int64)
	}
	if len(reply) > 1 {
		value, _ = reply[1].(string)
	}
	return status, value
}

func ms(d time.Duration) string { return fmt.Sprint(d.Milliseconds()) }

// --- completed sign-ins ---

// MarkFlowDone records that the sign-in with this state has completed, for
// ttl (what is left of the flow's life), and reports whether it is the
// first to: a sign-in completes once. The flow itself lives sealed in the
// browser; this marker is written only once Entra has accepted the sign-in,
// so anonymous requests never write one.
func (s *Sessions) MarkFlowDone(ctx context.Context, state string, ttl time.Duration) (bool, error) {
	if err := errors.Join(checkSecret("state", state), checkTTL("mark sign-in done", ttl)); err != nil {
		return false, err
	}
	ok, err := s.rdb.SetNX(ctx, flowDoneKey(state), "1", ttl).Result()
	if err != nil {
		return false, wrap("mark sign-in done", err)
	}
	return ok, nil
}
