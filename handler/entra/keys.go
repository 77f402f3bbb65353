package entra

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/entra-mcp/functions-mcp/handler/valid"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// keySet is one fetched JWKS. It is never modified after it is published
// through Verifier.keys, so readers need no lock.
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

// errRefreshThrottled is returned for an unknown kid seen too soon after the
// last fetch attempt.
var errRefreshThrottled = fmt.Errorf("%w; key refresh throttled", errUnknownKid)

// key returns the public key for kid. A known kid is answered from the cache
// without waiting, starting a background refresh when the set is older than
// MaxKeyAge. An unknown kid joins or starts one fetch, at most once per
// MinRefreshInterval; beyond that it fails fast.
func (v *Verifier) key(ctx context.Context, kid string, now time.Time) (*rsa.PublicKey, error) {
	ks := v.keys.Load()
	if ks != nil {
		if k := ks.keys[kid]; k != nil {
			v.refreshIfOld(ks, now)
			return k, nil
		}
	}
	f := v.startRefresh(false)
	if f == nil {
		if ks == nil {
			return nil, fmt.Errorf("%w: no keys loaded and refresh throttled", ErrUnavailable)
		}
		return nil, errRefreshThrottled
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
	return nil, errUnknownKid
}

// refreshIfOld starts a background fetch when ks is older than MaxKeyAge.
func (v *Verifier) refreshIfOld(ks *keySet, now time.Time) {
	if now.Sub(ks.fetchedAt) >= v.maxKeyAge {
		v.startRefresh(false)
	}
}

// startRefresh returns the fetch under way, or starts one. Unless force is
// set it starts none (and returns nil) within the refresh interval of the
// last attempt, so a flood of unknown kids cannot hammer the issuer.
// The fetch runs detached from any caller's context: one caller giving up
// must not fail the fetch for the others.
func (v *Verifier) startRefresh(force bool) *flight {
	v.refreshMu.Lock()
	defer v.refreshMu.Unlock()
	if v.inflight != nil {
		return v.inflight
	}
	now := v.now()
	interval := v.minRefresh
	if v.keys.Load() == nil {
		interval = min(interval, bootstrapRetryInterval)
	}
	if !force && !v.lastAttempt.IsZero() && now.Sub(v.lastAttempt) < interval {
		return nil
	}
	v.lastAttempt = now
	f := &flight{done: make(chan struct{})}
	v.inflight = f
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
		defer cancel()
		f.err = v.refresh(ctx)
		if f.err != nil {
			v.log.LogAttrs(ctx, slog.LevelWarn, "entra: key refresh failed; keeping cached keys",
				slog.String("error", f.err.Error()))
		}
		v.refreshMu.Lock()
		v.inflight = nil
		v.lastRefreshErr = f.err
		v.refreshMu.Unlock()
		close(f.done)
	}()
	return f
}

// refresh fetches the key set (discovering its URL first if needed) and
// publishes it. On failure the previous set stays in use.
func (v *Verifier) refresh(ctx context.Context) error {
	v.refreshMu.Lock()
	jwksURI := v.jwksURI
	v.refreshMu.Unlock()
	if jwksURI == "" {
		var err error
		if jwksURI, err = v.discover(ctx); err != nil {
			return err
		}
	}
	v.fetches.Add(1)
	ks, err := v.fetchKeys(ctx, jwksURI)
	v.refreshMu.Lock()
	if err != nil {
		v.jwksURI = "" // rediscover next time in case the document moved
	} else {
		v.jwksURI = jwksURI
	}
	v.refreshMu.Unlock()
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
func (v *Verifier) discover(ctx context.Context) (string, error) {
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := v.getJSON(ctx, v.discoveryURL, &doc); err != nil {
		return "", fmt.Errorf("entra: fetching discovery document: %w", err)
	}
	if doc.Issuer != v.discoveryIss {
		return "", fmt.Errorf("entra: discovery document names issuer %q, want %q", doc.Issuer, v.discoveryIss)
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
func (v *Verifier) fetchKeys(ctx context.Context, jwksURI string) (*keySet, error) {
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
func (v *Verifier) getJSON(ctx context.Context, url string, dst any) error {
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
