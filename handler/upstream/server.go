package upstream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/obo"
	"github.com/entra-mcp/functions-mcp/handler/tools"
)

// Listing limits: what one upstream may put into our tools/list.
const (
	maxListPages      = 20
	maxUpstreamTools  = 500
	maxSchemaBytes    = 64 << 10
	maxDescriptionLen = 4096
	// maxToolBytes and maxItemBytes bound one listed tool, and one listed
	// resource, template or prompt, as JSON: what is larger could never be
	// served, so it is not kept while the listing goes on.
	maxToolBytes       = 2*maxSchemaBytes + 16<<10
	maxItemBytes       = 64 << 10
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
	listing    tools.Components // last good list, filtered by the rules
	sum        [32]byte         // of what tools was built from, to tell a change
	listedAt   time.Time        // last success; zero: never
	listErr    error            // last attempt's failure; nil after a success
	triedAt    time.Time        // last attempt's end
	refreshing bool
	attempt    chan struct{} // closed when the running (or the last) fetch ends
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
		gate:    newGate(u.MaxConcurrent, opts.Now),
		fed:     f,
		log:     opts.Logger.With(slog.String("upstream", u.Name)),
		now:     opts.Now,
		attempt: closedChan(),
	}
	s.pool = newPool(func() (*conn, error) { return newConn(u.URL, s.http) }, opts.Now)
	return s, nil
}

// listed is the last good list.
func (s *server) listed() tools.Components {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listing
}

// prepare fetches the list if it is missing or old (see Federation.Prepare)
// and, when it was never listed, returns what to wait for and how long.
func (s *server) prepare(ctx context.Context) (first <-chan struct{}, wait time.Duration) {
	if s.auth.perUser() {
		p := entra.FromContext(ctx)
		if p == nil || p.Kind == entra.CallerApp || entra.RawTokenFrom(ctx) == "" {
			return nil, 0 // only a person's token can list an on-behalf-of upstream
		}
	}
	s.mu.Lock()
	now := s.now()
	due := s.listedAt.IsZero() || now.Sub(s.listedAt) >= time.Duration(s.cfg.ListTTL)
	if s.listErr != nil && now.Sub(s.triedAt) < retryFailedListing {
		due = false
	}
	if due && !s.refreshing {
		// Detached from the request, which may end first, but keeping its
		// values: an on-behalf-of upstream is listed as this caller.
		s.startLocked(context.WithoutCancel(ctx))
	}
	never := s.listedAt.IsZero()
	attempt := s.attempt
	s.mu.Unlock()
	if !never {
		return nil, 0
	}
	return attempt, min(time.Duration(s.cfg.Timeout), maxListWait)
}

// refresh starts a background fetch unless one is running.
func (s *server) refresh(ctx context.Context) {
	s.mu.Lock()
	if !s.refreshing {
		s.startLocked(ctx)
	}
	s.mu.Unlock()
}

// startLocked starts a fetch; s.mu is held.
func (s *server) startLocked(ctx context.Context) {
	s.refreshing = true
	s.attempt = make(chan struct{})
	go s.fetchAndStore(ctx, s.attempt)
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// usersFault reports whether err is about the user a per-user upstream
// was to be listed as, not about the upstream: Entra refused that user's
// exchange (consent, Conditional Access), or there was no user.
func (s *server) usersFault(err error) bool {
	var consent *obo.ConsentError
	return s.auth.perUser() && (errors.As(err, &consent) || errors.Is(err, errNeedsUser))
}

// fetchAndStore fetches the list and keeps it, or keeps the last good one
// and the error, then closes done. A failure that is the listing user's
// own is not recorded: it says nothing about the upstream, and the next
// user's request lists it at once.
func (s *server) fetchAndStore(ctx context.Context, done chan struct{}) {
	ctx, cancel := context.WithTimeout(ctx, min(time.Duration(s.cfg.Timeout), maxListWait))
	defer cancel()
	l, err := s.fetch(ctx)
	var built tools.Components
	var sum [32]byte
	if err == nil {
		built, sum = s.build(l)
	}

	s.mu.Lock()
	s.refreshing = false
	s.triedAt = s.now()
	changed := false
	switch {
	case err != nil && s.usersFault(err):
		s.log.LogAttrs(ctx, slog.LevelInfo, "upstream: could not be listed as this user; the next user's request lists it",
			slog.String("err", describe(err)))
	case err != nil:
		s.listErr = err
		s.log.LogAttrs(ctx, slog.LevelWarn, "upstream: list tools failed; serving the last good list",
			slog.String("err", describe(err)), slog.Int("tools", len(s.listing.Tools)))
	default:
		s.listErr = nil
		s.listedAt = s.triedAt
		changed = sum != s.sum
		s.listing, s.sum = built, sum
	}
	s.mu.Unlock()
	if changed {
		s.log.LogAttrs(ctx, slog.LevelInfo, "upstream: list changed", slog.Int("tools", len(built.Tools)),
			slog.Int("resources", len(built.Resources)+len(built.Templates)), slog.Int("prompts", len(built.Prompts)))
		s.fed.changed()
	}
	// Only now: a request waiting for the first list must find the merged
	// list (and its generation) already changed when it wakes.
	close(done)
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

// listing is what one fetch got from the upstream.
type listing struct {
	tools     []upstreamTool
	resources []upstreamResource
	templates []upstreamTemplate
	prompts   []upstreamPrompt
}

// fetch lists the upstream's tools, and its resources, resource templates
// and prompts where its configuration has rules for them and it offers
// them, page by page, on a connection of its own that ends with the
// listing.
func (s *server) fetch(ctx context.Context) (listing, error) {
	var l listing
	cred, err := s.auth.credential(ctx)
	if err != nil {
		return l, err
	}
	c, err := newConn(s.cfg.URL, s.http)
	if err != nil {
		return l, err
	}
	defer c.close()
	ctx, x := withExchange(withCredential(ctx, cred))
	if l.tools, err = listAll[upstreamTool](ctx, c, string(mcp.MethodToolsList), "tools", maxToolBytes, s); err != nil {
		return l, classify(ctx, err, x)
	}
	if len(s.cfg.Resources) > 0 && c.offers("resources") {
		// An on-behalf-of upstream is listed as one person, and its
		// resources are usually that person's own documents: served to
		// everyone they would leak. Its templates name no one's data, and
		// every read goes out as the reader.
		if !s.auth.perUser() {
			if l.resources, err = listAll[upstreamResource](ctx, c, string(mcp.MethodResourcesList), "resources", maxItemBytes, s); err != nil {
				return l, classify(ctx, err, x)
			}
		}
		if l.templates, err = listAll[upstreamTemplate](ctx, c, string(mcp.MethodResourcesTemplatesList), "resourceTemplates", maxItemBytes, s); err != nil {
			return l, classify(ctx, err, x)
		}
	}
	if len(s.cfg.Prompts) > 0 && c.offers("prompts") {
		if l.prompts, err = listAll[upstreamPrompt](ctx, c, string(mcp.MethodPromptsList), "prompts", maxItemBytes, s); err != nil {
			return l, classify(ctx, err, x)
		}
	}
	return l, nil
}

// listAll pages through a list method, whose result holds the items under
// key. An item larger than maxItem bytes or that does not decode is left
// out (and logged); more than maxUpstreamTools items or maxListPages pages
// is an error.
func listAll[T any](ctx context.Context, c *conn, method, key string, maxItem int, s *server) ([]T, error) {
	var all []T
	cursor := ""
	for range maxListPages {
		var params any
		if cursor != "" {
			params = map[string]string{"cursor": cursor}
		}
		raw, err := c.call(ctx, method, params)
		if err != nil {
			return nil, err
		}
		var page map[string]json.RawMessage
		if err := json.Unmarshal(raw, &page); err != nil {
			return nil, &callError{kind: kindBadAnswer, err: err}
		}
		var items []json.RawMessage
		if err := json.Unmarshal(page[key], &items); err != nil && len(page[key]) > 0 {
			return nil, &callError{kind: kindBadAnswer, err: err}
		}
		for _, it := range items {
			if len(all) >= maxUpstreamTools {
				return nil, &callError{kind: kindBadAnswer, err: fmt.Errorf("more than %d %s", maxUpstreamTools, key)}
			}
			if len(it) > maxItem {
				s.log.Warn("upstream: a listed item is too large to serve; left out", slog.String("list", key), slog.Int("bytes", len(it)))
				continue
			}
			var v T
			if err := json.Unmarshal(it, &v); err != nil {
				s.log.Warn("upstream: a listed item does not decode; left out", slog.String("list", key), slog.String("err", err.Error()))
				continue
			}
			all = append(all, v)
		}
		cursor = ""
		if next, ok := page["nextCursor"]; ok {
			_ = json.Unmarshal(next, &cursor)
		}
		if cursor == "" {
			return all, nil
		}
	}
	return nil, &callError{kind: kindBadAnswer, err: fmt.Errorf("more than %d pages of %s", maxListPages, key)}
}

// build turns what the upstream listed into ours: tools and prompts
// prefixed, each item with the permission its rule names; items no rule
// matches, and those that break MCP's rules or our limits, are left out.
// sum fingerprints the result, to tell a change.
func (s *server) build(l listing) (tools.Components, [32]byte) {
	h := sha256.New()
	var out tools.Components
	out.Tools = s.buildTools(l.tools, h)
	out.Resources = s.buildResources(l.resources, h)
	out.Templates = s.buildTemplates(l.templates, h)
	out.Prompts = s.buildPrompts(l.prompts, h)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return out, sum
}

// buildTools builds the tools, writing what they are built from into h.
func (s *server) buildTools(defs []upstreamTool, h hash.Hash) []tools.Tool {
	var out []tools.Tool
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
		if err := mcp.ValidateParamHeaderAnnotations(&def); err != nil {
			// mcp-go's AddTools panics on such a tool (SEP-2243).
			s.log.Warn("upstream: tool left out", slog.String("tool", trimName(ut.Name)), slog.String("why", "its input schema's x-mcp-header annotations break SEP-2243"))
			continue
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
	return out
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
