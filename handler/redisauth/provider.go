// Package redisauth authenticates go-redis clients to Azure Managed Redis and
// Azure Cache for Redis with Microsoft Entra ID tokens instead of access keys.
//
// The user name is the identity's object id and the password is an access
// token for https://redis.azure.com/.default. Tokens expire (about an hour),
// so every connection must send AUTH again with a fresh token before the old
// one runs out, including connections already open in the pool.
//
// A Provider is a go-redis auth.StreamingCredentialsProvider. go-redis
// (v9.23) calls Subscribe once for every connection it opens, uses the
// returned credentials in that connection's HELLO/AUTH, and keeps the
// listener until the connection closes. When the Provider has a new token it
// calls OnNext on every listener; go-redis then marks each connection and
// re-authenticates it in the background the next time it is idle in the pool:
//
//   - a connection busy with a command is re-authenticated as soon as it is
//     returned to the pool;
//   - an idle connection is re-authenticated when a caller next takes it from
//     the pool, before it serves any command (go-redis hands the caller
//     another connection meanwhile);
//   - so an idle connection nobody takes keeps the old token for a while.
//     That is harmless: it is re-authenticated before its next use, or
//     closed then if it has been idle longer than ConnMaxIdleTime or the
//     server has dropped it. (The pool is LIFO, so under light load its
//     oldest connections are the ones left idle.)
//
// A failed re-AUTH is only logged by go-redis and leaves the connection with
// its previous identity. OnError, which this Provider calls only when its
// token is about to expire with no replacement, makes go-redis close each
// connection, so that requests fail with a clear error instead of running on
// a token that Redis is about to reject.
package redisauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/redis/go-redis/v9/auth"
)

// DefaultScope is the scope of Entra ID tokens for Azure Redis data access.
const DefaultScope = "https://redis.azure.com/.default"

// Defaults for Options.
const (
	DefaultRefreshBefore = 5 * time.Minute
	DefaultExpiryMargin  = time.Minute
	DefaultFetchTimeout  = 10 * time.Second
)

// refreshFraction is the share of a token's remaining lifetime after which
// a fresh one is requested: early enough to retry for a while if the token
// service is down, late enough not to hammer it.
const refreshFraction = 0.75

// Retry delays after a failed or fruitless refresh. They double from
// retryMin to retryMax. A credential that caches tokens (azidentity does)
// may hand back the same token until a few minutes before it expires; the
// cap keeps those calls few while still catching the new token promptly.
const (
	retryMin = time.Second
	retryMax = time.Minute
)

// ErrClosed is returned by Subscribe after Close.
var ErrClosed = errors.New("redisauth: provider closed")

// ErrNoToken is wrapped by Subscribe's error when no usable token could be
// obtained, so callers can tell a credential problem with errors.Is.
var ErrNoToken = errors.New("redisauth: no usable Entra ID token for Redis")

// Clock tells the time and schedules wake-ups. Tests replace it to move
// time forward without waiting.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

// Options configure a Provider. The zero value is ready to use.
type Options struct {
	// Scope of the token. Default DefaultScope.
	Scope string
	// UserName is the Redis user to authenticate as. When empty, it is the
	// token's oid (object id) claim. That claim is read without verifying
	// the token's signature: the token comes straight from our own
	// credential and is only passed on to Redis, which verifies it.
	UserName string
	// RefreshBefore: a new token is requested at the earlier of 75% of the
	// current token's remaining lifetime and RefreshBefore before its
	// expiry (and no later than the credential's RefreshOn hint).
	// Default DefaultRefreshBefore.
	RefreshBefore time.Duration
	// ExpiryMargin: a token this close to expiry is treated as expired.
	// Subscribe will not hand it to a new connection, and when refreshing
	// has failed until then the listeners get OnError.
	// Default DefaultExpiryMargin.
	ExpiryMargin time.Duration
	// FetchTimeout bounds one call to the credential, and how long
	// Subscribe (which go-redis calls while opening a connection, without a
	// context) waits for a token. Default DefaultFetchTimeout.
	FetchTimeout time.Duration
	// Clock, default the system clock.
	Clock Clock
	// Logger for refreshes and failures. Tokens are never logged.
	// Default discards.
	Logger *slog.Logger
}

// Provider obtains Entra ID tokens for Redis from a credential, refreshes
// them before they expire and streams them to go-redis connections. It
// implements auth.StreamingCredentialsProvider. Create one with New, share
// it between clients if convenient, and Close it after closing the clients.
// It is safe for concurrent use.
type Provider struct {
	cred  azcore.TokenCredential
	opts  Options
	clock Clock
	log   *slog.Logger

	// ctx is cancelled by Close; it stops the refresh loop and any fetch.
	ctx    context.Context
	cancel context.CancelFunc
	// kick asks the refresh loop for a token now (buffered, never blocks).
	kick chan struct{}
	// done is closed when the refresh loop has returned.
	done chan struct{}

	mu        sync.Mutex
	closed    bool
	current   *token // nil until the first token
	listeners map[uint64]auth.CredentialsListener
	nextID    uint64
	// attempted is closed, and replaced, after every fetch attempt, to wake
	// Subscribe calls waiting for a token.
	attempted   chan struct{}
	lastAttempt time.Time
	lastErr     error // why the last attempt gave no usable token
	failures    int   // attempts since the last new token
	reported    bool  // OnError sent for the current token
}

// token is one access token and the credentials made from it.
type token struct {
	creds     auth.Credentials
	value     string
	user      string
	expiresOn time.Time
	refreshOn time.Time
}

// New returns a Provider for tokens from cred. It does not contact the
// token service: the first token is fetched when the first connection
// subscribes. It starts one goroutine, which Close stops.
func New(cred azcore.TokenCredential, opts Options) (*Provider, error) {
	if cred == nil {
		return nil, errors.New("redisauth: nil credential")
	}
	if opts.RefreshBefore < 0 || opts.ExpiryMargin < 0 || opts.FetchTimeout < 0 {
		return nil, errors.New("redisauth: negative duration in Options")
	}
	if opts.Scope == "" {
		opts.Scope = DefaultScope
	}
	if opts.RefreshBefore == 0 {
		opts.RefreshBefore = DefaultRefreshBefore
	}
	if opts.ExpiryMargin == 0 {
		opts.ExpiryMargin = DefaultExpiryMargin
	}
	if opts.FetchTimeout == 0 {
		opts.FetchTimeout = DefaultFetchTimeout
	}
	p := &Provider{
		cred:      cred,
		opts:      opts,
		clock:     opts.Clock,
		log:       opts.Logger,
		kick:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		listeners: make(map[uint64]auth.CredentialsListener),
		attempted: make(chan struct{}),
	}
	if p.clock == nil {
		p.clock = systemClock{}
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	go p.run()
	return p, nil
}

// Subscribe implements auth.StreamingCredentialsProvider. It returns the
// current credentials, fetching a token first if there is no usable one,
// and sends the listener every later token. go-redis calls it for each new
// connection and calls the returned function when the connection closes.
func (p *Provider) Subscribe(listener auth.CredentialsListener) (auth.Credentials, auth.UnsubscribeFunc, error) {
	if listener == nil {
		return nil, nil, errors.New("redisauth: nil listener")
	}
	// Real time, not p.clock: this bounds a wait in the caller's goroutine.
	timeout := time.NewTimer(p.opts.FetchTimeout + time.Second)
	defer timeout.Stop()
	waited := false
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, nil, ErrClosed
		}
		now := p.clock.Now()
		if p.usable(p.current, now) {
			id := p.nextID
			p.nextID++
			p.listeners[id] = listener
			creds := p.current.creds
			p.mu.Unlock()
			return creds, func() error { p.unsubscribe(id); return nil }, nil
		}
		// Fail fast rather than queue every new connection behind another
		// attempt when one has just failed.
		if waited || (p.lastErr != nil && now.Sub(p.lastAttempt) < retryMin) {
			err := p.lastErr
			p.mu.Unlock()
			if err == nil {
				return nil, nil, ErrNoToken
			}
			return nil, nil, fmt.Errorf("%w: %w", ErrNoToken, err)
		}
		attempted := p.attempted
		p.mu.Unlock()

		select {
		case p.kick <- struct{}{}:
		default: // a kick is already pending
		}
		select {
		case <-attempted:
			waited = true
		case <-p.ctx.Done():
			return nil, nil, ErrClosed
		case <-timeout.C:
			return nil, nil, fmt.Errorf("%w: none within %v", ErrNoToken, p.opts.FetchTimeout)
		}
	}
}

// unsubscribe forgets a listener. go-redis calls it, through the function
// Subscribe returned, when a connection closes.
func (p *Provider) unsubscribe(id uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.listeners, id)
}

// Close stops refreshing and waits for the refresh loop to end. Connections
// keep the token they have; close the Redis clients first. Close is
// idempotent.
func (p *Provider) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.listeners = nil
	p.mu.Unlock()
	p.cancel()
	<-p.done
	return nil
}

// run is the refresh loop: the only goroutine that fetches tokens and
// notifies listeners, so listeners see tokens in order.
func (p *Provider) run() {
	defer close(p.done)
	// wake fires when the next refresh is due; nil while there is no token
	// to refresh and we wait for a Subscribe to ask for one.
	var wake <-chan time.Time
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-wake:
		case <-p.kick:
			if p.hasUsable() {
				// The token was obtained since the kick was sent; keep the
				// schedule rather than fetch again.
				continue
			}
		}
		wake = nil
		if next := p.refresh(); !next.IsZero() {
			wake = p.clock.After(next.Sub(p.clock.Now()))
		}
	}
}

// hasUsable reports whether the current token may be handed out.
func (p *Provider) hasUsable() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.usable(p.current, p.clock.Now())
}

// usable reports whether t may be handed to a connection at now.
func (p *Provider) usable(t *token, now time.Time) bool {
	return t != nil && now.Before(t.expiresOn.Add(-p.opts.ExpiryMargin))
}

// refresh makes one attempt to get a new token, passes it on, and returns
// when the next attempt is due (zero: only when asked).
func (p *Provider) refresh() time.Time {
	ctx, cancel := context.WithTimeout(p.ctx, p.opts.FetchTimeout)
	tok, err := p.fetch(ctx)
	cancel()
	if p.ctx.Err() != nil {
		return time.Time{} // closed; run returns
	}
	now := p.clock.Now()
	a := p.record(tok, err, now)

	// Listeners are called without the lock: go-redis may close the
	// connection from OnError, which calls back into unsubscribe.
	if a.fresh {
		p.log.Info("redis token refreshed", "user", tok.user,
			"expires", tok.expiresOn, "connections", len(a.listeners))
		for _, l := range a.listeners {
			l.OnNext(tok.creds)
		}
		return p.refreshAt(tok, now)
	}
	return p.afterFailure(a, err, now)
}

// attempt is what one refresh attempt changed, taken under the lock for
// what follows without it.
type attempt struct {
	fresh     bool // a new token replaced the current one
	report    bool // the current token is no longer usable: tell the listeners (once)
	current   *token
	failures  int   // attempts in a row without a new token
	cause     error // why the current token is not renewed
	listeners []auth.CredentialsListener
}

// record keeps the outcome of an attempt (tok or err, at now) and wakes
// whoever waits for one.
func (p *Provider) record(tok *token, err error, now time.Time) attempt {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := attempt{fresh: err == nil && (p.current == nil || tok.value != p.current.value)}
	if a.fresh {
		p.current, p.failures, p.reported = tok, 0, false
	} else {
		p.failures++
	}
	p.lastAttempt = now
	p.lastErr = err
	if err == nil && !p.usable(p.current, now) {
		p.lastErr = fmt.Errorf("redisauth: token expires at %s, within the %v margin",
			p.current.expiresOn.UTC().Format(time.RFC3339), p.opts.ExpiryMargin)
	}
	a.listeners = make([]auth.CredentialsListener, 0, len(p.listeners))
	for _, l := range p.listeners {
		a.listeners = append(a.listeners, l)
	}
	a.report = !a.fresh && !p.reported && p.current != nil && !p.usable(p.current, now)
	if a.report {
		p.reported = true
	}
	a.current, a.failures, a.cause = p.current, p.failures, p.lastErr
	close(p.attempted)
	p.attempted = make(chan struct{})
	return a
}

// afterFailure logs an attempt that brought no new token (err, or the
// same token again), tells the listeners once the current token is no
// longer usable, and returns when to try again.
func (p *Provider) afterFailure(a attempt, err error, now time.Time) time.Time {
	if err != nil {
		p.log.Warn("redis token refresh failed", "err", err, "attempt", a.failures)
	} else {
		p.log.Debug("redis token not renewed yet; the credential returned the same token", "attempt", a.failures)
	}
	if a.current == nil {
		// Never had a token: try again only when a connection asks.
		return time.Time{}
	}
	if a.report {
		rerr := fmt.Errorf("%w: the token expires at %s and no new one could be obtained: %w",
			ErrNoToken, a.current.expiresOn.UTC().Format(time.RFC3339), a.cause)
		p.log.Error("redis token about to expire without a replacement", "err", rerr,
			"connections", len(a.listeners))
		for _, l := range a.listeners {
			l.OnError(rerr)
		}
	}
	next := now.Add(backoff(a.failures))
	// Try once more just before the token becomes unusable, so that a
	// failure is reported then and not up to retryMax later.
	if edge := a.current.expiresOn.Add(-p.opts.ExpiryMargin); edge.After(now) && edge.Before(next) {
		next = edge
	}
	return next
}

// refreshAt returns when to replace t, obtained at now.
func (p *Provider) refreshAt(t *token, now time.Time) time.Time {
	at := now.Add(time.Duration(float64(t.expiresOn.Sub(now)) * refreshFraction))
	if late := t.expiresOn.Add(-p.opts.RefreshBefore); late.Before(at) {
		at = late
	}
	if !t.refreshOn.IsZero() && t.refreshOn.Before(at) {
		at = t.refreshOn
	}
	if at.Before(now) {
		at = now
	}
	return at
}

// backoff returns the delay before retry number n (from 1).
func backoff(n int) time.Duration {
	d := retryMin
	for i := 1; i < n && d < retryMax; i++ {
		d *= 2
	}
	return min(d, retryMax)
}

// fetch gets a token from the credential and makes credentials of it.
func (p *Provider) fetch(ctx context.Context) (*token, error) {
	at, err := p.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{p.opts.Scope}})
	if err != nil {
		return nil, fmt.Errorf("redisauth: get token for %s: %w", p.opts.Scope, err)
	}
	if at.Token == "" {
		return nil, fmt.Errorf("redisauth: get token for %s: empty token", p.opts.Scope)
	}
	user := p.opts.UserName
	if user == "" {
		if user, err = objectID(at.Token); err != nil {
			return nil, err
		}
	}
	return &token{
		creds:     auth.NewBasicCredentials(user, at.Token),
		value:     at.Token,
		user:      user,
		expiresOn: at.ExpiresOn,
		refreshOn: at.RefreshOn,
	}, nil
}

// objectID returns the oid claim of a JWT without verifying it (see
// Options.UserName for why that is safe here). Errors never quote the token.
func objectID(jwt string) (string, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return "", errors.New("redisauth: token is not a JWT; set Options.UserName")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", errors.New("redisauth: token payload is not base64url; set Options.UserName")
	}
	var claims struct {
		OID string `json:"oid"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", errors.New("redisauth: token payload is not JSON; set Options.UserName")
	}
	if claims.OID == "" {
		return "", errors.New("redisauth: token has no oid claim; set Options.UserName")
	}
	return claims.OID, nil
}

// systemClock is the real clock.
type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
