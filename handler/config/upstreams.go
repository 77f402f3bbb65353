package config

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/authz"
)

// UpstreamsFile is the upstream configuration shipped with the package:
// infra/upstreams.json, staged next to host.json, read from the working
// directory (the function app's root) when MCP_UPSTREAMS is not set.
const UpstreamsFile = "upstreams.json"

// Limits and defaults of an upstream's entry.
const (
	DefaultUpstreamTimeout       = 30 * time.Second
	DefaultUpstreamListTTL       = 5 * time.Minute
	DefaultUpstreamMaxConcurrent = 16
	DefaultUpstreamMaxResponse   = 4 << 20
	maxUpstreams                 = 16
	maxUpstreamRules             = 256
	maxUpstreamsBytes            = 256 << 10
	// maxToolNameLen is MCP's limit on a tool name (SEP-986), which a
	// prefixed name must keep.
	maxToolNameLen = 128
)

// UpstreamAuthMode is how the handler authenticates to an upstream MCP
// server.
type UpstreamAuthMode string

// Upstream authentication modes. The caller's own token is never one of
// them: MCP's authorization spec forbids passing it through.
const (
	// UpstreamOnBehalfOf exchanges the caller's Entra token for one with
	// the upstream's audience and Scopes (Entra's on-behalf-of flow): the
	// upstream sees the user. Only callers who are people can use it.
	UpstreamOnBehalfOf UpstreamAuthMode = "on-behalf-of"
	// UpstreamManagedIdentity sends the handler's own managed-identity
	// token for the upstream's audience (Scopes holds its "/.default"
	// scope): the upstream sees this server, whoever calls.
	UpstreamManagedIdentity UpstreamAuthMode = "managed-identity"
	// UpstreamHeader sends a fixed secret in Header, its value read from
	// Key Vault (the secret named Secret) or, without Key Vault, from the
	// environment variable SecretEnvName(Secret).
	UpstreamHeader UpstreamAuthMode = "header"
	// UpstreamNone sends no credential: a server on a private network.
	UpstreamNone UpstreamAuthMode = "none"
)

// Upstream is one MCP server this one fronts: its tools are listed and
// called here, under Name's prefix, for callers the rules allow.
type Upstream struct {
	// Name is the prefix of its tools ("devops" → devops.list_items):
	// lower-case letters, digits and '-', starting with a letter.
	Name string `json:"name"`
	// URL is its streamable-HTTP endpoint: https, or http on loopback, or
	// http with Auth none (a private network; no credential goes in clear).
	URL  string       `json:"url"`
	Auth UpstreamAuth `json:"auth"`
	// Tools, Resources and Prompts say which permission each of the
	// upstream's tools, resources (by URI) and prompts needs; the first
	// rule that matches wins. What no rule matches is never shown or
	// served: the default is deny.
	Tools     []UpstreamRule `json:"tools"`
	Resources []UpstreamRule `json:"resources,omitempty"`
	Prompts   []UpstreamRule `json:"prompts,omitempty"`
	// Timeout bounds one call (DefaultUpstreamTimeout).
	Timeout Duration `json:"timeout,omitempty"`
	// ListTTL is how long a fetched tool list is served before it is
	// fetched again in the background (DefaultUpstreamListTTL).
	ListTTL Duration `json:"listTTL,omitempty"`
	// MaxConcurrent caps the calls in flight to it from one instance
	// (DefaultUpstreamMaxConcurrent); more fail at once.
	MaxConcurrent int `json:"maxConcurrent,omitempty"`
	// MaxResponseBytes caps one answer's body (DefaultUpstreamMaxResponse).
	MaxResponseBytes int64 `json:"maxResponseBytes,omitempty"`
}

// UpstreamAuth is how an upstream is called.
type UpstreamAuth struct {
	Mode UpstreamAuthMode `json:"mode"`
	// Scopes: with on-behalf-of, the delegated permissions of the
	// upstream's API ("api://<its app id>/Items.Read"); with
	// managed-identity, its "/.default" scope. All of one resource.
	Scopes []string `json:"scopes,omitempty"`
	// Header and Secret: with header, the header's name and the secret
	// holding its value (see UpstreamHeader).
	Header string `json:"header,omitempty"`
	Secret string `json:"secret,omitempty"`
	// APIPermissions: with on-behalf-of, the upstream API's delegated
	// permissions as Entra identifies them, which infra/ adds to this
	// server's app registration (requiredResourceAccess) so that an admin
	// can consent to them; optional (without it, add them by hand after
	// every provisioning).
	APIPermissions *APIPermissions `json:"apiPermissions,omitempty"`
}

// APIPermissions names an API's delegated permissions by Entra's ids: the
// API's application (client) id and the ids of its scopes ("Expose an
// API" in its app registration).
type APIPermissions struct {
	ResourceAppID string   `json:"resourceAppId"`
	ScopeIDs      []string `json:"scopeIds"`
}

// UpstreamRule gives the permission (a name from the role table) needed by
// the upstream's items that Match names: a name, or a pattern where '*'
// stands for any run of characters.
type UpstreamRule struct {
	Match      string `json:"match"`
	Permission string `json:"permission"`
}

// Duration is a time.Duration written as Go writes one ("30s", "5m").
type Duration time.Duration

// UnmarshalJSON reads "30s" and the like.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`want a duration such as "30s"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return fmt.Errorf("%q is not a positive duration such as \"30s\"", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as UnmarshalJSON reads it.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// SecretEnvName is the environment variable that holds secret's value when
// there is no Key Vault: upper case, '-' as '_' (devops-api-key →
// DEVOPS_API_KEY).
func SecretEnvName(secret string) string {
	return strings.ToUpper(strings.ReplaceAll(secret, "-", "_"))
}

// Permission returns the permission rules give to name, and false when no
// rule matches it (the item is never shown or served).
func Permission(rules []UpstreamRule, name string) (string, bool) {
	for _, r := range rules {
		if matchPattern(r.Match, name) {
			return r.Permission, true
		}
	}
	return "", false
}

// matchPattern reports whether name matches pattern, where '*' is any run
// of characters (none included) and everything else is itself.
func matchPattern(pattern, name string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == name
	}
	if !strings.HasPrefix(name, parts[0]) {
		return false
	}
	name = name[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(name, p)
		if i < 0 {
			return false
		}
		name = name[i+len(p):]
	}
	return len(name) >= len(last) && strings.HasSuffix(name, last)
}

var (
	upstreamName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	headerName   = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
	// Key Vault's rule for secret names.
	secretName    = regexp.MustCompile(`^[A-Za-z0-9-]{1,127}$`)
	toolNameChars = regexp.MustCompile(`^[A-Za-z0-9_.*-]+$`)
)

// reservedHeaders may not carry an upstream's secret: the transport sets
// them, and Authorization is the modes' own.
var reservedHeaders = []string{"authorization", "content-type", "accept", "content-length", "host", "cookie",
	"mcp-session-id", "mcp-protocol-version", "mcp-method", "last-event-id", "transfer-encoding", "connection"}

// loadUpstreams reads MCP_UPSTREAMS: the upstream configuration as JSON,
// or the same JSON in base64, which an azd environment value can carry
// (azd puts values into the parameters file unescaped). Unset: the shipped
// UpstreamsFile, when there is one. Every permission must be one the role
// table knows.
func loadUpstreams(getenv func(string) string, roles authz.Table) ([]Upstream, error) {
	v := strings.TrimSpace(getenv("MCP_UPSTREAMS"))
	text, err := upstreamsText(v)
	if err != nil {
		return nil, fmt.Errorf("MCP_UPSTREAMS: %w", err)
	}
	if text == nil {
		return nil, nil
	}
	ups, err := ParseUpstreams(text, roles)
	if err != nil {
		return nil, fmt.Errorf("MCP_UPSTREAMS: %w", err)
	}
	return ups, nil
}

// upstreamsText is the configuration MCP_UPSTREAMS's value v names; nil
// when v is empty and no file was shipped.
func upstreamsText(v string) ([]byte, error) {
	switch {
	case v == "":
		b, err := readCapped(UpstreamsFile)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return b, err
	case strings.HasPrefix(v, "{"):
		return []byte(v), nil
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil || !bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
		return nil, errors.New(`want JSON ({"upstreams":[...]}) or the same in base64`)
	}
	return b, nil
}

// readCapped reads a configuration file of at most maxUpstreamsBytes.
func readCapped(name string) ([]byte, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(b) > maxUpstreamsBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxUpstreamsBytes)
	}
	return b, nil
}

// ParseUpstreams reads an upstream configuration, {"upstreams":[...]},
// strictly (an unknown field is an error, so a misspelt one is not
// silently ignored), checks every entry and fills in defaults. Every
// permission must be one roles knows.
func ParseUpstreams(text []byte, roles authz.Table) ([]Upstream, error) {
	if len(text) > maxUpstreamsBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxUpstreamsBytes)
	}
	var doc struct {
		Upstreams []Upstream `json:"upstreams"`
	}
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if dec.More() {
		return nil, errors.New("parse: text after the JSON object")
	}
	if len(doc.Upstreams) > maxUpstreams {
		return nil, fmt.Errorf("%d upstreams, at most %d", len(doc.Upstreams), maxUpstreams)
	}
	known := roles.Permissions()
	var names, apps []string
	for i := range doc.Upstreams {
		u := &doc.Upstreams[i]
		if err := u.check(known); err != nil {
			return nil, fmt.Errorf("upstream %d (%q): %w", i, u.Name, err)
		}
		if slices.Contains(names, u.Name) {
			return nil, fmt.Errorf("upstream %q: named twice", u.Name)
		}
		names = append(names, u.Name)
		if p := u.Auth.APIPermissions; p != nil {
			// One requiredResourceAccess entry per API: Entra takes no
			// second one for the same resource.
			if slices.Contains(apps, strings.ToLower(p.ResourceAppID)) {
				return nil, fmt.Errorf("upstream %q: apiPermissions: resource %s is named by another upstream too; list all its scopes in one", u.Name, p.ResourceAppID)
			}
			apps = append(apps, strings.ToLower(p.ResourceAppID))
		}
		u.fillDefaults()
	}
	return doc.Upstreams, nil
}

// CheckUpstream checks one entry as ParseUpstreams checks each, and fills
// in its defaults: for an entry made in code (dev mode's demo upstream).
func CheckUpstream(u Upstream, roles authz.Table) (Upstream, error) {
	if err := u.check(roles.Permissions()); err != nil {
		return Upstream{}, fmt.Errorf("upstream %q: %w", u.Name, err)
	}
	u.fillDefaults()
	return u, nil
}

func (u *Upstream) fillDefaults() {
	if u.Timeout == 0 {
		u.Timeout = Duration(DefaultUpstreamTimeout)
	}
	if u.ListTTL == 0 {
		u.ListTTL = Duration(DefaultUpstreamListTTL)
	}
	if u.MaxConcurrent == 0 {
		u.MaxConcurrent = DefaultUpstreamMaxConcurrent
	}
	if u.MaxResponseBytes == 0 {
		u.MaxResponseBytes = DefaultUpstreamMaxResponse
	}
}

// check refuses an entry that could not work or would be unsafe.
func (u *Upstream) check(known []string) error {
	if !upstreamName.MatchString(u.Name) {
		return errors.New("name: want lower-case letters, digits and '-', starting with a letter, at most 32")
	}
	if err := checkUpstreamURL(u.URL, u.Auth.Mode); err != nil {
		return err
	}
	if err := u.Auth.check(); err != nil {
		return err
	}
	if len(u.Tools) == 0 {
		return errors.New("tools: no rules, so none of its tools could ever be shown")
	}
	for what, rules := range map[string][]UpstreamRule{"tools": u.Tools, "resources": u.Resources, "prompts": u.Prompts} {
		if err := checkRules(what, rules, known, what == "tools", len(u.Name)+1); err != nil {
			return err
		}
	}
	switch {
	case u.MaxConcurrent < 0 || u.MaxConcurrent > 1024:
		return errors.New("maxConcurrent: want 1 to 1024")
	case u.MaxResponseBytes < 0 || u.MaxResponseBytes > 64<<20:
		return errors.New("maxResponseBytes: want at most 64 MiB")
	case time.Duration(u.Timeout) > 5*time.Minute:
		return errors.New("timeout: want at most 5m (a Functions execution would end first)")
	}
	return nil
}

// checkRules checks one rule list: known permissions, and for tools, names
// that keep within MCP's tool-name rules once prefixed.
func checkRules(what string, rules []UpstreamRule, known []string, toolNames bool, prefix int) error {
	if len(rules) > maxUpstreamRules {
		return fmt.Errorf("%s: %d rules, at most %d", what, len(rules), maxUpstreamRules)
	}
	for _, r := range rules {
		switch {
		case r.Match == "" || len(r.Match) > 512:
			return fmt.Errorf("%s: a rule needs a match of 1 to 512 characters", what)
		case toolNames && (!toolNameChars.MatchString(r.Match) || prefix+len(strings.ReplaceAll(r.Match, "*", "")) > maxToolNameLen):
			return fmt.Errorf("%s: match %q: a tool name has letters, digits, '_', '-' and '.', and at most %d characters with the prefix", what, r.Match, maxToolNameLen)
		case !slices.Contains(known, r.Permission):
			return fmt.Errorf("%s: match %q: unknown permission %q (the role table has %s)", what, r.Match, r.Permission, strings.Join(known, ", "))
		}
	}
	return nil
}

// checkUpstreamURL allows https anywhere, http on loopback (dev mode, a
// sidecar), and http with no credential.
func checkUpstreamURL(raw string, mode UpstreamAuthMode) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "":
		return errors.New("url: not an absolute URL")
	case u.User != nil || u.Fragment != "":
		// Not echoed: user info may be a password.
		return errors.New("url: must have no user info or fragment")
	}
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme != "http":
		return fmt.Errorf("url: %q: want https", raw)
	case mode == UpstreamNone:
		return nil
	}
	if ip := net.ParseIP(u.Hostname()); (ip != nil && ip.IsLoopback()) || u.Hostname() == "localhost" {
		return nil
	}
	return fmt.Errorf("url: %q: a credential is never sent over http except on loopback; use https", raw)
}

func (a UpstreamAuth) check() error {
	switch a.Mode {
	case UpstreamOnBehalfOf, UpstreamManagedIdentity:
		return a.checkToken()
	case UpstreamHeader:
		return a.checkHeader()
	case UpstreamNone:
		if len(a.Scopes) > 0 || a.Header != "" || a.Secret != "" || a.APIPermissions != nil {
			return errors.New("auth: none takes no scopes, header or secret")
		}
		return nil
	}
	return fmt.Errorf("auth: mode %q must be %s, %s, %s or %s", a.Mode, UpstreamOnBehalfOf, UpstreamManagedIdentity, UpstreamHeader, UpstreamNone)
}

// checkToken checks the modes that send an Entra token.
func (a UpstreamAuth) checkToken() error {
	if len(a.Scopes) == 0 {
		return fmt.Errorf("auth: %s needs scopes", a.Mode)
	}
	if a.Header != "" || a.Secret != "" {
		return fmt.Errorf("auth: %s takes no header or secret", a.Mode)
	}
	if a.APIPermissions != nil {
		if err := a.APIPermissions.check(a.Mode); err != nil {
			return err
		}
	}
	return checkScopes(a.Mode, a.Scopes)
}

// checkHeader checks the header mode.
func (a UpstreamAuth) checkHeader() error {
	switch {
	case a.APIPermissions != nil:
		return errors.New("auth: apiPermissions are for on-behalf-of")
	case !headerName.MatchString(a.Header) || slices.Contains(reservedHeaders, strings.ToLower(a.Header)):
		return fmt.Errorf("auth: header %q: want a header name the transport does not set itself", a.Header)
	case !secretName.MatchString(a.Secret):
		return errors.New("auth: header needs secret, the name (letters, digits, '-') of the Key Vault secret holding its value")
	case len(a.Scopes) > 0:
		return errors.New("auth: header takes no scopes")
	}
	return nil
}

var guid = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func (p *APIPermissions) check(mode UpstreamAuthMode) error {
	if mode != UpstreamOnBehalfOf {
		return errors.New("auth: apiPermissions are for on-behalf-of")
	}
	if !guid.MatchString(p.ResourceAppID) || len(p.ScopeIDs) == 0 || len(p.ScopeIDs) > 32 {
		return errors.New("auth: apiPermissions: want resourceAppId (a GUID) and 1 to 32 scopeIds (GUIDs)")
	}
	for _, id := range p.ScopeIDs {
		if !guid.MatchString(id) {
			return fmt.Errorf("auth: apiPermissions: scope id %q is not a GUID", id)
		}
	}
	return nil
}

// checkScopes wants the scopes of one resource, as Entra issues a token
// for one audience; managed identities take exactly its "/.default".
func checkScopes(mode UpstreamAuthMode, scopes []string) error {
	var resource string
	for _, s := range scopes {
		i := strings.LastIndex(s, "/")
		if i <= 0 || i == len(s)-1 || strings.ContainsAny(s, " \t\r\n") {
			return fmt.Errorf("auth: scope %q: want <resource>/<permission>, such as api://<app id>/Items.Read", s)
		}
		if resource != "" && s[:i] != resource {
			return fmt.Errorf("auth: scopes name two resources (%s, %s); a token has one audience", resource, s[:i])
		}
		resource = s[:i]
		if mode == UpstreamManagedIdentity && (len(scopes) != 1 || path.Base(s) != ".default") {
			return fmt.Errorf("auth: managed-identity takes one scope, <resource>/.default")
		}
		if mode == UpstreamOnBehalfOf && path.Base(s) == ".default" && len(scopes) > 1 {
			return errors.New("auth: /.default cannot be combined with other scopes")
		}
	}
	return nil
}
