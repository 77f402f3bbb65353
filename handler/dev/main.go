// Command dev runs the handler on this machine with no Azure account: an
// embedded Entra stand-in issues tokens for demo users and an embedded
// Redis keeps the data (handler/devmode). It serves exactly what the
// production handler serves, through the same app and server code, but it
// is a separate binary, so the stand-in that can mint tokens is never in
// what gets deployed.
//
//	go run ./handler/dev [-addr 127.0.0.1:7071] [-dev-tokens FILE]
//
// Under the Functions host (func start, or handler/funchost in CI) stage it
// with go run ./handler/stage -dev; it then listens on
// 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/entra-mcp/functions-mcp/handler/app"
	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devmode"
	"github.com/entra-mcp/functions-mcp/handler/serve"
)

func main() { serve.Main(run) }

// flags are dev mode's command line.
type flags struct {
	addr         string
	addrExplicit bool // -addr was given, so it wins over the Functions host's port
	tokensFile   string
}

// run starts the dev environment and the app on it, and serves until ctx
// ends. It returns the process exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	f, err := parseFlags(args, stderr)
	if err != nil {
		return 2
	}
	d, err := config.LoadDev(getenv)
	if err != nil {
		fmt.Fprintln(stderr, "dev mode:", err)
		return 2
	}
	listen := devmode.ListenAddr(f.addr, f.addrExplicit, d)
	env, err := devmode.Start(listen, d, getenv)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer env.Close()
	log := serve.Logger(stdout, env.Config.Server.LogLevel)
	a, err := app.New(app.Options{Config: env.Config, Version: serve.Version(), Logger: log, HTTPClient: env.HTTPClient})
	if err != nil {
		fmt.Fprintln(stderr, "start-up error:", err)
		return 1
	}
	defer a.Close()
	err = serve.Run(ctx, serve.Options{
		Addr:     listen,
		Listener: env.Listener,
		App:      a,
		Log:      log,
		Dev:      true,
		Listening: func() error {
			env.PrintWelcome(stdout)
			if f.tokensFile == "" {
				return nil
			}
			return env.WriteTokens(f.tokensFile)
		},
	})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.addr, "addr", devmode.DefaultAddr, "listen address (loopback only); under the Functions host, 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT unless given")
	fs.StringVar(&f.tokensFile, "dev-tokens", "", "also write the demo tokens as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	fs.Visit(func(fl *flag.Flag) { f.addrExplicit = f.addrExplicit || fl.Name == "addr" })
	return f, nil
}
