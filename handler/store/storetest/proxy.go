package storetest

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
)

// Behind returns a client for rdb's server and database that goes through
// a testkit.Proxy, and the proxy: Stall it for longer than readTimeout and
// the client's next command fails although it ran, a lost reply. Like the
// handler's client, it never retries a command.
func Behind(t testing.TB, rdb *redis.Client, readTimeout time.Duration) (*redis.Client, *testkit.Proxy) {
	t.Helper()
	o := rdb.Options()
	p := testkit.NewProxy(t, o.Addr)
	c := redis.NewClient(&redis.Options{
		Addr:          p.Addr(),
		DB:            o.DB,
		Username:      o.Username,
		Password:      o.Password,
		Protocol:      o.Protocol,
		ReadTimeout:   readTimeout,
		DialerRetries: 1,
		MaxRetries:    -1,
	})
	t.Cleanup(func() { c.Close() })
	return c, p
}
