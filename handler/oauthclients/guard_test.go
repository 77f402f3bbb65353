package oauthclients

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"
)

func TestGuardAllowed(t *testing.T) {
	t.Parallel()
	g := newGuard(false)
	for _, s := range []string{"93.184.215.14", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"} {
		if !g.allowed(netip.MustParseAddr(s)) {
			t.Errorf("%s refused; it is public", s)
		}
	}
	for _, s := range []string{
		"127.0.0.1", "127.1.2.3", "::1", "0.0.0.0", "::", "0.1.2.3",
		"10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1", "fd00::1", "fc00::1",
		"169.254.169.254", "168.63.129.16", "::ffff:168.63.129.16", "fe80::1", "fe80::1%eth0",
		"100.64.0.1", "100.127.255.255",
		"224.0.0.1", "239.255.255.250", "ff02::1", "255.255.255.255", "240.0.0.1",
		"192.0.0.170", "192.0.2.1", "198.18.0.1", "198.51.100.1", "203.0.113.1", "2001:db8::1",
		"::ffff:10.0.0.1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::a00:1",
		"64:ff9b::a00:1", "2002:a00:1::1", "2001:0:a00:1::1", "fec0::1",
	} {
		if g.allowed(netip.MustParseAddr(s)) {
			t.Errorf("%s allowed; it is not public", s)
		}
	}
	if !newGuard(true).allowed(netip.MustParseAddr("127.0.0.1")) || !newGuard(true).allowed(netip.MustParseAddr("::1")) {
		t.Error("loopback refused although allowed")
	}
	if newGuard(true).allowed(netip.MustParseAddr("10.0.0.1")) {
		t.Error("allowing loopback allowed a private address")
	}
}

// TestControlRefusesBeforeConnect checks the last line of defence: the
// default dialer's Control refuses a non-public address at connect time,
// whatever resolved it, and no connection reaches the listener.
func TestControlRefusesBeforeConnect(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	g := newGuard(false)
	d := &net.Dialer{Timeout: time.Second, Control: g.control}
	if _, err := d.DialContext(context.Background(), "tcp", l.Addr().String()); !errors.Is(err, errAddressNotAllowed) {
		t.Errorf("dial to loopback: %v; want errAddressNotAllowed", err)
	}
	for _, addr := range []string{"10.0.0.1:443", "169.254.169.254:80", "[::ffff:10.0.0.1]:443"} {
		// Control runs before connect, so these return at once and send nothing.
		if err := g.control("tcp", addr, nil); !errors.Is(err, errAddressNotAllowed) {
			t.Errorf("control(%s): %v; want errAddressNotAllowed", addr, err)
		}
	}

	// With loopback allowed the same dial connects: the refusal above was the guard's.
	c, err := (&net.Dialer{Timeout: time.Second, Control: newGuard(true).control}).Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("dial with loopback allowed: %v", err)
	}
	defer c.Close()
	// Connections are accepted in the order they were made: had the
	// refused dial connected, it would come first.
	select {
	case first := <-accepted:
		if first.RemoteAddr().String() != c.LocalAddr().String() {
			t.Errorf("a connection reached the listener from %s before the allowed one from %s", first.RemoteAddr(), c.LocalAddr())
		}
		first.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the allowed dial's connection was never accepted")
	}
}

func TestCacheTTL(t *testing.T) {
	t.Parallel()
	f := &documentFetcher{ttl: 10 * time.Minute, maxTTL: time.Hour}
	for cc, want := range map[string]time.Duration{
		"":                             10 * time.Minute,
		"max-age=300":                  5 * time.Minute,
		"public, max-age=86400":        time.Hour,
		"max-age=5":                    time.Minute,
		"max-age=0":                    time.Minute,
		"no-store":                     time.Minute,
		"max-age=600, no-cache":        time.Minute,
		"max-age=nonsense":             10 * time.Minute,
		"max-age=-5":                   10 * time.Minute,
		"max-age=99999999999999999999": 10 * time.Minute,
	} {
		t.Run("Cache-Control "+cc, func(t *testing.T) {
			h := http.Header{}
			if cc != "" {
				h.Set("Cache-Control", cc)
			}
			if got := f.cacheTTL(h); got != want {
				t.Errorf("Cache-Control %q: TTL %v; want %v", cc, got, want)
			}
		})
	}
}
