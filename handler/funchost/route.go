package funchost

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// template is a parsed ASP.NET Core route template of the subset the
// stand-in imitates: literal segments, {name}, optional {name?} or
// {name=default} at the end, and a {*name} or {**name} catch-all last.
type template struct {
	text string // routePrefix/route as the host builds it
	segs []segment
}

type segment struct {
	literal  string // when param is empty
	param    string
	optional bool // may be absent (only at the end)
	catchAll bool // matches the rest of the path, even nothing
}

// parseTemplate parses a route template, refusing what it does not
// imitate (constraints, complex segments) rather than matching it wrongly.
func parseTemplate(text string) (template, error) {
	t := template{text: text}
	trimmed := strings.TrimPrefix(strings.TrimPrefix(text, "~"), "/")
	if trimmed == "" {
		return t, nil
	}
	parts := strings.Split(trimmed, "/")
	for i, p := range parts {
		last := i == len(parts)-1
		if p == "" {
			if last {
				break // a trailing slash is ignored
			}
			return t, fmt.Errorf("route %q has an empty segment", text)
		}
		s, err := parseSegment(p)
		if err != nil {
			return t, fmt.Errorf("route %q: %w", text, err)
		}
		if s.catchAll && !last {
			return t, fmt.Errorf("route %q: a catch-all must be the last segment", text)
		}
		if n := len(t.segs); n > 0 && t.segs[n-1].optional && !s.optional {
			return t, fmt.Errorf("route %q: an optional parameter may only be followed by optional ones", text)
		}
		t.segs = append(t.segs, s)
	}
	return t, nil
}

func parseSegment(p string) (segment, error) {
	if !strings.ContainsAny(p, "{}") {
		return segment{literal: p}, nil
	}
	inner, ok := strings.CutPrefix(p, "{")
	inner, ok2 := strings.CutSuffix(inner, "}")
	if !ok || !ok2 || strings.ContainsAny(inner, "{}") {
		return segment{}, fmt.Errorf("segment %q mixes literals and parameters: not imitated", p)
	}
	var s segment
	if rest, ok := strings.CutPrefix(inner, "**"); ok {
		s.catchAll, inner = true, rest
	} else if rest, ok := strings.CutPrefix(inner, "*"); ok {
		s.catchAll, inner = true, rest
	}
	if strings.Contains(inner, ":") {
		return segment{}, fmt.Errorf("parameter %q has a constraint: not imitated", p)
	}
	if name, _, ok := strings.Cut(inner, "="); ok {
		s.optional, inner = true, name
	} else if name, ok := strings.CutSuffix(inner, "?"); ok {
		s.optional, inner = true, name
	}
	if inner == "" {
		return segment{}, errors.New("a parameter without a name")
	}
	s.param = inner
	s.optional = s.optional || s.catchAll
	return s, nil
}

// splitPath turns a request's escaped path into decoded segments, without
// the leading slash and ignoring one trailing slash. An escaped slash
// (%2F) stays inside its segment, as in ASP.NET Core.
func splitPath(escaped string) ([]string, bool) {
	p := strings.TrimPrefix(escaped, "/")
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return nil, true
	}
	parts := strings.Split(p, "/")
	for i, s := range parts {
		d, err := url.PathUnescape(s)
		if err != nil {
			return nil, false
		}
		parts[i] = d
	}
	return parts, true
}

// match reports whether the path segments match the template: literals
// case-insensitively, parameters on one non-empty segment.
func (t template) match(path []string) bool {
	for i, s := range t.segs {
		if s.catchAll {
			return true
		}
		if i >= len(path) {
			return s.optional // the parser made every later one optional too
		}
		if s.param == "" {
			if !strings.EqualFold(s.literal, path[i]) {
				return false
			}
		} else if path[i] == "" {
			return false
		}
	}
	return len(path) == len(t.segs)
}

// route finds the function for a request as the host's router does: the
// first function, in name order, whose template and methods both match.
// It returns false when none does (the host answers 404, not 405).
func (a *app) route(escapedPath, method string) (function, bool) {
	path, ok := splitPath(escapedPath)
	if !ok {
		return function{}, false
	}
	for _, f := range a.functions {
		if f.route.match(path) && f.allows(method) {
			return f, true
		}
	}
	return function{}, false
}
