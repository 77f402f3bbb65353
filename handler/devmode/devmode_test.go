package devmode

import (
	"slices"
	"strings"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
)

func env(m map[string]string) func(string) string { return testkit.Env(m) }

// start reads dev mode's settings from getenv, as the dev command does, and
// starts dev mode on addr.
func start(addr string, getenv func(string) string) (*Env, error) {
	d, err := config.LoadDev(getenv)
	if err != nil {
		return nil, err
	}
	return Start(addr, d, getenv)
}

// TestDevModeHonoursTheSettings: what an operator may set in Azure can be
// tried in dev mode, read the same way, on top of dev mode's own defaults.
func TestDevModeHonoursTheSettings(t *testing.T) {
	t.Parallel()
	e, err := start("127.0.0.1:0", env(map[string]string{
		"ROLE_MAP":                     `{"Ops":["server.admin"]}`,
		"MCP_ALLOWED_ORIGINS":          "https://app.example.com",
		"AUTH_ALLOWED_RETURN_URLS":     "http://127.0.0.1:9/back",
		"OAUTH_EXTRA_REDIRECT_SCHEMES": "cursor",
		"PUBLIC_BASE_URL":              "http://127.0.0.1:7171",
		"CLIENT_IP_HEADER":             "none",
		"MCP_AUTH_MODE":                "entra",
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	c := e.Config
	switch {
	case len(c.Roles.Roles) != 1 || c.Roles.Roles[0].Value != "Ops":
		t.Errorf("ROLE_MAP not honoured: %+v", c.Roles)
	case len(e.Users) != 1 || e.Users[0].Key != "ops" || e.Tokens["ops"] == "":
		t.Errorf("dev mode's demo users are not ROLE_MAP's roles: %+v", e.Users)
	case !slices.Equal(c.Server.AllowedOrigins, []string{"https://app.example.com"}):
		t.Errorf("MCP_ALLOWED_ORIGINS: %v", c.Server.AllowedOrigins)
	case !slices.Equal(c.SignIn.ReturnURLs, []string{"http://127.0.0.1:9/back"}):
		t.Errorf("AUTH_ALLOWED_RETURN_URLS: %v", c.SignIn.ReturnURLs)
	case !slices.Equal(c.OAuth.ExtraRedirectSchemes, []string{"cursor"}):
		t.Errorf("OAUTH_EXTRA_REDIRECT_SCHEMES: %v", c.OAuth.ExtraRedirectSchemes)
	case c.Server.PublicBaseURL != "http://127.0.0.1:7171":
		t.Errorf("PUBLIC_BASE_URL: %v", c.Server.PublicBaseURL)
	case c.Server.ClientIP.Header != "":
		t.Errorf("CLIENT_IP_HEADER: %+v", c.Server.ClientIP)
	case c.OAuth.Mode != "entra":
		t.Errorf("MCP_AUTH_MODE: %v", c.OAuth.Mode)
	}
	if !c.OAuth.AllowLoopbackClients || c.Entra.TenantID != e.IDP.TenantID() {
		t.Error("dev mode's own settings were lost")
	}

	d, err := start("127.0.0.1:0", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, ok := d.Config.Roles.Role("Task.Read"); !ok || d.Config.Server.ClientIP.Header != "X-Forwarded-For" || d.Config.OAuth.Mode != "proxy" {
		t.Errorf("defaults: %+v", d.Config)
	}
}

func TestDevModeRefusesBadSettings(t *testing.T) {
	t.Parallel()
	for name, m := range map[string]map[string]string{
		"bad role map":             {"ROLE_MAP": "[1]"},
		"bad origin":               {"MCP_ALLOWED_ORIGINS": "not a url"},
		"public base not loopback": {"PUBLIC_BASE_URL": "http://example.com"},
		"public base with a path":  {"PUBLIC_BASE_URL": "http://127.0.0.1:1/x"},
		"on Azure":                 {"WEBSITE_HOSTNAME": "x.azurewebsites.net"},
	} {
		t.Run(name, func(t *testing.T) {
			if e, err := start("127.0.0.1:0", env(m)); err == nil {
				e.Close()
				t.Errorf("%s: accepted", name)
			} else if strings.Contains(err.Error(), "panic") {
				t.Errorf("%s: %v", name, err)
			}
		})
	}
}

// TestListenAddrUnderTheHost: started by the Functions host, dev mode
// listens where the host forwards (FUNCTIONS_CUSTOMHANDLER_PORT) unless
// -addr was given.
func TestListenAddrUnderTheHost(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		addr     string
		explicit bool
		port     string
		want     string
		fails    bool
	}{
		{"no host: the default", DefaultAddr, false, "", DefaultAddr, false},
		{"under the host", DefaultAddr, false, "40123", "127.0.0.1:40123", false},
		{"-addr given wins", "127.0.0.1:9000", true, "40123", "127.0.0.1:9000", false},
		{"a port that is no port", DefaultAddr, false, "70000", "", true},
		{"a port with a host in it", DefaultAddr, false, "0.0.0.0:80", "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, err := config.LoadDev(env(map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": c.port}))
			if (err != nil) != c.fails {
				t.Fatalf("LoadDev: %v, want an error: %v", err, c.fails)
			}
			if got := ListenAddr(c.addr, c.explicit, d); err == nil && got != c.want {
				t.Fatalf("ListenAddr = %q, want %q", got, c.want)
			}
		})
	}
}
