// Package funchost is a stand-in for the Azure Functions host in front of a
// custom handler with enableProxyingHttpRequest (YARP), so that a staged
// package is tested as the host runs it. Like devidp for Entra, it is for
// tests and CI, never production; ./handler/funchost/cmd runs it for the
// CI scripts.
//
// Written from the host's and YARP's source, it does what the host does:
//
//   - Reads host.json and every <root>/<name>/function.json (the staged
//     layout: function folders directly under the script root). It refuses
//     to start on what it does not imitate: a function without exactly one
//     httpTrigger in and one http out (those get the host's JSON payload
//     protocol), enableProxyingHttpRequest not true, customHandler.http,
//     route constraints or mixed segments, a reserved (admin, runtime)
//     route. An absent routePrefix is "api".
//   - Starts defaultExecutablePath (joined to the root when that file
//     exists, else looked up on PATH) in the root (or workingDirectory),
//     with host.json's arguments then Options.Args, %VAR% expanded as the
//     host does (the worker's own variables, %FUNCTIONS_CUSTOMHANDLER_PORT%
//     among them, included). Its environment is the stand-in's, the app
//     settings, FUNCTIONS_CUSTOMHANDLER_PORT (a free port, or
//     customHandler.port), FUNCTIONS_CUSTOMHANDLER_WORKER_ID,
//     FUNCTIONS_HTTPWORKER_PORT, FUNCTIONS_HTTPWORKER_ID and
//     FUNCTIONS_APP_ROOT_PATH, and with CORS origins CORS_ALLOWED_ORIGINS (a
//     JSON array) and CORS_SUPPORT_CREDENTIALS, which the platform sets for
//     siteConfig.cors.
//   - Is ready when GET / (every 25 ms) gets any HTTP answer, within 30 s.
//     Until then requests wait, up to 30 s, then get 503 "Function host is
//     not running."; once the handler has exited, 503 at once.
//   - Routes as the host: first match in function-name order (case
//     insensitive); literals case-insensitive; a trailing slash ignored;
//     {name}, {name?}, {*rest}; methods from function.json (absent: all);
//     a wrong method or no match is 404 with an empty body; "/" with no
//     function is 200 with a homepage (204 with AzureWebJobsDisableHomepage).
//     An authLevel other than anonymous (absent means function) needs a
//     key, ?code= or x-functions-key, else 401 with an empty body.
//   - Forwards as YARP's default transform: method, path and raw query
//     unchanged; Host 127.0.0.1:<port>; X-Forwarded-For the caller's address
//     (replacing any sent; no port; IPv4-mapped as IPv4), X-Forwarded-Proto,
//     X-Forwarded-Host the original Host; X-Forwarded-Prefix and Forwarded
//     removed; X-Azure-Functions-HostVersion, X-Azure-Functions-InvocationId
//     and x-ms-invocation-id set; YARP's hop-by-hop headers dropped both
//     ways; no User-Agent or Accept-Encoding of its own. A body over
//     104,857,600 bytes (or FUNCTIONS_REQUEST_BODY_SIZE_LIMIT) gets 413.
//     Answers stream through, flushed after every read. A refused
//     connection is retried as the host's RetryProxyHandler does (10
//     attempts, 50 to 250 ms apart). A failed forward is 500: YARP marks it
//     502, then the host fails the invocation, which the caller sees as 500.
//     An answer that breaks off aborts the caller's connection.
//   - CORS as the Flex host with siteConfig.cors, before routing and on
//     every path: a preflight (OPTIONS with Origin and
//     Access-Control-Request-Method) is always answered 204 and never
//     forwarded; for an allowed origin it carries Access-Control-Allow-Origin
//     (the origin, or * when the list is exactly "*"), Allow-Credentials
//     when enabled, Allow-Methods the requested method, Allow-Headers the
//     requested headers, no Max-Age, and Vary: Origin with more than one
//     origin; a disallowed origin gets a bare 204. Other requests from an
//     allowed origin have Allow-Origin (and Allow-Credentials) overwritten
//     on the answer; Expose-Headers is never added, the handler's pass
//     through. With no origins the middleware still runs: preflights get a
//     bare 204.
//   - Close (SIGTERM or SIGINT for the command) stops listening, sends the
//     handler SIGTERM and kills it after a grace period.
//
// What it does not imitate:
//
//   - The App Service front end: no TLS, no 230 s timeout, no X-ARR-* or
//     DISGUISED-HOST fix-ups, no front-end client address. In Azure the
//     handler sees X-Forwarded-Proto https; here http.
//   - Keys: any non-empty key passes the function, system and admin
//     levels. The host's own endpoints (/admin, /runtime) are 404.
//   - Worker restarts: the host restarts a worker that exits; the stand-in
//     answers 503 and reports the exit (Done, Err).
//   - The periodic GET / ping after start-up, the trace headers
//     (traceparent) YARP's activity propagation may add, response trailers,
//     1xx answers, WebSocket upgrades, HTTP/2, retries of requests that
//     failed after connecting, YARP's 240 s activity timeout.
//   - Kestrel's limits other than the body size (the header limit is
//     approximated at 32 KiB) and its path normalization: the path goes
//     through as Go parsed it.
//   - .NET's quoting of the argument line: arguments with a quote or a
//     backslash are refused. Options.Args come after host.json's arguments,
//     a deviation so that CI can pass dev mode's flags.
//   - Disabled functions, proxies.json, extension bundles, other triggers
//     and bindings, and the JSON payload protocol.
package funchost

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults for the Options durations: the host's own limits, and a few
// seconds between SIGTERM and SIGKILL.
const (
	DefaultStartTimeout = 30 * time.Second
	DefaultRequestWait  = 30 * time.Second
	DefaultStopGrace    = 5 * time.Second
)

// Options configures a Host. Root is required.
type Options struct {
	// Root is the staged folder: host.json, the function folders and the
	// handler binary.
	Root string
	// Addr is where the stand-in listens; 127.0.0.1:0 when empty. Ignored
	// when Listener is set.
	Addr string
	// Listener, when set, is used instead of Addr, so that a caller knows
	// the stand-in's URL (for PUBLIC_BASE_URL) before starting it. Close
	// closes it.
	Listener net.Listener
	// Args are appended to host.json's arguments and expanded the same way.
	Args []string
	// Settings are app settings: the host's environment and so the
	// handler's. The host's own variables (FUNCTIONS_CUSTOMHANDLER_PORT and
	// the others) override them, as in the host; CORS comes from CORSOrigins.
	Settings map[string]string
	// CORSOrigins is siteConfig.cors.allowedOrigins; CORSCredentials is
	// siteConfig.cors.supportCredentials.
	CORSOrigins     []string
	CORSCredentials bool
	// Environ is the stand-in's own environment, which the handler
	// inherits; os.Environ() when nil.
	Environ []string
	// Stdout and Stderr receive the handler's output; os.Stdout and
	// os.Stderr when nil.
	Stdout, Stderr io.Writer
	// Logger receives the stand-in's own messages; discarded when nil.
	Logger *slog.Logger
	// StartTimeout bounds the wait for the handler's first answer to GET /;
	// RequestWait bounds how long a request waits for it; StopGrace is the
	// time Close gives requests in flight, and the handler after SIGTERM.
	// Zero means the default.
	StartTimeout, RequestWait, StopGrace time.Duration
}

// Host is a running stand-in with its handler process.
type Host struct {
	app     *app
	opts    Options
	log     *slog.Logger
	ln      net.Listener
	srv     *http.Server
	fwd     *forwarder
	cmd     *exec.Cmd
	handler string        // 127.0.0.1:port of the handler
	ready   chan struct{} // closed when the handler first answered
	failed  chan struct{} // closed, with err set, when it cannot serve
	exited  chan struct{} // closed when the process has been waited for
	served  chan struct{} // closed when Serve has returned

	mu      sync.Mutex
	err     error
	closing bool

	closeOnce sync.Once
	closeErr  error
}

// Start reads the staged folder, starts the handler as the host does and
// serves. It returns once the handler's process runs and the stand-in
// listens; WaitReady waits for the handler's first answer.
func Start(opts Options) (*Host, error) {
	a, err := loadApp(opts.Root)
	if err != nil {
		return nil, err
	}
	opts, log := withDefaults(opts)
	policy, err := newCORSPolicy(opts.CORSOrigins, opts.CORSCredentials)
	if err != nil {
		return nil, err
	}
	hostEnv, err := hostEnvironment(opts)
	if err != nil {
		return nil, err
	}
	bodyLimit, err := requestBodyLimit(hostEnv)
	if err != nil {
		return nil, err
	}
	v, _ := hostEnv.lookup("AzureWebJobsDisableHomepage")
	disableHome := strings.EqualFold(v, "true")
	cmd, port, err := workerCommand(a, opts, hostEnv)
	if err != nil {
		return nil, err
	}
	ln, err := listen(opts)
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		ln.Close()
		return nil, fmt.Errorf("funchost: start %s: %w", a.exe, err)
	}

	h := &Host{
		app: a, opts: opts, log: log, ln: ln, cmd: cmd,
		handler: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		ready:   make(chan struct{}),
		failed:  make(chan struct{}),
		exited:  make(chan struct{}),
		served:  make(chan struct{}),
	}
	h.fwd = newForwarder(h.handler, bodyLimit, log)
	h.srv = &http.Server{
		Handler:           h.gate(policy.middleware(h.router(disableHome))),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       130 * time.Second, // Kestrel's keep-alive timeout
		MaxHeaderBytes:    32 << 10,          // Kestrel's MaxRequestHeadersTotalSize
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go h.waitExit()
	go h.waitReady()
	go h.serve()
	log.Info("funchost: listening", "url", h.URL(), "handler", h.handler, "exe", a.exe)
	return h, nil
}

// withDefaults fills in the timeouts left zero and the logger.
func withDefaults(opts Options) (Options, *slog.Logger) {
	opts.StartTimeout = orDefault(opts.StartTimeout, DefaultStartTimeout)
	opts.RequestWait = orDefault(opts.RequestWait, DefaultRequestWait)
	opts.StopGrace = orDefault(opts.StopGrace, DefaultStopGrace)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return opts, log
}

// requestBodyLimit is the host's request body limit:
// FUNCTIONS_REQUEST_BODY_SIZE_LIMIT, else Kestrel's default.
func requestBodyLimit(hostEnv *envMap) (int64, error) {
	v, ok := hostEnv.lookup("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT")
	if !ok || v == "" {
		return DefaultBodyLimit, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("funchost: FUNCTIONS_REQUEST_BODY_SIZE_LIMIT %q is not a positive number of bytes", v)
	}
	return n, nil
}

// workerCommand is the handler's process as the host starts it: the port
// it must listen on (host.json's, else a free one), the worker variables,
// and the arguments expanded against the host's environment.
func workerCommand(a *app, opts Options, hostEnv *envMap) (*exec.Cmd, int, error) {
	port := a.port
	if port == 0 {
		var err error
		if port, err = freePort(); err != nil {
			return nil, 0, err
		}
	}
	workerID, err := newGUID()
	if err != nil {
		return nil, 0, err
	}
	worker := workerVars(port, workerID, a.root)
	args, err := expandArgs(append(slices.Clone(a.args), opts.Args...), hostEnv, worker)
	if err != nil {
		return nil, 0, err
	}
	childEnv := newEnvMap(hostEnv.environ())
	for _, kv := range worker {
		childEnv.set(kv[0], kv[1])
	}
	cmd := exec.Command(a.exe, args...)
	cmd.Dir = a.workDir
	cmd.Env = childEnv.environ()
	cmd.Stdout, cmd.Stderr = opts.Stdout, opts.Stderr
	if cmd.Stdout == nil {
		cmd.Stdout = os.Stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	// Copying the output must not outlive the process by much, even when
	// a grandchild holds the pipes.
	cmd.WaitDelay = opts.StopGrace
	return cmd, port, nil
}

// listen returns opts.Listener, or listens on opts.Addr (a free loopback
// port when empty).
func listen(opts Options) (net.Listener, error) {
	if opts.Listener != nil {
		return opts.Listener, nil
	}
	ln, err := net.Listen("tcp", cmp.Or(opts.Addr, "127.0.0.1:0"))
	if err != nil {
		return nil, fmt.Errorf("funchost: listen: %w", err)
	}
	return ln, nil
}

// waitExit waits for the handler's process and records its exit.
func (h *Host) waitExit() {
	err := h.cmd.Wait()
	// The exit is the reason recorded, not the probe's view of it.
	h.fail(exitError(err))
	close(h.exited)
}

// waitReady marks the host ready once the handler listens.
func (h *Host) waitReady() {
	if err := waitListening(h.handler, h.opts.StartTimeout, h.exited); err != nil {
		h.fail(err)
		return
	}
	h.log.Info("funchost: the handler is ready", "addr", h.handler)
	close(h.ready)
}

func (h *Host) serve() {
	defer close(h.served)
	if err := h.srv.Serve(h.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		h.log.Error("funchost: serve", "err", err.Error())
	}
}

// hostEnvironment is the host's environment: the stand-in's own, the app
// settings over it, and what the platform derives from siteConfig.cors.
func hostEnvironment(opts Options) (*envMap, error) {
	environ := opts.Environ
	if environ == nil {
		environ = os.Environ()
	}
	env := newEnvMap(environ)
	for _, k := range slices.Sorted(maps.Keys(opts.Settings)) {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, fmt.Errorf("funchost: setting name %q is not valid", k)
		}
		if k == "CORS_ALLOWED_ORIGINS" || k == "CORS_SUPPORT_CREDENTIALS" {
			return nil, fmt.Errorf("funchost: setting %s: give CORS as CORSOrigins (-cors-origin), the one source of the policy", k)
		}
		env.set(k, opts.Settings[k])
	}
	if len(opts.CORSOrigins) > 0 {
		b, err := json.Marshal(opts.CORSOrigins)
		if err != nil {
			return nil, fmt.Errorf("funchost: encode CORS origins: %w", err)
		}
		env.set("CORS_ALLOWED_ORIGINS", string(b))
		env.set("CORS_SUPPORT_CREDENTIALS", strconv.FormatBool(opts.CORSCredentials))
	}
	return env, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// fail records the first reason the handler cannot serve.
func (h *Host) fail(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return
	}
	h.err = err
	if !h.closing {
		h.log.Error("funchost: "+err.Error(), "addr", h.handler)
	}
	close(h.failed)
}

// URL is the stand-in's base URL, such as http://127.0.0.1:7071.
func (h *Host) URL() string { return "http://" + h.ln.Addr().String() }

// HandlerAddr is the handler's own loopback address (host:port).
func (h *Host) HandlerAddr() string { return h.handler }

// WaitReady waits until the handler has answered GET /, and returns why it
// never will if it failed first.
func (h *Host) WaitReady(ctx context.Context) error {
	select {
	case <-h.ready:
		return nil
	case <-h.failed:
		return h.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done is closed when the handler process has exited.
func (h *Host) Done() <-chan struct{} { return h.exited }

// Err is why the handler cannot serve (it exited, or never answered), or
// nil while it can.
func (h *Host) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// Close stops listening (giving requests in flight up to the grace
// period), then sends the handler SIGTERM and kills it if it has not exited
// after the grace period. It returns nil when the handler exited cleanly,
// else why it ended.
func (h *Host) Close() error {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		h.closing = true
		h.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), h.opts.StopGrace)
		defer cancel()
		if err := h.srv.Shutdown(ctx); err != nil {
			_ = h.srv.Close()
		}
		<-h.served
		h.fwd.close()
		h.closeErr = h.stop()
	})
	return h.closeErr
}

func (h *Host) stop() error {
	select {
	case <-h.exited:
	default:
		if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			_ = h.cmd.Process.Kill()
		}
		t := time.NewTimer(h.opts.StopGrace)
		defer t.Stop()
		select {
		case <-h.exited:
		case <-t.C:
			h.log.Warn("funchost: the handler ignored SIGTERM; killing it", "pid", h.cmd.Process.Pid)
			_ = h.cmd.Process.Kill()
			<-h.exited
		}
	}
	if st := h.cmd.ProcessState; st != nil && st.Success() {
		return nil
	}
	return h.Err()
}

// gate holds requests until the handler is ready, as the host holds
// invocations while its worker starts, and answers 503 once it cannot
// serve.
func (h *Host) gate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-h.ready:
		default:
			// Said at debug level so that a test knows the request got
			// here before the handler listened, as the host would see it.
			h.log.Debug("funchost: a request waits for the handler", "path", r.URL.Path)
			t := time.NewTimer(h.opts.RequestWait)
			defer t.Stop()
			select {
			case <-h.ready:
			case <-h.failed:
			case <-t.C:
				notRunning(w)
				return
			case <-r.Context().Done():
				return
			}
		}
		select {
		case <-h.failed:
			notRunning(w)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func notRunning(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = io.WriteString(w, "Function host is not running.")
}

// router answers as the host's routing and function invocation do.
func (h *Host) router(disableHome bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fn, ok := h.app.route(r.URL.EscapedPath(), r.Method)
		switch {
		case !ok && r.URL.Path == "/":
			homepage(w, disableHome)
		case !ok:
			w.WriteHeader(http.StatusNotFound)
		case fn.auth != "anonymous" && !hasKey(r):
			w.WriteHeader(http.StatusUnauthorized)
		default:
			h.fwd.ServeHTTP(w, r)
		}
	})
}

// hasKey reports whether the request carries a function key. Any key
// passes: the stand-in keeps no keys.
func hasKey(r *http.Request) bool {
	return r.URL.Query().Get("code") != "" || r.Header.Get("X-Functions-Key") != ""
}

const homepageHTML = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Your Functions 4.0 app is up and running</title></head>
<body><h1>Your Functions 4.0 app is up and running</h1>
<p>Azure Functions host stand-in (funchost).</p></body></html>
`

func homepage(w http.ResponseWriter, disabled bool) {
	if disabled {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "text/html")
	_, _ = io.WriteString(w, homepageHTML)
}
