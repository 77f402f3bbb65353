package grants

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/store"
)

// Defaults for Records.
const (
	DefaultHandleIdleTTL = 14 * 24 * time.Hour
	DefaultChainLifetime = store.DefaultChainLifetime
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
	chainIDLen       = 26 // rand.Text
	handleSecretLen  = 26 // rand.Text
	randTextAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	// codeReusedMark on a tombstone means a second redemption came before
	// the first issued a chain ("" means redeemed, nothing issued yet).
	codeReusedMark = "!"
)

var (
	// ErrCodeReused means a one-time code was redeemed before. RedeemCode
	// returns it as a *CodeReusedError.
	ErrCodeReused = errors.New("one-time code already redeemed")
	// ErrHandleReused means a refresh handle that had already been rotated
	// was presented again; its whole chain has been revoked.
	ErrHandleReused = errors.New("refresh handle reused; chain revoked")
)

// CodeReusedError is RedeemCode's error for a code that was redeemed
// before. It matches ErrCodeReused. Chain names the refresh chain the first
// redemption issued (for RevokeChain), or is empty if it has issued none yet
// (IssueForCode will then refuse to issue one). Revoke the chain: either
// redemption may have been an attacker's.
type CodeReusedError struct {
	Chain string
}

func (e *CodeReusedError) Error() string { return "grants: redeem code: " + ErrCodeReused.Error() }

// Is makes errors.Is(err, ErrCodeReused) hold.
func (e *CodeReusedError) Is(target error) bool { return target == ErrCodeReused }

// Not found: they match store.ErrNotFound.
const (
	errCodeNotFound   = store.NotFoundError("one-time code")
	errHandleNotFound = store.NotFoundError("refresh handle")
)

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
	Epoch store.Epoch `json:"epoch"`
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
	Epoch store.Epoch `json:"epoch"`
	// RotationKey derives each handle's successor (Advance); it never
	// leaves the server, and is sealed with the rest of the record.
	RotationKey []byte `json:"rk,omitempty"`
}

// Records keeps one-time codes and refresh chains in Redis, in each user's
// keyspace (store.UserKeys: see store.Sessions for the key layout), every
// write checking the user's revocation epoch in the same script.
//
// A handle is "<T>.<chain id>.<secret>" and a code "<T>.<secret>"; neither
// T nor the chain id grants anything. Sealed values are sealed under their
// own key name, so a value copied to another key does not open.
type Records struct {
	rdb         redis.UniversalClient
	ring        store.Sealer
	now         func() time.Time
	idleTTL     time.Duration
	lifetime    time.Duration
	codeUsedTTL time.Duration
	grace       time.Duration
}

// RecordsOption configures Records.
type RecordsOption func(*Records)

// WithClock sets the clock used for chain lifetimes and timestamps.
func WithClock(now func() time.Time) RecordsOption {
	return func(s *Records) { s.now = now }
}

// WithHandleIdleTTL sets how long an unused refresh handle stays valid.
func WithHandleIdleTTL(d time.Duration) RecordsOption {
	return func(s *Records) { s.idleTTL = d }
}

// WithChainLifetime sets how long a chain of refresh handles may live from
// sign-in, however often it rotates: at most store.DefaultChainLifetime,
// how long the store keeps revocation epochs.
func WithChainLifetime(d time.Duration) RecordsOption {
	return func(s *Records) { s.lifetime = d }
}

// WithReuseGrace sets how long a rotated handle presented again gets a
// successor instead of revoking its chain (DefaultReuseGrace). 0 turns
// the grace off: every reuse revokes.
func WithReuseGrace(d time.Duration) RecordsOption {
	return func(s *Records) { s.grace = d }
}

// NewRecords returns codes and chains over rdb, sealed with ring (not nil).
// It panics if a TTL option is under 1ms or the grace is negative.
func NewRecords(rdb redis.UniversalClient, ring store.Sealer, opts ...RecordsOption) *Records {
	s := &Records{
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
			panic(fmt.Sprintf("grants: NewRecords: TTL options must be at least 1ms, got %v", d))
		}
	}
	if s.grace < 0 {
		panic("grants: NewRecords: negative reuse grace")
	}
	if s.lifetime > store.DefaultChainLifetime {
		// The store keeps revocation epochs that long: a chain outliving
		// its user's epoch would escape a revocation.
		panic(fmt.Sprintf("grants: NewRecords: chain lifetime %v is longer than the revocation epochs' %v", s.lifetime, store.DefaultChainLifetime))
	}
	return s
}

// ReuseGrace is the configured reuse grace.
func (s *Records) ReuseGrace() time.Duration { return s.grace }

func codeKey(tag, code string) string     { return "code:{" + tag + "}:" + store.Digest(code) }
func codeUsedKey(tag, code string) string { return "codeused:{" + tag + "}:" + store.Digest(code) }

func isRandText(s string, n int) bool {
	return len(s) == n && strings.Trim(s, randTextAlphabet) == ""
}

func (s *Records) sealJSON(name string, v any) ([]byte, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return s.ring.Seal(name, plain)
}

func (s *Records) openJSON(name string, sealed []byte, v any) error {
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
