package config

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/entra-mcp/functions-mcp/handler/valid"
)

// Dev is the little dev mode reads from its environment. Everything else
// dev mode is given comes from its stand-ins, and the operator's choices
// (roles, origins, limits, ...) through LoadChoices, as in production.
type Dev struct {
	// Port is FUNCTIONS_CUSTOMHANDLER_PORT, 0 when no Functions host
	// (Core Tools or the stand-in) started the handler.
	Port int
	// OnAzure is true when WEBSITE_HOSTNAME says this is an Azure host,
	// where dev mode must refuse to run: anyone can mint its tokens.
	OnAzure bool
	// PublicBaseURL is where clients reach a dev handler behind a local
	// proxy: http on a loopback host, or "" to use the listen address.
	PublicBaseURL string
}

// LoadDev reads dev mode's settings with the same parsers production uses,
// and the stricter rule that dev tokens never leave this machine.
func LoadDev(getenv func(string) string) (Dev, error) {
	// Set at all, even blank, counts: this check keeps a stand-in whose
	// tokens anyone can mint off Azure hosts.
	d := Dev{OnAzure: getenv("WEBSITE_HOSTNAME") != ""}
	if v := strings.TrimSpace(getenv("FUNCTIONS_CUSTOMHANDLER_PORT")); v != "" {
		port, err := loadPort(v)
		if err != nil || strings.TrimLeft(v, "0123456789") != "" {
			return Dev{}, fmt.Errorf("FUNCTIONS_CUSTOMHANDLER_PORT: %q is not a port number", v)
		}
		d.Port = port
	}
	if v := strings.TrimSpace(getenv("PUBLIC_BASE_URL")); v != "" {
		base, err := publicBaseURL(func(name string) string {
			if name == "PUBLIC_BASE_URL" {
				return v
			}
			return ""
		})
		if err != nil || !strings.HasPrefix(base, "http://") || !valid.LoopbackHost(hostOf(base)) {
			return Dev{}, fmt.Errorf("PUBLIC_BASE_URL: %q must be http on a loopback host in dev mode, such as http://127.0.0.1:7071", v)
		}
		d.PublicBaseURL = base
	}
	return d, nil
}

// hostOf is the host of a base URL publicBaseURL returned.
func hostOf(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return ""
	}
	return u.Hostname()
}
