package testkit

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy in front of a server (Redis) that a test can stall:
// while stalled, requests still reach the server and run there, but their
// replies are held back. That is exactly a lost reply: the client times out
// although its write happened.
type Proxy struct {
	target string
	ln     net.Listener

	mu      sync.Mutex
	until   time.Time     // replies are held until then
	changed chan struct{} // closed and replaced whenever until changes
	conns   map[net.Conn]struct{}
	closed  bool
}

// NewProxy starts a proxy to target on a loopback port; it stops when the
// test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testkit: proxy: listen: %v", err)
	}
	p := &Proxy{target: target, ln: ln, changed: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Stall holds every reply from now for d (replies already on their way
// included), then lets them through in order.
func (p *Proxy) Stall(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.until = time.Now().Add(d)
	close(p.changed)
	p.changed = make(chan struct{})
}

// Close stops the proxy and cuts every connection through it.
func (p *Proxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
}

func (p *Proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		if !p.track(client, server) {
			return
		}
		go func() {
			_, _ = io.Copy(server, client)
			server.Close()
		}()
		go func() {
			p.copyReplies(client, server)
			client.Close()
		}()
	}
}

func (p *Proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		if p.closed {
			c.Close()
			continue
		}
		p.conns[c] = struct{}{}
	}
	return !p.closed
}

// copyReplies forwards what the server sends, waiting out any stall before
// each write.
func (p *Proxy) copyReplies(client, server net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := server.Read(buf)
		if n > 0 {
			p.waitStall()
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *Proxy) waitStall() {
	for {
		p.mu.Lock()
		wait, changed := time.Until(p.until), p.changed
		p.mu.Unlock()
		if wait <= 0 {
			return
		}
		select {
		case <-time.After(wait):
		case <-changed:
		}
	}
}
