package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// conn is one MCP connection to an upstream, for one principal (or for
// listing, for this server): the streamable-HTTP transport of mcp-go
// (which speaks JSON and SSE answers and keeps the Mcp-Session-Id), with
// the JSON-RPC on top written here so that results stay raw JSON. It is
// initialised on first use; a session the upstream forgets (404) is
// initialised again.
type conn struct {
	t     *transport.StreamableHTTP
	mu    sync.Mutex // held while initialising
	ready bool
	caps  map[string]json.RawMessage // the server's capabilities, once initialised
	ids   atomic.Int64

	// users counts the calls holding the connection; closing, that it is
	// to end once they are done: closing mcp-go's transport cancels every
	// request in flight on it.
	umu     sync.Mutex
	users   int
	closing bool

	// ending carries mcp-go's session-ending DELETE, which it sends
	// without our header function, with the credential of the
	// connection's last call, so an authenticated upstream can end the
	// session instead of keeping it until it expires.
	ending *endingTransport
}

// endingTransport adds to a DELETE the credential last used on the
// connection, and leaves every other request as it is.
type endingTransport struct {
	next http.RoundTripper
	last atomic.Pointer[credential]
}

func (e *endingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if c := e.last.Load(); r.Method == http.MethodDelete && c != nil && c.name != "" && r.Header.Get(c.name) == "" {
		r = r.Clone(r.Context())
		r.Header.Set(c.name, c.value)
	}
	return e.next.RoundTrip(r)
}

// newConn connects (lazily) to url through client, sending with every
// request the credential the call's context carries.
func newConn(url string, client *http.Client) (*conn, error) {
	next := client.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	ending := &endingTransport{next: next}
	perConn := *client
	perConn.Transport = ending
	t, err := transport.NewStreamableHTTP(url,
		transport.WithHTTPBasicClient(&perConn),
		transport.WithHTTPHeaderFunc(credentialHeader),
		transport.WithHTTPLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		return nil, fmt.Errorf("upstream transport: %w", err)
	}
	if err := t.Start(context.Background()); err != nil {
		return nil, fmt.Errorf("upstream transport: %w", err)
	}
	return &conn{t: t, ending: ending}, nil
}

// clientInfo is how this server introduces itself upstream.
var clientInfo = mcp.Implementation{Name: "entra-mcp-functions", Version: "1"}

// call sends one request and returns its result, initialising the
// connection first if needed. A JSON-RPC error is an *rpcError.
func (c *conn) call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	if cred, ok := ctx.Value(credentialKey{}).(credential); ok {
		c.ending.last.Store(&cred)
	}
	if err := c.init(ctx); err != nil {
		return nil, err
	}
	res, err := c.send(ctx, method, params)
	if errors.Is(err, transport.ErrSessionTerminated) {
		// The upstream forgot the session (a restart, its own expiry): it
		// did not run the request, so a new session may carry it.
		c.mu.Lock()
		c.ready = false
		c.mu.Unlock()
		if err := c.init(ctx); err != nil {
			return nil, err
		}
		res, err = c.send(ctx, method, params)
	}
	return res, err
}

// init runs the initialize handshake once; concurrent callers wait for it.
func (c *conn) init(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ready {
		return nil
	}
	params := mcp.InitializeParams{
		ProtocolVersion: mcp.LATEST_LEGACY_PROTOCOL_VERSION,
		ClientInfo:      clientInfo,
		Capabilities:    mcp.ClientCapabilities{},
	}
	raw, err := c.send(ctx, string(mcp.MethodInitialize), params)
	if err != nil {
		return fmt.Errorf("initialize: %w", err)
	}
	var res struct {
		ProtocolVersion string                     `json:"protocolVersion"`
		Capabilities    map[string]json.RawMessage `json:"capabilities"`
	}
	if err := json.Unmarshal(raw, &res); err != nil || !mcp.IsValidProtocolVersion(res.ProtocolVersion) {
		return fmt.Errorf("initialize: %w", errNotMCP)
	}
	c.caps = res.Capabilities
	c.t.SetProtocolVersion(res.ProtocolVersion)
	note := mcp.JSONRPCNotification{JSONRPC: mcp.JSONRPC_VERSION, Notification: mcp.Notification{Method: string(mcp.MethodNotificationInitialized)}}
	if err := c.t.SendNotification(ctx, note); err != nil {
		return fmt.Errorf("initialized: %w", err)
	}
	c.ready = true
	return nil
}

// offers reports whether the initialised server declared capability.
func (c *conn) offers(capability string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.caps[capability]
	return ok && len(v) > 0 && string(v) != "null"
}

func (c *conn) send(ctx context.Context, method string, params any) (json.RawMessage, error) {
	req := transport.JSONRPCRequest{
		JSONRPC: mcp.JSONRPC_VERSION,
		ID:      mcp.NewRequestId(c.ids.Add(1)),
		Method:  method,
		Params:  params,
	}
	resp, err := c.t.SendRequest(ctx, req)
	if err != nil {
		return nil, err
	}
	if resp.Error != nil {
		return nil, &rpcError{Code: resp.Error.Code, Message: resp.Error.Message}
	}
	if len(resp.Result) == 0 {
		return nil, errNotMCP
	}
	return resp.Result, nil
}

// hold marks one more call using the connection; release must follow.
func (c *conn) hold() {
	c.umu.Lock()
	c.users++
	c.umu.Unlock()
}

// release ends one call's use, closing the connection if it was to close.
func (c *conn) release() {
	c.umu.Lock()
	defer c.umu.Unlock()
	c.users--
	if c.users == 0 && c.closing {
		c.end()
	}
}

// close ends the session once no call uses the connection (a call of the
// same user may still be running on it), in the background: mcp-go's
// Close sends DELETE and waits up to 5 s for it.
func (c *conn) close() {
	c.umu.Lock()
	defer c.umu.Unlock()
	if c.closing {
		return
	}
	c.closing = true
	if c.users == 0 {
		c.end()
	}
}

func (c *conn) end() { go func() { _ = c.t.Close() }() }

// rpcError is a JSON-RPC error the upstream answered with.
type rpcError struct {
	Code    int
	Message string
}

func (e *rpcError) Error() string { return fmt.Sprintf("JSON-RPC error %d: %.200s", e.Code, e.Message) }

// errNotMCP: the upstream answered, but not with MCP.
var errNotMCP = errors.New("the answer is not an MCP result")

// errTooLarge: the upstream's answer went over its cap.
var errTooLarge = errors.New("the answer is larger than the upstream's limit")

type credentialKey struct{}

// credential is the header one request carries to an upstream.
type credential struct{ name, value string }

func withCredential(ctx context.Context, c credential) context.Context {
	return context.WithValue(ctx, credentialKey{}, c)
}

// credentialHeader is the transport's header function: the credential of
// the request's own context, so that a connection never carries another
// caller's token.
func credentialHeader(ctx context.Context) map[string]string {
	c, _ := ctx.Value(credentialKey{}).(credential)
	if c.name == "" {
		return nil
	}
	return map[string]string{c.name: c.value}
}

type exchangeKey struct{}

// exchange records what happened on the wire during one call, which
// mcp-go's errors do not say in a form code can read: the last HTTP status
// and whether an answer went over its cap.
type exchange struct {
	mu      sync.Mutex
	status  int
	tooBig  bool
	started bool // a request went out
}

func withExchange(ctx context.Context) (context.Context, *exchange) {
	x := &exchange{}
	return context.WithValue(ctx, exchangeKey{}, x), x
}

func (x *exchange) snapshot() (status int, tooBig, started bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.status, x.tooBig, x.started
}

// cappedTransport records each exchange and caps each answer's body at
// max bytes: reading beyond it fails with errTooLarge.
type cappedTransport struct {
	next http.RoundTripper
	max  int64
}

func (t *cappedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	x, _ := r.Context().Value(exchangeKey{}).(*exchange)
	if x != nil {
		x.mu.Lock()
		x.started = true
		x.mu.Unlock()
	}
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if x != nil {
		x.mu.Lock()
		x.status = resp.StatusCode
		x.mu.Unlock()
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		x.markTooBig()
		return nil, errTooLarge
	}
	resp.Body = &cappedBody{r: resp.Body, left: t.max, x: x}
	return resp, nil
}

func (x *exchange) markTooBig() {
	if x == nil {
		return
	}
	x.mu.Lock()
	x.tooBig = true
	x.mu.Unlock()
}

type cappedBody struct {
	r    io.ReadCloser
	left int64
	x    *exchange
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body of exactly the cap from a longer one.
		var one [1]byte
		n, err := b.r.Read(one[:])
		if n > 0 {
			b.x.markTooBig()
			return 0, errTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *cappedBody) Close() error { return b.r.Close() }
