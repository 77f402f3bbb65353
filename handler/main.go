// Command handler is the Azure Functions custom handler: it serves the MCP
// endpoint behind Entra ID tokens. It is what gets deployed, and holds
// nothing for development: dev mode, with its Entra stand-in and embedded
// Redis, is a separate command (go run ./handler/dev).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/entra-mcp/functions-mcp/handler/app"
	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/serve"
)

func main() { serve.Main(run) }

// run wires configuration, the Azure runtime and the app, and serves until
// ctx ends. It returns the process exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if code, ok := parseFlags(args, stderr); !ok {
		return code
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		fmt.Fprintln(stderr, "configuration error:", err)
		return 2
	}
	log := serve.Logger(stdout, cfg.Server.LogLevel)
	rt, err := app.StartRuntime(ctx, app.RuntimeOptions{Config: cfg, Version: serve.Version(), Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, "start-up error:", err)
		return 1
	}
	if rt.Secrets != nil {
		go rt.Secrets.Run(ctx)
	}
	opts := app.Options{
		Config: cfg, Version: serve.Version(), Logger: log,
		Sealer: rt.Sealer, MSALCredential: &rt.MSALCredential,
		AzureCredential: rt.Credential, Telemetry: rt.Telemetry,
	}
	if rt.Secrets != nil {
		opts.Secrets = rt.Secrets // upstream header secrets from Key Vault
	}
	a, err := app.New(opts)
	if err != nil {
		fmt.Fprintln(stderr, "start-up error:", err)
		return 1
	}
	defer a.Close()
	err = serve.Run(ctx, serve.Options{
		// The Functions host reaches the handler on loopback only.
		Addr:  net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Server.Port)),
		App:   a,
		Log:   log,
		Flush: rt.Telemetry.Flush,
	})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// parseFlags reads the command line, which configures nothing (the
// environment does). It keeps -dev only to say where dev mode went, so an
// old command line fails with the way forward instead of "flag provided
// but not defined". ok is false when run must exit with code.
func parseFlags(args []string, stderr io.Writer) (code int, ok bool) {
	fs := flag.NewFlagSet("handler", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dev := fs.Bool("dev", false, "not in this binary: dev mode is its own command, go run ./handler/dev")
	if err := fs.Parse(args); err != nil {
		return 2, false
	}
	if *dev {
		fmt.Fprintln(stderr, "handler: dev mode is not part of the production binary; run it with: go run ./handler/dev")
		return 2, false
	}
	return 0, true
}
