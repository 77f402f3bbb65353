package mcpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/tools"
)

// Resource templates and prompts get the tools' rule: listed and served
// only to callers whose grants hold what they need, and to everyone else
// answered as if they did not exist.
//
// mcp-go filters prompts itself (WithPromptFilter) but has no filter for
// resources, and answers a resource handler's error with -32603. So a read
// is decided here, before mcp-go: a URI that no template the caller may read
// matches, or whose template says there is nothing there, goes to an mcp-go
// server that holds no resources, whose answer is exactly mcp-go's answer
// for an unknown URI; a permitted read runs first, and mcp-go's handler
// only hands its contents back.

type resource struct {
	tools.Resource
	need authz.Set
}

type template struct {
	tools.ResourceTemplate
	need authz.Set
}

type prompt struct {
	tools.Prompt
	need authz.Set
}

// readKey carries a read already done for mcp-go's resource handler.
type readKey struct{}

type readDone struct {
	contents []mcp.ResourceContents
	err      error
}

// addComponents records the resources, templates and prompts in idx and
// returns the capabilities, filters and hooks mcp-go needs for them: for
// ours, and for the upstreams' when their configuration has rules for them
// (they arrive later, so the capabilities are there from the start).
func (s *Server) addComponents(opts Options, idx *toolIndex, policy *authz.Policy, hooks *server.Hooks) ([]server.ServerOption, error) {
	if err := addResources(opts, idx, policy); err != nil {
		return nil, err
	}
	if err := addPrompts(opts, idx, policy); err != nil {
		return nil, err
	}
	s.offersResources = len(idx.resources) > 0 || len(idx.templates) > 0
	s.offersPrompts = len(idx.prompts) > 0
	if s.upstreams != nil {
		res, prompts := s.upstreams.Offers()
		s.offersResources = s.offersResources || res
		s.offersPrompts = s.offersPrompts || prompts
	}
	var serverOpts []server.ServerOption
	if s.offersResources {
		serverOpts = append(serverOpts, server.WithResourceCapabilities(false, false))
		hooks.AddAfterListResources(s.filterResources)
		hooks.AddAfterListResourceTemplates(s.filterTemplates)
	}
	if s.offersPrompts {
		serverOpts = append(serverOpts, server.WithPromptCapabilities(false), server.WithPromptFilter(s.filterPrompts))
	}
	return serverOpts, nil
}

// addResources records our resources and templates, refusing one with no
// permission or one declared twice.
func addResources(opts Options, idx *toolIndex, policy *authz.Policy) error {
	for _, r := range opts.Resources {
		if len(r.Permissions) == 0 {
			return fmt.Errorf("resource %q declares no permission", r.Def.URI)
		}
		need, err := policy.Need(r.Permissions)
		if err != nil {
			return fmt.Errorf("resource %q: %w", r.Def.URI, err)
		}
		if _, dup := idx.resources[r.Def.URI]; dup {
			return fmt.Errorf("resource %q declared twice", r.Def.URI)
		}
		idx.resources[r.Def.URI] = resource{r, need}
	}
	for _, t := range opts.Templates {
		if len(t.Permissions) == 0 {
			return fmt.Errorf("resource template %q declares no permission", t.Def.Name)
		}
		need, err := policy.Need(t.Permissions)
		if err != nil {
			return fmt.Errorf("resource template %q: %w", t.Def.Name, err)
		}
		idx.templates = append(idx.templates, template{t, need})
	}
	return nil
}

// addPrompts records our prompts, refusing one with no permission or one
// declared twice.
func addPrompts(opts Options, idx *toolIndex, policy *authz.Policy) error {
	for _, p := range opts.Prompts {
		if len(p.Permissions) == 0 {
			return fmt.Errorf("prompt %q declares no permission", p.Def.Name)
		}
		need, err := policy.Need(p.Permissions)
		if err != nil {
			return fmt.Errorf("prompt %q: %w", p.Def.Name, err)
		}
		if _, dup := idx.prompts[p.Def.Name]; dup {
			return fmt.Errorf("prompt %q declared twice", p.Def.Name)
		}
		idx.prompts[p.Def.Name] = prompt{p, need}
	}
	return nil
}

// handBack is mcp-go's handler for every resource and template of ours: it
// returns the read serveRead already did.
func handBack(ctx context.Context, _ mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	done, ok := ctx.Value(readKey{}).(*readDone)
	if !ok {
		return nil, errors.New("resource read not authorised") // never: serveRead decides first
	}
	return done.contents, done.err
}

// registerComponents adds the index's resources, templates and prompts to
// mcp-go, once it exists.
func (s *Server) registerComponents(idx *toolIndex) {
	for _, r := range idx.resources {
		s.mcp.AddResource(r.Def, handBack)
	}
	for _, t := range idx.templates {
		s.mcp.AddResourceTemplate(t.Def, handBack)
	}
	for _, p := range idx.prompts {
		s.mcp.AddPrompt(p.Def, s.adaptPrompt(p.Def.Name))
	}
}

// filterResources drops from a resources/list answer what the caller may
// not read; resources not of ours (fixtures) stay.
func (s *Server) filterResources(ctx context.Context, _ any, _ *mcp.ListResourcesRequest, res *mcp.ListResourcesResult) {
	g := grantsFrom(ctx)
	idx := s.index()
	kept := res.Resources[:0]
	for _, r := range res.Resources {
		if ours, ok := idx.resources[r.URI]; !ok || g.Allows(ours.need) {
			kept = append(kept, r)
		}
	}
	res.Resources = kept
}

// filterTemplates drops from a resources/templates/list answer what the
// caller may not read. Templates not of ours (the conformance build's
// fixtures) stay.
func (s *Server) filterTemplates(ctx context.Context, _ any, _ *mcp.ListResourceTemplatesRequest, res *mcp.ListResourceTemplatesResult) {
	g := grantsFrom(ctx)
	idx := s.index()
	kept := res.ResourceTemplates[:0]
	for _, rt := range res.ResourceTemplates {
		raw := rt.URITemplate.Raw()
		_, retired := idx.retired[raw]
		if t, ours := idx.template(raw); (!ours && !retired) || (ours && g.Allows(t.need)) {
			kept = append(kept, rt)
		}
	}
	res.ResourceTemplates = kept
}

func (c componentSet) template(raw string) (template, bool) {
	for _, t := range c.templates {
		if t.Def.URITemplate.Raw() == raw {
			return t, true
		}
	}
	return template{}, false
}

// filterPrompts is mcp-go's prompt filter, for prompts/list and prompts/get.
func (s *Server) filterPrompts(ctx context.Context, candidates []mcp.Prompt) []mcp.Prompt {
	g := grantsFrom(ctx)
	prompts := s.index().prompts
	out := candidates[:0:0]
	for _, c := range candidates {
		if p, ours := prompts[c.Name]; !ours || g.Allows(p.need) {
			out = append(out, c)
		}
	}
	return out
}

// serveRead decides a resources/read for one of our templates: it returns
// the context for mcp-go with the read done, or false after answering a
// read the caller may not make, or of nothing, as an unknown URI.
func (s *Server) serveRead(ctx context.Context, w http.ResponseWriter, r *http.Request, body []byte, p *entra.Principal, g authz.Set) (context.Context, bool) {
	unknown := func() {
		r2 := r.WithContext(ctx)
		r2.Body = io.NopCloser(bytes.NewReader(body))
		r2.ContentLength = int64(len(body))
		s.unknown.ServeHTTP(w, r2)
	}
	// Decoded the way mcp-go decodes it (a duplicated "params" merges into
	// one struct there, where the last one wins in a json.RawMessage), so
	// both read the same URI.
	var msg mcp.ReadResourceRequest
	if json.Unmarshal(body, &msg) != nil || msg.Params.URI == "" {
		return ctx, true // mcp-go answers malformed params itself
	}
	req := msg.Params
	idx := s.index()
	if r, ok := idx.resources[req.URI]; ok {
		return s.read(ctx, p, g, "resource:"+r.Def.Name, r.need, unknown, func() ([]mcp.ResourceContents, error) { return r.Read(ctx, p) })
	}
	for _, t := range idx.templates {
		if !t.Def.URITemplate.Regexp().MatchString(req.URI) {
			continue
		}
		return s.read(ctx, p, g, "resource:"+t.Def.Name, t.need, unknown, func() ([]mcp.ResourceContents, error) {
			vars := map[string]string{}
			for k, v := range t.Def.URITemplate.Match(req.URI) {
				vars[k] = v.String()
			}
			return t.Read(ctx, p, req.URI, vars)
		})
	}
	for _, t := range idx.retired {
		if t.Def.URITemplate.Regexp().MatchString(req.URI) {
			unknown() // an upstream's template that is gone
			return ctx, false
		}
	}
	return ctx, true // not ours: mcp-go answers (unknown, or a fixture)
}

// read runs one permitted read for mcp-go's handler to hand back, or
// answers a refused or empty one with unknown.
func (s *Server) read(ctx context.Context, p *entra.Principal, g authz.Set, name string, need authz.Set, unknown func(),
	run func() ([]mcp.ResourceContents, error)) (context.Context, bool) {
	start := time.Now()
	if !g.Allows(need) {
		s.audit(ctx, p, name, false, "denied", time.Since(start))
		unknown()
		return ctx, false
	}
	// The same per-caller budget as tools/call: a resource can cost what
	// a tool does.
	if limited := s.limit(ctx, p); limited != nil {
		s.audit(ctx, p, name, true, outcomeLimited, time.Since(start))
		return context.WithValue(ctx, readKey{}, &readDone{err: errors.New(limitedText(limited))}), true
	}
	contents, err := run()
	var failed *tools.Failure
	switch {
	case errors.Is(err, tools.ErrResourceNotFound):
		s.audit(ctx, p, name, true, "not_found", time.Since(start))
		unknown()
		return ctx, false
	case errors.As(err, &failed):
		// An upstream's failure, in words the caller can act on.
		s.log.LogAttrs(ctx, slog.LevelWarn, "resource read failed", slog.String("resource", name), slog.String("err", logText(failed.Err)))
		s.audit(ctx, p, name, true, failed.Outcome, time.Since(start))
		err = errors.New(failed.Text)
	case err != nil:
		s.log.LogAttrs(ctx, slog.LevelError, "resource read failed", slog.String("resource", name), slog.String("error", err.Error()))
		s.audit(ctx, p, name, true, "error", time.Since(start))
		err = errors.New("reading the resource failed")
	default:
		s.audit(ctx, p, name, true, "ok", time.Since(start))
	}
	return context.WithValue(ctx, readKey{}, &readDone{contents, err}), true
}

// limitedText is a rate-limit refusal's message, for answers that are
// JSON-RPC errors rather than tool results.
func limitedText(r *mcp.CallToolResult) string {
	for _, c := range r.Content {
		if t, ok := c.(mcp.TextContent); ok {
			return t.Text
		}
	}
	return "Too many requests."
}

// noteDeniedPrompt writes the audit line of a prompts/get for one of our
// prompts the caller may not get: mcp-go's prompt filter refuses it before
// any handler of ours runs. The name is decoded as mcp-go decodes it.
func (s *Server) noteDeniedPrompt(ctx context.Context, p *entra.Principal, g authz.Set, body []byte) {
	var msg mcp.GetPromptRequest
	if json.Unmarshal(body, &msg) != nil {
		return
	}
	if pr, ours := s.index().prompts[msg.Params.Name]; ours && !g.Allows(pr.need) {
		s.audit(ctx, p, "prompt:"+pr.Def.Name, false, "denied", 0)
	}
}

// adaptPrompt runs the prompt name for the caller, with its audit line. It
// looks the prompt up in the index on every call: an upstream's prompt can
// change its permission.
func (s *Server) adaptPrompt(promptName string) server.PromptHandlerFunc {
	name := "prompt:" + promptName
	return func(ctx context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		start := time.Now()
		p := entra.FromContext(ctx)
		pr, ok := s.index().prompts[promptName]
		if p == nil || !ok || !grantsFrom(ctx).Allows(pr.need) {
			s.audit(ctx, p, name, false, "denied", time.Since(start))
			return nil, fmt.Errorf("prompt '%s' not found: %w", promptName, server.ErrPromptNotFound)
		}
		if limited := s.limit(ctx, p); limited != nil {
			s.audit(ctx, p, name, true, outcomeLimited, time.Since(start))
			return nil, errors.New(limitedText(limited))
		}
		res, err := pr.Get(ctx, p, req.Params.Arguments)
		var failed *tools.Failure
		switch {
		case errors.As(err, &failed):
			s.log.LogAttrs(ctx, slog.LevelWarn, "prompt failed", slog.String("prompt", promptName), slog.String("err", logText(failed.Err)))
			s.audit(ctx, p, name, true, failed.Outcome, time.Since(start))
			return nil, errors.New(failed.Text)
		case err != nil:
			s.log.LogAttrs(ctx, slog.LevelError, "prompt failed", slog.String("prompt", promptName), slog.String("error", err.Error()))
			s.audit(ctx, p, name, true, "error", time.Since(start))
			return nil, errors.New("the prompt could not be made")
		}
		s.audit(ctx, p, name, true, "ok", time.Since(start))
		return res, nil
	}
}
