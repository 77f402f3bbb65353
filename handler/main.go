// Command handler is the Azure Functions custom handler: it serves the MCP
// endpoint behind Entra ID tokens. With -dev it runs on this machine with an
// embedded Entra stand-in and Redis and no Azure account.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/app"
	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devmode"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run wires configuration, the app and the listener, and serves until ctx
// ends. It returns the process exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("handler", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dev := fs.Bool("dev", false, "run locally with an embedded Entra stand-in and Redis (no Azure account)")
	addr := fs.String("addr", devmode.DefaultAddr, "listen address in dev mode (loopback only); under the Functions host, 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT unless given")
	tokensFile := fs.String("dev-tokens", "", "dev mode: also write the demo tokens as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}

	var (
		cfg    *config.Config
		client *http.Client
		listen string
		env    *devmode.Env
		err    error
	)
	if *dev {
		explicit := false
		fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "addr" })
		if listen, err = devmode.ListenAddr(*addr, explicit, getenv); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		env, err = devmode.Start(listen, getenv)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer env.Close()
		cfg, client = env.Config, env.HTTPClient
	} else {
		cfg, err = config.Load(getenv)
		if err != nil {
			fmt.Fprintln(stderr, "configuration error:", err)
			return 2
		}
		listen = net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Server.Port))
	}

	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.Server.LogLevel}))
	opts := app.Options{Config: cfg, Version: version(), Logger: log, HTTPClient: client}
	var rt *app.Runtime
	if !*dev {
		rt, err = app.StartRuntime(ctx, app.RuntimeOptions{Config: cfg, Version: version(), Logger: log})
		if err != nil {
			fmt.Fprintln(stderr, "start-up error:", err)
			return 1
		}
		if rt.Secrets != nil {
			go rt.Secrets.Run(ctx)
		}
		opts.Sealer, opts.MSALCredential = rt.Sealer, &rt.MSALCredential
		opts.AzureCredential, opts.Telemetry = rt.Credential, rt.Telemetry
	}
	a, err := app.New(opts)
	if err != nil {
		fmt.Fprintln(stderr, "start-up error:", err)
		return 1
	}
	defer a.Close()

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		fmt.Fprintln(stderr, "start-up error: listen:", err)
		return 1
	}
	srv := &http.Server{
		Handler:           a.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	// Fetch the signing keys now so the first request does not wait for them;
	// a failure here is not fatal, the first request will try again.
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := a.Verifier.Warm(wctx); err != nil {
			log.Warn("could not fetch signing keys at start-up; will retry on first request", "err", err.Error())
		}
	}()

	// Say at once, in one line naming the setting, when Redis answers but
	// cannot be used (a wrong password, database or TLS setting), instead of
	// leaving it to the first request's 503. Not fatal: right after a
	// deployment the identity's access may still be propagating.
	go func() {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := a.CheckRedis(rctx); err != nil {
			log.Error("Redis is not usable; requests that need it will fail until it is", "problem", err.Error())
		}
	}()

	log.Info("listening", "addr", ln.Addr().String(), "dev", *dev, "version", version())
	if env != nil {
		env.PrintWelcome(stdout)
		if *tokensFile != "" {
			if err := env.WriteTokens(*tokensFile); err != nil {
				fmt.Fprintln(stderr, err)
				return 1
			}
		}
	}

	select {
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(stderr, "serve:", err)
			return 1
		}
	case <-ctx.Done():
	}
	// Stop accepting, let in-flight requests finish (bounded), then send
	// what telemetry holds; Redis closes with the app (deferred).
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("shutdown", "err", err.Error())
	}
	if rt != nil {
		flushCtx, cancelFlush := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancelFlush()
		if err := rt.Telemetry.Flush(flushCtx); err != nil {
			log.Warn("flush telemetry", "err", err.Error())
		}
	}
	log.Info("stopped")
	return 0
}

// version is the module version and VCS revision the binary was built from.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}
