package signin

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/entra-mcp/functions-mcp/handler/store"
	"github.com/entra-mcp/functions-mcp/handler/valid"
)

// MSAL Go keeps one in-memory token cache per client, replaced wholesale by
// every Replace and read without its lock by AcquireTokenSilent. One client
// shared by concurrent users therefore mixes their tokens. So each call gets
// exclusive use of a pooled client, and the client's cache accessor loads
// exactly one user's cache from Redis (or an empty one) for that call.

// pool hands out confidential clients one call at a time.
type pool struct {
	clients chan *pooled
}

// pooled is one MSAL client and the cache accessor that belongs to it.
type pooled struct {
	client confidential.Client
	cache  *userCache
}

func newPool(size int, authority, clientID string, cred confidential.Credential, httpClient *http.Client, publicCloud bool, sessions *store.Sessions) (*pool, error) {
	p := &pool{clients: make(chan *pooled, size)}
	// One discovery for the whole pool, not one per client.
	hc := &http.Client{Timeout: 30 * time.Second}
	if httpClient != nil {
		c := *httpClient
		hc = &c
	}
	hc.Transport = newDiscoveryCache(hc.Transport)
	for i := 0; i < size; i++ {
		uc := &userCache{sessions: sessions}
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
// not know its user yet (redeeming an authorization code).
func (p *pool) with(ctx context.Context, user string, fn func(c confidential.Client) error) error {
	var pc *pooled
	select {
	case pc = <-p.clients:
	case <-ctx.Done():
		return fmt.Errorf("wait for an MSAL client: %w", ctx.Err())
	}
	pc.cache.begin(user)
	defer func() {
		pc.cache.end()
		p.clients <- pc
	}()
	return fn(pc.client)
}

// userCache is MSAL's cache accessor for one pooled client. Between begin
// and end it serves a single user's cache; the pool guarantees no other
// call uses it meanwhile.
type userCache struct {
	sessions *store.Sessions
	user     string // home account id the call is for; may be learnt from hints
	memo     []byte // the user's cache as loaded or exported during this call
	loaded   bool
}

func (u *userCache) begin(user string) {
	u.user, u.memo, u.loaded = user, nil, false
}

func (u *userCache) end() { u.begin("") }

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
		data, found, err := u.sessions.LoadMSAL(ctx, tid, oid)
		if err != nil {
			return err
		}
		if !found {
			data = []byte(emptyCacheJSON)
		}
		u.user, u.memo, u.loaded = user, data, true
	}
	return c.Unmarshal(u.memo)
}

// Export stores the user's cache, sealed, in Redis.
func (u *userCache) Export(ctx context.Context, c cache.Marshaler, hints cache.ExportHints) error {
	user, ok := u.resolve(hints.PartitionKey)
	if !ok {
		return nil // nothing user-scoped to keep
	}
	data, err := c.Marshal()
	if err != nil {
		return fmt.Errorf("marshal MSAL cache: %w", err)
	}
	tid, oid, _ := splitHome(user)
	if err := u.sessions.SaveMSAL(ctx, tid, oid, data, msalCacheTTL); err != nil {
		return err
	}
	u.user, u.memo, u.loaded = user, data, true
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

func isHome(s string) bool {
	_, _, ok := splitHome(s)
	return ok
}

func homeAccountID(tid, oid string) string { return oid + "." + tid }
