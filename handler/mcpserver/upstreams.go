package mcpserver

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"

	"github.com/mark3labs/mcp-go/server"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/tools"
)

// Upstreams are what other MCP servers serve, which comes and goes as their
// lists change; *upstream.Federation is one.
type Upstreams interface {
	// Components returns the upstream tools, resources, templates and
	// prompts as they are now, and a number that changes whenever they do.
	Components() (uint64, tools.Components)
	// Generation is that number alone, cheap enough for every request.
	Generation() uint64
	// Prepare makes sure the lists a request needs have been fetched
	// (tool "": every list; else the named tool's upstream), for the
	// caller in ctx.
	Prepare(ctx context.Context, tool string)
	// Offers reports whether upstreams may bring resources, and prompts.
	Offers() (resources, prompts bool)
}

// componentSet is the resources, templates and prompts served at one
// moment.
type componentSet struct {
	resources map[string]resource // by URI
	templates []template
	prompts   map[string]prompt // by name
	// retired are URI templates an upstream no longer lists, hidden and
	// unreadable here until mcp-go's templates are rebuilt without them
	// (it cannot forget one template).
	retired map[string]template
}

func (c componentSet) clone() componentSet {
	return componentSet{resources: maps.Clone(c.resources), templates: slices.Clone(c.templates),
		prompts: maps.Clone(c.prompts), retired: maps.Clone(c.retired)}
}

// toolIndex is what the endpoint knows about what it serves at one moment:
// its own tools, resources and prompts, which never change, and the
// upstreams' as last synchronised. It is replaced, never changed, so a
// request reads one consistent index.
type toolIndex struct {
	needs map[string]authz.Set // tool name -> the permissions it needs
	names []string             // tool names, sorted
	// upstreamGen is the Upstreams generation the index was built from;
	// gen numbers the index itself, keying the pre-encoded tools/list
	// answers.
	upstreamGen, gen uint64
	upstream         map[string]tools.Tool // upstream tools by name
	componentSet
}

func newIndex() *toolIndex {
	return &toolIndex{needs: map[string]authz.Set{}, upstream: map[string]tools.Tool{},
		componentSet: componentSet{resources: map[string]resource{}, prompts: map[string]prompt{}, retired: map[string]template{}}}
}

// index is the current index.
func (s *Server) index() *toolIndex { return s.tools.Load() }

// prepareUpstreams fetches what the request needs from the upstreams and
// brings the endpoint up to date with their lists.
func (s *Server) prepareUpstreams(ctx context.Context, tool string) {
	if s.upstreams == nil {
		return
	}
	s.upstreams.Prepare(ctx, tool)
	if s.upstreams.Generation() != s.index().upstreamGen {
		s.syncUpstreams()
	}
}

// syncUpstreams registers the upstreams' current lists with mcp-go and
// replaces the index, in an order that never shows anything with a
// permission other than its own: a tool that changes or goes is taken out
// of the index first (the filter then hides it), then changed in mcp-go; a
// new tool is added to mcp-go before the index shows it. Resources and
// prompts, whose filters let through what the index does not know (the
// conformance build's fixtures), go the other way: out of mcp-go before
// the index forgets them, into the index before mcp-go lists them.
func (s *Server) syncUpstreams() {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	gen, ups := s.upstreams.Components()
	old := s.index()
	if gen == old.upstreamGen {
		return
	}
	nextTools, needs := s.upstreamTools(ups.Tools)
	comps := s.upstreamComponents(ups)

	// 1. Hide the tools that change or go.
	stale, gone := toolChanges(old, nextTools, needs)
	kept := maps.Clone(old.upstream)
	for _, n := range append(slices.Clone(stale), gone...) {
		delete(kept, n)
	}
	s.storeIndex(old, kept, old.needs, old.componentSet, old.upstreamGen)
	// 2. Take out of mcp-go what goes.
	s.mcp.DeleteTools(gone...)
	goneURIs, gonePrompts := componentChanges(old.componentSet, comps)
	s.mcp.DeleteResources(goneURIs...)
	s.mcp.DeletePrompts(gonePrompts...)
	// 3. Add the tools that are new or changed, one at a time: mcp-go
	// panics on a definition it refuses, and refuses the whole batch with
	// it. A tool it refuses is left out of the index (and its old
	// definition out of mcp-go).
	for name, t := range nextTools {
		if _, ok := kept[name]; ok {
			continue
		}
		if err := s.addTool(server.ServerTool{Tool: t.Def, Handler: s.adapt(t)}); err != nil {
			s.log.Warn("mcpserver: upstream tool left out: mcp-go refuses its definition", slog.String("tool", name), slog.String("err", err.Error()))
			delete(nextTools, name)
			delete(needs, name)
			s.mcp.DeleteTools(name)
		}
	}
	// 4. Show the new lists.
	s.storeIndex(s.index(), nextTools, needs, comps, gen)
	// 5. Hand mcp-go the upstreams' resources, templates and prompts.
	s.registerUpstreamComponents(comps)
	// 6. Rebuild mcp-go's templates without the retired ones, then forget
	// them, so templates an upstream renames on every listing cannot pile
	// up. (mcp-go empties its templates and adds the new set in two steps:
	// a read of a template in between is answered not found. It happens
	// only when an upstream drops a template.)
	if len(comps.retired) > 0 {
		s.rebuildTemplates(comps)
		cleared := comps.clone()
		cleared.retired = map[string]template{}
		cur := s.index()
		s.storeIndex(cur, cur.upstream, cur.needs, cleared, cur.upstreamGen)
	}
}

// rebuildTemplates replaces mcp-go's templates with ours, the fixtures'
// and c's.
func (s *Server) rebuildTemplates(c componentSet) {
	all := fixtureTemplates()
	for _, t := range c.templates {
		all = append(all, server.ServerResourceTemplate{Template: t.Def, Handler: handBack})
	}
	s.mcp.SetResourceTemplates(all...)
}

// addTool registers one tool with mcp-go, turning its panic into an error.
func (s *Server) addTool(t server.ServerTool) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%v", v)
		}
	}()
	s.mcp.AddTools(t)
	return nil
}

// upstreamTools are the upstream tools with the permissions the policy
// knows, none shadowing one of ours.
func (s *Server) upstreamTools(ts []tools.Tool) (map[string]tools.Tool, map[string]authz.Set) {
	next := map[string]tools.Tool{}
	needs := map[string]authz.Set{}
	for _, t := range ts {
		if s.local[t.Def.Name] {
			continue // an upstream can never shadow our own tool
		}
		need, ok := s.upstreamNeed("tool", t.Def.Name, t.Permissions)
		if !ok {
			continue
		}
		next[t.Def.Name] = t
		needs[t.Def.Name] = need
	}
	return next, needs
}

// upstreamNeed is the permission set of an upstream item; false (logged)
// when the policy does not know it.
func (s *Server) upstreamNeed(what, name string, perms []string) (authz.Set, bool) {
	need, err := s.policy.Need(perms)
	if err != nil || need == 0 {
		s.log.Warn("mcpserver: upstream "+what+" left out: its permission is not in the role table",
			slog.String(what, name), slog.Any("permissions", perms))
		return 0, false
	}
	return need, true
}

// upstreamComponents are our own resources, templates and prompts with the
// upstreams' added; ours win a URI or name both claim, and a URI one of our
// templates serves.
func (s *Server) upstreamComponents(ups tools.Components) componentSet {
	c := s.localComponents.clone()
	c.retired = maps.Clone(s.index().retired)
	for _, r := range ups.Resources {
		if _, taken := c.resources[r.Def.URI]; taken || s.localTemplateServes(r.Def.URI) {
			continue
		}
		if need, ok := s.upstreamNeed("resource", r.Def.URI, r.Permissions); ok {
			c.resources[r.Def.URI] = resource{r, need}
		}
	}
	for _, t := range ups.Templates {
		raw := t.Def.URITemplate.Raw()
		if _, taken := c.template(raw); taken {
			continue
		}
		if need, ok := s.upstreamNeed("resource template", raw, t.Permissions); ok {
			c.templates = append(c.templates, template{t, need})
			delete(c.retired, raw)
		}
	}
	for _, p := range ups.Prompts {
		if _, taken := c.prompts[p.Def.Name]; taken {
			continue
		}
		if need, ok := s.upstreamNeed("prompt", p.Def.Name, p.Permissions); ok {
			c.prompts[p.Def.Name] = prompt{p, need}
		}
	}
	// A template the index served that is gone now is retired.
	for _, t := range s.index().templates {
		raw := t.Def.URITemplate.Raw()
		if _, still := c.template(raw); !still {
			c.retired[raw] = t
		}
	}
	return c
}

// localTemplateServes reports whether one of our own templates serves uri:
// serveRead looks resources up before templates, so an upstream resource
// there would take the URI from ours.
func (s *Server) localTemplateServes(uri string) bool {
	for _, t := range s.localComponents.templates {
		if t.Def.URITemplate.Regexp().MatchString(uri) {
			return true
		}
	}
	return false
}

// toolChanges names the upstream tools of old that change (definition or
// permission) and those that go.
func toolChanges(old *toolIndex, next map[string]tools.Tool, needs map[string]authz.Set) (stale, gone []string) {
	for name, t := range old.upstream {
		n, ok := next[name]
		switch {
		case !ok:
			gone = append(gone, name)
		case !sameTool(t, n) || old.needs[name] != needs[name]:
			stale = append(stale, name)
		}
	}
	return stale, gone
}

// componentChanges names the resources and prompts of old that next no
// longer has.
func componentChanges(old, next componentSet) (uris, prompts []string) {
	for uri := range old.resources {
		if _, ok := next.resources[uri]; !ok {
			uris = append(uris, uri)
		}
	}
	for name := range old.prompts {
		if _, ok := next.prompts[name]; !ok {
			prompts = append(prompts, name)
		}
	}
	return uris, prompts
}

// registerUpstreamComponents adds (or replaces) in mcp-go every upstream
// resource, template and prompt of c.
func (s *Server) registerUpstreamComponents(c componentSet) {
	for uri, r := range c.resources {
		if _, local := s.localComponents.resources[uri]; !local {
			s.mcp.AddResource(r.Def, handBack)
		}
	}
	for _, t := range c.templates {
		if _, local := s.localComponents.template(t.Def.URITemplate.Raw()); !local {
			s.mcp.AddResourceTemplate(t.Def, handBack)
		}
	}
	for name, p := range c.prompts {
		if _, local := s.localComponents.prompts[name]; !local {
			s.mcp.AddPrompt(p.Def, s.adaptPrompt(name))
		}
	}
}

// sameTool reports whether two upstream tools are served alike.
func sameTool(a, b tools.Tool) bool {
	return a.Def.Name == b.Def.Name && a.Def.Title == b.Def.Title && a.Def.Description == b.Def.Description &&
		string(a.Def.RawInputSchema) == string(b.Def.RawInputSchema) && string(a.Def.RawOutputSchema) == string(b.Def.RawOutputSchema) &&
		reflect.DeepEqual(a.Def.Annotations, b.Def.Annotations) && slices.Equal(a.Permissions, b.Permissions)
}

// storeIndex replaces the index with one holding the local tools, the
// upstream tools with their needs, and comps, and drops the pre-encoded
// answers of the old one.
func (s *Server) storeIndex(base *toolIndex, upstream map[string]tools.Tool, upstreamNeeds map[string]authz.Set, comps componentSet, upstreamGen uint64) {
	idx := &toolIndex{needs: map[string]authz.Set{}, upstream: map[string]tools.Tool{}, upstreamGen: upstreamGen, gen: base.gen + 1, componentSet: comps}
	for name := range s.local {
		idx.needs[name] = base.needs[name]
		idx.names = append(idx.names, name)
	}
	for name, t := range upstream {
		idx.needs[name] = upstreamNeeds[name]
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
