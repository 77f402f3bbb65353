package entra

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/valid"
)

// KeySet finds the key that signed a token: all a Verifier's claims policy
// needs of the keys. The Verifier's is the tenant's published key set
// (remoteKeySet), fetched and cached apart from the policy, as in
// go-oidc's KeySet.
type KeySet interface {
	// Key returns the public key named kid, at now. It may wait for a fetch.
	// Its errors match ErrUnknownKey (no such key loaded) or ErrUnavailable
	// (no keys could be loaded at all).
	Key(ctx context.Context, kid string, now time.Time) (*rsa.PublicKey, error)
	// Holds reports whether key is still the set's key for kid, so that a
	// token verified with a key since withdrawn is checked again.
	Holds(kid string, key *rsa.PublicKey, now time.Time) bool
}

// remoteKeySet is the tenant's key set, discovered through its OpenID
// configuration and fetched from its jwks_uri. It caches the set, fetches
// one at a time (callers join the fetch under way), throttles fetches that
// unknown kids cause, refreshes an old set in the background and keeps the
// last good set when a fetch fails. It is safe for concurrent use.
type remoteKeySet struct {
	discoveryURL string
	issuer       string // the issuer the discovery document must name
	allowHTTP    bool   // loopback authority over plain http
	client       *http.Client
	now          func() time.Time
	limits       refreshLimits
	log          *slog.Logger
	keys         atomic.Pointer[keySet]
	fetches      atomic.Int64
	throttled    atomic.Int64 // unknown kids refused without a fetch

	mu    sync.Mutex // guards state
	state refreshState
	warns kidWarnings
}

// refreshLimits say how often keys may be fetched (see Config).
type refreshLimits struct {
	minRefresh time.Duration
	kidRetry   time.Duration
	maxKeyAge  time.Duration
}

// refreshState is what remoteKeySet.mu guards: the fetch under way and the
// times and kids the throttle decides by.
type refreshState struct {
	inflight     *flight
	lastAttempt  time.Time // of any fetch
	lastKidFetch time.Time // of the last fetch an unknown kid caused
	lastAgeFetch time.Time // of the last background refresh
	missedKids   *kidMemo  // kids missing from a fetch they caused, and when
	lastErr      error
	jwksURI      string
}

// kidWarnings limits the unknown-kid warnings (see warnUnknownKid).
type kidWarnings struct {
	mu    sync.Mutex // guards the fields below
	kids  *kidMemo
	lines lineBudget
}

func newRemoteKeySet(discoveryURL, issuer string, allowHTTP bool, client *http.Client, now func() time.Time,
	limits refreshLimits, log *slog.Logger) *remoteKeySet {
	return &remoteKeySet{
		discoveryURL: discoveryURL, issuer: issuer, allowHTTP: allowHTTP, client: client, now: now,
		limits: limits, log: log,
		state: refreshState{missedKids: newKidMemo(maxRememberedKids)},
		warns: kidWarnings{kids: newKidMemo(maxRememberedKids)},
	}
}

// keySet is one fetched JWKS. It is never modified after it is published
// through remoteKeySet.keys, so readers need no lock.
type keySet struct {
	keys      map[string]*rsa.PublicKey
	fetchedAt time.Time
}

func (ks *keySet) kids() []string {
	out := make([]string, 0, len(ks.keys))
	for kid := range ks.keys {
		out = append(out, kid)
	}
	slices.Sort(out)
	return out
}

// flight is one key fetch; waiters read err after done is closed.
type flight struct {
	done chan struct{}
	err  error
}

// trigger is why a fetch is wanted. Only an unknown kid spends the
// unknown-kid budget: the start-up fetch and the background refresh of an old
// set must not make the first new key after them wait (an instance that has
// just started is exactly the one that has just fetched).
type trigger int

const (
	byWarm trigger = iota // Warm: always fetches
	byAge                 // the cached set is older than MaxKeyAge
	byKid                 // a token named a kid the cached set lacks
)

// Why a fetch did not happen or a token's kid was not found. The first four
// are ErrUnknownKey; errBootstrapWait is ErrUnavailable; errAgeThrottled only
// stops a background refresh and never reaches a caller.
var (
	errRefreshThrottled = fmt.Errorf("%w; key refresh throttled (one fetch per MinRefreshInterval for unknown kids)", ErrUnknownKey)
	errKidThrottled     = fmt.Errorf("%w; key refresh throttled (this kid was missing from a fetch made for it within KidRetryInterval)", ErrUnknownKey)
	errNotInFetchedSet  = fmt.Errorf("%w: not in the tenant's key set, fetched just now", ErrUnknownKey)
	errFetchFailed      = fmt.Errorf("%w; the key fetch made for it failed", ErrUnknownKey)
	errBootstrapWait    = fmt.Errorf("%w: no keys loaded and the last fetch attempt was too recent", ErrUnavailable)
	errAgeThrottled     = errors.New("background key refresh attempted recently")
)

// Key returns the public key for kid. A known kid is answered from the cache
// without waiting, starting a background refresh when the set is older than
// MaxKeyAge. An unknown kid joins the fetch under way or starts one, unless
// throttled (see throttle); a throttled kid fails fast.
func (v *remoteKeySet) Key(ctx context.Context, kid string, now time.Time) (*rsa.PublicKey, error) {
	ks := v.keys.Load()
	if ks != nil {
		if k := ks.keys[kid]; k != nil {
			v.refreshIfOld(ks, now)
			return k, nil
		}
	}
	f, err := v.startRefresh(byKid, kid)
	if err != nil {
		// A fetch may have landed the kid since ks was loaded.
		if cur := v.keys.Load(); cur != nil && cur.keys[kid] != nil {
			return cur.keys[kid], nil
		}
		if errors.Is(err, ErrUnknownKey) {
			v.throttled.Add(1)
		}
		v.warnUnknownKid(ctx, kid, err, now)
		return nil, err
	}
	select {
	case <-f.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for key fetch: %w", ctx.Err())
	}
	ks = v.keys.Load()
	if ks == nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, f.err)
	}
	if k := ks.keys[kid]; k != nil {
		return k, nil
	}
	err = errNotInFetchedSet
	if f.err != nil {
		err = errFetchFailed
	}
	v.warnUnknownKid(ctx, kid, err, now)
	return nil, err
}

// Holds reports whether key is the cached set's key for kid, and starts a
// background refresh when the set is older than MaxKeyAge.
func (v *remoteKeySet) Holds(kid string, key *rsa.PublicKey, now time.Time) bool {
	ks := v.keys.Load()
	if ks == nil || ks.keys[kid] != key {
		return false
	}
	v.refreshIfOld(ks, now)
	return true
}

// refreshIfOld starts a background fetch when ks is older than MaxKeyAge.
func (v *remoteKeySet) refreshIfOld(ks *keySet, now time.Time) {
	if now.Sub(ks.fetchedAt) >= v.limits.maxKeyAge {
		_, _ = v.startRefresh(byAge, "")
	}
}

// startRefresh returns the fetch under way, or starts one for the given
// reason unless throttle refuses, in which case it returns throttle's error.
// The fetch runs detached from any caller's context: one caller giving up
// must not fail the fetch for the others.
func (v *remoteKeySet) startRefresh(why trigger, kid string) (*flight, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state.inflight != nil {
		return v.state.inflight, nil
	}
	now := v.now()
	if err := v.throttle(why, kid, now); err != nil {
		return nil, err
	}
	v.state.lastAttempt = now
	f := &flight{done: make(chan struct{})}
	v.state.inflight = f
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
		defer cancel()
		f.err = v.refresh(ctx)
		if f.err != nil {
			v.log.LogAttrs(ctx, slog.LevelWarn, "entra: key refresh failed; keeping cached keys",
				slog.String("error", f.err.Error()))
		}
		v.mu.Lock()
		v.state.inflight = nil
		v.state.lastErr = f.err
		// A kid the tenant's own set lacks is not retried for a while: that
		// is what a made-up kid repeated looks like. After a failed fetch it
		// got no real answer, so it may try again.
		if why == byKid && f.err == nil && v.keys.Load().keys[kid] == nil {
			v.state.missedKids.set(kid, now)
		}
		v.mu.Unlock()
		close(f.done)
	}()
	return f, nil
}

// throttle decides whether a fetch for why may start at now, and books it if
// so. Callers hold v.mu.
//
// While no key set has loaded, any trigger may fetch every
// bootstrapRetryInterval, so a start-up outage heals within seconds. Once
// keys are loaded, an unknown kid may fetch unless that kid was missing from
// a fetch made for it within KidRetryInterval, or another unknown kid caused
// a fetch within MinRefreshInterval. Background refreshes have their own
// allowance of one per MinRefreshInterval and do not touch the unknown-kid
// one; Warm is never throttled.
func (v *remoteKeySet) throttle(why trigger, kid string, now time.Time) error {
	switch {
	case why == byWarm:
		return nil
	case v.keys.Load() == nil:
		if !v.state.lastAttempt.IsZero() && now.Sub(v.state.lastAttempt) < min(v.limits.minRefresh, bootstrapRetryInterval) {
			return errBootstrapWait
		}
		return nil
	case why == byAge:
		if !v.state.lastAgeFetch.IsZero() && now.Sub(v.state.lastAgeFetch) < v.limits.minRefresh {
			return errAgeThrottled
		}
		v.state.lastAgeFetch = now
		return nil
	}
	if v.state.missedKids.within(kid, now, v.limits.kidRetry) {
		return errKidThrottled
	}
	if !v.state.lastKidFetch.IsZero() && now.Sub(v.state.lastKidFetch) < v.limits.minRefresh {
		return errRefreshThrottled
	}
	v.state.lastKidFetch = now
	return nil
}

// maxUnknownKidWarnings bounds the unknown-kid warnings logged per
// MinRefreshInterval, so a flood of distinct made-up kids costs a few log
// lines, not one per request.
const maxUnknownKidWarnings = 10

// warnUnknownKid logs, at WARN, that a token was refused because its kid is
// not in the loaded key set: after a rollover that is the first sign that
// this instance lags, and otherwise it is someone making kids up. Each kid is
// logged at most once per KidRetryInterval and all of them at most
// maxUnknownKidWarnings times per MinRefreshInterval; the lines left out are
// counted in the next one.
func (v *remoteKeySet) warnUnknownKid(ctx context.Context, kid string, reason error, now time.Time) {
	if !errors.Is(reason, ErrUnknownKey) {
		return
	}
	v.warns.mu.Lock()
	if v.warns.kids.within(kid, now, v.limits.kidRetry) {
		v.warns.lines.skip()
		v.warns.mu.Unlock()
		return
	}
	ok, skipped := v.warns.lines.take(now, v.limits.minRefresh, maxUnknownKidWarnings)
	if ok {
		v.warns.kids.set(kid, now)
	}
	v.warns.mu.Unlock()
	if !ok {
		return
	}
	v.log.LogAttrs(ctx, slog.LevelWarn, "entra: token signed with a key this server has not loaded",
		slog.String("kid", shortKid(kid)), slog.String("reason", reason.Error()),
		slog.Int64("similar_not_logged", skipped))
}

// refresh fetches the key set (discovering its URL first if needed) and
// publishes it. On failure the previous set stays in use.
func (v *remoteKeySet) refresh(ctx context.Context) error {
	v.mu.Lock()
	jwksURI := v.state.jwksURI
	v.mu.Unlock()
	if jwksURI == "" {
		var err error
		if jwksURI, err = v.discover(ctx); err != nil {
			return err
		}
	}
	v.fetches.Add(1)
	ks, err := v.fetchKeys(ctx, jwksURI)
	v.mu.Lock()
	if err != nil {
		v.state.jwksURI = "" // rediscover next time in case the document moved
	} else {
		v.state.jwksURI = jwksURI
	}
	v.mu.Unlock()
	if err != nil {
		return err
	}
	// Keep the old key objects for unchanged kids: cached verified tokens
	// remember the key object they were verified with.
	if old := v.keys.Load(); old != nil {
		for kid, k := range ks.keys {
			if o := old.keys[kid]; o != nil && o.E == k.E && o.N.Cmp(k.N) == 0 {
				ks.keys[kid] = o
			}
		}
	}
	v.keys.Store(ks)
	return nil
}

// discover reads the tenant's OpenID configuration and returns its jwks_uri.
func (v *remoteKeySet) discover(ctx context.Context) (string, error) {
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := v.getJSON(ctx, v.discoveryURL, &doc); err != nil {
		return "", fmt.Errorf("entra: fetching discovery document: %w", err)
	}
	if doc.Issuer != v.issuer {
		return "", fmt.Errorf("entra: discovery document names issuer %q, want %q", doc.Issuer, v.issuer)
	}
	u, err := url.Parse(doc.JWKSURI)
	if err != nil || u.Host == "" || !(u.Scheme == "https" || u.Scheme == "http" && v.allowHTTP && valid.LoopbackHost(u.Hostname())) {
		return "", fmt.Errorf("entra: discovery document has unusable jwks_uri %q", doc.JWKSURI)
	}
	return doc.JWKSURI, nil
}

// fetchKeys reads a JWKS and keeps its usable RS256 signing keys. Keys it
// cannot use are skipped (Entra may publish other kinds); a set with none is
// an error.
func (v *remoteKeySet) fetchKeys(ctx context.Context, jwksURI string) (*keySet, error) {
	var doc struct {
		Keys []struct {
			Kty string `json:"kty"`
			Use string `json:"use"`
			Alg string `json:"alg"`
			Kid string `json:"kid"`
			N   string `json:"n"`
			E   string `json:"e"`
		} `json:"keys"`
	}
	if err := v.getJSON(ctx, jwksURI, &doc); err != nil {
		return nil, fmt.Errorf("entra: fetching signing keys: %w", err)
	}
	ks := &keySet{keys: map[string]*rsa.PublicKey{}, fetchedAt: v.now()}
	for _, k := range doc.Keys {
		if k.Kty != "RSA" || (k.Use != "" && k.Use != "sig") || (k.Alg != "" && k.Alg != "RS256") ||
			k.Kid == "" || len(k.Kid) > maxKidBytes {
			continue
		}
		pub, err := rsaKey(k.N, k.E)
		if err != nil {
			v.log.LogAttrs(ctx, slog.LevelWarn, "entra: skipping unusable signing key",
				slog.String("kid", k.Kid), slog.String("error", err.Error()))
			continue
		}
		if _, dup := ks.keys[k.Kid]; dup {
			// Two keys under one kid is ambiguous: trust neither.
			v.log.LogAttrs(ctx, slog.LevelWarn, "entra: skipping duplicate kid", slog.String("kid", k.Kid))
			ks.keys[k.Kid] = nil
			continue
		}
		ks.keys[k.Kid] = pub
	}
	for kid, k := range ks.keys {
		if k == nil {
			delete(ks.keys, kid)
		}
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("entra: key set has no usable RS256 keys")
	}
	return ks, nil
}

// rsaKey decodes a JWK's modulus and exponent, refusing keys too weak to
// trust and exponents Go's RSA does not accept.
func rsaKey(n64, e64 string) (*rsa.PublicKey, error) {
	nb, err := base64.RawURLEncoding.DecodeString(n64)
	if err != nil {
		return nil, fmt.Errorf("decoding modulus: %w", err)
	}
	eb, err := base64.RawURLEncoding.DecodeString(e64)
	if err != nil {
		return nil, fmt.Errorf("decoding exponent: %w", err)
	}
	n := new(big.Int).SetBytes(nb)
	if n.BitLen() < 2048 || n.BitLen() > 8192 {
		return nil, fmt.Errorf("modulus of %d bits", n.BitLen())
	}
	e := new(big.Int).SetBytes(eb)
	if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 {
		return nil, errors.New("unusable exponent")
	}
	return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
}

// getJSON GETs url and decodes a 200 response of at most maxDocumentBytes.
func (v *remoteKeySet) getJSON(ctx context.Context, url string, dst any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return fmt.Errorf("reading %s: %w", url, err)
	}
	if len(body) > maxDocumentBytes {
		return fmt.Errorf("GET %s: response larger than %d bytes", url, maxDocumentBytes)
	}
	if err := json.Unmarshal(body, dst); err != nil {
		return fmt.Errorf("decoding %s: %w", url, err)
	}
	return nil
}
