package config

import (
	"strings"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
)

// TestLoadDev: dev mode reads its three settings through config, and a
// public URL that would send dev tokens off this machine is refused.
func TestLoadDev(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  map[string]string
		want Dev
		fail string // part of the error, "" for none
	}{
		{name: "nothing set", env: map[string]string{}, want: Dev{}},
		{name: "under the Functions host", env: map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": " 7191 "}, want: Dev{Port: 7191}},
		{name: "port with a sign", env: map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "+7191"}, fail: "not a port number"},
		{name: "port out of range", env: map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "70000"}, fail: "not a port number"},
		{name: "on an Azure host", env: map[string]string{"WEBSITE_HOSTNAME": "app.azurewebsites.net"}, want: Dev{OnAzure: true}},
		{name: "on a host that sets a blank WEBSITE_HOSTNAME", env: map[string]string{"WEBSITE_HOSTNAME": " "}, want: Dev{OnAzure: true}},
		{name: "loopback proxy", env: map[string]string{"PUBLIC_BASE_URL": "http://127.0.0.1:7071/"}, want: Dev{PublicBaseURL: "http://127.0.0.1:7071"}},
		{name: "localhost proxy", env: map[string]string{"PUBLIC_BASE_URL": "http://localhost:7071"}, want: Dev{PublicBaseURL: "http://localhost:7071"}},
		{name: "https", env: map[string]string{"PUBLIC_BASE_URL": "https://127.0.0.1:7071"}, fail: "loopback host in dev mode"},
		{name: "another host", env: map[string]string{"PUBLIC_BASE_URL": "http://mcp.contoso.com"}, fail: "loopback host in dev mode"},
		{name: "with a path", env: map[string]string{"PUBLIC_BASE_URL": "http://127.0.0.1:7071/mcp"}, fail: "loopback host in dev mode"},
		{name: "with a query", env: map[string]string{"PUBLIC_BASE_URL": "http://127.0.0.1:7071?x=1"}, fail: "loopback host in dev mode"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := LoadDev(testkit.Env(c.env))
			if c.fail != "" {
				if err == nil || !strings.Contains(err.Error(), c.fail) {
					t.Fatalf("LoadDev = %+v, %v; want an error containing %q", got, err, c.fail)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("LoadDev = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}
