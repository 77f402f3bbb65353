package upstream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/tools"
)

// Listing limits: what one upstream may put into our tools/list.
const (
	maxListPages       = 20
	maxUpstreamTools   = 500
	maxSchemaBytes     = 64 << 10
	maxDescriptionLen  = 4096
	maxListWait        = 10 * time.Second // longest a list fetch (all pages) takes
	retryFailedListing = 15 * time.Second // a failed fetch is tried again no sooner
)

// toolName is MCP's rule for tool names (SEP-986).
var toolName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// server is one upstream: its configuration, credential, gate, sessions
// and last good tool list.
type server struct {
	cfg  config.Upstream
	auth authenticator
	http *http.Client
	gate *gate
	pool *pool
	fed  *Federation
	log  *slog.Logger
	now  func() time.Time

	mu         sync.Mutex
	tools      []tools.Tool // last good list, filtered by the rules
	sum        [32]byte     // of what tools was built from, to tell a change
	listedAt   time.Time    // last success; zero: never
	listErr    error        // last attempt's failure; nil after a success
	triedAt    time.Time    // last attempt's end
	refreshing bool
	firstDone  chan struct{} // closed when the first attempt ends
	firstOnce  sync.Once
}

func newServer(u config.Upstream, opts Options, base http.RoundTripper, f *Federation) (*server, error) {
	auth, err := newAuthenticator(u.Auth, opts)
	if err != nil {
		return nil, err
	}
	s := &server{
		cfg:  u,
		auth: auth,
		// No client timeout: each call's context has the upstream's own.
		// Redirects are not followed: they would carry the credential to
		// another address.
		http: &http.Client{
			Transport:     &cappedTransport{next: base, max: u.MaxResponseBytes},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		gate:      newGate(u.MaxConcurrent, opts.Now),
		fed:       f,
		log:       opts.Logger.With(slog.String("upstream", u.Name)),
		now:       opts.Now,
		firstDone: make(chan struct{}),
	}
	s.pool = newPool(func() (*conn, error) { return newConn(u.URL, s.http) }, opts.Now)
	return s, nil
}

// listed is the last good list.
func (s *server) listed() []tools.Tool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tools
}

// prepare fetches the list if it is missing or old (see Federation.Prepare).
func (s *server) prepare(ctx context.Context) {
	if s.auth.perUser() {
		p := entra.FromContext(ctx)
		if p == nil || p.Kind == entra.CallerApp || entra.RawTokenFrom(ctx) == "" {
			return // only a person's token can list an on-behalf-of upstream
		}
	}
	s.mu.Lock()
	now := s.now()
	due := s.listedAt.IsZero() || now.Sub(s.listedAt) >= time.Duration(s.cfg.ListTTL)
	if s.listErr != nil && now.Sub(s.triedAt) < retryFailedListing {
		due = false
	}
	if due && !s.refreshing {
		s.refreshing = true
		// Detached from the request, which may end first, but keeping its
		// values: an on-behalf-of upstream is listed as this caller.
		go s.fetchAndStore(context.WithoutCancel(ctx))
	}
	never := s.listedAt.IsZero()
	first := s.firstDone
	s.mu.Unlock()
	if !never {
		return
	}
	wait := time.NewTimer(min(time.Duration(s.cfg.Timeout), maxListWait))
	defer wait.Stop()
	select {
	case <-first:
	case <-wait.C:
	case <-ctx.Done():
	}
}

// refresh starts a background fetch unless one is running.
func (s *server) refresh(ctx context.Context) {
	s.mu.Lock()
	if s.refreshing {
		s.mu.Unlock()
		return
	}
	s.refreshing = true
	s.mu.Unlock()
	go s.fetchAndStore(ctx)
}

// fetchAndStore fetches the list and keeps it, or keeps the last good one
// and the error.
func (s *server) fetchAndStore(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, min(time.Duration(s.cfg.Timeout), maxListWait))
	defer cancel()
	defs, err := s.fetch(ctx)
	var built []tools.Tool
	var sum [32]byte
	if err == nil {
		built, sum = s.build(defs)
	}

	s.mu.Lock()
	s.refreshing = false
	s.triedAt = s.now()
	changed := false
	if err != nil {
		s.listErr = err
		s.log.LogAttrs(ctx, slog.LevelWarn, "upstream: list tools failed; serving the last good list",
			slog.String("err", describe(err)), slog.Int("tools", len(s.tools)))
	} else {
		s.listErr = nil
		s.listedAt = s.triedAt
		changed = sum != s.sum
		s.tools, s.sum = built, sum
	}
	s.mu.Unlock()
	if changed {
		s.log.LogAttrs(ctx, slog.LevelInfo, "upstream: tool list changed", slog.Int("tools", len(built)))
		s.fed.changed()
	}
	// Only now: a request waiting for the first list must find the merged
	// list (and its generation) already changed when it wakes.
	s.firstOnce.Do(func() { close(s.firstDone) })
}

// upstreamTool is a tool as the upstream lists it, schemas kept raw so
// nothing mcp-go does not model is lost.
type upstreamTool struct {
	Name         string             `json:"name"`
	Title        string             `json:"title,omitempty"`
	Description  string             `json:"description,omitempty"`
	InputSchema  json.RawMessage    `json:"inputSchema"`
	OutputSchema json.RawMessage    `json:"outputSchema,omitempty"`
	Annotations  mcp.ToolAnnotation `json:"annotations"`
}

// fetch lists the upstream's tools, page by page, on a connection of its
// own that ends with the listing.
func (s *server) fetch(ctx context.Context) ([]upstreamTool, error) {
	cred, err := s.auth.credential(ctx)
	if err != nil {
		return nil, err
	}
	c, err := newConn(s.cfg.URL, s.http)
	if err != nil {
		return nil, err
	}
	defer c.close()
	ctx, x := withExchange(withCredential(ctx, cred))
	var all []upstreamTool
	cursor := ""
	for page := 0; page < maxListPages; page++ {
		var params any
		if cursor != "" {
			params = map[string]string{"cursor": cursor}
		}
		raw, err := c.call(ctx, string(mcp.MethodToolsList), params)
		if err != nil {
			return nil, classify(ctx, err, x)
		}
		var res struct {
			Tools      []json.RawMessage `json:"tools"`
			NextCursor string            `json:"nextCursor"`
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			return nil, &callError{kind: kindBadAnswer, err: err}
		}
		for _, t := range res.Tools {
			if len(all) >= maxUpstreamTools {
				return nil, &callError{kind: kindBadAnswer, err: fmt.Errorf("more than %d tools", maxUpstreamTools)}
			}
			var ut upstreamTool
			if err := json.Unmarshal(t, &ut); err != nil {
				s.log.Warn("upstream: a listed tool is not a tool; left out", slog.String("err", err.Error()))
				continue
			}
			all = append(all, ut)
		}
		if res.NextCursor == "" {
			return all, nil
		}
		cursor = res.NextCursor
	}
	return nil, &callError{kind: kindBadAnswer, err: fmt.Errorf("more than %d pages", maxListPages)}
}

// build turns the upstream's tools into ours: prefixed, each with the
// permission its rule names; tools no rule matches, and tools that break
// MCP's rules or our limits, are left out. sum fingerprints the result.
func (s *server) build(defs []upstreamTool) ([]tools.Tool, [32]byte) {
	var out []tools.Tool
	h := sha256.New()
	seen := map[string]bool{}
	for _, ut := range defs {
		perm, ok := config.Permission(s.cfg.Tools, ut.Name)
		if !ok {
			continue // default deny: never shown, never callable
		}
		name := s.cfg.Name + "." + ut.Name
		if reason := checkTool(ut, name); reason != "" {
			s.log.Warn("upstream: tool left out", slog.String("tool", trimName(ut.Name)), slog.String("why", reason))
			continue
		}
		if seen[name] {
			s.log.Warn("upstream: tool listed twice; the first kept", slog.String("tool", ut.Name))
			continue
		}
		seen[name] = true
		def := mcp.Tool{
			Name:            name,
			Title:           ut.Title,
			Description:     ut.Description,
			RawInputSchema:  ut.InputSchema,
			RawOutputSchema: ut.OutputSchema,
			Annotations:     ut.Annotations,
		}
		b, _ := json.Marshal(def)
		h.Write(b)
		h.Write([]byte(perm + "\n"))
		out = append(out, tools.Tool{
			Def:         def,
			Permissions: []string{perm},
			Upstream:    s.cfg.Name,
			Run:         s.forwardTool(ut.Name, ut.Annotations),
		})
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return out, sum
}

// checkTool says why an upstream tool cannot be served, or "".
func checkTool(ut upstreamTool, name string) string {
	switch {
	case !toolName.MatchString(name):
		return "its name, prefixed, breaks MCP's tool-name rules"
	case len(ut.InputSchema) > maxSchemaBytes || len(ut.OutputSchema) > maxSchemaBytes:
		return "a schema is larger than 64 KiB"
	case len(ut.Description) > maxDescriptionLen || len(ut.Title) > 256:
		return "its title or description is too long"
	case !isObjectSchema(ut.InputSchema):
		return `its input schema is not a JSON Schema of "type": "object"`
	case len(ut.OutputSchema) > 0 && !isObjectSchema(ut.OutputSchema):
		return `its output schema is not a JSON Schema of "type": "object"`
	}
	return ""
}

func isObjectSchema(raw json.RawMessage) bool {
	var s struct {
		Type string `json:"type"`
	}
	return len(bytes.TrimSpace(raw)) > 0 && json.Unmarshal(raw, &s) == nil && s.Type == "object"
}

// trimName cuts an upstream-chosen name for a log line.
func trimName(n string) string {
	if len(n) > 64 {
		return n[:64]
	}
	return n
}
