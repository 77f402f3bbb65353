package mcpserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/entra"
)

// rpcReply is the part of an answer the protocol-version tests read.
type rpcReply struct {
	ID     any `json:"id"`
	Result *struct {
		ProtocolVersion   string   `json:"protocolVersion"`
		SupportedVersions []string `json:"supportedVersions"`
	} `json:"result"`
	Error *struct {
		Code int `json:"code"`
		Data *struct {
			Supported []string `json:"supported"`
			Requested string   `json:"requested"`
		} `json:"data"`
	} `json:"error"`
}

func decodeReply(t *testing.T, what string, body []byte) rpcReply {
	t.Helper()
	var r rpcReply
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("%s: answer is not JSON: %s", what, body)
	}
	return r
}

// modernRequest is a 2026-07-28-style request declaring version v in its
// _meta (unless metaVersion is given: raw JSON for the _meta value) and
// in the header (unless header is "-": none).
func modernRequest(method, header, metaVersion string, id int) rpcCase {
	params := ""
	name := ""
	switch method {
	case "tools/call":
		params, name = `"name":"whoami","arguments":{},`, "whoami"
	case "initialize":
		params = `"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"},`
	}
	hdr := map[string]string{"Mcp-Method": method}
	if name != "" {
		hdr["Mcp-Name"] = name
	}
	if header != "-" {
		hdr["MCP-Protocol-Version"] = header
	}
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q,"params":{%s"_meta":{%q:%s,%q:{}}}}`,
		id, method, params, mcp.MetaKeyProtocolVersion, metaVersion, mcp.MetaKeyClientCapabilities)
	return rpcCase{header: hdr, body: body}
}

// legacyRequest is a request of the initialize era: the version in the
// header only.
func legacyRequest(method, header string, id int) rpcCase {
	params := `{}`
	if method == "tools/call" {
		params = `{"name":"whoami","arguments":{}}`
	}
	if method == "notifications/initialized" {
		return rpcCase{header: map[string]string{"MCP-Protocol-Version": header},
			body: `{"jsonrpc":"2.0","method":"notifications/initialized"}`}
	}
	return rpcCase{header: map[string]string{"MCP-Protocol-Version": header},
		body: fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q,"params":%s}`, id, method, params)}
}

func initializeRequest(requested string) rpcCase {
	return rpcCase{body: fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":`+
		`{"protocolVersion":%q,"capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`, requested)}
}

// unservedVersions are well-formed versions we do not serve: dates before,
// between and after ours, the revisions we dropped, and a non-date.
var unservedVersions = []string{
	"1900-01-01", "2024-11-05", "2025-03-26", "2025-06-17", "2026-01-01",
	"2026-07-29", "2027-01-01", "9999-12-31", "v999.0.0", "DRAFT-2026-v1",
}

func TestProtocolVersionNegotiation(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	p := principalWith("Task.All")
	served := ProtocolVersions()

	wantUnsupported := func(t *testing.T, what string, c rpcCase, version string, id any) {
		t.Helper()
		rec := post(s, p, c)
		r := decodeReply(t, what, rec.Body.Bytes())
		if rec.Code != http.StatusBadRequest || r.Error == nil || r.Error.Code != mcp.UNSUPPORTED_PROTOCOL_VERSION || r.Error.Data == nil {
			t.Fatalf("%s: got %d %s, want 400 with error -32022", what, rec.Code, rec.Body)
		}
		if !slices.Equal(r.Error.Data.Supported, served) || r.Error.Data.Requested != version {
			t.Errorf("%s: data %+v, want supported %v and requested %q", what, *r.Error.Data, served, version)
		}
		if fmt.Sprint(r.ID) != fmt.Sprint(id) {
			t.Errorf("%s: id %v, want %v", what, r.ID, id)
		}
		if rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: content type %q", what, rec.Header().Get("Content-Type"))
		}
	}

	t.Run("a modern request for a version we do not serve gets 400, -32022 and the versions we serve", func(t *testing.T) {
		for _, v := range unservedVersions {
			for _, method := range []string{"server/discover", "tools/list", "tools/call", "ping", "initialize"} {
				wantUnsupported(t, method+" at "+v, modernRequest(method, v, fmt.Sprintf("%q", v), 7), v, 7)
			}
		}
	})

	t.Run("a legacy request whose header names a version we do not serve gets 400, -32022 and the versions we serve", func(t *testing.T) {
		for _, v := range unservedVersions {
			for _, method := range []string{"tools/list", "tools/call", "ping"} {
				wantUnsupported(t, method+" at "+v, legacyRequest(method, v, 8), v, 8)
			}
			wantUnsupported(t, "notification at "+v, legacyRequest("notifications/initialized", v, 0), v, nil)
		}
	})

	t.Run("each version we serve is served, in its era's form", func(t *testing.T) {
		for _, v := range served {
			for _, method := range []string{"tools/list", "tools/call"} {
				c := legacyRequest(method, v, 9)
				if mcp.IsModernProtocol(v) {
					c = modernRequest(method, v, fmt.Sprintf("%q", v), 9)
				}
				rec := post(s, p, c)
				if r := decodeReply(t, method, rec.Body.Bytes()); rec.Code != http.StatusOK || r.Result == nil {
					t.Errorf("%s at %s: got %d %s", method, v, rec.Code, rec.Body)
				}
			}
		}
	})

	t.Run("server/discover lists exactly the versions we serve", func(t *testing.T) {
		v := served[0]
		rec := post(s, p, modernRequest("server/discover", v, fmt.Sprintf("%q", v), 1))
		r := decodeReply(t, "discover", rec.Body.Bytes())
		if rec.Code != http.StatusOK || r.Result == nil || !slices.Equal(r.Result.SupportedVersions, served) {
			t.Fatalf("discover: %d %s, want supportedVersions %v", rec.Code, rec.Body, served)
		}
	})

	t.Run("initialize echoes a handshake version we serve and answers our newest handshake version for any other", func(t *testing.T) {
		newest := ""
		for _, v := range served {
			if !mcp.IsModernProtocol(v) {
				newest = v
				break
			}
		}
		if newest == "" {
			t.Fatal("no handshake-era version is served")
		}
		for _, requested := range append([]string{"", "2026-07-28", "garbage"}, append(unservedVersions, served...)...) {
			want := newest
			if slices.Contains(served, requested) && !mcp.IsModernProtocol(requested) {
				want = requested
			}
			rec := post(s, p, initializeRequest(requested))
			r := decodeReply(t, "initialize", rec.Body.Bytes())
			if rec.Code != http.StatusOK || r.Result == nil || r.Result.ProtocolVersion != want {
				t.Errorf("initialize requesting %q: %d %s, want protocolVersion %q", requested, rec.Code, rec.Body, want)
			}
		}
	})

	t.Run("initialize negotiates in its body even when its header names a version we do not serve", func(t *testing.T) {
		c := initializeRequest("2025-03-26")
		c.header = map[string]string{"MCP-Protocol-Version": "2025-03-26"}
		rec := post(s, p, c)
		if r := decodeReply(t, "initialize", rec.Body.Bytes()); rec.Code != http.StatusOK || r.Result == nil || !slices.Contains(served, r.Result.ProtocolVersion) {
			t.Errorf("got %d %s", rec.Code, rec.Body)
		}
	})

	wantError := func(t *testing.T, what string, c rpcCase, code int) {
		t.Helper()
		rec := post(s, p, c)
		r := decodeReply(t, what, rec.Body.Bytes())
		if rec.Code != http.StatusBadRequest || r.Error == nil || r.Error.Code != code {
			t.Errorf("%s: got %d %s, want 400 with error %d", what, rec.Code, rec.Body, code)
		}
		if rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: content type %q", what, rec.Header().Get("Content-Type"))
		}
	}

	t.Run("a malformed MCP-Protocol-Version header is a header error (-32020), in either era", func(t *testing.T) {
		for _, v := range []string{"2026 07 28", "2026-07-28\u00e9", "\u00e92025-11-25", "2025-11-25\t", strings.Repeat("9", 65)} {
			wantError(t, fmt.Sprintf("modern %q", v), modernRequest("tools/list", v, fmt.Sprintf("%q", v), 1), mcp.HEADER_MISMATCH)
			wantError(t, fmt.Sprintf("legacy %q", v), legacyRequest("tools/list", v, 1), mcp.HEADER_MISMATCH)
		}
		// Two headers: which one the client meant is anyone's guess.
		req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Add("MCP-Protocol-Version", "2025-11-25")
		req.Header.Add("MCP-Protocol-Version", "2025-06-18")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req.WithContext(entra.NewContext(req.Context(), p)))
		if r := decodeReply(t, "two headers", rec.Body.Bytes()); rec.Code != http.StatusBadRequest || r.Error == nil || r.Error.Code != mcp.HEADER_MISMATCH {
			t.Errorf("two headers: got %d %s, want 400 with error -32020", rec.Code, rec.Body)
		}
	})

	t.Run("a header that disagrees with _meta, or is missing beside it, is a header error (-32020)", func(t *testing.T) {
		for _, c := range []struct{ header, meta string }{
			{"2026-07-28", `"1900-01-01"`},
			{"1900-01-01", `"2026-07-28"`},
			{"2025-11-25", `"2026-07-28"`},
			{"2026-07-28", `"2025-11-25"`},
			{"2027-01-01", `"2026-07-28"`},
			{"-", `"1900-01-01"`},
			{"-", `"2026-07-28"`},
			{"-", `"2025-11-25"`},
		} {
			header := "header " + c.header
			if c.header == "-" {
				header = "no header"
			}
			t.Run(header+" vs meta "+strings.Trim(c.meta, `"`), func(t *testing.T) {
				for _, method := range []string{"tools/list", "initialize"} {
					wantError(t, fmt.Sprintf("%s header %s _meta %s", method, c.header, c.meta), modernRequest(method, c.header, c.meta, 1), mcp.HEADER_MISMATCH)
				}
			})
		}
	})

	t.Run("a protocolVersion in _meta that is not a non-empty string is invalid params (-32602)", func(t *testing.T) {
		for _, meta := range []string{`5`, `""`, `null`, `{}`, `["2026-07-28"]`, `true`} {
			for _, header := range []string{"2026-07-28", "2025-11-25"} {
				wantError(t, fmt.Sprintf("_meta %s header %s", meta, header), modernRequest("tools/list", header, meta, 1), mcp.INVALID_PARAMS)
			}
		}
	})
}
