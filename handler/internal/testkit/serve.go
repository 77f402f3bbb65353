package testkit

import (
	"net"
	"net/http"
	"sync"
	"testing"
)

// Serve serves h on ln until the test ends. It is httptest.Server but for
// its close: after a body over a cap, net/http keeps the connection 500 ms
// past the answer before closing it (its fixed rstAvoidanceDelay), and
// httptest.Server.Close waits for that. The answer has been read by then,
// so only the requests still being handled are waited for; one that
// arrives as the test ends gets a 503 rather than reaching a handler whose
// dependencies are being torn down.
func Serve(t testing.TB, ln net.Listener, h http.Handler) {
	t.Helper()
	var handling sync.RWMutex
	closed := false // guarded by handling
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handling.RLock()
		defer handling.RUnlock()
		if closed {
			http.Error(w, "the test has ended", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		handling.Lock()
		closed = true
		handling.Unlock()
	})
}
