package funchost

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/entra-mcp/functions-mcp/handler/internal/jsonfile"
)

// app is what the stand-in reads from a staged folder, checked.
type app struct {
	root        string   // absolute script root
	exe         string   // executable, resolved as the host resolves it
	workDir     string   // the child's working directory
	args        []string // customHandler.description.arguments, unexpanded
	port        int      // customHandler.port; 0 picks a free port
	routePrefix string
	functions   []function // in the host's order: by name, case-insensitive
}

// function is one proxied HTTP function.
type function struct {
	name    string
	route   template
	methods []string // upper case; empty accepts every method
	auth    string   // anonymous, function, system or admin
}

// allows reports whether the function accepts method.
func (f function) allows(method string) bool {
	return len(f.methods) == 0 || slices.Contains(f.methods, strings.ToUpper(method))
}

// hostFile is the part of host.json the stand-in reads. encoding/json
// matches keys case-insensitively, as the host's configuration binder does.
type hostFile struct {
	Version       string         `json:"version"`
	CustomHandler *customHandler `json:"customHandler"`
	Extensions    struct {
		HTTP struct {
			RoutePrefix *string `json:"routePrefix"`
		} `json:"http"`
	} `json:"extensions"`
}

// customHandler is host.json's customHandler section.
type customHandler struct {
	Description               *handlerDescription `json:"description"`
	EnableProxyingHTTPRequest bool                `json:"enableProxyingHttpRequest"`
	Port                      *int                `json:"port"`
	HTTP                      json.RawMessage     `json:"http"`
}

// handlerDescription is customHandler.description: how to start the handler.
type handlerDescription struct {
	DefaultExecutablePath string   `json:"defaultExecutablePath"`
	WorkingDirectory      string   `json:"workingDirectory"`
	Arguments             []string `json:"arguments"`
	DefaultWorkerPath     string   `json:"defaultWorkerPath"`
	WorkerArguments       []string `json:"workerArguments"`
	WorkerDirectory       string   `json:"workerDirectory"`
}

// binding is one entry of function.json's bindings.
type binding struct {
	Type      string   `json:"type"`
	Direction string   `json:"direction"`
	AuthLevel *string  `json:"authLevel"`
	Methods   []string `json:"methods"`
	Route     *string  `json:"route"`
}

// defaultRoutePrefix is the host's prefix when host.json names none.
const defaultRoutePrefix = "api"

// functionName is the host's rule for function (folder) names.
var functionName = regexp.MustCompile(`(?i)^[a-z][a-z0-9_\-]{0,127}$`)

// loadApp reads and checks host.json and every <root>/<name>/function.json.
// It refuses what the stand-in does not imitate rather than guess, and
// reports every problem it finds.
func loadApp(root string) (*app, error) {
	if root == "" {
		return nil, errors.New("funchost: no script root")
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("funchost: script root: %w", err)
	}
	a := &app{root: root, workDir: root, routePrefix: defaultRoutePrefix}
	var errs []error
	if err := a.readHost(filepath.Join(root, "host.json")); err != nil {
		errs = append(errs, fmt.Errorf("host.json: %w", err))
	}
	if err := a.readFunctions(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("funchost: %s cannot be run: %w", root, errors.Join(errs...))
	}
	return a, nil
}

func (a *app) readHost(path string) error {
	var h hostFile
	if err := jsonfile.Read(path, &h); err != nil {
		return err
	}
	var errs []error
	if h.Version != "2.0" {
		errs = append(errs, fmt.Errorf("version is %q; the host runs only \"2.0\"", h.Version))
	}
	if p := h.Extensions.HTTP.RoutePrefix; p != nil {
		a.routePrefix = strings.TrimSuffix(strings.TrimSpace(*p), "/")
	}
	ch := h.CustomHandler
	switch {
	case ch == nil:
		return errors.Join(append(errs, errors.New("no customHandler section"))...)
	case ch.Description == nil || ch.Description.DefaultExecutablePath == "":
		return errors.Join(append(errs, errors.New("customHandler.description.defaultExecutablePath is empty"))...)
	}
	errs = append(errs, notImitated(ch)...)
	a.useHandler(ch)
	return errors.Join(errs...)
}

// notImitated lists what the customHandler section asks for that the
// stand-in does not do as the host would.
func notImitated(ch *customHandler) []error {
	var errs []error
	d := ch.Description
	if !ch.EnableProxyingHTTPRequest {
		errs = append(errs, errors.New("customHandler.enableProxyingHttpRequest is not true: the stand-in speaks only the proxy protocol"))
	}
	if len(ch.HTTP) > 0 && string(ch.HTTP) != "null" {
		errs = append(errs, errors.New("customHandler.http is set: not imitated (and the host refuses it next to function.json folders)"))
	}
	if d.DefaultWorkerPath != "" || len(d.WorkerArguments) > 0 || d.WorkerDirectory != "" {
		errs = append(errs, errors.New("customHandler.description sets defaultWorkerPath, workerArguments or workerDirectory: not imitated"))
	}
	if ch.Port != nil && (*ch.Port < 1 || *ch.Port > 65535) {
		errs = append(errs, fmt.Errorf("customHandler.port %d is not a port", *ch.Port))
	}
	return errs
}

// useHandler takes the port, executable, arguments and working folder
// from the customHandler section.
func (a *app) useHandler(ch *customHandler) {
	d := ch.Description
	if ch.Port != nil {
		a.port = *ch.Port
	}
	a.args = d.Arguments
	// The executable is joined to the root only if that file exists;
	// otherwise the host takes it for a program on the PATH.
	a.exe = d.DefaultExecutablePath
	if !filepath.IsAbs(a.exe) {
		if st, err := os.Stat(filepath.Join(a.root, a.exe)); err == nil && !st.IsDir() {
			a.exe = filepath.Join(a.root, a.exe)
		}
	}
	if wd := d.WorkingDirectory; wd != "" {
		if !filepath.IsAbs(wd) {
			wd = filepath.Join(a.root, wd)
		}
		a.workDir = wd
	}
}

// readFunctions loads every direct subfolder of the root that holds a
// function.json, in the host's order.
func (a *app) readFunctions() error {
	entries, err := os.ReadDir(a.root)
	if err != nil {
		return fmt.Errorf("read script root: %w", err)
	}
	var errs []error
	seen := map[string]function{} // lower-cased template -> function
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		path := filepath.Join(a.root, e.Name(), "function.json")
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			continue
		}
		fn, err := a.readFunction(e.Name(), path)
		if err != nil {
			errs = append(errs, fmt.Errorf("function %s: %w", e.Name(), err))
			continue
		}
		key := strings.ToLower(fn.route.text)
		if other, dup := seen[key]; dup && overlap(fn.methods, other.methods) {
			errs = append(errs, fmt.Errorf("function %s: route %q conflicts with function %s", fn.name, fn.route.text, other.name))
			continue
		}
		seen[key] = fn
		a.functions = append(a.functions, fn)
	}
	if len(a.functions) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("no function folders"))
	}
	slices.SortFunc(a.functions, func(x, y function) int {
		return strings.Compare(strings.ToLower(x.name), strings.ToLower(y.name))
	})
	return errors.Join(errs...)
}

// overlap reports whether two method lists share a method (empty is all).
func overlap(x, y []string) bool {
	if len(x) == 0 || len(y) == 0 {
		return true
	}
	return slices.ContainsFunc(x, func(m string) bool { return slices.Contains(y, m) })
}

// readFunction reads one function folder's function.json as the host
// does for a proxied custom handler function.
func (a *app) readFunction(name, path string) (function, error) {
	fn := function{name: name}
	if !functionName.MatchString(name) {
		return fn, fmt.Errorf("%q is not a valid function name", name)
	}
	var doc struct {
		Bindings []binding `json:"bindings"`
	}
	if err := jsonfile.Read(path, &doc); err != nil {
		return fn, err
	}
	t, err := proxiedTrigger(doc.Bindings)
	if err != nil {
		return fn, err
	}
	if fn.route, err = a.functionRoute(name, t); err != nil {
		return fn, err
	}
	if fn.methods, err = triggerMethods(t); err != nil {
		return fn, err
	}
	fn.auth, err = authLevel(t)
	return fn, err
}

// proxiedTrigger returns the httpTrigger of a function the host proxies:
// exactly one httpTrigger in and one http out. Anything else gets the
// host's JSON payload protocol, which the stand-in does not speak (nor
// does our handler).
func proxiedTrigger(bindings []binding) (binding, error) {
	var in []binding
	outs := 0
	for _, b := range bindings {
		switch {
		case strings.EqualFold(b.Type, "httpTrigger") && strings.EqualFold(b.Direction, "in"):
			in = append(in, b)
		case strings.EqualFold(b.Type, "http") && strings.EqualFold(b.Direction, "out"):
			outs++
		}
	}
	if len(in) != 1 || outs != 1 || len(bindings) != 2 {
		return binding{}, fmt.Errorf("has %d httpTrigger in and %d http out among %d bindings: only exactly one of each is proxied", len(in), outs, len(bindings))
	}
	return in[0], nil
}

// functionRoute is the trigger's route template (the function's name when
// it has none) under the host's route prefix.
func (a *app) functionRoute(name string, t binding) (template, error) {
	route := name
	if t.Route != nil {
		route = *t.Route
	}
	if r := strings.ToLower(strings.TrimPrefix(route, "/")); strings.HasPrefix(r, "admin") || strings.HasPrefix(r, "runtime") {
		return template{}, fmt.Errorf("route %q starts with a prefix the host reserves (admin, runtime)", route)
	}
	text := route
	if a.routePrefix != "" {
		text = a.routePrefix + "/" + strings.TrimPrefix(route, "/")
	}
	return parseTemplate(text)
}

// triggerMethods is the trigger's methods, upper case (none: all).
func triggerMethods(t binding) ([]string, error) {
	var methods []string
	for _, m := range t.Methods {
		m = strings.ToUpper(strings.TrimSpace(m))
		if m == "" {
			return nil, errors.New("an empty method in methods")
		}
		methods = append(methods, m)
	}
	return methods, nil
}

// authLevel is the trigger's authLevel, lower case; "function", the
// host's default, when it names none.
func authLevel(t binding) (string, error) {
	if t.AuthLevel == nil {
		return "function", nil
	}
	switch l := strings.ToLower(*t.AuthLevel); l {
	case "anonymous", "function", "system", "admin":
		return l, nil
	}
	return "", fmt.Errorf("authLevel %q is not one the stand-in knows", *t.AuthLevel)
}
