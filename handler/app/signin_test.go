package app

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
	"github.com/entra-mcp/functions-mcp/handler/tools/toolstest"
)

// browser is a client with a cookie jar that does not follow redirects, so
// each hop of the sign-in can be checked. Each browser has a client address
// of its own (X-Forwarded-For, as the Functions host sets it), as people
// signing in do: the per-address limits count each separately.
func browser(t testing.TB) *http.Client {
	t.Helper()
	return browserAt(t, fmt.Sprintf("198.18.%d.%d", mrand.IntN(256), 1+mrand.IntN(254)))
}

// browserAt is browser with the given client address.
func browserAt(t testing.TB, addr string) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Transport: fromAddress{addr},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// fromAddress sends every request as if from addr.
type fromAddress struct{ addr string }

func (f fromAddress) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", f.addr)
	return http.DefaultTransport.RoundTrip(r)
}

func get(t testing.TB, c *http.Client, u string) reply {
	t.Helper()
	a := testkit.Get(t, c, u)
	return reply{a.Status, a.Header, []byte(a.Body)}
}

// send sends req with c and reads the whole answer.
func send(t testing.TB, c *http.Client, req *http.Request) reply {
	t.Helper()
	a := testkit.Do(t, c, req)
	return reply{a.Status, a.Header, []byte(a.Body)}
}

// startLogin runs /auth/login and the stand-in's sign-in page as user, and
// returns the callback URL Entra would send the browser to.
func (st *stack) startLogin(t testing.TB, c *http.Client, user, query string) string {
	t.Helper()
	r := get(t, c, st.base+"/auth/login"+query)
	if r.status != http.StatusFound {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	loc := r.header.Get("Location")
	for _, p := range []string{"code_challenge=", "code_challenge_method=S256", "state=", "nonce=", "access_as_user"} {
		if !strings.Contains(loc, p) {
			t.Fatalf("authorize URL lacks %s: %s", p, loc)
		}
	}
	cb, err := st.idp.SignIn(context.Background(), loc, user)
	if err != nil {
		t.Fatalf("stand-in sign-in: %v", err)
	}
	return cb
}

var codeRE = regexp.MustCompile(`<code id="code">([A-Za-z0-9_.-]+)</code>`)

// signIn completes a browser sign-in and returns the one-time code.
func (st *stack) signIn(t testing.TB, user string) string {
	t.Helper()
	c := browser(t)
	r := get(t, c, st.startLogin(t, c, user, ""))
	m := codeRE.FindSubmatch(r.body)
	if r.status != 200 || m == nil {
		t.Fatalf("callback: %d %s", r.status, r.body)
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("code page CSP %q", csp)
	}
	return string(m[1])
}

type tokens struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	Scope        string `json:"scope"`
	RefreshToken string `json:"refresh_token"`
	Error        string `json:"error"`
}

func (st *stack) postJSON(t testing.TB, path string, body any) (reply, tokens) {
	t.Helper()
	b, _ := json.Marshal(body)
	r := st.do(t, http.MethodPost, path, "", nil, string(b))
	var tk tokens
	if len(r.body) > 0 {
		if err := json.Unmarshal(r.body, &tk); err != nil {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
	}
	return r, tk
}

func (st *stack) exchange(t testing.TB, code, verifier string) (reply, tokens) {
	t.Helper()
	body := map[string]string{"auth_code": code}
	if verifier != "" {
		body["code_verifier"] = verifier
	}
	return st.postJSON(t, "/auth/exchange", body)
}

func (st *stack) refresh(t testing.TB, handle string) (reply, tokens) {
	t.Helper()
	return st.postJSON(t, "/auth/refresh", map[string]string{"refresh_token": handle})
}

// oidOf reads the oid claim of a token (the MCP endpoint verifies it; here
// we only need to know whose it is). It is "" for anything else.
func oidOf(_ testing.TB, tok string) string {
	c, _ := testkit.DecodeClaims(tok)
	oid, _ := c["oid"].(string)
	return oid
}

func TestSignInEndToEnd(t *testing.T) {
	t.Parallel()
	rdb := storetest.Redis(t)
	st := newStack(t, rdb)
	writer, _ := devidp.DemoUser("writer")

	code := st.signIn(t, "writer")
	r, tk := st.exchange(t, code, "")
	if r.status != 200 || tk.TokenType != "Bearer" || tk.AccessToken == "" || tk.RefreshToken == "" || tk.ExpiresIn <= 0 ||
		tk.Scope != "api://"+st.idp.ClientID()+"/access_as_user" {
		t.Fatalf("exchange: %d %s", r.status, r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("exchange Cache-Control %q", r.header.Get("Cache-Control"))
	}
	if oidOf(t, tk.AccessToken) != writer.ObjectID {
		t.Fatalf("token is for %s", oidOf(t, tk.AccessToken))
	}
	// The token works on the MCP endpoint and carries the writer's roles.
	names := toolNames(st.rpc(t, tk.AccessToken, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	if want := toolstest.Load(t).Lists(t, "writer"); !slices.Equal(names, want) {
		t.Fatalf("writer's tools via signed-in token: %v, want %v", names, want)
	}
	// The one-time code is single use.
	if r, _ := st.exchange(t, code, ""); r.status != 400 || !strings.Contains(string(r.body), "invalid_grant") {
		t.Fatalf("second exchange: %d %s", r.status, r.body)
	}

	// That second redemption revoked what the first one issued.
	if r, _ := st.refresh(t, tk.RefreshToken); r.status != 400 {
		t.Fatalf("handle survived code reuse: %d %s", r.status, r.body)
	}

	// A fresh sign-in: refresh rotates, the old handle is refused and its
	// reuse ends the chain.
	_, tk = st.exchange(t, st.signIn(t, "writer"), "")
	r1, tk1 := st.refresh(t, tk.RefreshToken)
	if r1.status != 200 || tk1.RefreshToken == "" || tk1.RefreshToken == tk.RefreshToken || tk1.AccessToken == "" {
		t.Fatalf("refresh: %d %s", r1.status, r1.body)
	}
	r2, tk2 := st.refresh(t, tk1.RefreshToken)
	if r2.status != 200 {
		t.Fatalf("second refresh: %d %s", r2.status, r2.body)
	}
	if r, _ := st.refresh(t, tk.RefreshToken); r.status != 400 || !strings.Contains(string(r.body), "invalid_grant") {
		t.Fatalf("old handle: %d %s", r.status, r.body)
	}
	if r, _ := st.refresh(t, tk2.RefreshToken); r.status != 400 {
		t.Fatalf("chain survived reuse of a rotated handle: %d %s", r.status, r.body)
	}

	// Logout ends the session and deletes the user's Entra tokens.
	_, tk = st.exchange(t, st.signIn(t, "writer"), "")
	lr := st.do(t, http.MethodPost, "/auth/logout", "", nil, `{"refresh_token":"`+tk.RefreshToken+`"}`)
	if lr.status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", lr.status, lr.body)
	}
	if r, _ := st.refresh(t, tk.RefreshToken); r.status != 400 {
		t.Fatalf("handle after logout: %d %s", r.status, r.body)
	}
	if n, _ := rdb.Exists(context.Background(), "msal:"+st.idp.TenantID()+"."+writer.ObjectID).Result(); n != 0 {
		t.Fatalf("MSAL cache still in Redis after logout")
	}
	// Logout of an unknown handle answers the same.
	if lr := st.do(t, http.MethodPost, "/auth/logout", "", nil, `{"refresh_token":"nope"}`); lr.status != http.StatusNoContent {
		t.Fatalf("logout of unknown handle: %d", lr.status)
	}
}

func TestSignInWithClientPKCEAndReturnTo(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Redis(t))
	verifier := strings.Repeat("v", 43)
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])

	c := browser(t)
	q := "?return_to=" + url.QueryEscape("http://127.0.0.1:9/return") + "&code_challenge=" + challenge + "&code_challenge_method=S256"
	r := get(t, c, st.startLogin(t, c, "reader", q))
	if r.status != http.StatusFound || !strings.HasPrefix(r.header.Get("Location"), "http://127.0.0.1:9/return?code=") {
		t.Fatalf("callback with return_to: %d %q", r.status, r.header.Get("Location"))
	}
	loc, _ := url.Parse(r.header.Get("Location"))
	code := loc.Query().Get("code")

	if r, _ := st.exchange(t, code, ""); r.status != 400 {
		t.Fatalf("exchange without the verifier: %d %s", r.status, r.body)
	}
	// The failed attempt used the code up: a guessed verifier gets one try.
	c2 := browser(t)
	r = get(t, c2, st.startLogin(t, c2, "reader", q))
	loc, _ = url.Parse(r.header.Get("Location"))
	if r, _ := st.exchange(t, loc.Query().Get("code"), strings.Repeat("w", 43)); r.status != 400 {
		t.Fatalf("exchange with a wrong verifier: %d %s", r.status, r.body)
	}
	c3 := browser(t)
	r = get(t, c3, st.startLogin(t, c3, "reader", q))
	loc, _ = url.Parse(r.header.Get("Location"))
	if r, tk := st.exchange(t, loc.Query().Get("code"), verifier); r.status != 200 || tk.AccessToken == "" {
		t.Fatalf("exchange with the right verifier: %d %s", r.status, r.body)
	}
}

func TestLoginRefusesBadInput(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Redis(t))
	c := browser(t)
	for _, q := range []string{
		"?return_to=" + url.QueryEscape("https://evil.example/steal"),
		"?return_to=" + url.QueryEscape("http://127.0.0.1:9/return/../x"),
		"?code_challenge=short&code_challenge_method=S256",
		"?code_challenge=" + strings.Repeat("a", 43) + "&code_challenge_method=plain",
		// return_to without PKCE: the code in that URL would be anyone's.
		"?return_to=" + url.QueryEscape("http://127.0.0.1:9/return"),
	} {
		r := get(t, c, st.base+"/auth/login"+q)
		if r.status != 400 || r.header.Get("Location") != "" {
			t.Errorf("login%s: %d %q", q, r.status, r.header.Get("Location"))
		}
	}
}

func TestCallbackRefusesForgedOrReplayedState(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Redis(t))

	// Missing and forged state.
	c := browser(t)
	for _, q := range []string{"?code=abc", "?code=abc&state=forged"} {
		if r := get(t, c, st.base+"/auth/callback"+q); r.status != 400 || codeRE.Match(r.body) {
			t.Errorf("callback%s: %d", q, r.status)
		}
	}
	// Replayed: the same callback URL twice.
	c = browser(t)
	cb := st.startLogin(t, c, "reader", "")
	if r := get(t, c, cb); r.status != 200 {
		t.Fatalf("first callback: %d %s", r.status, r.body)
	}
	if r := get(t, c, cb); r.status != 400 || codeRE.Match(r.body) {
		t.Fatalf("replayed callback: %d", r.status)
	}
	// Another browser (no cookie, or someone else's) cannot finish it.
	c = browser(t)
	cb = st.startLogin(t, c, "reader", "")
	other := browser(t)
	_ = get(t, other, st.base+"/auth/login") // other has its own cookie
	if r := get(t, other, cb); r.status != 400 || codeRE.Match(r.body) {
		t.Fatalf("callback in another browser: %d", r.status)
	}
	// That attempt did not spend the sign-in: it lives in the rightful
	// browser, which still finishes it.
	if r := get(t, c, cb); r.status != 200 {
		t.Fatalf("the rightful browser after a refused attempt elsewhere: %d", r.status)
	}
	// A copy of the cookie does not make a completed sign-in complete
	// again.
	c = browser(t)
	login := get(t, c, st.base+"/auth/login")
	cookie := login.header.Get("Set-Cookie")
	cb, err := st.idp.SignIn(context.Background(), login.header.Get("Location"), "reader")
	if err != nil {
		t.Fatal(err)
	}
	if r := get(t, c, cb); r.status != 200 {
		t.Fatalf("callback: %d", r.status)
	}
	req, _ := http.NewRequest(http.MethodGet, cb, nil)
	req.Header.Set("Cookie", strings.SplitN(cookie, ";", 2)[0])
	if r := send(t, browser(t), req); r.status != 400 || codeRE.Match(r.body) {
		t.Fatalf("the same callback with a copied cookie: %d", r.status)
	}
}

func TestCallbackShowsEntraErrors(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Redis(t))
	c := browser(t)
	r := get(t, c, st.base+"/auth/login")
	cb, err := st.idp.CancelSignIn(context.Background(), r.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	r = get(t, c, cb)
	if r.status != 400 || !strings.Contains(string(r.body), "access_denied") || codeRE.Match(r.body) {
		t.Fatalf("cancelled sign-in: %d %s", r.status, r.body)
	}
	if strings.Contains(string(r.body), "<script>alert") {
		t.Fatal("unescaped")
	}
}

func TestExpiredCodeIsRefused(t *testing.T) {
	t.Parallel()
	rdb, mr := storetest.MiniServer(t)
	st := newStack(t, rdb)
	code := st.signIn(t, "reader")
	mr.FastForward(121 * time.Second)
	if r, _ := st.exchange(t, code, ""); r.status != 400 || !strings.Contains(string(r.body), "invalid_grant") {
		t.Fatalf("expired code: %d %s", r.status, r.body)
	}
}

func TestAuthEndpointsRefuseBadBodies(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Redis(t))
	for _, path := range []string{"/auth/exchange", "/auth/refresh", "/auth/logout"} {
		for _, c := range []struct {
			ct, body string
			status   int
		}{
			{"application/json", `{`, 400},
			{"application/json", `[]`, 400},
			{"application/json", `{"auth_code":1,"refresh_token":1}`, 400},
			{"application/json", `{"unknown":"x"}`, 400},
			{"application/json", `{"auth_code":"a"} {"b":1}`, 400},
			{"text/plain", `{}`, 415},
			{"application/json", `{"auth_code":"` + strings.Repeat("a", 8<<10) + `"}`, 413},
		} {
			t.Run(path+" "+c.ct+" "+c.body[:min(len(c.body), 30)], func(t *testing.T) {
				r := st.do(t, http.MethodPost, path, "", map[string]string{"Content-Type": c.ct}, c.body)
				if r.status != c.status || !json.Valid(r.body) {
					t.Errorf("%s %q: %d %s, want %d", path, c.body[:min(len(c.body), 30)], r.status, r.body, c.status)
				}
			})
		}
		if r := st.do(t, http.MethodGet, path, "", nil, ""); r.status != 405 {
			t.Errorf("GET %s: %d", path, r.status)
		}
	}
}

func TestRedisDownIs503WithNothingHalfWritten(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Down(t))
	// Well-formed, so that Redis would have to be asked.
	code := "0123456789abcdef." + strings.Repeat("A", 43)
	handle := "0123456789abcdef." + strings.Repeat("A", 26) + "." + strings.Repeat("B", 26)
	for path, body := range map[string]string{
		"/auth/exchange": `{"auth_code":"` + code + `"}`,
		"/auth/refresh":  `{"refresh_token":"` + handle + `"}`,
	} {
		t.Run(path, func(t *testing.T) {
			r := st.do(t, http.MethodPost, path, "", nil, body)
			if r.status != 503 || r.header.Get("Retry-After") == "" || !json.Valid(r.body) {
				t.Errorf("%s with Redis down: %d %q %s", path, r.status, r.header.Get("Retry-After"), r.body)
			}
		})
	}
	// A sign-in starts without Redis (its state is in the browser), and
	// ends with a 503 page where it would store the user's tokens.
	c := browser(t)
	cb := st.startLogin(t, c, "reader", "")
	if r := get(t, c, cb); r.status != 503 || codeRE.Match(r.body) {
		t.Errorf("callback with Redis down: %d", r.status)
	}
}

func TestRateLimitOnExchange(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Redis(t))
	var last reply
	for i := 0; i < 40; i++ {
		last = st.do(t, http.MethodPost, "/auth/exchange", "", nil, `{"auth_code":"guess`+fmt.Sprint(i)+`"}`)
		if last.status == http.StatusTooManyRequests {
			break
		}
	}
	if last.status != http.StatusTooManyRequests || last.header.Get("Retry-After") == "" {
		t.Fatalf("40 quick guesses never limited: %d", last.status)
	}
	// A remote peer cannot dodge the limit with X-Forwarded-For (the test
	// client is on loopback, so here the header IS trusted: a new address
	// gets its own budget).
	r := st.do(t, http.MethodPost, "/auth/exchange", "", map[string]string{"X-Forwarded-For": "203.0.113.7"}, `{"auth_code":"x"}`)
	if r.status != 400 {
		t.Fatalf("another client address was limited too: %d", r.status)
	}
}

func TestAdminRevokesSessions(t *testing.T) {
	t.Parallel()
	rdb := storetest.Redis(t)
	st := newStack(t, rdb)
	reader, _ := devidp.DemoUser("reader")
	_, tk := st.exchange(t, st.signIn(t, "reader"), "")
	admin := st.token(t, "admin")
	text, isErr := callText(t, st.rpc(t, admin, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"revoke_sessions","arguments":{"oid":"`+reader.ObjectID+`"}}}`))
	var out struct{ RevokedSessions int }
	if isErr || json.Unmarshal([]byte(text), &out) != nil || out.RevokedSessions != 1 {
		t.Fatalf("revoke_sessions: %v %s", isErr, text)
	}
	if r, _ := st.refresh(t, tk.RefreshToken); r.status != 400 {
		t.Fatalf("handle after revoke_sessions: %d %s", r.status, r.body)
	}
	// Only admins may.
	m := st.rpc(t, st.token(t, "all"), `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"revoke_sessions","arguments":{"oid":"`+reader.ObjectID+`"}}}`)
	if _, ok := m["error"]; !ok {
		t.Fatalf("non-admin ran revoke_sessions: %v", m)
	}
}

// TestConcurrentUsersGetTheirOwnTokens runs 200 exchanges and refreshes at
// once for two people, through MSAL's cache in Redis, with access tokens
// that expire at once so every refresh goes to the stand-in with the
// user's refresh token. No call may fail or come back with the other
// person's token.
func TestConcurrentUsersGetTheirOwnTokens(t *testing.T) {
	t.Parallel()
	rdb := storetest.Redis(t)
	// Under MSAL's five-minute margin, so every silent call redeems the
	// user's refresh token at the stand-in. (Refresh tokens stay reusable
	// here, as Entra's do: a person's parallel refreshes all read the same
	// one.)
	st := newStackWith(t, rdb, func(_ *config.Config, o *devidp.Options) {
		o.AccessTokenLifetime = time.Minute
	})
	people := []string{"reader", "writer"}
	type session struct{ user, code string }
	var sessions []session
	for i := 0; i < 200; i++ {
		u := people[i%2]
		sessions = append(sessions, session{u, st.signIn(t, u)})
	}
	var wg sync.WaitGroup
	errs := make(chan string, 400)
	for i, s := range sessions {
		wg.Add(1)
		go func(i int, s session) {
			defer wg.Done()
			want, _ := devidp.DemoUser(s.user)
			// Each goroutine is its own client, with its own address.
			addr := fmt.Sprintf("198.51.100.%d", i%250)
			if i >= 250 {
				addr = fmt.Sprintf("198.51.101.%d", i%250)
			}
			r, tk := st.exchangeNoFatal(addr, s.code)
			if r != 200 || oidOf(t, tk.AccessToken) != want.ObjectID {
				errs <- fmt.Sprintf("%s exchange: %d, token for %s", s.user, r, oidOf(t, tk.AccessToken))
				return
			}
			r, tk = st.refreshNoFatal(addr, tk.RefreshToken)
			if r != 200 || oidOf(t, tk.AccessToken) != want.ObjectID {
				errs <- fmt.Sprintf("%s refresh: %d, token for %s", s.user, r, oidOf(t, tk.AccessToken))
			}
		}(i, s)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// Goroutine-safe variants (t.Fatal may not be called off the test goroutine).
func (st *stack) exchangeNoFatal(addr, code string) (int, tokens) {
	return st.postNoFatal(addr, "/auth/exchange", map[string]string{"auth_code": code})
}

func (st *stack) refreshNoFatal(addr, handle string) (int, tokens) {
	return st.postNoFatal(addr, "/auth/refresh", map[string]string{"refresh_token": handle})
}

func (st *stack) postNoFatal(addr, path string, body any) (int, tokens) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, st.base+path, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", addr)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, tokens{}
	}
	defer resp.Body.Close()
	var tk tokens
	_ = json.NewDecoder(resp.Body).Decode(&tk)
	return resp.StatusCode, tk
}

// TestRedisHoldsNoRawSecretsAndEverythingExpires scans Redis after full
// flows: every key has a TTL, and no token, code or handle appears in any
// key or value.
func TestRedisHoldsNoRawSecretsAndEverythingExpires(t *testing.T) {
	t.Parallel()
	rdb := storetest.Redis(t)
	st := newStack(t, rdb)
	var secrets []string
	code := st.signIn(t, "all")
	_, tk := st.exchange(t, code, "")
	_, tk2 := st.refresh(t, tk.RefreshToken)
	secrets = append(secrets, code, tk.AccessToken, tk.RefreshToken, tk2.AccessToken, tk2.RefreshToken)
	code2 := st.signIn(t, "reader") // left unredeemed
	secrets = append(secrets, code2)
	secrets = append(secrets, st.idp.IssuedRefreshTokens()...)

	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatal("no keys written")
	}
	for _, k := range keys {
		ttl, err := rdb.PTTL(ctx, k).Result()
		if err == nil && ttl == -2 {
			continue // expired since KEYS listed it (rate-limit buckets live seconds): fine
		}
		if err != nil || ttl <= 0 {
			t.Errorf("key %q has no TTL (%v)", k, ttl)
		}
		for _, v := range dumpValues(t, rdb, k) {
			for _, s := range secrets {
				if s != "" && (strings.Contains(v, s) || strings.Contains(k, s)) {
					t.Errorf("key %q holds a raw secret", k)
				}
			}
		}
	}
}

// dumpValues returns every value stored under k, whatever its type.
func dumpValues(t testing.TB, rdb redis.UniversalClient, k string) []string {
	ctx := context.Background()
	switch typ, _ := rdb.Type(ctx, k).Result(); typ {
	case "string":
		v, _ := rdb.Get(ctx, k).Result()
		return []string{v}
	case "hash":
		m, _ := rdb.HGetAll(ctx, k).Result()
		var out []string
		for f, v := range m {
			out = append(out, f, v)
		}
		return out
	case "set":
		v, _ := rdb.SMembers(ctx, k).Result()
		return v
	case "zset":
		v, _ := rdb.ZRange(ctx, k, 0, -1).Result()
		return v
	case "none":
		return nil // expired since it was listed
	default:
		t.Errorf("key %q of unexpected type %q", k, typ)
		return nil
	}
}

// roundTrips counts what a client sends to Redis: each command or pipeline
// is one round trip; with only set, just the commands of that name.
type roundTrips struct {
	only string // e.g. "ping"; "" counts everything
	n    atomic.Int64
}

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.only == "" || cmd.Name() == h.only {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.only == "" {
			h.n.Add(1)
		}
		return next(ctx, cmds)
	}
}

// TestExchangeRoundTrips: the rate limit, the redemption and the new handle
// are all /auth/exchange asks of Redis.
func TestExchangeRoundTrips(t *testing.T) {
	t.Parallel()
	rdb := storetest.Redis(t)
	hook := &roundTrips{}
	rdb.AddHook(hook)
	st := newStack(t, rdb)
	// The first exchange loads the scripts (EVALSHA, then EVAL once).
	st.exchange(t, st.signIn(t, "reader"), "")
	code := st.signIn(t, "reader")
	before := hook.n.Load()
	if r, _ := st.exchange(t, code, ""); r.status != 200 {
		t.Fatalf("exchange: %d %s", r.status, r.body)
	}
	if n := hook.n.Load() - before; n > 3 {
		t.Fatalf("/auth/exchange made %d Redis round trips, want at most 3", n)
	} else {
		t.Logf("/auth/exchange: %d Redis round trips", n)
	}
}

// BenchmarkExchange measures /auth/exchange over loopback HTTP against the
// test Redis (a real one in CI). Codes are minted by real sign-ins before
// the timer starts.
func BenchmarkExchange(b *testing.B) {
	st := newStack(b, storetest.Redis(b))
	codes := make([]string, b.N)
	for i := range codes {
		codes[i] = st.signIn(b, "reader")
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		status, tk := st.postNoFatal(fmt.Sprintf("198.51.%d.%d", i/250%250, i%250), "/auth/exchange", map[string]string{"auth_code": codes[i]})
		if status != 200 || tk.AccessToken == "" {
			b.Fatalf("exchange: %d", status)
		}
	}
}

// TestKeyRolloverDuringSignIn: a key Entra publishes after the instance
// loaded its keys works at once; a second new key within the refresh
// interval gets a callback page that names the real cause.
func TestKeyRolloverDuringSignIn(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Redis(t))
	st.signIn(t, "reader") // keys loaded
	if _, err := st.idp.RotateKey(); err != nil {
		t.Fatal(err)
	}
	code := st.signIn(t, "reader")
	if r, _ := st.exchange(t, code, ""); r.status != 200 {
		t.Fatalf("exchange after a key rollover: %d %s", r.status, r.body)
	}
	if _, err := st.idp.RotateKey(); err != nil {
		t.Fatal(err)
	}
	c := browser(t)
	r := get(t, c, st.startLogin(t, c, "reader", ""))
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "a key this server has not loaded yet") {
		t.Fatalf("callback signed with a key not loaded yet: %d %s", r.status, r.body)
	}
}
