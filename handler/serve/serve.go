// Package serve runs the handler's HTTP server for both commands, the
// production handler (./handler) and dev mode (./handler/dev): the process
// signals, the JSON logger, the listener and its timeouts, the start-up
// checks in the background, and a shutdown that lets in-flight requests
// finish.
package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/app"
)

// Main runs a command's run function with a context that ends on SIGINT or
// SIGTERM (the Functions host stops a worker with SIGTERM), and exits the
// process with the code run returns.
func Main(run func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Logger logs JSON lines to w, which the Functions host turns into its
// logs when w is stdout.
func Logger(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

// Version is the module version and VCS revision the binary was built from.
func Version() string {
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

// Options says what Run serves and where.
type Options struct {
	// Addr is the listen address (host:port).
	Addr string
	// Listener, if set, is listened on instead of Addr: dev mode opens it
	// before its stand-ins take loopback ports of their own, so none of
	// them can take the address it was given.
	Listener net.Listener
	// App is what is served; Run warms its key set and checks its Redis.
	App *app.App
	Log *slog.Logger
	// Dev is said in the "listening" line, so a log shows which binary ran.
	Dev bool
	// Listening, if set, runs once the listener is open (dev mode prints
	// its welcome and writes its tokens); an error stops the server.
	Listening func() error
	// Flush, if set, runs after the server has stopped, to send what the
	// process still holds (production: telemetry).
	Flush func(context.Context) error
}

// Shutdown bounds: in-flight requests get drainTimeout to finish, then
// Flush gets flushTimeout.
const (
	drainTimeout = 10 * time.Second
	flushTimeout = 5 * time.Second
)

// Run listens on o.Addr and serves o.App until ctx ends, then shuts down.
// Its error is one line for stderr, saying what failed.
func Run(ctx context.Context, o Options) error {
	ln := o.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", o.Addr); err != nil {
			return fmt.Errorf("start-up error: listen: %w", err)
		}
	}
	srv := newServer(o.App.Handler, o.Log)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	go warmKeys(ctx, o.App, o.Log)
	o.App.StartUpstreams()
	go checkRedis(ctx, o.App, o.Log)

	o.Log.Info("listening", "addr", ln.Addr().String(), "dev", o.Dev, "version", Version())
	err := waitForEnd(ctx, served, o.Listening)
	shutdown(srv, o.Flush, o.Log)
	if err != nil {
		return err
	}
	o.Log.Info("stopped")
	return nil
}

// newServer is the HTTP server with bounds on every phase of a request, so
// a slow client cannot hold a connection forever.
func newServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// warmKeys fetches the signing keys now so the first request does not wait
// for them; a failure here is not fatal, the first request will try again.
func warmKeys(ctx context.Context, a *app.App, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := a.Verifier.Warm(ctx); err != nil {
		log.Warn("could not fetch signing keys at start-up; will retry on first request", "err", err.Error())
	}
}

// checkRedis says at once, in one line naming the setting, when Redis
// answers but cannot be used (a wrong password, database or TLS setting),
// instead of leaving it to the first request's 503. Not fatal: right after
// a deployment the identity's access may still be propagating.
func checkRedis(ctx context.Context, a *app.App, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := a.CheckRedis(ctx); err != nil {
		log.Error("Redis is not usable; requests that need it will fail until it is", "problem", err.Error())
	}
}

// waitForEnd runs listening, then waits until ctx ends (nil) or the server
// stops by itself (its error).
func waitForEnd(ctx context.Context, served <-chan error, listening func() error) error {
	if listening != nil {
		if err := listening(); err != nil {
			return err
		}
	}
	select {
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
	case <-ctx.Done():
	}
	return nil
}

// shutdown stops accepting, lets in-flight requests finish (bounded), then
// runs flush; Redis closes with the app, which the caller owns.
func shutdown(srv *http.Server, flush func(context.Context) error, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("shutdown", "err", err.Error())
	}
	if flush == nil {
		return
	}
	fctx, fcancel := context.WithTimeout(context.Background(), flushTimeout)
	defer fcancel()
	if err := flush(fctx); err != nil {
		log.Warn("flush telemetry", "err", err.Error())
	}
}
