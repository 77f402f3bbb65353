package storetest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server starts a redis-server of the test's own on a free loopback port,
// with extra configuration arguments such as "--maxmemory", "8mb", and
// returns a client for it. The server keeps nothing on disk and stops when
// the test ends. It is for what only a real server does (maxmemory,
// noeviction); everything else uses Redis.
//
// Without a redis-server binary on PATH the test is skipped, unless
// STORETEST_REQUIRE_SERVER=1 (CI sets it), which makes that a failure.
func Server(t testing.TB, args ...string) *redis.Client {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("STORETEST_REQUIRE_SERVER") == "1" {
			t.Fatal("storetest: redis-server is not on PATH and STORETEST_REQUIRE_SERVER=1")
		}
		t.Skip("storetest: needs a redis-server binary on PATH (CI has one)")
	}
	port := freePort(t)
	dir := t.TempDir()
	base := []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--daemonize", "no", "--protected-mode", "yes",
	}
	cmd := exec.Command(bin, append(base, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("storetest: redis-server: %v", err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("storetest: start redis-server: %v", err)
	}
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := redis.NewClient(&redis.Options{Addr: addr, DialerRetries: 1, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		var answered redis.Error
		if err == nil || errors.As(err, &answered) {
			// Up: a server started with --requirepass answers NOAUTH, and
			// the client (which has no password) is for the test to use or
			// not.
			return c
		}
		if time.Now().After(deadline) {
			var seen []string
			for len(lines) > 0 {
				seen = append(seen, <-lines)
			}
			t.Fatalf("storetest: redis-server on %s did not answer: %v\n%s", addr, err, strings.Join(seen, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("storetest: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
