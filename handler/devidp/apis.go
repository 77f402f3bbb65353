package devidp

// Downstream web APIs: the resources, besides Microsoft Graph, that the
// API calls on behalf of its users (such as upstream MCP servers), each
// with its own audience. Entra issues a token for one resource at a time,
// names the resource by its Application ID URI or its application id, and
// checks the user's consent per delegated permission; the stand-in does the
// same for Options.APIs, and for Graph, which is built in.

import (
	"fmt"
	"slices"
	"strings"
)

// API is a downstream web API registered in the stand-in's tenant, for
// which on-behalf-of (and client_credentials) tokens can be issued.
type API struct {
	// AppID is its application (client) id, a GUID: the aud of the v2
	// tokens issued for it.
	AppID string
	// AppIDURI is its Application ID URI, such as "api://<AppID>" or
	// "api://notes.demo": the prefix of its scopes. Required: Entra
	// registers none by default, and a scope names its resource by it.
	AppIDURI string
	// Name is its display name, used in error texts.
	Name string
	// Permissions are its delegated permissions (scope values), such as
	// "Notes.Read" and "Notes.Write".
	Permissions []string
	// Consented are the permissions every user has consented to until
	// RevokeConsent says otherwise, as for Graph's User.Read.
	Consented []string
	// AppRoles are the application permissions (App Role values) it
	// accepts in app-only tokens: every application of Options.Apps gets
	// all of them from the client_credentials grant with
	// "<AppIDURI>/.default". May be empty: the token then has no roles
	// claim, as Entra issues it to an application with no role assigned.
	AppRoles []string
}

// Scope is the full scope value of permission perm of a, as a client
// requests it: "<AppIDURI>/<perm>". Scope(".default") asks for every
// consented permission (on-behalf-of) or for the App Roles (client
// credentials).
func (a API) Scope(perm string) string { return a.AppIDURI + "/" + perm }

// downstream is a resource the on-behalf-of grant issues tokens for:
// Graph, or one of Options.APIs.
type downstream struct {
	API
	// graph marks Microsoft Graph, whose tokens are v1 with Graph's
	// claims and whose scope may combine .default with named
	// permissions, as the stand-in has always allowed.
	graph bool
}

// graphDownstream is Microsoft Graph as a downstream resource.
func graphDownstream() *downstream {
	return &downstream{graph: true, API: API{
		AppID:       GraphAppID,
		AppIDURI:    GraphResource,
		Name:        "Microsoft Graph",
		Permissions: slices.Clone(graphPermissions),
		Consented:   []string{GraphUserRead},
	}}
}

// permission returns the canonical spelling of the permission name of d;
// Entra compares them case-insensitively.
func (d *downstream) permission(name string) (string, bool) {
	for _, p := range d.Permissions {
		if strings.EqualFold(p, name) {
			return p, true
		}
	}
	return "", false
}

// names reports whether resource, as written before a scope's last "/",
// is d: its Application ID URI exactly, or its application id, a GUID and
// so compared case-insensitively.
func (d *downstream) names(resource string) bool {
	return resource == d.AppIDURI || strings.EqualFold(resource, d.AppID)
}

// registerAPIs checks the Options.APIs and returns the downstream
// resources: Graph, then copies of them. A mistake here would otherwise
// show up as a puzzling AADSTS error at the first call.
func (s *Server) registerAPIs(apis []API) ([]*downstream, error) {
	out := []*downstream{graphDownstream()}
	for i, a := range apis {
		if err := s.checkAPI(a, out); err != nil {
			return nil, fmt.Errorf("devidp: API %d (%s): %w", i, a.Name, err)
		}
		a.Permissions = slices.Clone(a.Permissions)
		a.Consented = slices.Clone(a.Consented)
		a.AppRoles = slices.Clone(a.AppRoles)
		if a.Name == "" {
			a.Name = a.AppIDURI
		}
		d := &downstream{API: a}
		// Consent is recorded under the canonical spelling.
		for j, c := range d.Consented {
			d.Consented[j], _ = d.permission(c)
		}
		out = append(out, d)
	}
	return out, nil
}

// checkAPI checks one API against the handler's own API and the resources
// registered before it.
func (s *Server) checkAPI(a API, registered []*downstream) error {
	switch {
	case !uuidPattern.MatchString(a.AppID):
		return fmt.Errorf("app id %q is not a GUID", a.AppID)
	case a.AppIDURI == "" || strings.ContainsAny(a.AppIDURI, " \t\r\n") || strings.HasSuffix(a.AppIDURI, "/"):
		return fmt.Errorf("application ID URI %q: want a URI without spaces or a trailing slash, such as api://%s", a.AppIDURI, a.AppID)
	case strings.EqualFold(a.AppID, s.clientID) || a.AppIDURI == s.appIDURI():
		// The API's own scopes are for sign-in, not for on-behalf-of.
		return fmt.Errorf("%s is the API application itself", a.AppID)
	}
	for _, d := range registered {
		if d.names(a.AppID) || d.names(a.AppIDURI) {
			return fmt.Errorf("app id %s or Application ID URI %s is %s's too", a.AppID, a.AppIDURI, d.Name)
		}
	}
	if err := checkValues("permission", a.Permissions); err != nil {
		return err
	}
	if err := checkValues("App Role", a.AppRoles); err != nil {
		return err
	}
	d := downstream{API: a}
	for _, c := range a.Consented {
		if _, ok := d.permission(c); !ok {
			return fmt.Errorf("consented permission %q is not one of its permissions", c)
		}
	}
	return nil
}

// checkValues wants scope or role values a token can carry space-separated
// and a scope can end with: no spaces, no "/", not ".default", each once.
func checkValues(kind string, values []string) error {
	for i, v := range values {
		switch {
		case v == "" || strings.ContainsAny(v, " \t\r\n/"):
			return fmt.Errorf("%s %q: want a value without spaces or '/'", kind, v)
		case v == ".default":
			return fmt.Errorf("%s %q is reserved", kind, v)
		case slices.ContainsFunc(values[:i], func(o string) bool { return strings.EqualFold(o, v) }):
			return fmt.Errorf("%s %q is listed twice", kind, v)
		}
	}
	return nil
}

// downstreamFor returns the resource that resource (a scope's prefix)
// names, or nil.
func (s *Server) downstreamFor(resource string) *downstream {
	for _, d := range s.downstreams {
		if d.names(resource) {
			return d
		}
	}
	return nil
}

// configuredAPI returns the API of Options.APIs that resource names, or
// nil: Graph gives no app-only tokens here.
func (s *Server) configuredAPI(resource string) *downstream {
	if d := s.downstreamFor(resource); d != nil && !d.graph {
		return d
	}
	return nil
}

// consentTarget resolves the scope given to GrantConsent or RevokeConsent
// to a resource and the canonical name of one of its permissions. A bare
// name is Graph's, as before APIs were added.
func (s *Server) consentTarget(scope string) (*downstream, string, bool) {
	d, name := s.downstreams[0], scope // Graph
	if i := strings.LastIndex(scope, "/"); i >= 0 {
		if d = s.downstreamFor(scope[:i]); d == nil {
			return nil, "", false
		}
		name = scope[i+1:]
	}
	perm, ok := d.permission(name)
	return d, perm, ok
}
