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
	"time"
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

// BrowserCookie is a cookie that binds server state to one browser:
// HttpOnly, path /, and over https Secure with the __Host- prefix, which
// pins it to our host. Plain http (dev mode) cannot carry such a cookie, so
// there it has the bare name.
type BrowserCookie struct {
	Name     string // without the prefix
	Secure   bool   // https: prefix and Secure
	SameSite http.SameSite
}

func (c BrowserCookie) fullName() string {
	if c.Secure {
		return "__Host-" + c.Name
	}
	return c.Name
}

// Set sends the cookie with value for maxAge.
func (c BrowserCookie) Set(w http.ResponseWriter, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name:     c.fullName(),
		Value:    value,
		Path:     "/",
		MaxAge:   int(maxAge / time.Second),
		HttpOnly: true,
		Secure:   c.Secure,
		SameSite: c.SameSite,
	})
}

// Clear tells the browser to drop the cookie.
func (c BrowserCookie) Clear(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: c.fullName(), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: c.Secure, SameSite: c.SameSite})
}

// Value is the cookie's value in r, or "" if it has none.
func (c BrowserCookie) Value(r *http.Request) string {
	ck, err := r.Cookie(c.fullName())
	if err != nil {
		return ""
	}
	return ck.Value
}
