package clientip

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func request(peer string, hdr map[string][]string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = peer
	for k, vs := range hdr {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	return r
}

func TestAddr(t *testing.T) {
	t.Parallel()
	xff := Policy{Header: DefaultHeader}
	socket := Policy{Header: "X-Azure-Socketip"}
	none := Policy{}
	for _, c := range []struct {
		name   string
		policy Policy
		peer   string
		hdr    map[string][]string
		want   string
	}{
		{"the host's single entry", xff, "127.0.0.1:5000", map[string][]string{"X-Forwarded-For": {"203.0.113.7"}}, "203.0.113.7"},
		{"the last entry of a list", xff, "127.0.0.1:5000", map[string][]string{"X-Forwarded-For": {"10.9.9.9, 198.51.100.2"}}, "198.51.100.2"},
		{"the last of several headers", xff, "127.0.0.1:5000", map[string][]string{"X-Forwarded-For": {"10.9.9.9", "198.51.100.2"}}, "198.51.100.2"},
		{"a port is dropped", xff, "127.0.0.1:5000", map[string][]string{"X-Forwarded-For": {"203.0.113.7:4711"}}, "203.0.113.7"},
		{"IPv6 with a port", xff, "[::1]:5000", map[string][]string{"X-Forwarded-For": {"[2001:db8::1]:4711"}}, "2001:db8::1"},
		{"IPv4-mapped IPv6 is IPv4", xff, "127.0.0.1:5000", map[string][]string{"X-Forwarded-For": {"::ffff:203.0.113.7"}}, "203.0.113.7"},
		{"a remote peer's header is ignored", xff, "192.0.2.1:5000", map[string][]string{"X-Forwarded-For": {"203.0.113.7"}}, "192.0.2.1"},
		{"garbage falls back to the peer", xff, "127.0.0.1:5000", map[string][]string{"X-Forwarded-For": {"not an address"}}, "127.0.0.1"},
		{"no header: the peer", xff, "127.0.0.1:5000", nil, "127.0.0.1"},
		{"another header when configured", socket, "127.0.0.1:5000", map[string][]string{"X-Azure-SocketIP": {"203.0.113.9"}, "X-Forwarded-For": {"198.51.100.2"}}, "203.0.113.9"},
		{"none: always the peer", none, "127.0.0.1:5000", map[string][]string{"X-Forwarded-For": {"203.0.113.7"}}, "127.0.0.1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.policy.Addr(request(c.peer, c.hdr)).String(); got != c.want {
				t.Errorf("got %s, want %s", got, c.want)
			}
		})
	}
}

func TestKey(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"203.0.113.7":          "203.0.113.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1::/48",
		"2001:db8:1:ffff::1":   "2001:db8:1::/48",
		"2001:db8:2::1":        "2001:db8:2::/48",
	} {
		if got := Key(netip.MustParseAddr(in)); got != want {
			t.Errorf("Key(%s) = %s, want %s", in, got, want)
		}
	}
	if got := Key(netip.Addr{}); got != "unknown" {
		t.Errorf("Key(invalid) = %s", got)
	}
}

func TestParsePolicy(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"": DefaultHeader, "none": "", "NONE": "", "x-azure-socketip": "X-Azure-Socketip", "Client-IP": "Client-Ip"} {
		p, err := ParsePolicy(in)
		if err != nil || p.Header != want {
			t.Errorf("ParsePolicy(%q) = %+v, %v; want header %q", in, p, err, want)
		}
	}
	for _, bad := range []string{"X Forwarded", "x-forwarded-for:", "a,b"} {
		if _, err := ParsePolicy(bad); err == nil {
			t.Errorf("ParsePolicy(%q) accepted", bad)
		}
	}
}

func TestMiddlewareRecordsTheAddress(t *testing.T) {
	t.Parallel()
	var got string
	h := Policy{Header: DefaultHeader}.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = KeyOf(r)
	}))
	h.ServeHTTP(httptest.NewRecorder(), request("127.0.0.1:1", map[string][]string{"X-Forwarded-For": {"2001:db8:7:1::5"}}))
	if got != "2001:db8:7::/48" {
		t.Fatalf("KeyOf = %q", got)
	}
	if k := KeyOf(request("192.0.2.4:9", nil)); k != "192.0.2.4" {
		t.Fatalf("KeyOf without middleware = %q", k)
	}
}
