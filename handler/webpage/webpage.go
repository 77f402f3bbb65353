// Package webpage writes the handler's few HTML pages (sign-in results,
// OAuth consent) with the same strict security headers: nothing cached,
// framed or sniffed, no referrer to other sites, and a
// Content-Security-Policy that allows only the page's own nonce-tagged
// style and script.
package webpage

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"html/template"
	"net/http"
)

// Nonce returns a fresh CSP nonce for one page.
func Nonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// Write renders t with data and sends it with status. nonce must be the
// one the template puts on its style and script elements. formAction is
// the CSP form-action source list: "'none'" for pages without forms,
// "'self'" for forms posting to us (plus the origins their answer may
// redirect to: Chromium applies form-action to redirects too).
func Write(w http.ResponseWriter, status int, t *template.Template, data any, nonce, formAction string) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// same-origin, not no-referrer: under no-referrer Chromium posts a form
	// with "Origin: null", which the check against forged forms refuses.
	// Other sites still get no referrer.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+nonce+"'; script-src 'nonce-"+nonce+
		"'; base-uri 'none'; form-action "+formAction+"; frame-ancestors 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
