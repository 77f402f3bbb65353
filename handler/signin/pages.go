package signin

import (
	"html/template"
	"net/http"

	"github.com/entra-mcp/functions-mcp/handler/webpage"
)

// pageData fills the one page template: an error, or the one-time code.
type pageData struct {
	Title     string
	Message   string
	Code      string
	BaseURL   string
	NeedsPKCE bool
	TTL       int
	Nonce     string // CSP nonce for the inline style and script
}

func errorPage(title, message string) pageData {
	return pageData{Title: title, Message: message}
}

func codePage(code, baseURL string, needsPKCE bool, ttl int) pageData {
	return pageData{Title: "You are signed in", Code: code, BaseURL: baseURL, NeedsPKCE: needsPKCE, TTL: ttl}
}

// pageTemplate is small and self-contained: no external resources, so the
// Content-Security-Policy can forbid everything but its own nonce.
var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style nonce="{{.Nonce}}">
body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem;color:#1b1b1b}
h1{font-size:1.75rem}h2{font-size:1.1rem}code,pre{font:14px/1.4 ui-monospace,monospace}
pre{background:#f3f3f3;padding:.75rem;overflow-x:auto;white-space:pre-wrap;overflow-wrap:anywhere}
.code{display:flex;gap:.5rem;align-items:center}.code code{font-size:1.1rem;background:#eef4ff;padding:.4rem .6rem;word-break:break-all}
button{font:inherit;padding:.4rem .9rem;cursor:pointer}
.muted{color:#555}
</style></head><body>
<h1>{{.Title}}</h1>
{{if .Code}}
<p>Your one-time code, valid for {{.TTL}} seconds and for one use:</p>
<div class="code"><code id="code">{{.Code}}</code><button id="copy" type="button">Copy</button></div>
<p class="muted" id="copied" hidden>Copied.</p>
<h2>Exchange it for tokens</h2>
<pre>curl -s -X POST {{.BaseURL}}/auth/exchange -H 'Content-Type: application/json' \
  -d '{"auth_code":"{{.Code}}"{{if .NeedsPKCE}},"code_verifier":"&lt;your code_verifier&gt;"{{end}}}'</pre>
<p>The answer holds an <code>access_token</code> for the MCP endpoint and a <code>refresh_token</code>
to renew it at <code>{{.BaseURL}}/auth/refresh</code>.</p>
<h2>Use it from an MCP client</h2>
<pre>{
  "servers": {
    "tasks": {
      "type": "http",
      "url": "{{.BaseURL}}/mcp",
      "headers": { "Authorization": "Bearer &lt;access_token&gt;" }
    }
  }
}</pre>
<script nonce="{{.Nonce}}">
document.getElementById("copy").addEventListener("click", function () {
  navigator.clipboard.writeText(document.getElementById("code").textContent).then(function () {
    document.getElementById("copied").hidden = false;
  });
});
</script>
{{else}}
<p>{{.Message}}</p>
<p><a href="/auth/login">Start again</a></p>
{{end}}
</body></html>
`))

// page renders the template with the shared security headers (the
// callback URL carried Entra's code: no referrer).
func (s *Service) page(w http.ResponseWriter, status int, d pageData) {
	d.Nonce = webpage.Nonce()
	webpage.Write(w, status, pageTemplate, d, d.Nonce, "'none'")
}
