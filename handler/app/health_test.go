package app

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/store"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
)

// TestCheckRedisNamesTheProblem: a Redis that answers but cannot be used
// is reported at start-up in one line naming the setting at fault, without
// the URL (it may hold a password).
func TestCheckRedisNamesTheProblem(t *testing.T) {
	t.Parallel()
	srv := storetest.Server(t, "--requirepass", "right-password")
	addr := srv.Options().Addr
	for name, c := range map[string]struct{ url, want string }{
		"wrong password": {"redis://:wrong-password@" + addr + "/0", "REDIS_URL / REDIS_AUTH: Redis refused our credentials"},
		"no password":    {"redis://" + addr + "/0", "REDIS_URL / REDIS_AUTH: Redis refused our credentials"},
		"no such db":     {"redis://:right-password@" + addr + "/99", "REDIS_URL: Redis has no such database"},
		"TLS to plain":   {"rediss://:right-password@" + addr + "/0", "REDIS_URL: the server does not speak TLS"},
		"nobody there":   {"redis://127.0.0.1:1/0", "REDIS_URL: Redis cannot be reached"},
		"all right":      {"redis://:right-password@" + addr + "/0", ""},
	} {
		t.Run(name, func(t *testing.T) {
			opts, err := store.Options(c.url)
			if err != nil {
				t.Fatal(err)
			}
			opts.DialTimeout = time.Second
			a := &App{redis: redis.NewClient(opts)}
			defer a.redis.Close()
			// main allows 5 s; a TLS client facing plain Redis waits all of
			// it, so that case has a short one of its own (it runs out by
			// design), the others room for a loaded machine.
			limit := 5 * time.Second
			if strings.HasPrefix(c.url, "rediss://") {
				limit = 100 * time.Millisecond
			}
			ctx, cancel := context.WithTimeout(context.Background(), limit)
			defer cancel()
			err = a.CheckRedis(ctx)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("a usable Redis: %v", err)
			case c.want == "":
			case err == nil || !strings.HasPrefix(err.Error(), c.want):
				t.Fatalf("got %v, want %q", err, c.want)
			case strings.Contains(err.Error(), "password") && strings.Contains(err.Error(), "right-password"),
				strings.Contains(err.Error(), fmt.Sprint(addr)):
				t.Fatalf("the message repeats the URL: %v", err)
			}
		})
	}
}
