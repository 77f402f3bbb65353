package secrets

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
	"github.com/entra-mcp/functions-mcp/handler/outage"
)

// Defaults of the Options that bound Secret's cache.
const (
	// DefaultSecretTTL is how long Secret keeps a value when
	// Options.SecretTTL is zero.
	DefaultSecretTTL = 5 * time.Minute
	// DefaultMaxSecrets is how many names Secret keeps values for when
	// Options.MaxSecrets is zero.
	DefaultMaxSecrets = 64
)

// maxSecretName is Key Vault's longest secret name.
const maxSecretName = 127

// Secret returns the current value of the Key Vault secret name (its
// latest enabled version that is unexpired and valid now), without
// surrounding space.
//
// It is meant to be called once per request: a value is kept for
// Options.SecretTTL, so that requests do not become Key Vault reads, and
// concurrent callers asking for a name not kept yet share one read. A failed read is not kept: the next call tries again. The read
// is bounded by Retry.AttemptTimeout and goes on when the caller that
// started it gives up, so that the callers waiting with it still get the
// value.
//
// A name that Key Vault would refuse is refused without a request. Errors
// name the secret and never hold its value. When Key Vault (or the
// managed identity) is unavailable or too slow, the error wraps
// outage.ErrUnavailable: try again later. Other errors (no such secret,
// no permission, no usable version, an empty value) are configuration to
// fix.
func (s *Store) Secret(ctx context.Context, name string) (string, error) {
	if !validSecretName(name) {
		// The name is not repeated: one Key Vault would refuse may well be
		// a value pasted where its name belongs.
		return "", fmt.Errorf("a Key Vault secret name of %d bytes: want 1-%d letters, digits and dashes", len(name), maxSecretName)
	}
	v, f := s.cachedSecret(ctx, name)
	if f == nil {
		return v, nil
	}
	select {
	case <-f.done:
		return f.value, f.err
	case <-ctx.Done():
		err := ctx.Err()
		if errors.Is(err, context.DeadlineExceeded) {
			// Key Vault did not answer within the caller's time.
			err = outage.New(Dependency, err)
		}
		return "", fmt.Errorf("read %s: %w", namedWhat(name), err)
	}
}

// ForgetSecret drops the kept value of name, so that the next Secret
// reads Key Vault afresh. Call it when the value was refused (rotated in
// Key Vault since it was read): without it the refusals would go on until
// the value expires. A read under way when ForgetSecret is called still
// answers the callers waiting for it, but its value is not kept.
func (s *Store) ForgetSecret(name string) {
	c := &s.named
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.values, name)
	if f := c.flights[name]; f != nil {
		f.forgotten = true
		delete(c.flights, name)
	}
}

// cachedSecret returns the kept value of name, or else the read to wait
// for, started if none is under way.
func (s *Store) cachedSecret(ctx context.Context, name string) (string, *secretRead) {
	c := &s.named
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.values[name]; ok && s.opts.Now().Before(e.expires) {
		return e.value, nil
	}
	if f := c.flights[name]; f != nil {
		return "", f
	}
	f := &secretRead{done: make(chan struct{})}
	c.flights[name] = f
	// Not bound to the caller's cancellation: others may join this read.
	go s.fetchSecret(context.WithoutCancel(ctx), name, f)
	return "", f
}

// fetchSecret reads name for f, keeps the value unless forgotten meanwhile,
// and lets f's waiters go.
func (s *Store) fetchSecret(ctx context.Context, name string, f *secretRead) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Retry.AttemptTimeout)
	defer cancel()
	// Counted from before the read, so that a slow read does not stretch
	// how long a value may be stale.
	expires := s.opts.Now().Add(s.opts.SecretTTL)
	v, err := s.vault.readNamed(ctx, name)

	c := &s.named
	c.mu.Lock()
	if c.flights[name] == f {
		delete(c.flights, name)
	}
	if err == nil && !f.forgotten {
		c.keep(name, cachedValue{value: v, expires: expires}, s.opts.Now(), s.opts.MaxSecrets)
	}
	c.mu.Unlock()
	f.value, f.err = v, err
	close(f.done)
}

// namedCache holds Secret's values and the reads under way, by name.
type namedCache struct {
	mu      sync.Mutex
	values  map[string]cachedValue
	flights map[string]*secretRead
}

func (c *namedCache) init() {
	c.values = map[string]cachedValue{}
	c.flights = map[string]*secretRead{}
}

// cachedValue is a value Secret read, and until when it may be used.
type cachedValue struct {
	value   string
	expires time.Time
}

// secretRead is one read of a named secret under way. value and err are
// set before done is closed and not changed after.
type secretRead struct {
	done      chan struct{}
	value     string
	err       error
	forgotten bool // ForgetSecret was called during the read; guarded by namedCache.mu
}

// keep stores e for name, making room when limit names are kept: expired
// values go first, then the one due to expire soonest (the oldest read),
// which costs at most an early re-read. Call with c.mu held.
func (c *namedCache) keep(name string, e cachedValue, now time.Time, limit int) {
	if _, ok := c.values[name]; !ok && len(c.values) >= limit {
		var oldest string
		var oldestAt time.Time
		for n, v := range c.values {
			if !now.Before(v.expires) {
				delete(c.values, n)
				continue
			}
			if oldest == "" || v.expires.Before(oldestAt) {
				oldest, oldestAt = n, v.expires
			}
		}
		if len(c.values) >= limit {
			delete(c.values, oldest)
		}
	}
	c.values[name] = e
}

// validSecretName reports whether Key Vault could hold a secret called
// name, so that a name it would refuse costs no request.
func validSecretName(name string) bool {
	if name == "" || len(name) > maxSecretName {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// namedWhat names secret name in errors.
func namedWhat(name string) string { return fmt.Sprintf("Key Vault secret %q", name) }

// readNamed reads the current value of secret name for Secret.
func (l *vaultLoader) readNamed(ctx context.Context, name string) (string, error) {
	what := namedWhat(name)
	sec, err := l.readCurrent(ctx, name, what)
	if err != nil {
		return "", err
	}
	return trimmedValue(sec, what)
}

// readCurrent reads the newest version of secret name that is enabled,
// unexpired and valid now. That is nearly always the latest version, read
// in one request. When the latest is disabled (Key Vault then refuses it
// with 403), expired or not valid yet, the versions are listed and the
// newest usable one read: disabling a bad new version rolls back to the
// one before, as it does for the sealing keys.
func (l *vaultLoader) readCurrent(ctx context.Context, name, what string) (azsecrets.Secret, error) {
	sec, err := l.readSecret(ctx, name, "", what)
	if err == nil {
		now := l.opts.Now()
		if !expired(sec.Attributes, now) && !pending(sec.Attributes, now) {
			return sec, nil
		}
	} else if !forbidden(err) {
		return azsecrets.Secret{}, err
	}
	versions, err := l.listVersions(ctx, name, what)
	if err != nil {
		return azsecrets.Secret{}, err
	}
	sortKeyVersions(versions)
	if len(versions) == 0 || versions[0].pending {
		return azsecrets.Secret{}, fmt.Errorf("%s has no enabled, unexpired and currently valid version", what)
	}
	return l.readSecret(ctx, name, versions[0].id, what+" version "+versions[0].id)
}

// forbidden reports whether Key Vault refused a read with 403: a disabled
// version, or an identity without permission (which the listing that
// follows then reports).
func forbidden(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}
