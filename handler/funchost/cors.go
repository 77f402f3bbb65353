package funchost

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// corsPolicy is the Flex host's CORS policy for siteConfig.cors: the
// configured origins (and credentials), any method, any header, no
// exposed headers, no max-age; ASP.NET Core's CorsService evaluates it.
type corsPolicy struct {
	origins     []string // normalized
	anyOrigin   bool     // the list is exactly ["*"]
	credentials bool
}

func newCORSPolicy(origins []string, credentials bool) (*corsPolicy, error) {
	p := &corsPolicy{credentials: credentials}
	for _, o := range origins {
		if o == "*" {
			p.origins = append(p.origins, o)
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("funchost: CORS origin %q is not scheme://host[:port]", o)
		}
		// WithOrigins lower-cases scheme and host; the request's Origin is
		// then compared exactly.
		p.origins = append(p.origins, strings.ToLower(u.Scheme)+"://"+strings.ToLower(u.Host))
	}
	// CorsPolicy.AllowAnyOrigin holds only when "*" is the sole entry;
	// among others it is a literal that no Origin equals.
	p.anyOrigin = len(p.origins) == 1 && p.origins[0] == "*"
	if p.anyOrigin && credentials {
		return nil, fmt.Errorf("funchost: CORS allows any origin with credentials: ASP.NET Core refuses that policy")
	}
	return p, nil
}

// evaluate returns the Access-Control-Allow-Origin value for origin, and
// whether the response varies by Origin; "" when the origin is not allowed.
func (p *corsPolicy) evaluate(origin string) (allow string, vary bool) {
	if p.anyOrigin {
		return "*", p.credentials
	}
	for _, o := range p.origins {
		if o == origin {
			return origin, len(p.origins) > 1
		}
	}
	return "", false
}

// middleware runs before routing, as the host's CORS middleware does.
// Preflights are answered here, always 204, and never reach next; other
// requests from an allowed origin get their CORS headers overwritten when
// the response starts.
func (p *corsPolicy) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origins, ok := r.Header["Origin"]
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		allow, vary := p.evaluate(strings.Join(origins, ","))
		requested, preflight := r.Header["Access-Control-Request-Method"]
		if preflight && r.Method == http.MethodOptions {
			if allow != "" {
				h := w.Header()
				p.apply(h, allow, vary)
				if hs := commaValues(r.Header.Values("Access-Control-Request-Headers")); len(hs) > 0 {
					h.Set("Access-Control-Allow-Headers", strings.Join(hs, ","))
				}
				if m := strings.Join(requested, ","); m != "" {
					h.Set("Access-Control-Allow-Methods", m)
				}
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if allow == "" {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&onStart{ResponseWriter: w, start: func(h http.Header) { p.apply(h, allow, vary) }}, r)
	})
}

// apply sets the headers every allowed response gets; it overwrites what
// the handler set, as CorsService.ApplyResult does.
func (p *corsPolicy) apply(h http.Header, allow string, vary bool) {
	h.Set("Access-Control-Allow-Origin", allow)
	if p.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if vary {
		h.Add("Vary", "Origin")
	}
}

// commaValues splits header values on commas, trimmed, empties dropped.
func commaValues(values []string) []string {
	var out []string
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// onStart calls start with the response headers just before they are
// written, like ASP.NET Core's Response.OnStarting. Flush (and the rest of
// http.ResponseController) keeps working through Unwrap.
type onStart struct {
	http.ResponseWriter
	start   func(http.Header)
	started bool
}

func (w *onStart) WriteHeader(code int) {
	if !w.started && code >= 200 {
		w.started = true
		w.start(w.Header())
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *onStart) Write(b []byte) (int, error) {
	if !w.started {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// FlushError lets http.ResponseController flush through the wrapper.
func (w *onStart) FlushError() error {
	if !w.started {
		w.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *onStart) Unwrap() http.ResponseWriter { return w.ResponseWriter }
