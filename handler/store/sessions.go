package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/valid"
	"github.com/redis/go-redis/v9"
)

// Defaults for Sessions.
const (
	DefaultHandleIdleTTL = 14 * 24 * time.Hour
	DefaultChainLifetime = 90 * 24 * time.Hour
	DefaultCodeUsedTTL   = 10 * time.Minute
	minSecretLen         = 22 // 128 bits in base64url; rand.Text gives 26 base32 characters (130 bits)
	maxSecretLen         = 512
	chainIDLen           = 26 // rand.Text
	handleSecretLen      = 26 // rand.Text
	randTextAlphabet     = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
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
// before. It matches ErrCodeReused. ChainID names the refresh chain the first
// redemption issued, or is empty if it has issued none yet (IssueForCode will
// then refuse to issue one). Revoke the chain: either redemption may have
// been an attacker's.
type CodeReusedError struct {
	ChainID string
}

func (e *CodeReusedError) Error() string { return "store: redeem code: " + ErrCodeReused.Error() }

// Is makes errors.Is(err, ErrCodeReused) hold.
func (e *CodeReusedError) Is(target error) bool { return target == ErrCodeReused }

// notFoundError matches ErrNotFound with a message that says what was
// missing (ErrNotFound's own text speaks of tasks).
type notFoundError string

func (e notFoundError) Error() string        { return "store: " + string(e) + " not found" }
func (e notFoundError) Is(target error) bool { return target == ErrNotFound }

const (
	errCodeNotFound    = notFoundError("one-time code")
	errHandleNotFound  = notFoundError("refresh handle")
	errConsentNotFound = notFoundError("consent")
)

// Flow is a sign-in in progress, kept from /authorize until Entra calls back.
// The OAuth front keeps an authorization request waiting for the user's
// consent as a Flow too, with CSRF set and no Verifier, under its own keys
// (SaveConsentRequest), so neither can be taken as the other.
type Flow struct {
	Verifier        string    `json:"verifier"`        // our PKCE verifier towards Entra
	Nonce           string    `json:"nonce"`           // OIDC nonce sent to Entra
	ReturnTo        string    `json:"returnTo"`        // the client's redirect URI, already checked
	ClientID        string    `json:"clientId"`        // the client that started the flow
	ClientState     string    `json:"clientState"`     // the client's state, returned to it unchanged
	ClientChallenge string    `json:"clientChallenge"` // the client's PKCE S256 challenge
	Scope           string    `json:"scope"`           // scopes asked of Entra
	Created         time.Time `json:"created"`
	Binding         string    `json:"binding"` // hash of the browser cookie; the caller compares it
	// CSRF is the hash of the consent form's token (consent flows only).
	CSRF string `json:"csrf,omitempty"`
	// ConsentUser is "<tid>.<oid>" when the consent page was skipped because
	// that user approved the client before in this browser; the sign-in
	// must then be by the same user.
	ConsentUser string `json:"consentUser,omitempty"`
}

// Sealer seals values for Redis: a *seal.Ring, or anything that always uses
// the current ring (such as the Key Vault backed secrets store, whose keys
// rotate while the handler runs).
type Sealer interface {
	Seal(name string, plaintext []byte) ([]byte, error)
	Open(name string, sealed []byte) ([]byte, error)
}

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
}

// Sessions keeps sign-in state in Redis: sign-in flows, one-time codes,
// MSAL token caches and rotating refresh handles.
//
// Keys (h(x) is hex SHA-256 of x; no state, code or handle is stored as it is):
//
//	flow:<h(state)>            sealed Flow; TTL given by the caller; single use
//	authreq:<h(id)>            sealed Flow waiting for consent; TTL given by the caller; single use
//	code:{<h(code)>}           sealed CodeRecord; TTL given by the caller; single use
//	codeused:{<h(code)>}       tombstone of a redeemed code: "", "!" or a chain id
//	msal:<tid>.<oid>           sealed MSAL cache of one user; TTL given by the caller
//	rt:{<chain>}               hash of one refresh chain: cur = h(current handle),
//	                           exp = absolute end (Unix ms), data = sealed HandleRecord;
//	                           TTL = idle TTL, never past exp
//	rt:{<chain>}:<h(handle)>   tombstone of a rotated handle, until exp
//	rtu:<tid>.<oid>            sorted set of the user's chain ids by exp; TTL = last exp
//	consent:<h(browser)>       hash h(what was approved) -> "<tid>.<oid> <expiry ms> <epoch>":
//	                           the OAuth clients a user approved in one browser; TTL = last expiry
//	consentepoch:<tid>.<oid>   how often RevokeUser ran: approvals of another epoch are
//	                           void; TTL = the chain lifetime
//
// A handle is "<chain id>.<secret>", so every key a rotation touches shares
// the chain's hash slot (the braces) and scripts work on a cluster too; the
// chain id alone grants nothing. Sealed values are sealed under their own key
// name, so a value copied to another key does not open.
type Sessions struct {
	rdb         redis.UniversalClient
	ring        Sealer
	now         func() time.Time
	idleTTL     time.Duration
	lifetime    time.Duration
	codeUsedTTL time.Duration
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

// NewSessions returns sign-in state over rdb, sealed with ring (not nil).
// It panics if a TTL option is under 1ms.
func NewSessions(rdb redis.UniversalClient, ring Sealer, opts ...SessionsOption) *Sessions {
	s := &Sessions{
		rdb: rdb, ring: ring, now: time.Now,
		idleTTL: DefaultHandleIdleTTL, lifetime: DefaultChainLifetime, codeUsedTTL: DefaultCodeUsedTTL,
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
	return s
}

// --- key names ---

func digest(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func flowKey(state string) string        { return "flow:" + digest(state) }
func consentRequestKey(id string) string { return "authreq:" + digest(id) }
func codeKey(code string) string         { return "code:{" + digest(code) + "}" }
func codeUsedKey(code string) string     { return "codeused:{" + digest(code) + "}" }
func msalKey(user string) string         { return "msal:" + user }
func consentKey(browser string) string   { return "consent:" + digest(browser) }
func consentEpochKey(user string) string { return "consentepoch:" + user }
func userChainsKey(user string) string   { return "rtu:" + user }
func chainKey(chainID string) string     { return "rt:{" + chainID + "}" }
func tombKey(chainID, handle string) string {
	return chainKey(chainID) + ":" + digest(handle)
}

// user checks a tenant and object id, which become part of key names, and
// returns "<tid>.<oid>" in lower case.
func user(tid, oid string) (string, error) {
	tid, oid = strings.ToLower(tid), strings.ToLower(oid)
	if !valid.LowerGUID(tid) || !valid.LowerGUID(oid) {
		return "", errors.New("store: tenant or object id is not a GUID")
	}
	return tid + "." + oid, nil
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

func isRandText(s string, n int) bool {
	return len(s) == n && strings.Trim(s, randTextAlphabet) == ""
}

// splitHandle returns a handle's chain id, or false if it is not one of ours.
func splitHandle(handle string) (string, bool) {
	chainID, secret, ok := strings.Cut(handle, ".")
	return chainID, ok && isRandText(chainID, chainIDLen) && isRandText(secret, handleSecretLen)
}

func newHandle(chainID string) string { return chainID + "." + rand.Text() }

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

// --- sign-in flows ---

// SaveFlow stores a sign-in flow under its state for ttl.
func (s *Sessions) SaveFlow(ctx context.Context, state string, f Flow, ttl time.Duration) error {
	return s.saveFlow(ctx, "flow", "state", state, flowKey(state), f, ttl)
}

// SaveConsentRequest stores an authorization request waiting for the
// user's consent under its random id for ttl.
func (s *Sessions) SaveConsentRequest(ctx context.Context, id string, f Flow, ttl time.Duration) error {
	return s.saveFlow(ctx, "consent request", "request id", id, consentRequestKey(id), f, ttl)
}

// saveFlow stamps f with its creation time, unless set, and saves it once.
func (s *Sessions) saveFlow(ctx context.Context, what, secretName, secret, key string, f Flow, ttl time.Duration) error {
	if f.Created.IsZero() {
		f.Created = s.now().UTC()
	}
	return s.saveOnce(ctx, what, secretName, secret, key, f, ttl)
}

// saveOnce seals v under key for ttl, unless the key exists: what the
// secret names is written once. what names the record, secretName the
// secret, in errors.
func (s *Sessions) saveOnce(ctx context.Context, what, secretName, secret, key string, v any, ttl time.Duration) error {
	if err := errors.Join(checkSecret(secretName, secret), checkTTL("save "+what, ttl)); err != nil {
		return err
	}
	sealed, err := s.sealJSON(key, v)
	if err != nil {
		return fmt.Errorf("store: save %s: %w", what, err)
	}
	ok, err := s.rdb.SetNX(ctx, key, sealed, ttl).Result()
	if err != nil {
		return wrap("save "+what, err)
	}
	if !ok {
		return fmt.Errorf("store: save %s: %s already in use", what, secretName)
	}
	return nil
}

// TakeFlow returns the flow saved under state and deletes it, so a state
// works once. It returns an error matching ErrNotFound if there is none.
func (s *Sessions) TakeFlow(ctx context.Context, state string) (Flow, error) {
	return s.takeFlow(ctx, "sign-in flow", state, flowKey(state))
}

// TakeConsentRequest is TakeFlow for what SaveConsentRequest stored.
func (s *Sessions) TakeConsentRequest(ctx context.Context, id string) (Flow, error) {
	return s.takeFlow(ctx, "consent request", id, consentRequestKey(id))
}

func (s *Sessions) takeFlow(ctx context.Context, what, secret, key string) (Flow, error) {
	if checkSecret(what, secret) != nil {
		return Flow{}, notFoundError(what)
	}
	sealed, err := takeScript.Run(ctx, s.rdb, []string{key}).Text()
	if errors.Is(err, redis.Nil) {
		return Flow{}, notFoundError(what)
	}
	if err != nil {
		return Flow{}, wrap("take "+what, err)
	}
	var f Flow
	if err := s.openJSON(key, []byte(sealed), &f); err != nil {
		return Flow{}, fmt.Errorf("store: take %s: %w", what, err)
	}
	return f, nil
}

// takeScript is GETDEL, which Redis 6.0 lacks. KEYS: the key.
var takeScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then redis.call('DEL', KEYS[1]) end
return v
`)

// --- one-time codes ---

// SaveCode stores what a one-time code stands for, for ttl.
func (s *Sessions) SaveCode(ctx context.Context, code string, r CodeRecord, ttl time.Duration) error {
	return s.saveOnce(ctx, "code", "code", code, codeKey(code), r, ttl)
}

// RedeemCode returns what a code stands for and deletes it, leaving a
// tombstone so that a second redemption is recognised: it gets a
// *CodeReusedError (matching ErrCodeReused). An unknown or expired code gets
// an error matching ErrNotFound. One round trip.
func (s *Sessions) RedeemCode(ctx context.Context, code string) (CodeRecord, error) {
	if checkSecret("code", code) != nil {
		return CodeRecord{}, errCodeNotFound
	}
	key := codeKey(code)
	reply, err := redeemScript.Run(ctx, s.rdb, []string{key, codeUsedKey(code)},
		s.codeUsedTTL.Milliseconds()).Slice()
	if err != nil {
		return CodeRecord{}, wrap("redeem code", err)
	}
	status, value := scriptReply(reply)
	switch status {
	case redeemOK:
		var r CodeRecord
		if err := s.openJSON(key, []byte(value), &r); err != nil {
			return CodeRecord{}, fmt.Errorf("store: redeem code: %w", err)
		}
		return r, nil
	case redeemReused:
		if value == codeReusedMark {
			value = ""
		}
		return CodeRecord{}, &CodeReusedError{ChainID: value}
	default:
		return CodeRecord{}, errCodeNotFound
	}
}

// Results of redeemScript; 0 means there is no such code.
const (
	redeemOK     = 1
	redeemReused = 2
)

// redeemScript takes a code and leaves a tombstone in its place. On a second
// redemption it returns the tombstone, marking it "!" if nothing has been
// issued yet so that the first redemption's IssueForCode refuses.
// KEYS: code, tombstone. ARGV: tombstone TTL (ms).
var redeemScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], '', 'PX', ARGV[1])
  return {1, v}
end
local t = redis.call('GET', KEYS[2])
if not t then return {0} end
if t == '' then redis.call('SET', KEYS[2], '!', 'XX', 'KEEPTTL') end
return {2, t}
`)

// SetCodeChain records on a redeemed code's tombstone the chain its
// redemption issued, so that a later reuse of the code can revoke it. It
// returns ErrCodeReused if the code was redeemed again in the meantime.
// IssueForCode does this in the same round trip as creating the chain.
func (s *Sessions) SetCodeChain(ctx context.Context, code, chainID string) error {
	if err := checkSecret("code", code); err != nil {
		return err
	}
	res, err := markCodeScript.Run(ctx, s.rdb, []string{codeUsedKey(code)}, chainID).Int()
	if err != nil {
		return wrap("set code chain", err)
	}
	return markCodeResult(res)
}

func markCodeResult(res int) error {
	switch res {
	case 1:
		return nil
	case -1:
		return &CodeReusedError{}
	default:
		return errors.New("store: set code chain: the code was not redeemed, or too long ago")
	}
}

// markCodeScript writes a chain id on a fresh tombstone, keeping its TTL.
// KEYS: tombstone. ARGV: chain id. Returns 1 if written, -1 if the code was
// redeemed again (or already has a chain), 0 if there is no tombstone.
var markCodeScript = redis.NewScript(`
local t = redis.call('GET', KEYS[1])
if not t then return 0 end
if t ~= '' then return -1 end
redis.call('SET', KEYS[1], ARGV[1], 'XX', 'KEEPTTL')
return 1
`)

// --- MSAL token caches ---

// LoadMSAL returns a user's MSAL cache, and false if there is none. A cache
// that does not open (for example, sealed with a retired key) is an error
// matching seal.ErrOpen.
func (s *Sessions) LoadMSAL(ctx context.Context, tid, oid string) ([]byte, bool, error) {
	u, err := user(tid, oid)
	if err != nil {
		return nil, false, err
	}
	key := msalKey(u)
	sealed, err := s.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, wrap("load MSAL cache", err)
	}
	data, err := s.ring.Open(key, sealed)
	if err != nil {
		return nil, false, fmt.Errorf("store: load MSAL cache: %w", err)
	}
	return data, true, nil
}

// SaveMSAL stores a user's MSAL cache for ttl (the refresh token's lifetime).
func (s *Sessions) SaveMSAL(ctx context.Context, tid, oid string, data []byte, ttl time.Duration) error {
	u, err := user(tid, oid)
	if err != nil {
		return err
	}
	if err := checkTTL("save MSAL cache", ttl); err != nil {
		return err
	}
	key := msalKey(u)
	sealed, err := s.ring.Seal(key, data)
	if err != nil {
		return fmt.Errorf("store: save MSAL cache: %w", err)
	}
	return wrap("save MSAL cache", s.rdb.Set(ctx, key, sealed, ttl).Err())
}

// DeleteMSAL deletes a user's MSAL cache.
func (s *Sessions) DeleteMSAL(ctx context.Context, tid, oid string) error {
	u, err := user(tid, oid)
	if err != nil {
		return err
	}
	return wrap("delete MSAL cache", s.rdb.Del(ctx, msalKey(u)).Err())
}

// --- refresh handles ---

// NewHandle starts a chain of refresh handles for a signed-in user and
// returns its first handle and the chain's id. One round trip.
func (s *Sessions) NewHandle(ctx context.Context, rec HandleRecord) (handle, chainID string, err error) {
	return s.issue(ctx, rec, "")
}

// IssueForCode is NewHandle for the redemption of code: in the same round
// trip it records the chain on the code's tombstone. If the code was
// redeemed again since RedeemCode, it revokes the new chain and returns an
// error matching ErrCodeReused.
func (s *Sessions) IssueForCode(ctx context.Context, code string, rec HandleRecord) (handle, chainID string, err error) {
	if err := checkSecret("code", code); err != nil {
		return "", "", err
	}
	return s.issue(ctx, rec, code)
}

func (s *Sessions) issue(ctx context.Context, rec HandleRecord, code string) (string, string, error) {
	u, err := user(rec.TenantID, rec.ObjectID)
	if err != nil {
		return "", "", err
	}
	now := s.now()
	if rec.Created.IsZero() {
		rec.Created = now.UTC()
	}
	chainID := rand.Text()
	handle := newHandle(chainID)
	ck := chainKey(chainID)
	sealed, err := s.sealJSON(ck, rec)
	if err != nil {
		return "", "", fmt.Errorf("store: issue handle: %w", err)
	}
	exp := now.Add(s.lifetime).UnixMilli()
	ttl := min(s.idleTTL, s.lifetime).Milliseconds()

	// A plain pipeline, not MULTI: the keys live in different hash slots.
	// Each script is atomic on its own; a chain whose index entry failed is
	// never handed out, and expires.
	var created, indexed, marked *redis.Cmd
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		// Eval rather than Run: Run's retry on NOSCRIPT cannot work in a pipeline.
		created = createChainScript.Eval(ctx, p, []string{ck}, digest(handle), exp, sealed, ttl)
		indexed = indexChainScript.Eval(ctx, p, []string{userChainsKey(u)}, exp, chainID, now.UnixMilli())
		if code != "" {
			marked = markCodeScript.Eval(ctx, p, []string{codeUsedKey(code)}, chainID)
		}
		return nil
	})
	if err == nil {
		err = errors.Join(created.Err(), indexed.Err())
	}
	if err != nil {
		s.revokeQuietly(ctx, ck)
		return "", "", wrap("issue handle", err)
	}
	if n, _ := created.Int(); n != 1 {
		return "", "", errors.New("store: issue handle: chain id already in use")
	}
	if marked != nil {
		res, err := marked.Int()
		if err == nil {
			err = markCodeResult(res)
		} else {
			err = wrap("issue handle", err)
		}
		if err != nil {
			s.revokeQuietly(ctx, ck)
			return "", "", err
		}
	}
	return handle, chainID, nil
}

// revokeQuietly deletes a chain that must not be used after a failure. It
// is best effort: if it fails too, the chain was never handed out and
// expires on its own.
func (s *Sessions) revokeQuietly(ctx context.Context, ck string) {
	// Even if the request was cancelled: the chain must not outlive it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	s.rdb.Del(ctx, ck)
}

// createChainScript creates a chain. KEYS: chain. ARGV: h(first handle),
// exp (Unix ms), sealed record, TTL (ms). Returns 0 if the chain exists.
var createChainScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'cur', ARGV[1], 'exp', ARGV[2], 'data', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`)

// indexChainScript adds a chain to its user's index, drops chains past
// their absolute end, and keeps the index until its last chain ends.
// KEYS: index. ARGV: exp (Unix ms), chain id, now (Unix ms).
var indexChainScript = redis.NewScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local ttl = tonumber(last[2]) - tonumber(ARGV[3])
if ttl < 1 then ttl = 1 end
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', ttl))
return 1
`)

// Rotate exchanges a refresh handle for a new one of the same chain and
// returns what the chain stands for. The old handle stops working. Showing
// an already rotated handle again revokes the chain and returns
// ErrHandleReused; an unknown, expired or revoked handle gets an error
// matching ErrNotFound. One round trip.
func (s *Sessions) Rotate(ctx context.Context, handle string) (string, HandleRecord, error) {
	chainID, ok := splitHandle(handle)
	if !ok {
		return "", HandleRecord{}, errHandleNotFound
	}
	next := newHandle(chainID)
	rec, err := s.useHandle(ctx, "rotate handle", chainID, handle, digest(next))
	if err != nil {
		return "", HandleRecord{}, err
	}
	return next, rec, nil
}

// useHandle runs handleScript for a handle of chainID: it rotates to
// nextDigest, or only looks when nextDigest is "".
func (s *Sessions) useHandle(ctx context.Context, doing, chainID, handle, nextDigest string) (HandleRecord, error) {
	ck := chainKey(chainID)
	reply, err := handleScript.Run(ctx, s.rdb, []string{ck, tombKey(chainID, handle)},
		digest(handle), s.now().UnixMilli(), s.idleTTL.Milliseconds(), nextDigest).Slice()
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
// chain on to it, leaving a tombstone for the old one until the chain's
// absolute end. A tombstoned handle coming back revokes the chain (reuse),
// whether rotating or only looking. The new handle lives for the idle TTL
// but never past the end.
// KEYS: chain, tombstone of the presented handle.
// ARGV: h(presented), now (Unix ms), idle TTL (ms), h(new) or "" to only look.
// Returns {0} unknown, {1, sealed record} valid (rotated if asked), {2} reuse (chain revoked).
var handleScript = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'cur', 'exp', 'data')
if not f[1] then return {0} end
if f[1] ~= ARGV[1] then
  if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('DEL', KEYS[1], KEYS[2])
    return {2}
  end
  return {0}
end
local left = tonumber(f[2]) - tonumber(ARGV[2])
if left < 1 then
  redis.call('DEL', KEYS[1])
  return {0}
end
if ARGV[4] ~= '' then
  local ttl = math.min(tonumber(ARGV[3]), left)
  redis.call('SET', KEYS[2], '1', 'PX', string.format('%.0f', left))
  redis.call('HSET', KEYS[1], 'cur', ARGV[4])
  redis.call('PEXPIRE', KEYS[1], string.format('%.0f', ttl))
end
return {1, f[3]}
`)

// PeekHandle returns what a current handle stands for without rotating it,
// so a caller can get a token first and Rotate only once that worked. Like
// Rotate, it treats an already rotated handle as reuse: it revokes the
// chain and returns ErrHandleReused. One round trip.
func (s *Sessions) PeekHandle(ctx context.Context, handle string) (HandleRecord, error) {
	chainID, ok := splitHandle(handle)
	if !ok {
		return HandleRecord{}, errHandleNotFound
	}
	return s.useHandle(ctx, "look up handle", chainID, handle, "")
}

// Revoke ends the chain of a handle, current or rotated (logout). It
// returns an error matching ErrNotFound if the handle is unknown.
func (s *Sessions) Revoke(ctx context.Context, handle string) error {
	chainID, ok := splitHandle(handle)
	if !ok {
		return errHandleNotFound
	}
	n, err := revokeScript.Run(ctx, s.rdb, []string{chainKey(chainID), tombKey(chainID, handle)},
		digest(handle)).Int()
	if err != nil {
		return wrap("revoke handle", err)
	}
	if n == 0 {
		return errHandleNotFound
	}
	return nil
}

// revokeScript deletes a chain if the handle belongs to it: the chain's
// current handle or one with a tombstone. Knowing a chain id is not enough.
// KEYS: chain, tombstone. ARGV: h(handle). Returns 1 if revoked.
var revokeScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'cur') == ARGV[1] or redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
`)

// RevokeChain ends a chain by id, for example the one a reused code issued.
// Revoking a chain that does not exist is not an error.
func (s *Sessions) RevokeChain(ctx context.Context, chainID string) error {
	if !isRandText(chainID, chainIDLen) {
		return errors.New("store: revoke chain: malformed chain id")
	}
	return wrap("revoke chain", s.rdb.Del(ctx, chainKey(chainID)).Err())
}

// RevokeUser ends every chain of a user and deletes the user's MSAL cache
// (sign-out everywhere, or an admin's revocation). It returns how many live
// chains it ended.
func (s *Sessions) RevokeUser(ctx context.Context, tid, oid string) (int, error) {
	u, err := user(tid, oid)
	if err != nil {
		return 0, err
	}
	index := userChainsKey(u)
	chains, err := s.rdb.ZRange(ctx, index, 0, -1).Result()
	if err != nil {
		return 0, wrap("revoke user", err)
	}
	var dels []*redis.IntCmd
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, c := range chains {
			dels = append(dels, p.Del(ctx, chainKey(c)))
		}
		if len(chains) > 0 {
			// ZREM what was read rather than DEL the index, so a chain
			// created meanwhile stays listed.
			p.ZRem(ctx, index, toAny(chains)...)
		}
		p.Del(ctx, msalKey(u))
		// Approvals of OAuth clients sit under browser ids, which cannot be
		// found from the user: a new epoch voids every earlier approval. A
		// counter, not a time: instances' clocks differ.
		p.Incr(ctx, consentEpochKey(u))
		p.PExpire(ctx, consentEpochKey(u), s.lifetime)
		return nil
	})
	if err != nil {
		return 0, wrap("revoke user", err)
	}
	n := 0
	for _, d := range dels {
		n += int(d.Val())
	}
	return n, nil
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
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

// --- remembered consent ---

// RememberConsent records that the user (tid, oid) approved clientID (or
// whatever names what was approved: the caller decides) in the
// browser identified by browserID (a random secret in a cookie), for ttl.
func (s *Sessions) RememberConsent(ctx context.Context, browserID, clientID, tid, oid string, ttl time.Duration) error {
	u, err := user(tid, oid)
	if err != nil {
		return err
	}
	if err := errors.Join(checkSecret("browser id", browserID), checkTTL("remember consent", ttl)); err != nil {
		return err
	}
	if ttl > s.lifetime {
		// RevokeUser's epoch must outlive every approval it voids.
		return fmt.Errorf("store: remember consent: TTL %v is longer than the chain lifetime %v", ttl, s.lifetime)
	}
	epoch, err := s.consentEpoch(ctx, u)
	if err != nil {
		return err
	}
	key := consentKey(browserID)
	// The key lives as long as its newest approval; older fields carry
	// their own expiry, checked on read. A RevokeUser between reading the
	// epoch and writing leaves this approval in the old epoch: void.
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, digest(clientID), fmt.Sprintf("%s %d %d", u, s.now().Add(ttl).UnixMilli(), epoch))
		p.PExpire(ctx, key, ttl)
		return nil
	})
	if err != nil {
		return wrap("remember consent", err)
	}
	return nil
}

// consentEpoch is the user's current consent epoch (0 before any
// revocation).
func (s *Sessions) consentEpoch(ctx context.Context, u string) (int64, error) {
	n, err := s.rdb.Get(ctx, consentEpochKey(u)).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, wrap("read consent epoch", err)
	}
	return n, nil
}

// ConsentedUser returns "<tid>.<oid>" of the user who approved clientID in
// the browser identified by browserID, or an error matching ErrNotFound if
// no approval is remembered.
func (s *Sessions) ConsentedUser(ctx context.Context, browserID, clientID string) (string, error) {
	if checkSecret("browser id", browserID) != nil {
		return "", errConsentNotFound
	}
	v, err := s.rdb.HGet(ctx, consentKey(browserID), digest(clientID)).Result()
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
	exp, err1 := strconv.ParseInt(parts[1], 10, 64)
	epoch, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || s.now().UnixMilli() >= exp {
		return "", errConsentNotFound
	}
	current, err := s.consentEpoch(ctx, parts[0])
	if err != nil {
		return "", err
	}
	if epoch != current {
		return "", errConsentNotFound
	}
	return parts[0], nil
}
