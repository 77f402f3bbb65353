package telemetry

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestParseConnectionString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in                      string
		wantEndpoint, wantLive  string
		wantTrack, wantTrackAAD string
		wantScope               string
	}{
		{
			in:           "InstrumentationKey=" + testIKey + ";IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/;LiveEndpoint=https://westeurope.livediagnostics.monitor.azure.com/;ApplicationId=x;",
			wantEndpoint: "https://westeurope-5.in.applicationinsights.azure.com",
			wantLive:     "https://westeurope.livediagnostics.monitor.azure.com/",
			wantTrack:    "https://westeurope-5.in.applicationinsights.azure.com/v2/track",
			wantTrackAAD: "https://westeurope-5.in.applicationinsights.azure.com/v2.1/track",
			wantScope:    "https://monitor.azure.com//.default",
		},
		{
			in:           " instrumentationkey = " + strings.ToUpper(testIKey) + " ; INGESTIONENDPOINT=https://usgovvirginia-1.in.applicationinsights.azure.us/ ; aadaudience=https://monitor.azure.us//",
			wantEndpoint: "https://usgovvirginia-1.in.applicationinsights.azure.us",
			wantTrack:    "https://usgovvirginia-1.in.applicationinsights.azure.us/v2/track",
			wantTrackAAD: "https://usgovvirginia-1.in.applicationinsights.azure.us/v2.1/track",
			wantScope:    "https://monitor.azure.us/.default",
		},
		{
			in:           "InstrumentationKey=" + testIKey,
			wantEndpoint: "https://dc.services.visualstudio.com",
			wantTrack:    "https://dc.services.visualstudio.com/v2/track",
			wantTrackAAD: "https://dc.services.visualstudio.com/v2.1/track",
			wantScope:    "https://monitor.azure.com//.default",
		},
		{
			in:           "InstrumentationKey=" + testIKey + ";EndpointSuffix=applicationinsights.azure.cn;Location=chinaeast2",
			wantEndpoint: "https://chinaeast2.dc.applicationinsights.azure.cn",
			wantTrack:    "https://chinaeast2.dc.applicationinsights.azure.cn/v2/track",
			wantTrackAAD: "https://chinaeast2.dc.applicationinsights.azure.cn/v2.1/track",
			wantScope:    "https://monitor.azure.com//.default",
		},
		{
			in:           "InstrumentationKey=" + testIKey + ";IngestionEndpoint=http://127.0.0.1:8080",
			wantEndpoint: "http://127.0.0.1:8080",
			wantTrack:    "http://127.0.0.1:8080/v2/track",
			wantTrackAAD: "http://127.0.0.1:8080/v2.1/track",
			wantScope:    "https://monitor.azure.com//.default",
		},
	} {
		t.Run(tc.in, func(t *testing.T) {
			cs, err := ParseConnectionString(tc.in)
			if err != nil {
				t.Fatalf("%q: %v", tc.in, err)
			}
			if cs.InstrumentationKey != testIKey || cs.IngestionEndpoint != tc.wantEndpoint || cs.LiveEndpoint != tc.wantLive ||
				cs.TrackURL(false) != tc.wantTrack || cs.TrackURL(true) != tc.wantTrackAAD || cs.Scope() != tc.wantScope {
				t.Errorf("%q: got %+v track %q %q scope %q", tc.in, cs, cs.TrackURL(false), cs.TrackURL(true), cs.Scope())
			}
		})
	}

	for _, bad := range []string{
		"",
		"IngestionEndpoint=https://x.example",
		"InstrumentationKey=not-a-guid",
		"InstrumentationKey=" + testIKey + ";IngestionEndpoint=http://in.example.com",
		"InstrumentationKey=" + testIKey + ";IngestionEndpoint=ftp://in.example.com",
		"InstrumentationKey=" + testIKey + ";IngestionEndpoint=/relative",
		"InstrumentationKey=" + testIKey + ";IngestionEndpoint=https://in.example.com/?sig=x",
		"InstrumentationKey=" + testIKey + ";garbage",
	} {
		if _, err := ParseConnectionString(bad); err == nil {
			t.Errorf("%q: no error", bad)
		} else if strings.Contains(err.Error(), testIKey) {
			t.Errorf("%q: error echoes the key: %v", bad, err)
		}
	}
}

func TestParseAuthenticationString(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Auth{
		"":                   {},
		"Authorization=AAD":  {AAD: true},
		"authorization=aad;": {AAD: true},
		"Authorization=AAD;ClientId=" + strings.ToUpper(testIKey): {AAD: true, ClientID: testIKey},
	} {
		got, err := ParseAuthenticationString(in)
		if err != nil || got != want {
			t.Errorf("%q: %+v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"Authorization=Basic", "Authorization=AAD;ClientId=nope", "ClientId=" + testIKey, "AAD"} {
		if _, err := ParseAuthenticationString(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestNewRejectsBadSettings(t *testing.T) {
	t.Parallel()
	if _, err := New(Options{ConnectionString: "InstrumentationKey=nope"}); err == nil ||
		!strings.Contains(err.Error(), "APPLICATIONINSIGHTS_CONNECTION_STRING") {
		t.Errorf("bad connection string: %v", err)
	}
	if _, err := New(Options{ConnectionString: "InstrumentationKey=" + testIKey, AuthenticationString: "Authorization=Kerberos"}); err == nil ||
		!strings.Contains(err.Error(), "APPLICATIONINSIGHTS_AUTHENTICATION_STRING") {
		t.Errorf("bad authentication string: %v", err)
	}
}

func TestNewBuildsManagedIdentityCredential(t *testing.T) {
	t.Parallel()
	// No credential given: a managed identity one is made (no network yet).
	c, err := New(Options{
		ConnectionString:     "InstrumentationKey=" + testIKey + ";IngestionEndpoint=https://in.example.com/",
		AuthenticationString: "Authorization=AAD;ClientId=" + testIKey,
	})
	if err != nil || !c.Enabled() {
		t.Fatalf("New: %v", err)
	}
	if err := c.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestTraceparent(t *testing.T) {
	t.Parallel()
	for h, ok := range map[string]bool{
		testTraceparent: true,
		"01-" + testTraceID + "-" + testParentSpan + "-01-future":           true,
		"01-" + testTraceID + "-" + testParentSpan + "-01":                  true,
		"00-" + testTraceID + "-" + testParentSpan + "-01-x":                false, // version 00 has exactly four fields
		"ff-" + testTraceID + "-" + testParentSpan + "-01":                  false,
		"00-" + strings.ToUpper(testTraceID) + "-" + testParentSpan + "-01": false,
		"00-00000000000000000000000000000000-" + testParentSpan + "-01":     false,
		"00-" + testTraceID + "-0000000000000000-01":                        false,
		"00-" + testTraceID + "-" + testParentSpan:                          false,
		"": false,
	} {
		tid, pid, got := parseTraceparent(h)
		if got != ok || ok && (tid != testTraceID || pid != testParentSpan) {
			t.Errorf("%q: %q %q %v", h, tid, pid, got)
		}
	}

	// A bad traceparent falls back to the invocation id, else a new trace.
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("traceparent", "garbage")
	op := incoming(r)
	if len(op.traceID) != 32 || !lowerHex(op.traceID) || isZero(op.traceID) || op.parentID != "" || len(op.spanID) != 16 {
		t.Errorf("new operation %+v", op)
	}
	r.Header.Set(InvocationIDHeader, "00000000-0000-0000-0000-000000000000")
	if op := incoming(r); isZero(op.traceID) {
		t.Errorf("all-zero invocation id became trace id %q", op.traceID)
	}
}

func TestDependencyTypeByHost(t *testing.T) {
	t.Parallel()
	tr := &depTransport{types: map[string]string{"127.0.0.1:8443": TypeEntra, ".vault.stand.in": TypeKeyVault, "graph.local": TypeGraph}}
	for host, want := range map[string]string{
		"login.microsoftonline.com":    TypeEntra,
		"LOGIN.microsoftonline.us:443": TypeEntra,
		"kv-1.vault.azure.net":         TypeKeyVault,
		"kv.vault.usgovcloudapi.net":   TypeKeyVault,
		"graph.microsoft.com":          TypeGraph,
		"127.0.0.1:8443":               TypeEntra,
		"127.0.0.1:9000":               TypeHTTP,
		"kv.vault.stand.in:8443":       TypeKeyVault,
		"graph.local":                  TypeGraph,
		"example.com":                  TypeHTTP,
		"evil-vault.azure.net":         TypeHTTP, // suffix match needs the dot
	} {
		if got := tr.kind(host); got != want {
			t.Errorf("%s: %q, want %q", host, got, want)
		}
	}
}

func TestScrub(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`Post "https://login.example/t/oauth2/token?code=abc&x=y": EOF`: `Post "https://login.example/t/oauth2/token": EOF`,
		"token " + secretToken + " rejected":                            "token [redacted] rejected",
		"header Authorization: Bearer abc.def-ghi":                      "header Authorization: Bearer [redacted]",
		"plain message": "plain message",
	} {
		if got := scrubText(in); got != want {
			t.Errorf("scrubText(%q) = %q, want %q", in, got, want)
		}
	}
	props := cleanProps(map[string]string{"tid": "t", "refresh_token": "x", "auth_code": "y", "Code": "z", "client_secret": "s", "tool": "whoami"}, 0)
	if len(props) != 2 || props["tid"] != "t" || props["tool"] != "whoami" {
		t.Errorf("cleanProps kept %v", props)
	}
}
