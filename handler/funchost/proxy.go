package funchost

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"
)

// DefaultBodyLimit is the host's request body limit (104,857,600 bytes);
// the app setting FUNCTIONS_REQUEST_BODY_SIZE_LIMIT overrides it.
const DefaultBodyLimit int64 = 100 << 20

// HostVersion is what the stand-in sends in X-Azure-Functions-HostVersion.
// It is not a real host version: the handler must not depend on one.
const HostVersion = "4.0.0-funchost"

// hopByHop are the headers YARP drops in both directions
// (RequestUtilities' headers to exclude), in canonical form.
var hopByHop = []string{
	"Connection", "Transfer-Encoding", "Keep-Alive", "Upgrade", "Proxy-Connection",
	"Proxy-Authenticate", "Proxy-Authentication-Info", "Proxy-Authorization",
	"Proxy-Features", "Proxy-Instruction", "Security-Scheme", "Alpn", "Close",
	"Http2-Settings", "Upgrade-Insecure-Requests", "Te", "Alt-Svc",
}

// forwardedHeaders are the request headers YARP's default X-Forwarded
// transform sets afresh or removes (X-Forwarded-Prefix without a path
// base), with Forwarded, which it drops.
var forwardedHeaders = []string{
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Prefix",
}

// Retries of a refused connection, as the host's RetryProxyHandler does:
// ten attempts, the delay doubling from 50 ms up to 250 ms.
const (
	dialAttempts     = 10
	dialInitialDelay = 50 * time.Millisecond
	dialMaxDelay     = 250 * time.Millisecond
)

// forwarder proxies a request to the handler as YARP's HttpForwarder with
// the default transforms does.
type forwarder struct {
	target    string // 127.0.0.1:port
	bodyLimit int64
	transport *http.Transport
	log       *slog.Logger
}

func newForwarder(target string, bodyLimit int64, log *slog.Logger) *forwarder {
	return &forwarder{
		target:    target,
		bodyLimit: bodyLimit,
		log:       log,
		transport: &http.Transport{
			Proxy:       nil, // never an HTTP_PROXY from the environment
			DialContext: retryDial,
			// The caller's Accept-Encoding goes through as is; Go must not
			// add its own and unpack the answer.
			DisableCompression:  true,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		},
	}
}

func retryDial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	delay := dialInitialDelay
	for attempt := 1; ; attempt++ {
		conn, err := d.DialContext(ctx, network, addr)
		if err == nil || attempt == dialAttempts || ctx.Err() != nil {
			return conn, err
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		delay = min(2*delay, dialMaxDelay)
	}
}

func (f *forwarder) close() { f.transport.CloseIdleConnections() }

func (f *forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > f.bodyLimit {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		return
	}
	out, err := f.outbound(w, r)
	if err != nil {
		f.log.Warn("funchost: cannot build the proxied request", "err", err.Error())
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	resp, err := f.transport.RoundTrip(out)
	if err != nil {
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			w.WriteHeader(http.StatusRequestEntityTooLarge)
		case r.Context().Err() != nil:
			// The caller left; nobody to answer.
		default:
			// YARP marks a failed forward 502, but the host then fails the
			// invocation and the caller gets 500.
			f.log.Warn("funchost: forwarding to the handler failed", "path", r.URL.Path, "err", err.Error())
			w.WriteHeader(http.StatusInternalServerError)
		}
		return
	}
	defer resp.Body.Close()
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	dropHopByHop(h)
	w.WriteHeader(resp.StatusCode)
	f.stream(w, r, resp.Body)
}

// stream copies the handler's answer to the caller as it arrives, flushing
// after every read so nothing waits in a buffer.
func (f *forwarder) stream(w http.ResponseWriter, r *http.Request, body io.Reader) {
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // the caller left
			}
			if ferr := rc.Flush(); ferr != nil {
				return
			}
		}
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			// The status is sent: like YARP, abort the caller's connection
			// so a cut answer is not taken for a whole one.
			if r.Context().Err() == nil {
				f.log.Warn("funchost: the handler's answer broke off", "path", r.URL.Path, "err", err.Error())
			}
			panic(http.ErrAbortHandler)
		}
	}
}

// outbound builds the request to the handler: same method, path and raw
// query; Host the handler's address; X-Forwarded-* set from this hop; the
// host's own headers added; hop-by-hop headers dropped.
func (f *forwarder) outbound(w http.ResponseWriter, r *http.Request) (*http.Request, error) {
	var body io.Reader = http.NoBody
	if r.ContentLength != 0 {
		body = http.MaxBytesReader(w, r.Body, f.bodyLimit)
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+f.target+"/", body)
	if err != nil {
		return nil, err
	}
	// Path and query exactly as received.
	out.URL = &url.URL{Scheme: "http", Host: f.target, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	out.ContentLength = r.ContentLength
	out.Host = f.target
	out.Header = r.Header.Clone()
	if out.Header == nil {
		out.Header = http.Header{}
	}
	dropHopByHop(out.Header)
	for _, k := range forwardedHeaders {
		out.Header.Del(k)
	}
	if ip := clientIP(r.RemoteAddr); ip != "" {
		out.Header.Set("X-Forwarded-For", ip)
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	out.Header.Set("X-Forwarded-Proto", proto)
	if r.Host != "" {
		out.Header.Set("X-Forwarded-Host", r.Host)
	}
	id, err := newGUID()
	if err != nil {
		return nil, err
	}
	out.Header.Set("X-Azure-Functions-HostVersion", HostVersion)
	out.Header.Set("X-Azure-Functions-InvocationId", id)
	out.Header.Set("X-Ms-Invocation-Id", id)
	// Go's client would add a User-Agent of its own; YARP adds none.
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""}
	}
	return out, nil
}

func dropHopByHop(h http.Header) {
	for _, k := range hopByHop {
		delete(h, k)
	}
}

// clientIP is the caller's address as YARP writes it in X-Forwarded-For:
// no port, an IPv4-mapped IPv6 address as IPv4.
func clientIP(remoteAddr string) string {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return ""
	}
	return ap.Addr().Unmap().WithZone("").String()
}

// newGUID is a random GUID in its usual text form.
func newGUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("funchost: make a GUID: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
