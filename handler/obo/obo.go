// Package obo gets tokens for downstream APIs, such as Microsoft Graph, on
// behalf of the caller: Entra's on-behalf-of flow through MSAL Go, with the
// results kept sealed in Redis per user and scope.
//
// MSAL Go keeps on-behalf-of results in a partitioned in-memory cache that
// its cache.ExportReplace does not persist, and a client given a custom
// cache then fails on its next Replace (upstream issue #455). So the MSAL
// client here has no custom cache, and this package keeps the tokens
// itself:
//
//	obo:<tid>.<oid>:<h(scopes)>   sealed downstream access token; TTL = its expiry − margin
//
// where h is hex SHA-256 of the sorted, lower-cased scopes. The key comes
// from the verified principal, never from the token text, so one user can
// never be handed another's token.
package obo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/store"
)

// Defaults.
const (
	// DefaultExpiryMargin is how long before its expiry a kept token is
	// no longer handed out: long enough for a downstream call to finish,
	// and the same five minutes MSAL uses.
	DefaultExpiryMargin = 5 * time.Minute
	// defaultHTTPTimeout bounds one request to Entra when Options gives no
	// client.
	defaultHTTPTimeout = 10 * time.Second
	// clientUses is how many on-behalf-of requests one MSAL client serves
	// before it is replaced. MSAL's own partitioned cache keeps every
	// result, keyed by the incoming token, and never evicts; a fresh client
	// now and then bounds that memory. (Our Redis cache answers repeats, so
	// MSAL sees one request per user, scope and token lifetime.)
	clientUses = 1000
)

// Options configure a Client. Authority, ClientID, Credential, Redis and
// Ring are required.
type Options struct {
	// Authority is the authority URL as MSAL takes it, with the API's home
	// tenant: "https://login.microsoftonline.com/<tenant id>".
	Authority string
	// ClientID is the API application's client id: the audience of the
	// incoming tokens and the client that asks for downstream ones.
	ClientID string
	// Credential is the API application's credential (a secret or a
	// federated assertion).
	Credential confidential.Credential
	// HTTPClient carries requests to Entra; a client with a 10 s timeout
	// when nil.
	HTTPClient *http.Client
	// PublicCloud enables MSAL's instance discovery, which asks
	// login.microsoftonline.com about the authority and so fails for
	// sovereign clouds' private hosts and for a local stand-in.
	PublicCloud bool
	// Redis keeps the tokens; Ring seals them.
	Redis redis.UniversalClient
	Ring  store.Sealer
	// ExpiryMargin is how long before expiry a kept token stops being used;
	// DefaultExpiryMargin when zero.
	ExpiryMargin time.Duration
	// Logger receives cache failures, which do not fail a request;
	// discarded when nil.
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Client gets downstream tokens on behalf of callers. It is safe for
// concurrent use.
type Client struct {
	clientID string
	tokens   *store.OBOTokens
	ring     store.Sealer
	margin   time.Duration
	log      *slog.Logger
	now      func() time.Time
	msal     *msalClients
}

// New builds a Client. It does not touch the network.
func New(opts Options) (*Client, error) {
	switch {
	case opts.Authority == "":
		return nil, errors.New("obo: no authority")
	case opts.ClientID == "":
		return nil, errors.New("obo: no client id")
	case opts.Redis == nil:
		return nil, errors.New("obo: no Redis client")
	case opts.Ring == nil:
		return nil, errors.New("obo: no sealing key ring")
	}
	c := &Client{
		clientID: opts.ClientID,
		tokens:   store.NewOBOTokens(opts.Redis),
		ring:     opts.Ring,
		margin:   opts.ExpiryMargin,
		log:      opts.Logger,
		now:      opts.Now,
	}
	if c.margin <= 0 {
		c.margin = DefaultExpiryMargin
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	httpClient := opts.HTTPClient
	if httpClient == nil {
		httpClient = &http.Client{Timeout: defaultHTTPTimeout}
	}
	msalOpts := []confidential.Option{confidential.WithHTTPClient(httpClient)}
	if !opts.PublicCloud {
		msalOpts = append(msalOpts, confidential.WithInstanceDiscovery(false))
	}
	// Deliberately no confidential.WithCache: see the package comment.
	build := func() (confidential.Client, error) {
		return confidential.New(opts.Authority, opts.ClientID, opts.Credential, msalOpts...)
	}
	first, err := build()
	if err != nil {
		return nil, fmt.Errorf("obo: create MSAL client: %w", err)
	}
	c.msal = &msalClients{build: build, current: first, log: c.log}
	return c, nil
}

// Token returns an access token for scopes (of one downstream resource,
// such as "https://graph.microsoft.com/User.Read") on behalf of the caller
// in ctx: the principal and the access token it was verified from, which
// the HTTP layer keeps together (entra.NewVerifiedContext). A kept token is reused until shortly
// before it expires; otherwise Entra is asked through MSAL and the answer
// kept, sealed.
//
// Errors: a *ConsentError when consent is missing or sign-in policy
// requires more of the user (tell them what to ask their admin for); an
// error wrapping ErrUnavailable (and so outage.ErrUnavailable) when Entra
// could not be reached or answered with a server error; anything else is a
// bug or a misconfiguration. A Redis outage does not fail Token: it only
// costs the cache.
func (c *Client) Token(ctx context.Context, scopes []string) (string, error) {
	p, incoming := entra.FromContext(ctx), entra.RawTokenFrom(ctx)
	if p == nil {
		return "", errors.New("obo: no principal")
	}
	at, err := c.slotFor(p, scopes)
	if err != nil {
		return "", err
	}
	if incoming == "" {
		return "", errors.New("obo: no incoming token")
	}
	if len(scopes) == 0 {
		return "", errors.New("obo: no scopes")
	}
	tok, ep, ok := c.cached(ctx, at)
	if ok {
		return tok, nil
	}
	client := c.msal.get()
	res, err := client.AcquireTokenOnBehalfOf(ctx, incoming, scopes)
	if err != nil {
		return "", classify(err, c.clientID, scopes)
	}
	c.keep(ctx, at, res.AccessToken, res.ExpiresOn, ep)
	return res.AccessToken, nil
}

// msalClients hands out the current MSAL client and replaces it every
// clientUses requests. Without a custom cache an MSAL client is safe for
// concurrent use: its partitioned OBO cache has its own locks, and it has
// no Replace/Export round trip to interleave (unlike sign-in's clients,
// which must be pooled one call at a time).
type msalClients struct {
	build   func() (confidential.Client, error)
	log     *slog.Logger
	mu      sync.Mutex
	current confidential.Client
	uses    int
}

func (m *msalClients) get() confidential.Client {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.uses >= clientUses {
		// A client is built from the same options New already accepted,
		// so this cannot fail in practice; if it did, the old client
		// still works.
		if c, err := m.build(); err != nil {
			m.log.Error("obo: replace MSAL client", slog.String("err", err.Error()))
		} else {
			m.current = c
		}
		m.uses = 0
	}
	m.uses++
	return m.current
}
