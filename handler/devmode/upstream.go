package devmode

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/devupstream"
	"github.com/entra-mcp/functions-mcp/handler/entra"
)

// The demo upstream: an MCP server with an API of its own in the stand-in's
// tenant, fronted on behalf of the user, so dev mode shows federation with
// the demo users. Its tools appear as notes.whoami, notes.list_notes and
// notes.add_note, with its resource template note://{index} and its prompt
// notes.summarize_notes; its reset_all_notes, notes://everyone and
// leak_everything are in no rule and stay invisible.
const demoUpstreamName = devupstream.Name

// DemoAPI is the demo upstream's registration in the stand-in: the audience
// of the tokens it accepts.
var demoAPI = devidp.API{
	AppID:       "5e0c7d3a-9b1f-4c62-8a57-2f4e6d1b9c03",
	AppIDURI:    "api://notes.devupstream",
	Name:        "Demo notes (upstream MCP server)",
	Permissions: []string{"Notes.Read", "Notes.Write"},
	Consented:   []string{"Notes.Read", "Notes.Write"},
}

// demoUpstream is the demo upstream, running.
type demoUpstream struct {
	srv  *http.Server
	addr string
}

// startDemoUpstream starts the demo upstream on a loopback port, verifying
// tokens for its own audience with the stand-in's keys, and returns it with
// its configuration entry.
func startDemoUpstream(idp *devidp.Server) (*demoUpstream, config.Upstream, error) {
	v, err := entra.NewVerifier(entra.Config{
		AuthorityHost: idp.AuthorityHost(),
		TenantID:      idp.TenantID(),
		ClientID:      demoAPI.AppID,
		HTTPClient:    idp.HTTPClient(),
	})
	if err != nil {
		return nil, config.Upstream{}, fmt.Errorf("dev mode: demo upstream verifier: %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, config.Upstream{}, fmt.Errorf("dev mode: demo upstream: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", devupstream.New(devupstream.Options{Verifier: v, Sessions: true}))
	d := &demoUpstream{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, addr: l.Addr().String()}
	go func() { _ = d.srv.Serve(l) }()
	u := devupstream.Entry(demoUpstreamName, "http://"+d.addr+"/mcp",
		config.UpstreamAuth{Mode: config.UpstreamOnBehalfOf, Scopes: []string{demoAPI.Scope("Notes.Read"), demoAPI.Scope("Notes.Write")}})
	return d, u, nil
}

func (d *demoUpstream) close() { _ = d.srv.Close() }

// withDemoUpstream adds the demo upstream's entry to the configured ones,
// checked as a configured one is, unless one of them has its name already.
func withDemoUpstream(ups []config.Upstream, demo config.Upstream, roles authz.Table) ([]config.Upstream, error) {
	if slices.ContainsFunc(ups, func(u config.Upstream) bool { return u.Name == demo.Name }) {
		return ups, nil
	}
	checked, err := config.CheckUpstream(demo, roles)
	if err != nil {
		return nil, errors.Join(errors.New("dev mode: demo upstream"), err)
	}
	return append(ups, checked), nil
}
