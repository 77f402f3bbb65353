package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/tools/toolstest"
)

func TestDevModeRefuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"on an Azure host", nil, map[string]string{"WEBSITE_HOSTNAME": "myapp.azurewebsites.net"}, "WEBSITE_HOSTNAME"},
		{"a non-loopback address", []string{"-addr", "0.0.0.0:7071"}, nil, "loopback"},
		{"a bad host port", nil, map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "http"}, "FUNCTIONS_CUSTOMHANDLER_PORT"},
		{"an unknown flag", []string{"-dev"}, nil, "-dev"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), c.args, testkit.Env(c.env), &stdout, &stderr)
			if code == 0 || !strings.Contains(stderr.String(), c.want) {
				t.Fatalf("exit %d, %q; want non-zero and %q", code, stderr.String(), c.want)
			}
		})
	}
}

// TestDevModeServesAndStops runs dev mode in process: it writes its demo
// tokens, the "all" user's token lists the tools, and it stops cleanly
// when its context ends.
func TestDevModeServesAndStops(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tokensFile := filepath.Join(t.TempDir(), "tokens.json")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr testkit.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"-addr", addr, "-dev-tokens", tokensFile}, testkit.Env(nil), &stdout, &stderr)
	}()

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dev mode's output: %s%s", stdout.String(), stderr.String())
		}
	})
	tokens := testkit.DevTokens(t, 20*time.Second, tokensFile, func() {
		select {
		case code := <-done:
			t.Fatalf("dev mode exited %d during start-up", code)
		default:
		}
	})
	if !strings.Contains(stdout.String(), "Dev mode: MCP endpoint http://"+addr+"/mcp") {
		t.Errorf("no welcome naming the endpoint:\n%s", stdout.String())
	}

	// Each demo user lists exactly the golden file's dev-mode list: our
	// tools and the demo upstream's its roles allow.
	golden := toolstest.Load(t)
	for _, u := range golden.Users {
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://%s/mcp", addr),
			strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tokens[u.Key])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			Result struct {
				Tools []struct{ Name string } `json:"tools"`
			} `json:"result"`
		}
		err = json.NewDecoder(resp.Body).Decode(&list)
		resp.Body.Close()
		var names []string
		for _, tool := range list.Result.Tools {
			names = append(names, tool.Name)
		}
		if err != nil || resp.StatusCode != 200 || !slices.Equal(names, u.DevMode) {
			t.Fatalf("tools/list as %s: %d %v, want %v (%v)", u.Key, resp.StatusCode, names, u.DevMode, err)
		}
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after the context ended: %s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("dev mode did not stop within 15 s of its context ending")
	}
}
