// Package oauthclients knows who is asking: the OAuth clients of the
// authorization-server front, either registered through RFC 7591 dynamic
// client registration or identified by a Client ID Metadata Document
// (draft-ietf-oauth-client-id-metadata-document, used by MCP 2025-11-25).
//
// Every client is public: it authenticates with PKCE, never with a secret,
// so its token_endpoint_auth_method is always "none" and nothing stored here
// is secret. Registered clients live in Redis:
//
//	oauthclients:{pending}        hash client_id -> JSON of the Client: registrations
//	                              not used yet, at most Options.MaxPendingRegistrations,
//	                              each for UnusedRegistrationTTL at most
//	oauthclients:{pending}:order  sorted set client_id -> registration time (Unix ms):
//	                              which pending ones are oldest
//	                              (both keys expire UnusedRegistrationTTL after the
//	                              last registration: everything in them is older then)
//	oauthclient:<client_id>       JSON of the Client once Confirm ran (its first
//	                              sign-in); RegistrationTTL, refreshed by Lookup. Older
//	                              versions stored unused ones here too, for a day.
//	oauthclients:user:<tid>.<oid> sorted set client_id -> first sign-in (Unix ms): the
//	                              registrations this user's sign-ins took out of the
//	                              pending ones, at most MaxConfirmedPerUser (one more
//	                              ends the oldest); RegistrationTTL from the last one
//
// Metadata documents are fetched over https from public addresses only and
// cached in memory when valid (see Options.DocumentTTL for why not in
// Redis); failed and invalid ones are never cached.
//
// Refusals are *oautherr.Error with oautherr's codes: InvalidRedirectURI and
// InvalidClientMetadata (RFC 7591 §3.2.2) for a registration, InvalidClient
// for a client_id that names no usable client. Each Description is safe to
// show the client: it names fields and reasons, never addresses we
// resolved; the cause, if any, is for logs.
package oauthclients

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/oautherr"
	"github.com/entra-mcp/functions-mcp/handler/store"
)

// Where a client's metadata came from (Client.Source).
const (
	SourceRegistered       = "registered"
	SourceMetadataDocument = "metadata-document"
)

// Defaults for Options.
const (
	DefaultRegistrationTTL    = 90 * 24 * time.Hour
	DefaultUnusedTTL          = 24 * time.Hour
	DefaultMaxPending         = 2000
	DefaultFetchTimeout       = 5 * time.Second
	DefaultConnectTimeout     = 2 * time.Second
	DefaultHeaderTimeout      = 3 * time.Second
	DefaultMaxDocumentBytes   = 16 << 10
	DefaultDocumentTTL        = 10 * time.Minute
	DefaultMaxDocumentTTL     = time.Hour
	DefaultMaxCachedDocuments = 1000
)

// MaxStoredClientBytes caps what a registration stores in Redis (its
// metadata as JSON): real clients need a few hundred bytes.
const MaxStoredClientBytes = 4 << 10

// MaxRegistrationBytes caps a registration request body. Callers should
// stop reading the HTTP body there (http.MaxBytesReader); Register refuses
// anything longer.
const MaxRegistrationBytes = 16 << 10

const (
	keyPrefix = "oauthclient:"
	// The pending registrations: one hash tag, so that one script may
	// add, age out and evict in both keys (one hash slot on a cluster).
	pendingKey      = "oauthclients:{pending}"
	pendingOrderKey = "oauthclients:{pending}:order"
	// userKeyPrefix names the registrations a user took out of the pending
	// ones (see Confirm).
	userKeyPrefix = "oauthclients:user:"
	// MaxConfirmedPerUser bounds the registrations one user's sign-ins
	// keep: a sign-in with one more ends the oldest. A signed-in user who
	// scripts sign-ins with fresh registrations would otherwise keep one
	// for 90 days per sign-in. (Refresh chains are bounded alike, at 100
	// per user, so no user keeps more clients in use than that.)
	MaxConfirmedPerUser = 100
	clientIDLen         = 26 // rand.Text: 130 bits in base32
	// evictionLogEvery spaces the log lines about evicted registrations:
	// under a flood every registration evicts one.
	evictionLogEvery = time.Minute
	// minDocumentTTL is the least time a valid document stays cached,
	// whatever Cache-Control says: a working client's no-store must not
	// make each of its requests cost a fetch. (A failing one pays for
	// its retries from its rate limit instead.)
	minDocumentTTL = time.Minute
)

// Client is an OAuth client's registered metadata. Its JSON form is the
// RFC 7591 registration response (Source is not part of it).
type Client struct {
	ClientID                string   `json:"client_id"`
	ClientIDIssuedAt        int64    `json:"client_id_issued_at,omitempty"` // Unix seconds; registered clients only
	ClientName              string   `json:"client_name,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	LogoURI                 string   `json:"logo_uri,omitempty"`
	RedirectURIs            []string `json:"redirect_uris"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"` // always "none": public clients
	Source                  string   `json:"-"`                          // SourceRegistered or SourceMetadataDocument

	// pending: Lookup found it among the registrations not used yet, so
	// Confirm must move it out of them.
	pending bool
}

// AllowsGrant reports whether the client registered the grant type.
func (c Client) AllowsGrant(grantType string) bool { return slices.Contains(c.GrantTypes, grantType) }

// clone copies the slices, so a caller that changes the Client it was given
// does not change the cached one.
func (c Client) clone() Client {
	c.RedirectURIs = slices.Clone(c.RedirectURIs)
	c.GrantTypes = slices.Clone(c.GrantTypes)
	c.ResponseTypes = slices.Clone(c.ResponseTypes)
	return c
}

func metadataError(format string, a ...any) *oautherr.Error {
	return &oautherr.Error{Code: oautherr.InvalidClientMetadata, Description: fmt.Sprintf(format, a...)}
}

func redirectError(format string, a ...any) *oautherr.Error {
	return &oautherr.Error{Code: oautherr.InvalidRedirectURI, Description: fmt.Sprintf(format, a...)}
}

// unknownClient is Lookup's answer for a client_id we never issued, or
// whose registration expired. A new value each time: callers may change it.
func unknownClient() *oautherr.Error {
	return &oautherr.Error{Code: oautherr.InvalidClient, Description: "unknown client"}
}

// Options configures a Registry. Only Redis is required.
type Options struct {
	// Redis holds registered clients.
	Redis redis.UniversalClient

	// Now is the clock (default time.Now).
	Now func() time.Time

	// RegistrationTTL is how long a registered client that has been used
	// (Confirm) lives without being looked up (default
	// DefaultRegistrationTTL).
	RegistrationTTL time.Duration

	// UnusedRegistrationTTL is how long a registration lives until its
	// first use (default DefaultUnusedTTL). Anyone may register, so
	// registrations nobody signs in with must not pile up in Redis.
	UnusedRegistrationTTL time.Duration

	// MaxPendingRegistrations caps the registrations not used yet (default
	// DefaultMaxPending). A registration beyond it evicts the oldest
	// unused one rather than being refused: anyone may register, and a
	// flood must cost the flooder its own oldest registrations, not the
	// next real client its new one. A real client signs in within minutes
	// of registering, and its registration leaves the budget then
	// (Confirm). In Redis, at most this times MaxStoredClientBytes of
	// metadata: 2000 × 4 KiB = 8 MiB by default.
	MaxPendingRegistrations int

	// AllowLoopback lets metadata documents be fetched from loopback
	// addresses, over https or plain http: dev mode and tests only. Without
	// it, only https from public addresses.
	AllowLoopback bool

	// ExtraRedirectSchemes lists custom URI schemes allowed in redirect URIs
	// although they contain no dot (such as "cursor"), as an operator's
	// deliberate exception to RFC 8252 §7.1. Lower case.
	ExtraRedirectSchemes []string

	// TLSConfig is the TLS configuration for fetching metadata documents
	// (nil: the system's roots). Tests use it to trust a test server.
	TLSConfig *tls.Config

	// Resolver resolves metadata document hosts (default net.DefaultResolver).
	Resolver Resolver

	// Dial opens a connection to an address already checked: always an IP
	// and port, never a host name. The default is a net.Dialer whose Control
	// checks the address once more right before connecting; a Dial given
	// here replaces that last check, so it is for tests, which use it to see
	// whether a dial was attempted.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)

	// FetchTimeout caps the whole fetch of a metadata document: resolving,
	// connecting, TLS and reading (default DefaultFetchTimeout).
	FetchTimeout time.Duration

	// ConnectTimeout caps resolving a document's host and connecting to
	// it, and also the TLS handshake (default DefaultConnectTimeout);
	// HeaderTimeout caps the wait for the response headers once the
	// request is sent (default DefaultHeaderTimeout). Both are within
	// FetchTimeout: a server that answers slowly gives its fetch slot up
	// sooner.
	ConnectTimeout time.Duration
	HeaderTimeout  time.Duration

	// MaxDocumentBytes caps a metadata document (default
	// DefaultMaxDocumentBytes). The draft suggests 5 KB, but documents of
	// real clients have been seen above it, and 16 KiB costs nothing.
	MaxDocumentBytes int64

	// DocumentTTL is how long a fetched document is cached when its
	// response has no Cache-Control max-age (default DefaultDocumentTTL);
	// MaxDocumentTTL caps max-age (default DefaultMaxDocumentTTL); no cache
	// time is under one minute. Documents are cached in memory, per
	// instance, rather than in Redis: they are public and cheap to fetch
	// again, and Redis should not hold data and key names that any party on
	// the internet chooses.
	DocumentTTL    time.Duration
	MaxDocumentTTL time.Duration

	// MaxCachedDocuments bounds the cache of documents (default
	// DefaultMaxCachedDocuments). Only valid documents are cached: the draft
	// forbids caching error responses and invalid documents, so a client
	// that fixes its document is accepted on its next request.
	MaxCachedDocuments int

	// Logger gets a line for every refused or failed document fetch
	// (default: discard).
	Logger *slog.Logger
}

// Resolver resolves host names; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Registry finds clients: registered ones in Redis, metadata documents on
// the web (through its documentFetcher). It is safe for concurrent use.
type Registry struct {
	rdb          redis.UniversalClient
	now          func() time.Time
	ttl          time.Duration
	unusedTTL    time.Duration
	maxPending   int
	extraSchemes []string
	log          *slog.Logger
	docs         *documentFetcher

	// Evicted registrations not logged yet, and when they last were.
	evictMu     sync.Mutex
	evicted     int
	evictLogged time.Time
}

// New returns a Registry. It fails on options no deployment should have.
func New(opts Options) (*Registry, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	r := &Registry{
		rdb:          opts.Redis,
		now:          opts.Now,
		ttl:          orDefault(opts.RegistrationTTL, DefaultRegistrationTTL),
		unusedTTL:    orDefault(opts.UnusedRegistrationTTL, DefaultUnusedTTL),
		maxPending:   orDefault(opts.MaxPendingRegistrations, DefaultMaxPending),
		extraSchemes: slices.Clone(opts.ExtraRedirectSchemes),
		log:          opts.Logger,
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.unusedTTL > r.ttl {
		return nil, errors.New("oauthclients: UnusedRegistrationTTL is longer than RegistrationTTL")
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.docs = newDocumentFetcher(opts, r.now, r.log)
	return r, nil
}

// check refuses options no deployment should have.
func (opts Options) check() error {
	if opts.Redis == nil {
		return errors.New("oauthclients: Options.Redis is required")
	}
	for _, d := range []time.Duration{opts.RegistrationTTL, opts.UnusedRegistrationTTL, opts.FetchTimeout,
		opts.ConnectTimeout, opts.HeaderTimeout, opts.DocumentTTL, opts.MaxDocumentTTL} {
		if d < 0 {
			return fmt.Errorf("oauthclients: negative duration %v in Options", d)
		}
	}
	if opts.MaxDocumentBytes < 0 || opts.MaxCachedDocuments < 0 || opts.MaxPendingRegistrations < 0 {
		return errors.New("oauthclients: negative limit in Options")
	}
	for _, s := range opts.ExtraRedirectSchemes {
		if s == "" || s != strings.ToLower(s) || s == "http" || s == "https" || strings.ContainsAny(s, ":/") {
			return fmt.Errorf("oauthclients: ExtraRedirectSchemes: %q is not a lower-case custom scheme", s)
		}
	}
	return nil
}

// Close stops fetches under way. The Registry must not be used after.
func (r *Registry) Close() { r.docs.close() }

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Register validates an RFC 7591 registration request (the request body)
// and stores the client among the pending (not yet used) registrations,
// evicting the oldest of those if the budget is full. The client gets a
// new random client_id and no secret. A request the client can fix gets
// an *oautherr.Error with the RFC 7591 code; a Redis failure wraps
// outage.ErrUnavailable. A registration whose reply was lost may exist: a
// retry makes another one, and the orphan ages out or is evicted.
func (r *Registry) Register(ctx context.Context, body []byte) (Client, error) {
	if len(body) > MaxRegistrationBytes {
		return Client{}, metadataError("the request is larger than %d bytes", MaxRegistrationBytes)
	}
	c, err := parseMetadata(body, false, r.extraSchemes)
	if err != nil {
		return Client{}, err
	}
	now := r.now()
	c.ClientID = rand.Text()
	c.ClientIDIssuedAt = now.Unix()
	data, err := json.Marshal(c)
	if err != nil {
		return Client{}, fmt.Errorf("oauthclients: register client: %w", err)
	}
	if len(data) > MaxStoredClientBytes {
		// What is stored is what anyone may make us store: keep it small.
		return Client{}, metadataError("the client's metadata takes more than %d bytes; register fewer or shorter redirect URIs", MaxStoredClientBytes)
	}
	evicted, err := registerScript.Run(ctx, r.rdb, []string{pendingKey, pendingOrderKey},
		c.ClientID, data, now.UnixMilli(), r.unusedTTL.Milliseconds(), r.maxPending).Int()
	if err != nil {
		return Client{}, wrap("register client", err)
	}
	if evicted < 0 {
		// 130 random bits do not collide; if they did, say so rather than
		// overwrite another client.
		return Client{}, errors.New("oauthclients: register client: client_id already in use")
	}
	if evicted > 0 {
		r.noteEvicted(ctx, evicted)
	}
	c.Source = SourceRegistered
	return c, nil
}

// registerScript adds a pending registration: it drops the pending ones
// older than the unused TTL, adds the new one, and evicts the oldest
// beyond the budget, in chunks (unpack has a stack limit), so a lowered
// budget is also applied at once. The new one gets a time no earlier than
// the newest one's, so an instance whose clock is behind cannot make it
// the first evicted. Both keys get the unused TTL: when it runs out,
// everything in them is older than that.
// KEYS: pendingKey, pendingOrderKey. ARGV: client_id, JSON, now (Unix ms),
// unused TTL (ms), budget. Returns how many were evicted, or -1 if the
// client_id is taken.
var registerScript = redis.NewScript(`
local id, now, ttl, budget = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('HEXISTS', KEYS[1], id) == 1 then
  return -1
end
local function drop(ids)
  if #ids > 0 then
    redis.call('HDEL', KEYS[1], unpack(ids))
    redis.call('ZREM', KEYS[2], unpack(ids))
  end
  return #ids
end
while drop(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - ttl, 'LIMIT', 0, 100)) > 0 do end
local at = now
local newest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if newest[2] and tonumber(newest[2]) > at then
  at = tonumber(newest[2])
end
redis.call('HSET', KEYS[1], id, ARGV[2])
redis.call('ZADD', KEYS[2], at, id)
local evicted = 0
local over = redis.call('ZCARD', KEYS[2]) - budget
while over > 0 do
  local n = drop(redis.call('ZRANGE', KEYS[2], 0, math.min(over, 100) - 1))
  evicted = evicted + n
  over = over - n
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return evicted
`)

// noteEvicted logs evicted registrations, at most once per
// evictionLogEvery: a full budget means someone registers far more than
// real clients do, and an operator should see it without a line per
// registration.
func (r *Registry) noteEvicted(ctx context.Context, n int) {
	r.evictMu.Lock()
	r.evicted += n
	now := r.now()
	if now.Sub(r.evictLogged) < evictionLogEvery {
		r.evictMu.Unlock()
		return
	}
	total := r.evicted
	r.evicted, r.evictLogged = 0, now
	r.evictMu.Unlock()
	r.log.LogAttrs(ctx, slog.LevelWarn, "registration budget full: oldest unused registrations evicted",
		slog.Int("evicted", total), slog.Int("budget", r.maxPending))
}

// Lookup returns the client a client_id names: a registered client from
// Redis (whose registration, once used, it keeps alive for another
// RegistrationTTL), or, for a client_id that is an https URL, the client
// its metadata document describes. requester names who is asking (the
// caller's rate-limit key, say): fetches of metadata documents are capped
// per requester, so one requester cannot take every fetch slot. A
// client_id that names no usable client gets an *oautherr.Error with
// oautherr.InvalidClient, whose Description says why; a Redis failure, or no
// fetch slot free, wraps outage.ErrUnavailable.
func (r *Registry) Lookup(ctx context.Context, clientID, requester string) (Client, error) {
	// Registered ids are base32 and never contain a colon; anything with a
	// scheme is a metadata document URL, or nothing.
	if strings.Contains(clientID, ":") {
		return r.docs.lookup(ctx, clientID, requester)
	}
	return r.lookupRegistered(ctx, clientID)
}

// lookupRegistered reads the confirmed key first (the common case, one
// round trip), then the pending registrations. Confirm writes the
// confirmed key before it removes the pending entry, so a registration
// missing from both was either never there or confirmed between the two
// reads: the confirmed key is read once more before saying unknown.
func (r *Registry) lookupRegistered(ctx context.Context, clientID string) (Client, error) {
	if !isClientID(clientID) {
		// Not one of ours: no need to ask Redis, and no odd key names.
		return Client{}, unknownClient()
	}
	data, err := r.lookupConfirmed(ctx, clientID)
	pending := false
	if errors.Is(err, redis.Nil) {
		pending = true
		data, err = lookupPendingScript.Run(ctx, r.rdb, []string{pendingKey, pendingOrderKey},
			clientID, r.now().UnixMilli(), r.unusedTTL.Milliseconds()).Text()
		if errors.Is(err, redis.Nil) {
			pending = false
			data, err = r.lookupConfirmed(ctx, clientID)
		}
	}
	if errors.Is(err, redis.Nil) {
		return Client{}, unknownClient()
	}
	if err != nil {
		return Client{}, wrap("look up client", err)
	}
	var c Client
	if err := json.Unmarshal([]byte(data), &c); err != nil {
		return Client{}, fmt.Errorf("oauthclients: look up client: stored client: %w", err)
	}
	c.Source, c.pending = SourceRegistered, pending
	return c, nil
}

func (r *Registry) lookupConfirmed(ctx context.Context, clientID string) (string, error) {
	return lookupScript.Run(ctx, r.rdb, []string{keyPrefix + clientID},
		r.ttl.Milliseconds(), r.unusedTTL.Milliseconds()).Text()
}

// lookupScript reads a registration at its own key and, if it has been
// used (its TTL is longer than any unused one's: registrations stored
// there by older versions are not), keeps it alive. KEYS: the client's
// key. ARGV: RegistrationTTL and UnusedRegistrationTTL in ms.
var lookupScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and redis.call('PTTL', KEYS[1]) > tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return v
`)

// lookupPendingScript reads a pending registration, and drops it if it
// is older than the unused TTL (a hash field has no TTL of its own).
// KEYS: pendingKey, pendingOrderKey. ARGV: client_id, now (Unix ms),
// unused TTL (ms).
var lookupPendingScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then
  return false
end
local at = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not at or tonumber(at) <= tonumber(ARGV[2]) - tonumber(ARGV[3]) then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return false
end
return v
`)

// forgetPendingScript removes a pending registration. KEYS: pendingKey,
// pendingOrderKey. ARGV: client_id.
var forgetPendingScript = redis.NewScript(`
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 0
`)

// Confirm marks a registered client as used (a grant completed with it
// for user, "<tid>.<oid>"): its registration now lives RegistrationTTL from
// its last lookup, at its own key, outside the budget of pending ones. c
// must be what Lookup returned for the grant; a metadata-document client is
// left alone.
//
// The user who takes a registration out of the pending ones answers for
// it: it counts against their MaxConfirmedPerUser, and one more ends their
// oldest. Later grants with it, by anyone, count against no one, so no
// user can put another's client under their own cap and end it. (The
// other way round remains: a client its first user shares with others
// ends for all of them when that user signs in with 100 newer ones. A
// registration is one installation's, so sharing one is rare.) Later
// grants only keep a stored registration alive: one the cap ended while a
// grant with it was under way stays ended.
//
// It writes the client's key from c, then removes the pending entry, then
// counts it for user: steps on keys in different hash slots. That is safe
// in any order of failure: Lookup prefers the confirmed key, so a pending
// entry left behind is never read while the confirmed one exists, and it
// ages out within UnusedRegistrationTTL (or is evicted); a registration
// evicted between the grant's Lookup and Confirm is written back, since a
// user just signed in with it (a pending one; see above for the others);
// one left uncounted lives its TTL; and a retry counts it once (the user's
// set holds each client once).
func (r *Registry) Confirm(ctx context.Context, c Client, user string) error {
	if c.Source != SourceRegistered || !isClientID(c.ClientID) {
		return nil
	}
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("oauthclients: confirm client: %w", err)
	}
	if !c.pending {
		// Only while it is stored: a grant under way when the user's cap
		// ended the client must not write it back, uncounted.
		if err := r.rdb.SetXX(ctx, keyPrefix+c.ClientID, data, r.ttl).Err(); err != nil {
			return wrap("confirm client", err)
		}
		return nil
	}
	if err := r.rdb.Set(ctx, keyPrefix+c.ClientID, data, r.ttl).Err(); err != nil {
		return wrap("confirm client", err)
	}
	if err := forgetPendingScript.Run(ctx, r.rdb, []string{pendingKey, pendingOrderKey}, c.ClientID).Err(); err != nil {
		return wrap("confirm client: leave the pending registrations", err)
	}
	return r.countFor(ctx, user, c.ClientID)
}

// countFor records that user took clientID out of the pending
// registrations and ends the user's oldest beyond MaxConfirmedPerUser.
func (r *Registry) countFor(ctx context.Context, user, clientID string) error {
	if user == "" {
		// Counting it for no one would make one pool of every user's.
		return errors.New("oauthclients: confirm client: no user to count it for")
	}
	now := r.now()
	ended, err := countConfirmedScript.Run(ctx, r.rdb, []string{userKeyPrefix + user},
		clientID, now.UnixMilli(), r.ttl.Milliseconds(), MaxConfirmedPerUser).StringSlice()
	if err != nil {
		return wrap("confirm client: count it for the user", err)
	}
	for _, id := range ended {
		if !isClientID(id) {
			continue
		}
		// A failure leaves the registration to its TTL; the user's set no
		// longer counts it either way.
		if err := r.rdb.Del(ctx, keyPrefix+id).Err(); err != nil {
			return wrap("confirm client: end the user's oldest registration", err)
		}
	}
	if len(ended) > 0 {
		tid, oid, _ := strings.Cut(user, ".")
		r.log.LogAttrs(ctx, slog.LevelWarn, "a user's sign-ins ended their oldest client registrations",
			slog.String("tid", tid), slog.String("oid", oid), slog.Int("ended", len(ended)),
			slog.Int("max_per_user", MaxConfirmedPerUser))
	}
	return nil
}

// countConfirmedScript adds a client to a user's confirmed registrations
// and pops the oldest beyond the cap, returning their ids; never the one
// just added. It is scored no earlier than the newest, so an instance
// whose clock is behind the others' does not make it the oldest. Entries
// leave only by the cap, or with the whole set RegistrationTTL after the
// user's last one: a client kept alive by lookups keeps counting. KEYS:
// the user's set. ARGV: client_id, now (Unix ms), RegistrationTTL (ms),
// the cap.
var countConfirmedScript = redis.NewScript(`
local now, ttl, cap = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if newest[2] and tonumber(newest[2]) > now then
    now = tonumber(newest[2])
  end
  redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ttl)
local over = redis.call('ZCARD', KEYS[1]) - cap
if over <= 0 then
  return {}
end
local ended = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, over)) do
  if #ended == over then break end
  if id ~= ARGV[1] then
    table.insert(ended, id)
    redis.call('ZREM', KEYS[1], id)
  end
end
return ended
`)

func isClientID(s string) bool {
	return len(s) == clientIDLen && strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") == ""
}

// wrap says what failed, with Redis outages marked outage.ErrUnavailable.
func wrap(op string, err error) error {
	return fmt.Errorf("oauthclients: %s: %w", op, store.MarkUnavailable(err))
}
