package httpapi

import (
	"net/http"
	"slices"
	"strings"
)

// One CORS policy, the same here and at the Functions host in Azure
// (siteConfig.cors, fed by MCP_ALLOWED_ORIGINS): browser origins in the
// allowed list (and the public base URL's own) may call every route; other
// origins may only read the public metadata documents. On Flex Consumption
// the host answers every preflight itself and never forwards it, so what is
// here serves wherever the host does not (func start without CORS
// settings, dev mode, other hosts). Preflights carry no credentials and the
// real request is checked again (Origin on /mcp), so answering one grants
// nothing by itself.

// exposedHeaders are what a browser client must be able to read: the
// challenge that starts its sign-in, the protocol version, retry hints.
const exposedHeaders = "WWW-Authenticate, Mcp-Protocol-Version, Mcp-Session-Id, Retry-After"

// corsAccess is who may read a route's answers from a browser.
type corsAccess int

const (
	// allowedOrigins: the public origin and MCP_ALLOWED_ORIGINS.
	allowedOrigins corsAccess = iota
	// anyOrigin: public documents (metadata, health), without credentials.
	anyOrigin
)

// cors wraps a route: it answers preflights (OPTIONS with
// Access-Control-Request-Method) itself, 204 with CORS headers for an
// origin the route allows and without them for any other, as the Functions
// host does; and it adds the CORS headers to the answers of allowed
// origins. methods are the route's methods, announced in preflights.
func (a *api) cors(access corsAccess, methods []string, next http.Handler) http.Handler {
	allowMethods := strings.Join(methods, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		h := w.Header()
		h.Add("Vary", "Origin")
		allowed := access == anyOrigin || origin != "" && slices.Contains(a.origins, origin)
		switch {
		case access == anyOrigin:
			h.Set("Access-Control-Allow-Origin", "*")
		case allowed:
			h.Set("Access-Control-Allow-Origin", origin)
		}
		if preflight {
			if allowed {
				h.Set("Access-Control-Allow-Methods", allowMethods)
				if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
					h.Set("Access-Control-Allow-Headers", req)
				}
				h.Set("Access-Control-Max-Age", "600")
			}
			h.Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if allowed {
			h.Set("Access-Control-Expose-Headers", exposedHeaders)
		}
		next.ServeHTTP(w, r)
	})
}
