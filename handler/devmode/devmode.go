// Package devmode runs the handler on a developer's machine with no Azure
// account: an embedded Entra stand-in issues tokens for demo users and an
// embedded Redis keeps the data (in memory, gone at exit).
package devmode

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/seal"
	"github.com/entra-mcp/functions-mcp/handler/valid"
)

// DefaultAddr is where dev mode listens, the Functions host's usual port.
const DefaultAddr = "127.0.0.1:7071"

// tokenLifetime is long so a printed token lasts a working day.
const tokenLifetime = 12 * time.Hour

// Env is a running dev environment.
type Env struct {
	Config     *config.Config
	HTTPClient *http.Client // trusts the stand-in's certificate
	IDP        *devidp.Server
	// Users are the demo users, one per role of the role table.
	Users []devidp.User
	// Apps are the demo agents, one per role the table marks for
	// applications; each gets app-only tokens by client credentials.
	Apps []devidp.App
	// Tokens maps demo user keys (reader, writer, all, admin) to access tokens.
	Tokens map[string]string
	// Listener is the handler's own, on the address Start was given,
	// opened before the stand-ins took loopback ports of their own.
	Listener net.Listener
	redis    *miniredis.Miniredis
	upstream *demoUpstream
}

// ListenAddr returns where dev mode listens: addr when it was given on the
// command line (explicit), else 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT when
// the Functions host (Core Tools, or the stand-in CI runs) started the
// handler, else addr, the default. So the dev command with no flags runs
// under the host.
func ListenAddr(addr string, explicit bool, d config.Dev) string {
	if explicit || d.Port == 0 {
		return addr
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(d.Port))
}

// Start starts the stand-in and the embedded Redis and returns the
// configuration for a handler listening on addr. d is dev mode's own
// settings (config.LoadDev); getenv gives the operator's choices, read as
// production reads them. It refuses to run on an Azure host, and on
// anything but a loopback address: dev tokens are signed by a key anyone
// can mint with.
func Start(addr string, d config.Dev, getenv func(string) string) (*Env, error) {
	base, err := publicBase(addr, d)
	if err != nil {
		return nil, err
	}
	// The address first: the stand-ins and the demo upstream listen on
	// ports the kernel picks, which could otherwise be this one when a
	// caller chose it as a free port a moment ago.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("start-up error: listen: %w", err)
	}
	e, err := startOn(ln, base, d, getenv)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return e, nil
}

// startOn is Start once the handler's address is held.
func startOn(ln net.Listener, base string, d config.Dev, getenv func(string) string) (*Env, error) {
	ring, err := sealingKeys()
	if err != nil {
		return nil, err
	}
	// One demo user per role, of ROLE_MAP's table when it is set, so a new
	// role can be tried here before it exists in Entra.
	roles, err := config.Roles(getenv)
	if err != nil {
		return nil, fmt.Errorf("dev mode: %w", err)
	}
	users := devidp.UsersFor(roles)
	secret, err := appSecret()
	if err != nil {
		return nil, err
	}
	apps := devidp.AppsFor(roles, secret)
	idp, err := devidp.Start(devidp.Options{RedirectURIs: []string{base + "/auth/callback"}, Users: users, Apps: apps, APIs: []devidp.API{demoAPI}})
	if err != nil {
		return nil, fmt.Errorf("dev mode: start Entra stand-in: %w", err)
	}
	mr, err := miniredis.Run()
	if err != nil {
		idp.Close()
		return nil, fmt.Errorf("dev mode: start embedded redis: %w", err)
	}
	e := &Env{IDP: idp, redis: mr, HTTPClient: idp.HTTPClient(), Config: devConfig(base, ring, idp, mr), Users: users, Apps: apps, Listener: ln}
	// Every choice production reads (role map, origins, return URLs,
	// redirect schemes, limits, ...) is read here the same way.
	if err := config.LoadChoices(e.Config, getenv); err != nil {
		e.Close()
		return nil, fmt.Errorf("dev mode: %w", err)
	}
	if err := e.addDemoUpstream(getenv); err != nil {
		e.Close()
		return nil, err
	}
	if e.Tokens, err = mintTokens(idp, users); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// addDemoUpstream starts the demo upstream and fronts it beside whatever
// MCP_UPSTREAMS names, whose header secrets come from the environment
// (dev mode has no Key Vault).
func (e *Env) addDemoUpstream(getenv func(string) string) error {
	demo, entry, err := startDemoUpstream(e.IDP)
	if err != nil {
		return err
	}
	e.upstream = demo
	// The default table: the demo's rules name its permissions, which a
	// ROLE_MAP may leave ungranted (then nobody sees those tools).
	if e.Config.Upstreams, err = withDemoUpstream(e.Config.Upstreams, entry, authz.DefaultTable()); err != nil {
		return err
	}
	if e.Config.Secrets.UpstreamHeaders, err = config.UpstreamHeaderSecrets(e.Config.Upstreams, getenv); err != nil {
		return fmt.Errorf("dev mode: %w", err)
	}
	return nil
}

// publicBase checks where dev mode may run and returns the URL clients use:
// http://addr, or PUBLIC_BASE_URL behind a local proxy.
func publicBase(addr string, d config.Dev) (string, error) {
	if d.OnAzure {
		return "", fmt.Errorf("dev mode: refusing to start: WEBSITE_HOSTNAME is set, so this is an Azure host")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil || !valid.LoopbackHost(host) {
		return "", fmt.Errorf("dev mode: -addr %q must be a loopback host:port such as %s", addr, DefaultAddr)
	}
	if d.PublicBaseURL == "" {
		return "http://" + addr, nil
	}
	// Behind a local proxy (the Functions host stand-in, func start)
	// clients use its address; dev tokens stay on this machine.
	return d.PublicBaseURL, nil
}

// appSecret is the demo agents' client secret, new on every start.
func appSecret() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("dev mode: make a client secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// sealingKeys is a fresh key ring: what dev mode seals dies with it.
func sealingKeys() (*seal.Ring, error) {
	key, err := seal.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("dev mode: make a sealing key: %w", err)
	}
	ring, err := seal.ParseKeys(key)
	if err != nil {
		return nil, fmt.Errorf("dev mode: %w", err)
	}
	return ring, nil
}

// devConfig is the configuration production would read from its environment,
// pointing at the stand-in and the embedded Redis.
func devConfig(base string, ring *seal.Ring, idp *devidp.Server, mr *miniredis.Miniredis) *config.Config {
	return &config.Config{
		Server:  config.Server{PublicBaseURL: base},
		Secrets: config.Secrets{ClientSecret: idp.ClientSecret(), SealingKeys: ring},
		Entra: config.Entra{
			TenantID:       idp.TenantID(),
			ClientID:       idp.ClientID(),
			AuthorityHost:  idp.AuthorityHost(),
			AllowedTenants: []string{idp.TenantID()},
			TokenVersion:   2,
			AppIDURI:       "api://" + idp.ClientID(),
		},
		Redis: config.Redis{URL: "redis://" + mr.Addr() + "/0"},
		Graph: config.Graph{BaseURL: idp.GraphBaseURL(), Scope: config.DefaultGraphScope},
		// Test clients serve their metadata documents on loopback.
		OAuth: config.OAuth{AllowLoopbackClients: true},
	}
}

// mintTokens mints a long-lived token for every demo user.
func mintTokens(idp *devidp.Server, users []devidp.User) (map[string]string, error) {
	tokens := map[string]string{}
	for _, u := range users {
		tok, err := idp.Mint(u, devidp.WithLifetime(tokenLifetime))
		if err != nil {
			return nil, fmt.Errorf("dev mode: mint token for %s: %w", u.Key, err)
		}
		tokens[u.Key] = tok
	}
	return tokens, nil
}

// Close stops the stand-in and the embedded Redis.
func (e *Env) Close() {
	if e.Listener != nil {
		_ = e.Listener.Close() // closed already when the server ran on it
	}
	if e.upstream != nil {
		e.upstream.close()
	}
	if e.redis != nil {
		e.redis.Close()
	}
	if e.IDP != nil {
		_ = e.IDP.Close()
	}
}

// WriteTokens writes the demo tokens as JSON {"reader": "...", ...} to
// path, readable by the owner only, for scripts and tests.
func (e *Env) WriteTokens(path string) error {
	b, err := json.Marshal(e.Tokens)
	if err != nil {
		return fmt.Errorf("encode dev tokens: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write dev tokens: %w", err)
	}
	// Rename so a reader polling for the file never sees half of it.
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write dev tokens: %w", err)
	}
	return nil
}

// PrintWelcome tells the developer what is running and how to call it.
func (e *Env) PrintWelcome(w io.Writer) {
	base := e.Config.Server.PublicBaseURL
	fmt.Fprintf(w, "\nDev mode: MCP endpoint %s/mcp (Entra stand-in at %s, embedded Redis)\n", base, e.IDP.AuthorityHost())
	fmt.Fprintf(w, "Tokens are valid for %s. One per demo user:\n\n", tokenLifetime)
	for _, u := range e.Users {
		fmt.Fprintf(w, "  %-7s %-16s roles %v\n", u.Key, u.Name, u.Roles)
	}
	for _, u := range e.Users {
		fmt.Fprintf(w, "\nexport TOKEN_%s=%s\n", upper(u.Key), e.Tokens[u.Key])
	}
	fmt.Fprintf(w, "\nList the tools the 'all' user may use:\n\n")
	fmt.Fprintf(w, "  curl -s %s/mcp -H \"Authorization: Bearer $TOKEN_ALL\" -H 'Content-Type: application/json' \\\n", base)
	fmt.Fprintf(w, "    -H 'Accept: application/json, text/event-stream' \\\n")
	fmt.Fprintf(w, "    -d '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}'\n\n")
	fmt.Fprintf(w, "Or sign in as a demo user in a browser: %s/auth/login\n\n", base)
	for _, a := range e.Apps {
		fmt.Fprintf(w, "Demo agent for %v (client credentials, an app-only token):\n\n", a.Roles)
		fmt.Fprintf(w, "  curl -sk %s -d grant_type=client_credentials -d client_id=%s \\\n", e.IDP.TokenURL(), a.ClientID)
		fmt.Fprintf(w, "    --data-urlencode client_secret=%s -d scope=%s/.default\n\n", a.Secret, e.Config.Entra.AppIDURI)
	}
	if e.Config.OAuth.Mode == config.AuthModeProxy {
		fmt.Fprintf(w, "Or point an MCP client that does OAuth (the MCP Inspector, VS Code, Claude Code) at %s/mcp:\n", base)
		fmt.Fprintf(w, "it registers itself, shows you the consent page and the stand-in's sign-in, and gets a token.\n\n")
	}
	if e.upstream != nil {
		fmt.Fprintf(w, "A demo upstream MCP server runs at http://%s/mcp, fronted on behalf of the caller: its tools are\n", e.upstream.addr)
		fmt.Fprintf(w, "notes.whoami (everyone), notes.list_notes (readers) and notes.add_note (writers); it sees a token\n")
		fmt.Fprintf(w, "the stand-in minted for it (audience %s), never yours.\n\n", demoAPI.AppID)
	}
	fmt.Fprintf(w, "Create a task as the writer (the reader gets \"tool not found\"):\n\n")
	fmt.Fprintf(w, "  curl -s %s/mcp -H \"Authorization: Bearer $TOKEN_WRITER\" -H 'Content-Type: application/json' \\\n", base)
	fmt.Fprintf(w, "    -H 'Accept: application/json, text/event-stream' \\\n")
	fmt.Fprintf(w, "    -d '{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"create_task\",\"arguments\":{\"title\":\"Try dev mode\"}}}'\n\n")
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		case c == '-':
			b[i] = '_' // TOKEN_DEPLOY_READ: a name the shell takes
		}
	}
	return string(b)
}
