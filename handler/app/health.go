package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/upstream"
)

// /health needs no authentication, so what it costs anyone may spend:
// Redis is pinged at most once per healthTTL, by one request, while the
// others answer from the verdict before. What the process knows of itself
// (its signing keys, its upstreams) costs nothing to read, and is read
// again every healthDegradedTTL while something fails: keys that arrive
// just after start-up show within a second, not after a whole healthTTL.
const (
	healthTTL         = 5 * time.Second
	healthDegradedTTL = 500 * time.Millisecond
	healthRedisLimit  = 2 * time.Second
)

// health answers /health from checks of the handler's dependencies.
type health struct {
	redis     redis.UniversalClient
	verifier  *entra.Verifier
	upstreams *upstream.Federation // nil: none

	mu      sync.Mutex
	pinged  time.Time     // when the last ping ended; zero before the first
	redisOK bool          // what it said
	pinging chan struct{} // non-nil while a ping is under way, closed when it ends
	checked time.Time
	report  map[string]string
	ok      bool
}

// Check reports each dependency as "ok" or "unavailable" (an upstream MCP
// server also as "not_listed" before its first list), and whether all are
// ok. It says nothing more: the reasons go to the log (CheckRedis).
func (h *health) Check(ctx context.Context) (map[string]string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ttl := healthTTL
	if !h.ok {
		ttl = healthDegradedTTL
	}
	if h.report != nil && time.Since(h.checked) < ttl {
		return h.report, h.ok
	}
	switch {
	case h.pinging == nil && time.Since(h.pinged) >= healthTTL:
		done := make(chan struct{})
		h.pinging = done
		h.mu.Unlock()
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), healthRedisLimit)
		err := h.redis.Ping(pctx).Err()
		cancel()
		h.mu.Lock()
		h.redisOK, h.pinged, h.pinging = err == nil, time.Now(), nil
		close(done)
	case h.pinged.IsZero():
		// The first ping is under way: there is no verdict before it.
		done := h.pinging
		h.mu.Unlock()
		<-done
		h.mu.Lock()
	}
	h.report, h.ok = h.build()
	h.checked = time.Now()
	return h.report, h.ok
}

// build is the report from the last ping and the process's own state.
func (h *health) build() (map[string]string, bool) {
	report := map[string]string{"redis": "ok", "signing_keys": "ok"}
	ok := true
	if !h.redisOK {
		report["redis"], ok = "unavailable", false
	}
	if len(h.verifier.Stats().KeyIDs) == 0 {
		report["signing_keys"], ok = "unavailable", false
	}
	if h.upstreams != nil {
		for _, u := range h.upstreams.Health() {
			// An upstream nobody has used yet (on-behalf-of upstreams are
			// listed as their first user) is not a fault.
			state := "ok"
			switch {
			case u.ListError != "" || u.Breaker == "open":
				state, ok = "unavailable", false
			case u.ListedAt.IsZero():
				state = "not_listed"
			}
			report["upstream:"+u.Name] = state
		}
	}
	return report, ok
}

// CheckRedis connects to Redis (authentication and database selection
// included) and says, naming the setting to look at, why it cannot be used.
// main calls it once at start-up, bounded by ctx: a Redis that answers but
// refuses our password or database would otherwise show only as the first
// request's 503.
func (a *App) CheckRedis(ctx context.Context) error {
	err := a.redis.Ping(ctx).Err()
	if err == nil {
		return nil
	}
	// A TLS client talking to a Redis without TLS waits for a handshake
	// that never comes: ask the same address in plain text.
	if c, ok := a.redis.(*redis.Client); ok && c.Options().TLSConfig != nil && speaksPlainRedis(c.Options().Addr) {
		return errors.New("REDIS_URL: the server does not speak TLS: rediss:// to a Redis without TLS, or the wrong port (Azure Managed Redis: 10000; Azure Cache for Redis: 6380)")
	}
	return redisProblem(err)
}

// speaksPlainRedis reports whether addr answers a plain-text PING as Redis
// does (+PONG, or an error such as -NOAUTH).
func speaksPlainRedis(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 1)
	if _, err := conn.Read(buf); err != nil {
		return false
	}
	return buf[0] == '+' || buf[0] == '-'
}

// redisProblem turns a failed connection into one line naming the setting
// at fault. It never repeats the URL, which may hold a password.
func redisProblem(err error) error {
	msg := strings.ToLower(err.Error())
	var recErr tls.RecordHeaderError
	var netErr net.Error
	switch {
	case strings.Contains(msg, "wrongpass") || strings.Contains(msg, "noauth") || strings.Contains(msg, "invalid password") ||
		strings.Contains(msg, "invalid username-password"):
		return errors.New("REDIS_URL / REDIS_AUTH: Redis refused our credentials (with REDIS_AUTH=entra: REDIS_USERNAME must be the identity's object id and its access policy assigned; otherwise the password in REDIS_URL)")
	case strings.Contains(msg, "db index is out of range") || strings.Contains(msg, "invalid db index"):
		return errors.New("REDIS_URL: Redis has no such database (the path of REDIS_URL; Azure Managed Redis has only 0)")
	case errors.As(err, &recErr) || strings.Contains(msg, "tls:"):
		return errors.New("REDIS_URL: the TLS handshake failed: redis:// where the server wants rediss://, a certificate the system does not trust, or the wrong port")
	case strings.Contains(msg, "connection refused") || strings.Contains(msg, "no such host") || errors.As(err, &netErr):
		return fmt.Errorf("REDIS_URL: Redis cannot be reached (%s)", shortNetError(err))
	}
	return fmt.Errorf("REDIS_URL: Redis cannot be used (%s)", shortNetError(err))
}

// shortNetError is the last part of a network error ("connection refused",
// "i/o timeout"), which names no address or credential.
func shortNetError(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	if len(msg) > 80 {
		msg = msg[:80]
	}
	return msg
}
