package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"hash"
	"log/slog"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/tools"
)

// Resources keep their URIs (a URI names the same thing wherever it is
// read), so their rules match URIs and URI templates; prompts get the
// upstream's prefix, as tools do. Reads and prompt gets are forwarded like
// tool calls: the caller's permission first, then the upstream's own
// credential, gate and session.

const (
	maxURILen  = 2048
	maxNameLen = 256
)

// readHints: a read changes nothing, so a failed one may be tried again.
var readHints = mcp.ToolAnnotation{ReadOnlyHint: mcp.ToBoolPtr(true), IdempotentHint: mcp.ToBoolPtr(true)}

// upstreamResource, upstreamTemplate and upstreamPrompt are what the
// upstream lists, as MCP defines them.
type upstreamResource struct {
	URI         string `json:"uri"`
	Name        string `json:"name"`
	Title       string `json:"title,omitempty"`
	Description string `json:"description,omitempty"`
	MIMEType    string `json:"mimeType,omitempty"`
}

type upstreamTemplate struct {
	URITemplate string `json:"uriTemplate"`
	Name        string `json:"name"`
	Title       string `json:"title,omitempty"`
	Description string `json:"description,omitempty"`
	MIMEType    string `json:"mimeType,omitempty"`
}

type upstreamPrompt struct {
	Name        string               `json:"name"`
	Title       string               `json:"title,omitempty"`
	Description string               `json:"description,omitempty"`
	Arguments   []mcp.PromptArgument `json:"arguments,omitempty"`
}

// fits reports whether upstream-chosen text is within our limits.
func fits(name, title, description string) bool {
	return name != "" && len(name) <= maxNameLen && len(title) <= maxNameLen && len(description) <= maxDescriptionLen
}

func (s *server) buildResources(defs []upstreamResource, h hash.Hash) []tools.Resource {
	var out []tools.Resource
	seen := map[string]bool{}
	for _, r := range defs {
		perm, ok := config.Permission(s.cfg.Resources, r.URI)
		if !ok || seen[r.URI] {
			continue
		}
		if r.URI == "" || len(r.URI) > maxURILen || !fits(r.Name, r.Title, r.Description) {
			s.log.Warn("upstream: resource left out: its URI, name or description is empty or too long", slog.String("resource", trimName(r.URI)))
			continue
		}
		seen[r.URI] = true
		def := mcp.Resource{URI: r.URI, Name: r.Name, Title: r.Title, Description: r.Description, MIMEType: r.MIMEType}
		fingerprint(h, def, perm)
		uri := r.URI
		out = append(out, tools.Resource{Def: def, Permissions: []string{perm},
			Read: func(ctx context.Context, p *entra.Principal) ([]mcp.ResourceContents, error) {
				return s.read(ctx, p, uri)
			}})
	}
	return out
}

func (s *server) buildTemplates(defs []upstreamTemplate, h hash.Hash) []tools.ResourceTemplate {
	var out []tools.ResourceTemplate
	seen := map[string]bool{}
	for _, t := range defs {
		perm, ok := config.Permission(s.cfg.Resources, t.URITemplate)
		if !ok || seen[t.URITemplate] {
			continue
		}
		tmpl, valid := parseTemplate(t.URITemplate)
		if !valid || len(t.URITemplate) > maxURILen || !fits(t.Name, t.Title, t.Description) {
			s.log.Warn("upstream: resource template left out: not a URI template, or its name or description is too long", slog.String("template", trimName(t.URITemplate)))
			continue
		}
		seen[t.URITemplate] = true
		def := mcp.ResourceTemplate{URITemplate: tmpl, Name: t.Name, Title: t.Title, Description: t.Description, MIMEType: t.MIMEType}
		fingerprint(h, t, perm)
		out = append(out, tools.ResourceTemplate{Def: def, Permissions: []string{perm},
			Read: func(ctx context.Context, p *entra.Principal, uri string, _ map[string]string) ([]mcp.ResourceContents, error) {
				return s.read(ctx, p, uri)
			}})
	}
	return out
}

// parseTemplate parses an RFC 6570 template; mcp-go's parser panics on a
// bad one, which an upstream must not be able to cause.
func parseTemplate(raw string) (t *mcp.URITemplate, ok bool) {
	defer func() {
		if recover() != nil {
			t, ok = nil, false
		}
	}()
	if raw == "" {
		return nil, false
	}
	return mcp.NewResourceTemplate(raw, "x").URITemplate, true
}

func (s *server) buildPrompts(defs []upstreamPrompt, h hash.Hash) []tools.Prompt {
	var out []tools.Prompt
	seen := map[string]bool{}
	for _, pr := range defs {
		perm, ok := config.Permission(s.cfg.Prompts, pr.Name)
		if !ok {
			continue
		}
		name := s.cfg.Name + "." + pr.Name
		if !toolName.MatchString(name) || seen[name] || !fits(pr.Name, pr.Title, pr.Description) || len(pr.Arguments) > 64 {
			s.log.Warn("upstream: prompt left out: its name breaks MCP's rules or it is too large", slog.String("prompt", trimName(pr.Name)))
			continue
		}
		seen[name] = true
		def := mcp.Prompt{Name: name, Title: pr.Title, Description: pr.Description, Arguments: pr.Arguments}
		fingerprint(h, def, perm)
		orig := pr.Name
		out = append(out, tools.Prompt{Def: def, Permissions: []string{perm},
			Get: func(ctx context.Context, p *entra.Principal, args map[string]string) (*mcp.GetPromptResult, error) {
				return s.getPrompt(ctx, p, orig, args)
			}})
	}
	return out
}

// fingerprint writes what an item is served as into h.
func fingerprint(h hash.Hash, v any, perm string) {
	b, _ := json.Marshal(v)
	h.Write(b)
	h.Write([]byte(perm + "\n"))
}

// resourceNotFound is MCP's JSON-RPC code for a resource that does not
// exist (and what mcp-go servers answer).
const resourceNotFound = -32002

// read forwards resources/read. An upstream that says the resource does not
// exist is answered as our own unknown URI is.
func (s *server) read(ctx context.Context, p *entra.Principal, uri string) ([]mcp.ResourceContents, error) {
	raw, err := s.do(ctx, p, string(mcp.MethodResourcesRead), map[string]string{"uri": uri}, readHints)
	var ce *callError
	if errors.As(err, &ce) && ce.rpc != nil && (ce.rpc.Code == resourceNotFound || ce.rpc.Code == mcp.INVALID_PARAMS) {
		return nil, tools.ErrResourceNotFound
	}
	if err != nil {
		return nil, err
	}
	res, err := mcp.ParseReadResourceResult(&raw)
	if err != nil {
		return nil, s.failure(OutcomeBadAnswer, "answered with something that is not a resource.", &callError{kind: kindBadAnswer, err: err})
	}
	return res.Contents, nil
}

// getPrompt forwards prompts/get under the upstream's own name.
func (s *server) getPrompt(ctx context.Context, p *entra.Principal, name string, args map[string]string) (*mcp.GetPromptResult, error) {
	params := map[string]any{"name": name}
	if len(args) > 0 {
		params["arguments"] = args
	}
	raw, err := s.do(ctx, p, string(mcp.MethodPromptsGet), params, readHints)
	if err != nil {
		return nil, err
	}
	res, err := mcp.ParseGetPromptResult(&raw)
	if err != nil {
		return nil, s.failure(OutcomeBadAnswer, "answered with something that is not a prompt.", &callError{kind: kindBadAnswer, err: err})
	}
	return &mcp.GetPromptResult{Description: res.Description, Messages: res.Messages}, nil
}
