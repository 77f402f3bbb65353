package funchost

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// envMap is an environment as a map that keeps the order of first
// appearance, so the child's environment is deterministic.
type envMap struct {
	keys []string
	vals map[string]string
}

func newEnvMap(environ []string) *envMap {
	e := &envMap{vals: map[string]string{}}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		e.set(k, v)
	}
	return e
}

func (e *envMap) set(k, v string) {
	if _, ok := e.vals[k]; !ok {
		e.keys = append(e.keys, k)
	}
	e.vals[k] = v
}

func (e *envMap) lookup(k string) (string, bool) {
	v, ok := e.vals[k]
	return v, ok
}

func (e *envMap) environ() []string {
	out := make([]string, 0, len(e.keys))
	for _, k := range e.keys {
		out = append(out, k+"="+e.vals[k])
	}
	return out
}

var percentVar = regexp.MustCompile(`%([^%]+?)%`)

// expandArgs builds the child's argv as the host does: each argument has
// %VAR% expanded from the host's environment (app settings included), then
// the variables the host sets for the worker are replaced, then any %VAR%
// left is removed; the arguments are joined into one command line, which
// .NET splits again on white space.
func expandArgs(args []string, hostEnv *envMap, worker [][2]string) ([]string, error) {
	var line strings.Builder
	for _, a := range args {
		line.WriteString(" ")
		line.WriteString(percentVar.ReplaceAllStringFunc(a, func(m string) string {
			if v, ok := hostEnv.lookup(m[1 : len(m)-1]); ok {
				return v
			}
			return m
		}))
	}
	s := line.String()
	for _, kv := range worker {
		s = strings.ReplaceAll(s, "%"+kv[0]+"%", kv[1])
	}
	s = percentVar.ReplaceAllString(s, "")
	// .NET's quoting rules for that line are not imitated: refuse the
	// characters they give a meaning to.
	if strings.ContainsAny(s, `"\`) {
		return nil, fmt.Errorf("funchost: arguments %q hold a quote or backslash: .NET's command-line quoting is not imitated", s)
	}
	return strings.Fields(s), nil
}

// workerVars are the variables the host sets for the worker; they
// override any of the same name.
func workerVars(port int, workerID, root string) [][2]string {
	p := strconv.Itoa(port)
	return [][2]string{
		{"FUNCTIONS_HTTPWORKER_PORT", p},
		{"FUNCTIONS_HTTPWORKER_ID", workerID},
		{"FUNCTIONS_CUSTOMHANDLER_PORT", p},
		{"FUNCTIONS_CUSTOMHANDLER_WORKER_ID", workerID},
		{"FUNCTIONS_APP_ROOT_PATH", root},
	}
}

// freePort asks the system for an unused loopback port, as the host's
// GetUnusedTcpPort does (with the same small race).
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("funchost: find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// probeInterval is how often the host asks GET / while the worker starts.
const probeInterval = 25 * time.Millisecond

// waitListening polls GET http://addr/ until any HTTP answer, the limit,
// or the child's exit (exited closed).
func waitListening(addr string, limit time.Duration, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			return nil
		}
		t := time.NewTimer(probeInterval)
		select {
		case <-exited:
			t.Stop()
			return errors.New("the handler exited before it answered GET /")
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("the handler did not answer GET / on %s within %s (the host's \"Initializing HttpWorker timed out.\")", addr, limit)
		case <-t.C:
		}
	}
}

// exitError describes how the child ended.
func exitError(err error) error {
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return fmt.Errorf("the handler exited: %s", ee.ProcessState)
	case err == nil:
		return errors.New("the handler exited: exit status 0")
	default:
		return fmt.Errorf("the handler exited: %w", err)
	}
}
