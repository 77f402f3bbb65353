package mcpserver

import (
	"bytes"
	"net/http"
	"sync"
)

// ackWrittenKey holds, in a subscriptions/listen request's context, the
// channel its ackWatcher closes once the acknowledgement is written.
type ackWrittenKey struct{}

// ackMarker is what the acknowledgement notification's JSON always holds.
var ackMarker = []byte(`"notifications/subscriptions/acknowledged"`)

// ackWatcher passes a listen stream through and tells when the
// acknowledgement has been written, so the result waits for it (see
// listenAckWait) no longer than it must. mcp-go writes the notification
// from a goroutine of its own, hence the lock.
type ackWatcher struct {
	http.ResponseWriter
	mu   sync.Mutex
	tail []byte // the last bytes written, so a marker split over writes is seen
	seen chan struct{}
	once sync.Once
}

func newAckWatcher(w http.ResponseWriter) *ackWatcher {
	return &ackWatcher{ResponseWriter: w, seen: make(chan struct{})}
}

// written is closed once the acknowledgement has been written.
func (a *ackWatcher) written() <-chan struct{} { return a.seen }

func (a *ackWatcher) Write(p []byte) (int, error) {
	n, err := a.ResponseWriter.Write(p)
	a.mu.Lock()
	a.tail = append(a.tail, p[:n]...)
	found := bytes.Contains(a.tail, ackMarker)
	if keep := len(ackMarker) - 1; len(a.tail) > keep {
		a.tail = append(a.tail[:0], a.tail[len(a.tail)-keep:]...)
	}
	a.mu.Unlock()
	if found {
		a.once.Do(func() { close(a.seen) })
	}
	return n, err
}

// Flush keeps the stream's events going out as they are written: mcp-go
// needs an http.Flusher for event streams.
func (a *ackWatcher) Flush() {
	if f, ok := a.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (a *ackWatcher) Unwrap() http.ResponseWriter { return a.ResponseWriter }
