// Command echo is the tests' custom handler: it listens on
// 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT and answers every request with
// JSON describing what it received. Settings in its environment make it
// listen only once a file exists, never listen, exit at once, or ignore
// SIGTERM.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Echo is what the handler answers; the tests decode it.
type Echo struct {
	Method           string      `json:"method"`
	Path             string      `json:"path"`
	EscapedPath      string      `json:"escapedPath"`
	Query            string      `json:"query"`
	Host             string      `json:"host"`
	Header           http.Header `json:"header"`
	BodyLen          int64       `json:"bodyLen"`
	ContentLength    int64       `json:"contentLength"`
	TransferEncoding []string    `json:"transferEncoding"`
	RemoteAddr       string      `json:"remoteAddr"`
	Args             []string    `json:"args"`
	Env              []string    `json:"env"`
	Dir              string      `json:"dir"`
}

func main() {
	terms := make(chan os.Signal, 1)
	signal.Notify(terms, syscall.SIGTERM)
	go func() {
		<-terms
		if os.Getenv("ECHO_IGNORE_TERM") != "" {
			signal.Ignore(syscall.SIGTERM)
			return
		}
		if f := os.Getenv("ECHO_TERM_FILE"); f != "" {
			_ = os.WriteFile(f, []byte("SIGTERM\n"), 0o600)
		}
		os.Exit(0)
	}()

	if code := os.Getenv("ECHO_EXIT_AT_START"); code != "" {
		n, _ := strconv.Atoi(code)
		os.Exit(n)
	}
	if os.Getenv("ECHO_NEVER_LISTEN") != "" {
		select {}
	}
	if gate := os.Getenv("ECHO_START_GATE"); gate != "" {
		// A slow start that ends when the test says, not after a guess
		// at how long the stand-in takes to hold a request.
		for {
			if _, err := os.Stat(gate); err == nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("FUNCTIONS_CUSTOMHANDLER_PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
	fmt.Println("echo: listening on", ln.Addr())
	s := &server{streams: map[string]chan struct{}{}}
	_ = http.Serve(ln, s)
}

type server struct {
	mu      sync.Mutex
	log     []string
	streams map[string]chan struct{}
}

func (s *server) stream(id string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.streams[id]
	if !ok {
		c = make(chan struct{})
		s.streams[id] = c
	}
	return c
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/" && r.Method == http.MethodGet:
		_, _ = io.WriteString(w, "echo ready\n")
		return
	case p == "/_log":
		s.mu.Lock()
		b, _ := json.Marshal(s.log)
		s.mu.Unlock()
		_, _ = w.Write(b)
		return
	}
	s.mu.Lock()
	s.log = append(s.log, r.Method+" "+p)
	s.mu.Unlock()

	switch {
	case strings.HasPrefix(p, "/stream/"):
		// The first line now, the second once /release/<id> is called: a
		// proxy that buffers never shows the first line before the release.
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "first\n")
		http.NewResponseController(w).Flush()
		select {
		case <-s.stream(strings.TrimPrefix(p, "/stream/")):
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "second\n")
		return
	case strings.HasPrefix(p, "/release/"):
		close(s.stream(strings.TrimPrefix(p, "/release/")))
		return
	case p == "/hangup":
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	case p == "/breakoff":
		_, _ = io.WriteString(w, "part of an answer\n")
		http.NewResponseController(w).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}

	n, _ := io.Copy(io.Discard, r.Body)
	wd, _ := os.Getwd()
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "FUNCTIONS_") || strings.HasPrefix(kv, "CORS_") || strings.HasPrefix(kv, "ECHO_") {
			env = append(env, kv)
		}
	}
	e := Echo{
		Method: r.Method, Path: p, EscapedPath: r.URL.EscapedPath(), Query: r.URL.RawQuery,
		Host: r.Host, Header: r.Header, BodyLen: n, ContentLength: r.ContentLength,
		TransferEncoding: r.TransferEncoding, RemoteAddr: r.RemoteAddr,
		Args: os.Args[1:], Env: env, Dir: wd,
	}
	for _, h := range r.URL.Query()["h"] {
		if k, v, ok := strings.Cut(h, ":"); ok {
			w.Header().Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	w.Header().Set("Content-Type", "application/json")
	status := http.StatusOK
	if v, err := strconv.Atoi(r.URL.Query().Get("status")); err == nil {
		status = v
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(e)
}
