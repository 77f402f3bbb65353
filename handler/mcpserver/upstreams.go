package mcpserver

import (
	"context"
	"log/slog"
	"reflect"
	"slices"

	"github.com/mark3labs/mcp-go/server"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/tools"
)

// Upstreams are tools other MCP servers serve, which come and go as their
// lists change; *upstream.Federation is one.
type Upstreams interface {
	// Tools returns the upstream tools as they are now, and a number that
	// changes whenever they do.
	Tools() (uint64, []tools.Tool)
	// Generation is that number alone, cheap enough for every request.
	Generation() uint64
	// Prepare makes sure the lists a request needs have been fetched
	// (tool "": every list, for tools/list; else the named tool's
	// upstream), for the caller in ctx.
	Prepare(ctx context.Context, tool string)
}

// toolIndex is what the endpoint knows about the tools it serves at one
// moment: this server's own, which never change, and the upstreams' as
// last synchronised. It is replaced, never changed, so a request reads one
// consistent index.
type toolIndex struct {
	needs map[string]authz.Set // tool name -> the permissions it needs
	names []string             // sorted
	// upstreamGen is the Upstreams generation the index was built from;
	// gen numbers the index itself, keying the pre-encoded tools/list
	// answers.
	upstreamGen, gen uint64
	upstream         map[string]tools.Tool // upstream tools by name
}

// index is the current tool index.
func (s *Server) index() *toolIndex { return s.tools.Load() }

// prepareUpstreams fetches what the request needs from the upstreams and
// brings the endpoint's tools up to date with their lists.
func (s *Server) prepareUpstreams(ctx context.Context, tool string) {
	if s.upstreams == nil {
		return
	}
	s.upstreams.Prepare(ctx, tool)
	if s.upstreams.Generation() != s.index().upstreamGen {
		s.syncUpstreams()
	}
}

// syncUpstreams registers the upstreams' current tools with mcp-go and
// replaces the index. A tool that changes or goes is first taken out of
// the index (so the filter hides it), then changed in mcp-go; a new one is
// added to mcp-go before the index shows it. So no request ever sees a tool
// with a permission other than its own.
func (s *Server) syncUpstreams() {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	gen, ups := s.upstreams.Tools()
	old := s.index()
	if gen == old.upstreamGen {
		return
	}
	next := map[string]tools.Tool{}
	needs := map[string]authz.Set{}
	for _, t := range ups {
		if _, local := s.local[t.Def.Name]; local {
			continue // an upstream can never shadow our own tool
		}
		need, err := s.policy.Need(t.Permissions)
		if err != nil || need == 0 {
			s.log.Warn("mcpserver: upstream tool left out: its permission is not in the role table",
				slog.String("tool", t.Def.Name), slog.Any("permissions", t.Permissions))
			continue
		}
		next[t.Def.Name] = t
		needs[t.Def.Name] = need
	}

	// 1. Hide what changes or goes.
	var stale, gone []string
	for name, t := range old.upstream {
		n, ok := next[name]
		switch {
		case !ok:
			gone = append(gone, name)
		case !sameTool(t, n) || old.needs[name] != needs[name]:
			stale = append(stale, name)
		}
	}
	s.storeIndex(old, old.upstream, func(name string) bool { return slices.Contains(stale, name) || slices.Contains(gone, name) }, nil, old.upstreamGen)
	// 2. Change mcp-go.
	s.mcp.DeleteTools(gone...)
	var add []server.ServerTool
	for name, t := range next {
		if o, ok := old.upstream[name]; !ok || slices.Contains(stale, name) || !sameTool(o, t) {
			add = append(add, server.ServerTool{Tool: t.Def, Handler: s.adapt(t)})
		}
	}
	if len(add) > 0 {
		s.mcp.AddTools(add...)
	}
	// 3. Show the new list.
	s.storeIndex(s.index(), next, nil, needs, gen)
}

// sameTool reports whether two upstream tools are served alike.
func sameTool(a, b tools.Tool) bool {
	return a.Def.Name == b.Def.Name && a.Def.Title == b.Def.Title && a.Def.Description == b.Def.Description &&
		string(a.Def.RawInputSchema) == string(b.Def.RawInputSchema) && string(a.Def.RawOutputSchema) == string(b.Def.RawOutputSchema) &&
		reflect.DeepEqual(a.Def.Annotations, b.Def.Annotations) && slices.Equal(a.Permissions, b.Permissions)
}

// storeIndex replaces the index with one holding the local tools and
// upstream (less those hide says to), with upstreamNeeds (nil: as in
// base), and drops the pre-encoded answers of the old one.
func (s *Server) storeIndex(base *toolIndex, upstream map[string]tools.Tool, hide func(string) bool, upstreamNeeds map[string]authz.Set, upstreamGen uint64) {
	idx := &toolIndex{needs: map[string]authz.Set{}, upstream: map[string]tools.Tool{}, upstreamGen: upstreamGen, gen: base.gen + 1}
	for name := range s.local {
		idx.needs[name] = base.needs[name]
		idx.names = append(idx.names, name)
	}
	for name, t := range upstream {
		if hide != nil && hide(name) {
			continue
		}
		need := base.needs[name]
		if upstreamNeeds != nil {
			need = upstreamNeeds[name]
		}
		idx.needs[name] = need
		idx.upstream[name] = t
		idx.names = append(idx.names, name)
	}
	slices.Sort(idx.names)
	s.tools.Store(idx)
	s.lists.Range(func(k, _ any) bool {
		if k.(listKey).gen != idx.gen {
			s.lists.Delete(k)
		}
		return true
	})
}
