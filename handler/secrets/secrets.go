// Package secrets holds the handler's secrets — the app registration's
// client secret (for MSAL) and the token-sealing key ring — read from Key
// Vault through the managed identity. (Without a vault they come from the
// environment, which package config reads; nothing here reads it.)
//
// In Key Vault the sealing keys are the versions of one secret: every
// enabled, unexpired version is a base64 32-byte key, and the newest seals.
// Adding a version therefore rotates the key without signing anyone out,
// because the older versions still open what they sealed; disabling (or
// expiring) a version retires its key. A version whose not-before date is
// in the future is loaded to open data but not yet used to seal: setting
// it at least one reload interval ahead lets every instance learn the new
// key before any instance seals with it.
//
// A Store keeps the current values behind an atomic pointer and reloads
// them periodically (Run); when a reload fails it keeps the last good
// values. It also reads other secrets by name on demand (Secret), such as
// the keys upstream servers are called with, and keeps each for a few
// minutes. No error or log line from this package holds a secret value.
package secrets

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
	"github.com/entra-mcp/functions-mcp/handler/outage"
	"github.com/entra-mcp/functions-mcp/handler/seal"
)

// Dependency names Key Vault in the outage errors of this package
// (outage.Dependency), so that a Key Vault outage is not reported as
// another service's.
const Dependency = "key vault"

// Retry bounds the start-up attempts to read Key Vault. The zero value
// means the defaults: 5 attempts, 1 s doubling to at most 8 s between
// them, 10 s per attempt, 20 s in all — inside the Functions host's
// start-up limit, after which the process exits and the host restarts it.
type Retry struct {
	Attempts       int           // default 5
	Delay          time.Duration // before the second attempt; doubles; default 1 s
	MaxDelay       time.Duration // default 8 s
	AttemptTimeout time.Duration // default 10 s
	Total          time.Duration // default 20 s
}

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = 5
	}
	if r.Delay <= 0 {
		r.Delay = time.Second
	}
	if r.MaxDelay <= 0 {
		r.MaxDelay = 8 * time.Second
	}
	if r.AttemptTimeout <= 0 {
		r.AttemptTimeout = 10 * time.Second
	}
	if r.Total <= 0 {
		r.Total = 20 * time.Second
	}
	return r
}

// Options configures New.
type Options struct {
	// Settings say where the secrets are (config reads them, with their
	// defaults); VaultURI and the names are required. A zero interval
	// takes the default.
	Settings

	// Secretless is set when MSAL authenticates the app registration with
	// a managed-identity assertion (azcred.AssertionCredential): then no
	// client secret is read, and Values.ClientSecret is empty.
	Secretless bool

	// Credential reaches Key Vault (azcred.New). Required.
	Credential azcore.TokenCredential

	// ClientOptions configures the Key Vault client's HTTP pipeline
	// (Transport for tests, Cloud for sovereign clouds). Its retries are
	// off unless set: Retry and Run do the retrying.
	ClientOptions azcore.ClientOptions

	// Retry bounds the start-up attempts.
	Retry Retry

	// MinReloadGap is the least time between two reloads that
	// RequestReload asks for; one minute when zero.
	MinReloadGap time.Duration

	// SecretTTL is how long Secret keeps a value before reading Key Vault
	// again: the bound on how long a rotated value takes to reach every
	// instance without a refusal to prompt ForgetSecret. Five minutes when
	// zero.
	SecretTTL time.Duration

	// MaxSecrets is the most names Secret keeps values for at once; 64
	// when zero. The names come from configuration, so the bound is never
	// reached in practice; it is there so that a caller passing names it
	// did not get from configuration cannot grow memory without end.
	MaxSecrets int

	// Logger receives reload warnings and key changes (never values);
	// slog.Default() when nil.
	Logger *slog.Logger

	// Now is the clock that decides which versions have expired and when
	// Secret's values are due to be read again; time.Now when nil.
	Now func() time.Time
}

// Values are the secrets at one moment. They are never changed after
// being published; a reload publishes new Values.
type Values struct {
	// ClientSecret is the app registration's client secret; empty in
	// secretless mode.
	ClientSecret string
	// Ring seals with the newest key and opens with all of them.
	Ring *seal.Ring
	// KeyVersions are the Key Vault versions of the ring's keys, in the
	// ring's order.
	KeyVersions []string
	// Source is the vault's URI.
	Source string
	// LoadedAt is when the values were read.
	LoadedAt time.Time
}

// String describes v without its secrets, so that printing Values by
// mistake leaks nothing.
func (v *Values) String() string {
	return fmt.Sprintf("secrets from %s at %s (client secret %s, sealing keys %s)",
		v.Source, v.LoadedAt.UTC().Format(time.RFC3339), presence(v.ClientSecret), strings.Join(v.Ring.KeyIDs(), ","))
}

// GoString is String, for %#v.
func (v *Values) GoString() string { return v.String() }

// LogValue implements slog.LogValuer without the secrets.
func (v *Values) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("source", v.Source),
		slog.String("client_secret", presence(v.ClientSecret)),
		slog.Any("key_ids", v.Ring.KeyIDs()),
		slog.Any("key_versions", v.KeyVersions),
	)
}

func presence(s string) string {
	if s == "" {
		return "absent"
	}
	return "present"
}

// Store holds the current Values. It is safe for concurrent use.
type Store struct {
	cur    atomic.Pointer[Values]
	load   func(ctx context.Context) (*Values, error)
	source string
	opts   Options
	log    *slog.Logger
	kick   chan struct{}

	mu       sync.Mutex
	lastLoad time.Time     // start of the last reload attempt
	flight   chan struct{} // closed when the reload for an unknown key under way ends

	vault *vaultLoader
	named namedCache // Secret's values and reads under way
}

// New reads the secrets from Key Vault, with bounded retries, and returns
// a Store holding them. Its error is one line, names the setting at
// fault, and holds no secret: print it and exit non-zero.
func New(ctx context.Context, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if err := opts.check(); err != nil {
		return nil, err
	}
	s := &Store{opts: opts, log: opts.Logger, kick: make(chan struct{}, 1)}
	co := opts.ClientOptions
	if co.Retry.MaxRetries == 0 {
		co.Retry.MaxRetries = -1
	}
	client, err := azsecrets.NewClient(opts.VaultURI, opts.Credential, &azsecrets.ClientOptions{ClientOptions: co})
	if err != nil {
		return nil, fmt.Errorf("%s %s: create Key Vault client: %w", EnvVaultURI, opts.VaultURI, err)
	}
	vl := &vaultLoader{client: client, opts: opts}
	s.load = vl.load
	s.vault = vl
	s.named.init()
	s.source = opts.VaultURI

	if err := s.loadAtStart(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (o Options) withDefaults() Options {
	if o.ReloadInterval <= 0 {
		o.ReloadInterval = DefaultReloadInterval
	}
	if o.MinReloadGap <= 0 {
		o.MinReloadGap = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SecretTTL <= 0 {
		o.SecretTTL = DefaultSecretTTL
	}
	if o.MaxSecrets <= 0 {
		o.MaxSecrets = DefaultMaxSecrets
	}
	o.Retry = o.Retry.withDefaults()
	return o
}

// check refuses options that name no vault, secret or way to reach them.
func (o Options) check() error {
	switch {
	case o.VaultURI == "":
		return fmt.Errorf("%s: required (secrets without a vault come from the environment, through config)", EnvVaultURI)
	case o.Credential == nil:
		return fmt.Errorf("%s: set, but no credential to reach it (a managed identity in Azure, Azure CLI login locally)", EnvVaultURI)
	case o.ClientSecretName == "" && !o.Secretless:
		return fmt.Errorf("%s: no secret name", EnvClientSecretName)
	case o.SealingKeyName == "":
		return fmt.Errorf("%s: no secret name", EnvSealingKeyName)
	}
	return nil
}

// loadAtStart tries to read Key Vault until it works, Retry.Attempts have
// failed, or Retry.Total has passed. Right after a deployment the
// identity's role assignment may still be propagating, so every failure is
// retried, not only the obviously transient ones.
func (s *Store) loadAtStart(ctx context.Context) error {
	r := s.opts.Retry
	ctx, cancel := context.WithTimeout(ctx, r.Total)
	defer cancel()
	start := time.Now()
	delay := r.Delay
	var lastErr error
	attempts := 0
	for attempts < r.Attempts {
		attempts++
		v, err := s.loadOnce(ctx)
		if err == nil {
			s.cur.Store(v)
			s.log.Info("secrets loaded", "secrets", v)
			return nil
		}
		lastErr = err
		if attempts == r.Attempts || ctx.Err() != nil {
			break
		}
		s.log.Warn("reading secrets from Key Vault failed; retrying",
			"vault", s.source, "attempt", attempts, "retry_in", delay.String(), "error", err.Error())
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		if ctx.Err() != nil {
			break
		}
		delay = min(2*delay, r.MaxDelay)
	}
	return fmt.Errorf("%s %s: reading secrets failed after %d attempts in %s: %w",
		EnvVaultURI, s.source, attempts, time.Since(start).Round(100*time.Millisecond), lastErr)
}

// loadOnce makes one attempt, bounded by Retry.AttemptTimeout.
func (s *Store) loadOnce(ctx context.Context) (*Values, error) {
	s.mu.Lock()
	s.lastLoad = time.Now()
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, s.opts.Retry.AttemptTimeout)
	defer cancel()
	v, err := s.load(ctx)
	if err != nil {
		return nil, err
	}
	v.LoadedAt = s.opts.Now()
	return v, nil
}

// Current returns the current values. Use them for one operation and ask
// again for the next: a reload may replace them at any time.
func (s *Store) Current() *Values { return s.cur.Load() }

// Ring returns the current sealing key ring.
func (s *Store) Ring() *seal.Ring { return s.cur.Load().Ring }

// ClientSecret returns the current client secret; empty in secretless
// mode.
func (s *Store) ClientSecret() string { return s.cur.Load().ClientSecret }

// Seal seals with the current ring's newest key (see seal.Ring.Seal).
// A Store can stand wherever a ring is needed and always uses the latest.
func (s *Store) Seal(name string, plaintext []byte) ([]byte, error) {
	return s.Ring().Seal(name, plaintext)
}

// Open opens with the current ring (see seal.Ring.Open). When the value
// was sealed with a key the ring lacks, that is likely a key another
// instance loaded first (a rotation in progress): Open reloads the vault
// there and then, at most once per MinReloadGap, with concurrent callers
// waiting for the same reload, and tries again. A key still unknown after
// that has been removed, and Open fails with seal.ErrOpen: callers treat
// such data as lost, not as an outage.
func (s *Store) Open(name string, sealed []byte) ([]byte, error) {
	ring := s.Ring()
	plain, err := ring.Open(name, sealed)
	// Another caller's reload may have landed since this one read the
	// ring: then the gap refuses a reload, but the new ring may open it.
	if err != nil && unknownKey(ring, sealed) && (s.reloadForUnknownKey() || s.Ring() != ring) {
		plain, err = s.Ring().Open(name, sealed)
	}
	return plain, err
}

// reloadForUnknownKey reloads the vault now, unless one was attempted
// within MinReloadGap, and reports whether the ring may have changed. A
// reload already under way is joined, not repeated.
func (s *Store) reloadForUnknownKey() bool {
	s.mu.Lock()
	if f := s.flight; f != nil {
		s.mu.Unlock()
		<-f
		return true
	}
	if time.Since(s.lastLoad) < s.opts.MinReloadGap {
		s.mu.Unlock()
		return false
	}
	f := make(chan struct{})
	s.flight = f
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.flight = nil
		s.mu.Unlock()
		close(f)
	}()
	if err := s.Reload(context.Background()); err != nil {
		s.log.Warn("reloading secrets for an unknown sealing key failed; keeping the last good values", "error", err.Error())
		return false
	}
	return true
}

// unknownKey reports whether sealed names a key id (bytes 1-8 of the
// format seal documents) that ring does not hold.
func unknownKey(ring *seal.Ring, sealed []byte) bool {
	if len(sealed) < 9 {
		return false
	}
	return !slices.Contains(ring.KeyIDs(), hex.EncodeToString(sealed[1:9]))
}

// RequestReload asks Run to reload soon, but not sooner than MinReloadGap
// after the previous attempt. It never blocks.
func (s *Store) RequestReload() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Reload reads the secrets once more. On success the new values replace
// the current ones; on failure the current ones stay and the error (with
// no secret in it) is returned.
func (s *Store) Reload(ctx context.Context) error {
	v, err := s.loadOnce(ctx)
	if err != nil {
		return fmt.Errorf("%s %s: %w", EnvVaultURI, s.source, err)
	}
	old := s.cur.Swap(v)
	if !slices.Equal(old.Ring.KeyIDs(), v.Ring.KeyIDs()) || old.ClientSecret != v.ClientSecret {
		s.log.Info("secrets changed", "secrets", v)
	}
	return nil
}

// Run reloads the secrets every ReloadInterval until ctx is done, and
// sooner when RequestReload asks. A failed reload keeps the last good
// values, logs a warning, and is retried with growing delays up to the
// interval.
func (s *Store) Run(ctx context.Context) {
	interval := s.opts.ReloadInterval
	retryDelay := s.opts.Retry.Delay
	t := time.NewTimer(interval)
	due := time.Now().Add(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
			s.mu.Lock()
			wait := s.opts.MinReloadGap - time.Since(s.lastLoad)
			s.mu.Unlock()
			if wait > 0 {
				// Too soon after the last attempt: bring the timer forward
				// to the earliest allowed moment, never push it back.
				if at := time.Now().Add(wait); at.Before(due) {
					t.Reset(wait)
					due = at
				}
				continue
			}
		case <-t.C:
		}
		next := interval
		if err := s.Reload(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			next = min(retryDelay, interval)
			retryDelay = min(2*retryDelay, interval)
			s.log.Warn("reloading secrets failed; keeping the last good values",
				"error", err.Error(), "retry_in", next.String(), "values_from", s.Current().LoadedAt.UTC().Format(time.RFC3339))
		} else {
			retryDelay = s.opts.Retry.Delay
		}
		t.Reset(next)
		due = time.Now().Add(next)
	}
}

// vaultLoader reads the secrets from Key Vault.
type vaultLoader struct {
	client *azsecrets.Client
	opts   Options
}

func (l *vaultLoader) load(ctx context.Context) (*Values, error) {
	v := &Values{Source: l.opts.VaultURI}
	if !l.opts.Secretless {
		name := l.opts.ClientSecretName
		what := fmt.Sprintf("secret %q (%s)", name, EnvClientSecretName)
		sec, err := l.readSecret(ctx, name, "", what)
		if err != nil {
			return nil, err
		}
		if v.ClientSecret, err = trimmedValue(sec, what); err != nil {
			return nil, err
		}
	}
	ring, versions, err := l.loadRing(ctx)
	if err != nil {
		return nil, err
	}
	v.Ring, v.KeyVersions = ring, versions
	return v, nil
}

// keyVersion is a version of the sealing-key secret worth loading.
type keyVersion struct {
	id      string
	created time.Time
	pending bool // not valid before a future time: open with it, do not seal
}

// loadRing lists the sealing-key secret's versions, keeps the enabled and
// unexpired ones, and reads each: newest first, except that versions not
// valid yet go last so that they never seal.
func (l *vaultLoader) loadRing(ctx context.Context) (*seal.Ring, []string, error) {
	what := fmt.Sprintf("secret %q (%s)", l.opts.SealingKeyName, EnvSealingKeyName)
	versions, err := l.listVersions(ctx, l.opts.SealingKeyName, what)
	if err != nil {
		return nil, nil, err
	}
	sortKeyVersions(versions)
	if len(versions) == 0 || versions[0].pending {
		return nil, nil, fmt.Errorf("%s has no enabled, unexpired and currently valid version", what)
	}
	keys, ids, err := l.readKeys(ctx, what, versions)
	if err != nil {
		return nil, nil, err
	}
	ring, err := seal.NewRing(keys...)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	return ring, ids, nil
}

// listVersions lists the versions of secret name worth loading (enabled
// and unexpired), in Key Vault's order (none in particular).
func (l *vaultLoader) listVersions(ctx context.Context, name, what string) ([]keyVersion, error) {
	now := l.opts.Now()
	var versions []keyVersion
	pager := l.client.NewListSecretPropertiesVersionsPager(name, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, opError("list versions of "+what, err)
		}
		for _, p := range page.Value {
			if kv, ok := usableVersion(p, now); ok {
				versions = append(versions, kv)
			}
		}
	}
	return versions, nil
}

// usableVersion reports whether the listed version p is enabled and
// unexpired at now, and describes it.
func usableVersion(p *azsecrets.SecretProperties, now time.Time) (keyVersion, bool) {
	if p == nil || p.ID == nil || p.Attributes == nil {
		return keyVersion{}, false
	}
	a := p.Attributes
	if a.Enabled == nil || !*a.Enabled || expired(a, now) {
		return keyVersion{}, false
	}
	kv := keyVersion{id: p.ID.Version(), pending: pending(a, now)}
	switch {
	case a.Created != nil:
		kv.created = *a.Created
	case a.Updated != nil:
		kv.created = *a.Updated
	}
	return kv, kv.id != ""
}

// expired reports whether a version with attributes a has expired at now.
func expired(a *azsecrets.SecretAttributes, now time.Time) bool {
	return a != nil && a.Expires != nil && !a.Expires.After(now)
}

// pending reports whether a version with attributes a is not valid yet at
// now.
func pending(a *azsecrets.SecretAttributes, now time.Time) bool {
	return a != nil && a.NotBefore != nil && a.NotBefore.After(now)
}

// sortKeyVersions puts the versions valid now first, newest first, then
// the pending ones.
func sortKeyVersions(versions []keyVersion) {
	slices.SortFunc(versions, func(a, b keyVersion) int {
		if a.pending != b.pending {
			if a.pending {
				return 1
			}
			return -1
		}
		if c := b.created.Compare(a.created); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id) // only for a stable order
	})
}

// readKeys reads the key of each version, in order, and returns the
// distinct keys with the versions they came from.
func (l *vaultLoader) readKeys(ctx context.Context, what string, versions []keyVersion) (keys [][]byte, ids []string, err error) {
	for _, kv := range versions {
		sec, err := l.readSecret(ctx, l.opts.SealingKeyName, kv.id, what+" version "+kv.id)
		if err != nil {
			return nil, nil, err
		}
		k, err := decodeKey(*sec.Value)
		if err != nil {
			return nil, nil, fmt.Errorf("%s version %s: %w", what, kv.id, err)
		}
		// The same key saved again as a new version: keep its newest place.
		if slices.ContainsFunc(keys, func(prev []byte) bool { return string(prev) == string(k) }) {
			continue
		}
		keys = append(keys, k)
		ids = append(ids, kv.id)
	}
	return keys, ids, nil
}

// readSecret reads version (the latest when "") of secret name: the one
// place this package asks Key Vault for a value, so that every read fails
// in the same words and with the same outage classification. what names
// the secret in errors; the value never appears in one. The returned
// secret's Value is not nil.
func (l *vaultLoader) readSecret(ctx context.Context, name, version, what string) (azsecrets.Secret, error) {
	resp, err := l.client.GetSecret(ctx, name, version, nil)
	if err != nil {
		return azsecrets.Secret{}, opError("read "+what, err)
	}
	if resp.Value == nil {
		return azsecrets.Secret{}, fmt.Errorf("%s has no value", what)
	}
	return resp.Secret, nil
}

// trimmedValue is sec's value without surrounding space, refused when
// nothing is left: a value uploaded from a file often ends in a newline,
// which no client secret or header value means to hold.
func trimmedValue(sec azsecrets.Secret, what string) (string, error) {
	v := strings.TrimSpace(*sec.Value)
	if v == "" {
		return "", fmt.Errorf("%s is empty", what)
	}
	return v, nil
}

// decodeKey decodes one base64 32-byte key (standard or URL alphabet,
// padding optional, surrounding space ignored). Its errors never echo the
// value.
func decodeKey(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	if s == "" {
		return nil, errors.New("empty; want a base64 32-byte key")
	}
	k, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		k, err = base64.RawURLEncoding.DecodeString(s)
	}
	if err != nil {
		return nil, errors.New("not base64; want a base64 32-byte key")
	}
	if len(k) != seal.KeySize {
		return nil, fmt.Errorf("decodes to %d bytes, want %d", len(k), seal.KeySize)
	}
	return k, nil
}

// loadError is an error from Azure summed up in one line. The SDK's own
// messages span many lines (request, a ruler, the response body); the
// cause stays reachable through Unwrap for errors.As.
type loadError struct {
	msg string
	err error
}

func (e *loadError) Error() string { return e.msg }
func (e *loadError) Unwrap() error { return e.err }

// opError describes err, from doing op, in one line.
func opError(op string, err error) error {
	var re *azcore.ResponseError
	var afe *azidentity.AuthenticationFailedError
	var msg string
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		msg = "timed out"
	case errors.Is(err, context.Canceled):
		msg = "canceled"
	case errors.As(err, &afe):
		msg = "managed identity: " + firstLine(err.Error())
		if afe.RawResponse != nil {
			msg += fmt.Sprintf(" (HTTP %d)", afe.RawResponse.StatusCode)
		}
	case errors.As(err, &re):
		msg = fmt.Sprintf("HTTP %d", re.StatusCode)
		if re.ErrorCode != "" {
			msg += " " + re.ErrorCode
		}
		switch re.StatusCode {
		case 401, 403:
			msg += " (has the identity the Key Vault Secrets User role? is the version disabled?)"
		case 404:
			msg += " (no such secret)"
		}
	default:
		msg = firstLine(err.Error())
	}
	// The cause, not the message, carries the classification: the one
	// line stays the same either way.
	if unavailable(err) {
		err = outage.New(Dependency, err)
	}
	return &loadError{msg: op + ": " + msg, err: err}
}

// unavailable reports whether err, from reading Key Vault, means that it
// (or the managed identity that reaches it) could not serve the request
// now, as opposed to refusing it: throttled, failing, too slow or
// unreachable. Refusals (401, 403, 404, a bad request) are configuration
// to fix, and retrying them soon does not help.
func unavailable(err error) bool {
	var re *azcore.ResponseError
	var afe *azidentity.AuthenticationFailedError
	switch {
	case errors.Is(err, context.Canceled):
		return false // the caller left; nothing is known about Key Vault
	case errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.As(err, &afe):
		// Without a response the identity endpoint was not reached; the
		// SDK keeps no cause to look at.
		return afe.RawResponse == nil || transientStatus(afe.RawResponse.StatusCode)
	case errors.As(err, &re):
		return transientStatus(re.StatusCode)
	}
	return unreachable(err)
}

// transientStatus reports whether an HTTP status says "not now" rather
// than "no".
func transientStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// unreachable reports whether err is a failure to reach the vault at all.
// A vault name that does not resolve and a certificate that does not
// verify are not: they are a wrong URI or a wrong network, and stay so.
func unreachable(err error) bool {
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var ne net.Error
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return false
	case errors.As(err, &certErr):
		return false
	case errors.As(err, &ne):
		return true
	}
	// A connection dropped mid-answer.
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(s)
}
