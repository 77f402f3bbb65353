package signin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/entra-mcp/functions-mcp/handler/seal"
	"github.com/entra-mcp/functions-mcp/handler/store"
	"github.com/entra-mcp/functions-mcp/handler/valid"
)

// MSAL Go keeps one in-memory token cache per client, replaced wholesale by
// every Replace and read without its lock by AcquireTokenSilent. One client
// shared by concurrent users therefore mixes their tokens. So each call gets
// exclusive use of a pooled client, and the client's cache accessor loads
// exactly one user's cache from Redis (or an empty one) for that call.

// pool hands out confidential clients one call at a time. Redeeming an
// authorization code is the one call an anonymous request can cause (a
// made-up code in a callback), so at most half the pool does that at once:
// refreshes of signed-in users always find a client.
type pool struct {
	clients chan *pooled
	redeems chan struct{}
}

// pooled is one MSAL client and the cache accessor that belongs to it.
type pooled struct {
	client confidential.Client
	cache  *userCache
}

func newPool(size int, authority, clientID string, cred confidential.Credential, httpClient *http.Client, publicCloud bool, sessions *store.Sessions, log *slog.Logger) (*pool, error) {
	p := &pool{clients: make(chan *pooled, size), redeems: make(chan struct{}, max(size/2, 1))}
	// One discovery for the whole pool, not one per client.
	hc := &http.Client{Timeout: 30 * time.Second}
	if httpClient != nil {
		c := *httpClient
		hc = &c
	}
	hc.Transport = newDiscoveryCache(hc.Transport)
	for i := 0; i < size; i++ {
		uc := &userCache{sessions: sessions, log: log}
		opts := []confidential.Option{confidential.WithCache(uc), confidential.WithHTTPClient(hc)}
		if !publicCloud {
			// Instance discovery asks login.microsoftonline.com about the
			// authority, which fails for sovereign clouds' private hosts and
			// for a local stand-in.
			opts = append(opts, confidential.WithInstanceDiscovery(false))
		}
		c, err := confidential.New(authority, clientID, cred, opts...)
		if err != nil {
			return nil, fmt.Errorf("create MSAL client: %w", err)
		}
		p.clients <- &pooled{client: c, cache: uc}
	}
	return p, nil
}

// with runs fn with a client of its own. user is the home account id
// ("<oid>.<tid>") whose cache the call works on, or "" for a call that does
// not know its user yet (redeeming an authorization code). It returns the
// user's epoch as read with their cache, if the call read it: whatever the
// call goes on to issue must carry that epoch.
func (p *pool) with(ctx context.Context, user string, fn func(c confidential.Client) error) (store.Epoch, error) {
	return p.call(ctx, user, time.Time{}, fn)
}

// call is with for a call that must fail with store.ErrRevoked if the
// user's sessions were revoked at or after notBefore (on Redis's clock).
func (p *pool) call(ctx context.Context, user string, notBefore time.Time, fn func(c confidential.Client) error) (store.Epoch, error) {
	var pc *pooled
	select {
	case pc = <-p.clients:
	case <-ctx.Done():
		return 0, fmt.Errorf("wait for an MSAL client: %w", ctx.Err())
	}
	pc.cache.begin(user, notBefore)
	defer func() {
		pc.cache.end()
		p.clients <- pc
	}()
	err := fn(pc.client)
	return pc.cache.epoch, err
}

// redeem is with for redeeming an authorization code, within the share of
// the pool that redemptions may take. The sign-in began at started (Redis's
// clock): a revocation of the user since then refuses it.
func (p *pool) redeem(ctx context.Context, started time.Time, fn func(c confidential.Client) error) (store.Epoch, error) {
	select {
	case p.redeems <- struct{}{}:
	case <-ctx.Done():
		return 0, fmt.Errorf("wait for an MSAL client: %w", ctx.Err())
	}
	defer func() { <-p.redeems }()
	return p.call(ctx, "", started, fn)
}

// userCache is MSAL's cache accessor for one pooled client. Between begin
// and end it serves a single user's cache; the pool guarantees no other
// call uses it meanwhile.
type userCache struct {
	sessions  *store.Sessions
	log       *slog.Logger
	user      string      // home account id the call is for; may be learnt from hints
	notBefore time.Time   // a revocation at or after this refuses the call
	memo      []byte      // the user's cache as loaded or exported during this call
	epoch     store.Epoch // the user's epoch, read with the cache
	loaded    bool
}

func (u *userCache) begin(user string, notBefore time.Time) {
	u.user, u.notBefore, u.memo, u.epoch, u.loaded = user, notBefore, nil, 0, false
}

func (u *userCache) end() { u.begin("", time.Time{}) }

// Replace loads the user's cache into MSAL, and an empty cache whenever the
// call's user is unknown or MSAL asks about another partition: never what an
// earlier call left behind.
func (u *userCache) Replace(ctx context.Context, c cache.Unmarshaler, hints cache.ReplaceHints) error {
	user, ok := u.resolve(hints.PartitionKey)
	if !ok {
		return c.Unmarshal([]byte(emptyCacheJSON))
	}
	if !u.loaded {
		tid, oid, _ := splitHome(user)
		data, found, st, err := u.sessions.LoadMSAL(ctx, tid, oid)
		if errors.Is(err, seal.ErrOpen) {
			// Sealed with a key since removed from the ring (an emergency
			// rotation): the cache is lost, not the user. Start empty; the
			// next save reseals it with a key the ring holds.
			u.log.LogAttrs(ctx, slog.LevelWarn, "MSAL cache does not open with the current keys; starting an empty one",
				slog.String("tid", tid), slog.String("oid", oid))
			err, found = nil, false
		}
		if err != nil {
			return err
		}
		if !u.notBefore.IsZero() && !st.RevokedAt.Before(u.notBefore) {
			// The user's sessions were revoked while this sign-in was
			// under way: it must not outlive the revocation either.
			return fmt.Errorf("load MSAL cache: %w", store.ErrRevoked)
		}
		if !found {
			data = []byte(emptyCacheJSON)
		}
		u.user, u.memo, u.epoch, u.loaded = user, data, st.Epoch, true
	}
	return c.Unmarshal(u.memo)
}

// Export stores the user's cache, sealed, in Redis, unless the user's
// sessions were revoked since it was loaded (store.ErrRevoked).
func (u *userCache) Export(ctx context.Context, c cache.Marshaler, hints cache.ExportHints) error {
	user, ok := u.resolve(hints.PartitionKey)
	if !ok {
		return nil // nothing user-scoped to keep
	}
	if !u.loaded {
		// MSAL replaces before it exports; a cache that was never loaded
		// has no epoch to check against.
		return errors.New("export of an MSAL cache that was not loaded")
	}
	data, err := c.Marshal()
	if err != nil {
		return fmt.Errorf("marshal MSAL cache: %w", err)
	}
	tid, oid, _ := splitHome(user)
	if err := u.sessions.SaveMSAL(ctx, tid, oid, data, msalCacheTTL, u.epoch); err != nil {
		return err
	}
	u.memo = data
	return nil
}

// resolve names the user a Replace or Export is about. A call that began
// without a user (code redemption) learns it from MSAL's partition key,
// which MSAL takes from the token endpoint's client_info.
func (u *userCache) resolve(partition string) (string, bool) {
	user := u.user
	if user == "" {
		user = partition
	}
	if partition != "" && partition != user {
		return "", false
	}
	if _, _, ok := splitHome(user); !ok {
		return "", false
	}
	return user, true
}

// emptyCacheJSON is what an empty MSAL cache unmarshals from.
const emptyCacheJSON = "{}"

// splitHome splits an MSAL home account id "<oid>.<tid>".
func splitHome(home string) (tid, oid string, ok bool) {
	oid, tid, found := strings.Cut(home, ".")
	if !found || !valid.LowerGUID(oid) || !valid.LowerGUID(tid) {
		return "", "", false
	}
	return tid, oid, true
}

func homeAccountID(tid, oid string) string { return oid + "." + tid }
