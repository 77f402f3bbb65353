// Command cmd runs the Functions host stand-in (package funchost) in front
// of a staged package, for the CI scripts and local checks:
//
//	go run ./handler/funchost/cmd -root .dist [-addr 127.0.0.1:7071] \
//	  [-arg X ...] [-setting K=V ...] [-cors-origin O ...] [-cors-credentials]
//
// It writes "funchost: listening on URL" to stderr, then "funchost: ready"
// once the handler answers. It exits 1 when the handler exits or never
// answers, and 0 after SIGTERM or SIGINT, which stop the handler too.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/entra-mcp/functions-mcp/handler/funchost"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// list is a repeatable string flag.
type list []string

func (l *list) String() string     { return strings.Join(*l, " ") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

// run serves until ctx ends or the handler fails, and returns the exit
// code. The handler's output goes to stdout and stderr.
func run(ctx context.Context, argv []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("funchost", flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("root", "", "the staged folder: host.json, the function folders, the handler binary (required)")
	addr := fs.String("addr", "127.0.0.1:7071", "where the stand-in listens")
	creds := fs.Bool("cors-credentials", false, "siteConfig.cors.supportCredentials")
	var args, settings, origins list
	fs.Var(&args, "arg", "an argument after host.json's arguments, %VAR% expanded as the host does (repeatable)")
	fs.Var(&settings, "setting", "an app setting K=V (repeatable)")
	fs.Var(&origins, "cors-origin", "an origin of siteConfig.cors.allowedOrigins, or * alone (repeatable)")
	if err := fs.Parse(argv); err != nil {
		return 2
	}
	if *root == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "funchost: -root is required, and no positional arguments are taken")
		return 2
	}
	kv := map[string]string{}
	for _, s := range settings {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			fmt.Fprintf(stderr, "funchost: -setting %q is not K=V\n", s)
			return 2
		}
		if _, dup := kv[k]; dup {
			fmt.Fprintf(stderr, "funchost: -setting %s is given twice\n", k)
			return 2
		}
		kv[k] = v
	}

	h, err := funchost.Start(funchost.Options{
		Root: *root, Addr: *addr, Args: args, Settings: kv,
		CORSOrigins: origins, CORSCredentials: *creds,
		Stdout: stdout, Stderr: stderr,
		Logger: slog.New(slog.NewTextHandler(stderr, nil)),
	})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stderr, "funchost: listening on %s\n", h.URL())

	code := 0
	if err := h.WaitReady(ctx); err != nil {
		if ctx.Err() == nil {
			fmt.Fprintln(stderr, "funchost:", err)
			code = 1
		}
	} else {
		fmt.Fprintln(stderr, "funchost: ready")
		select {
		case <-h.Done():
			fmt.Fprintln(stderr, "funchost:", h.Err())
			code = 1
		case <-ctx.Done():
		}
	}
	if err := h.Close(); err != nil && code == 0 {
		fmt.Fprintln(stderr, "funchost: stop:", err)
		code = 1
	}
	return code
}
