// Package telemetry sends requests, dependencies, custom events and
// exceptions to Application Insights, correlated per HTTP request through
// W3C trace context.
//
// It wraps github.com/microsoft/ApplicationInsights-Go, which is unmaintained
// and knows neither connection strings nor Entra-authenticated ingestion;
// nothing outside this package sees that SDK, so it can be replaced (by an
// OpenTelemetry exporter, say) without touching callers.
//
// Without a connection string New returns a disabled client whose methods
// return at once and allocate nothing, so call sites need no guards. A nil
// *Client is disabled too.
package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/microsoft/ApplicationInsights-Go/appinsights"
	"github.com/microsoft/ApplicationInsights-Go/appinsights/contracts"
)

// Dependency types, as Application Insights groups them.
const (
	TypeHTTP     = "HTTP"
	TypeRedis    = "Redis"
	TypeEntra    = "Entra ID"
	TypeKeyVault = "Key Vault"
	TypeGraph    = "Microsoft Graph"
	TypeUpstream = "MCP upstream"
)

// Defaults for batching: small batches, sent often, because a Functions
// instance can be frozen or recycled at any time.
const (
	defaultBatchSize     = 256
	defaultBatchInterval = 5 * time.Second
	defaultPostTimeout   = 30 * time.Second
)

// Options configure New.
type Options struct {
	// ConnectionString is APPLICATIONINSIGHTS_CONNECTION_STRING. Empty
	// disables telemetry.
	ConnectionString string
	// AuthenticationString is APPLICATIONINSIGHTS_AUTHENTICATION_STRING:
	// "Authorization=AAD[;ClientId=<guid>]" turns on Entra-authenticated
	// ingestion.
	AuthenticationString string
	// Credential gets ingestion tokens in AAD mode. Nil there means a
	// managed identity credential (the ClientId's, if given).
	Credential azcore.TokenCredential
	// RoleName is cloud_RoleName (e.g. WEBSITE_SITE_NAME); RoleInstance
	// defaults to the host name. Version is application_Version.
	RoleName string
	Version  string
	// BaseURL (PUBLIC_BASE_URL) prefixes request paths in the url field:
	// behind the Functions host the Host header is a loopback address.
	BaseURL string
	// HTTPClient posts telemetry; nil means a client with a 30 s timeout.
	// Do not pass a client wrapped by Transport: telemetry about telemetry
	// would never settle.
	HTTPClient *http.Client
	// MaxBatchSize and MaxBatchInterval bound buffering (256 items, 5 s).
	MaxBatchSize     int
	MaxBatchInterval time.Duration
	// Logger receives the package's own problems; never item contents.
	Logger *slog.Logger
}

// Client records telemetry. Its zero value and nil are disabled clients.
// It is safe for concurrent use.
type Client struct {
	sdk     appinsights.TelemetryClient
	baseURL string
	log     *slog.Logger

	// mu orders Track against Flush: the SDK's channel panics on a send
	// after Close, so items arriving after Flush are dropped instead.
	mu     sync.RWMutex
	closed bool
	done   <-chan struct{}
}

// New returns a client for opts. With no connection string it returns a
// disabled client and no error. Errors name the setting at fault and never
// echo its value.
func New(opts Options) (*Client, error) {
	if opts.ConnectionString == "" {
		return &Client{}, nil
	}
	cs, err := ParseConnectionString(opts.ConnectionString)
	if err != nil {
		return nil, fmt.Errorf("APPLICATIONINSIGHTS_CONNECTION_STRING: %w", err)
	}
	auth, err := ParseAuthenticationString(opts.AuthenticationString)
	if err != nil {
		return nil, fmt.Errorf("APPLICATIONINSIGHTS_AUTHENTICATION_STRING: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	hc := &http.Client{Timeout: defaultPostTimeout}
	if opts.HTTPClient != nil {
		c := *opts.HTTPClient // a copy: the caller's client stays as it was
		hc = &c
	}
	if auth.AAD {
		cred := opts.Credential
		if cred == nil {
			var miOpts azidentity.ManagedIdentityCredentialOptions
			if auth.ClientID != "" {
				miOpts.ID = azidentity.ClientID(auth.ClientID)
			}
			cred, err = azidentity.NewManagedIdentityCredential(&miOpts)
			if err != nil {
				return nil, fmt.Errorf("telemetry: managed identity for ingestion: %w", err)
			}
		}
		hc.Transport = &bearerTransport{base: orDefault(hc.Transport), cred: cred, scope: cs.Scope()}
	}
	hc.Transport = &reportTransport{base: orDefault(hc.Transport), log: log}

	cfg := appinsights.NewTelemetryConfiguration(cs.InstrumentationKey)
	cfg.EndpointUrl = cs.TrackURL(auth.AAD)
	cfg.Client = hc
	cfg.MaxBatchSize = defaultBatchSize
	if opts.MaxBatchSize > 0 {
		cfg.MaxBatchSize = opts.MaxBatchSize
	}
	cfg.MaxBatchInterval = defaultBatchInterval
	if opts.MaxBatchInterval > 0 {
		cfg.MaxBatchInterval = opts.MaxBatchInterval
	}
	sdk := appinsights.NewTelemetryClientFromConfig(cfg)
	// Set before any Track: the SDK reads these tags without a lock.
	if opts.RoleName != "" {
		sdk.Context().Tags.Cloud().SetRole(opts.RoleName)
	}
	if opts.Version != "" {
		sdk.Context().Tags.Application().SetVer(opts.Version)
	}
	log.Info("telemetry enabled", slog.String("endpoint", cfg.EndpointUrl), slog.Bool("entra_auth", auth.AAD))
	return &Client{sdk: sdk, baseURL: stripQuery(opts.BaseURL), log: log}, nil
}

func orDefault(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		return http.DefaultTransport
	}
	return rt
}

// Enabled reports whether items are sent anywhere. Use it to skip building
// expensive properties.
func (c *Client) Enabled() bool { return c != nil && c.sdk != nil }

// Flush sends everything buffered and stops the client: call it once, at
// shutdown. It returns when the ingestion endpoint has answered every
// batch or when ctx ends (a ctx deadline also bounds retries of failed
// batches). Items recorded after Flush are dropped.
func (c *Client) Flush(ctx context.Context) error {
	if !c.Enabled() {
		return nil
	}
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		var retry []time.Duration // none: one attempt per batch
		if dl, ok := ctx.Deadline(); ok {
			if left := time.Until(dl); left > 0 {
				retry = append(retry, left)
			}
		}
		c.done = c.sdk.Channel().Close(retry...)
	}
	done := c.done
	c.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("telemetry: flush: %w", ctx.Err())
	}
}

// track hands an item to the SDK unless the client is closed.
func (c *Client) track(item appinsights.Telemetry) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.closed {
		c.sdk.Track(item)
	}
}

// RequestItem is one incoming HTTP request. Middleware records these; call
// Request yourself only for requests it does not see.
type RequestItem struct {
	// Name is "<METHOD> <route>", e.g. "POST /mcp".
	Name string
	// URL is the request URL; any query or fragment is cut off.
	URL        string
	Start      time.Time
	Duration   time.Duration
	StatusCode int
	Success    bool
	Properties map[string]string
}

// Request records an incoming request. Under Middleware's context it
// becomes a child of that request's operation.
func (c *Client) Request(ctx context.Context, r RequestItem) {
	if !c.Enabled() {
		return
	}
	op := &operation{traceID: newTraceID(), spanID: newSpanID()}
	if parent := operationFrom(ctx); parent != nil {
		// A request inside a request: a child span of the same trace.
		op.traceID, op.parentID = parent.traceID, parent.spanID
	}
	c.request(op, r)
}

func (c *Client) request(op *operation, r RequestItem) {
	item := &appinsights.RequestTelemetry{
		Id:           op.spanID,
		Name:         r.Name,
		Url:          stripQuery(r.URL),
		Duration:     r.Duration,
		ResponseCode: strconv.Itoa(r.StatusCode),
		Success:      r.Success,
		BaseTelemetry: appinsights.BaseTelemetry{
			Timestamp:  r.Start,
			Tags:       op.tags(op.parentID),
			Properties: cleanProps(r.Properties, 1),
		},
	}
	item.Tags.Operation().SetName(r.Name)
	if op.invocationID != "" {
		item.Properties["InvocationId"] = op.invocationID
	}
	c.track(item)
}

// DependencyItem is one outgoing call.
type DependencyItem struct {
	// Type is one of the Type* constants or another label.
	Type string
	// Target is the host (or host:port) called.
	Target string
	// Name identifies the call without secrets: "GET /path" (no query),
	// or a Redis command name.
	Name string
	// Data is more detail, e.g. the URL without its query. Never values.
	Data       string
	Start      time.Time
	Duration   time.Duration
	Success    bool
	ResultCode string
	Properties map[string]string
}

// Dependency records an outgoing call, as a child of ctx's request if any.
func (c *Client) Dependency(ctx context.Context, d DependencyItem) {
	if !c.Enabled() {
		return
	}
	item := &appinsights.RemoteDependencyTelemetry{
		Id:         newSpanID(),
		Name:       d.Name,
		Type:       d.Type,
		Target:     d.Target,
		Data:       scrubText(stripQuery(d.Data)),
		Duration:   d.Duration,
		Success:    d.Success,
		ResultCode: d.ResultCode,
		BaseTelemetry: appinsights.BaseTelemetry{
			Timestamp:  d.Start,
			Tags:       childTags(ctx),
			Properties: cleanProps(d.Properties, 0),
		},
	}
	c.track(item)
}

// Event records a custom event (sign-in, tool denied, ...). props must not
// hold tokens or secrets; credential-named keys are dropped regardless.
func (c *Client) Event(ctx context.Context, name string, props map[string]string) {
	if !c.Enabled() {
		return
	}
	item := &appinsights.EventTelemetry{
		Name: name,
		BaseTelemetry: appinsights.BaseTelemetry{
			Timestamp:  time.Now(),
			Tags:       childTags(ctx),
			Properties: cleanProps(props, 0),
		},
	}
	c.track(item)
}

// Exception records an error or a recovered panic value (call it from the
// recover site so the stack shows the panic). Its message is scrubbed of
// URL queries and token-like strings.
func (c *Client) Exception(ctx context.Context, v any, props map[string]string) {
	if !c.Enabled() || v == nil {
		return
	}
	details := contracts.NewExceptionDetails()
	details.TypeName, details.Message = describe(v)
	details.Message = scrubText(details.Message)
	// Skip runtime.Callers, GetCallstack and this method.
	details.ParsedStack = appinsights.GetCallstack(2)
	details.HasFullStack = len(details.ParsedStack) > 0
	data := contracts.NewExceptionData()
	data.SeverityLevel = contracts.Error
	data.Exceptions = []*contracts.ExceptionDetails{details}
	c.track(&exceptionItem{
		BaseTelemetry: appinsights.BaseTelemetry{
			Timestamp:  time.Now(),
			Tags:       childTags(ctx),
			Properties: cleanProps(props, 0),
		},
		data: data,
	})
}

// exceptionItem carries exception data we built ourselves: the SDK's own
// type renders the message at send time, too late to scrub it.
type exceptionItem struct {
	appinsights.BaseTelemetry
	appinsights.BaseTelemetryNoMeasurements
	data *contracts.ExceptionData
}

func (e *exceptionItem) TelemetryData() appinsights.TelemetryData {
	e.data.Properties = e.Properties
	return e.data
}

// describe names a panic value or error and gives its message.
func describe(v any) (typeName, msg string) {
	switch x := v.(type) {
	case error:
		return reflect.TypeOf(x).String(), x.Error()
	case string:
		return "panic", x // panic("...") carries no type worth naming
	case fmt.Stringer:
		return reflect.TypeOf(x).String(), x.String()
	default:
		return reflect.TypeOf(x).String(), fmt.Sprintf("%v", x)
	}
}
