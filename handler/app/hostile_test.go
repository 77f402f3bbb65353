package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
	"github.com/entra-mcp/functions-mcp/handler/store"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
)

// Hostile traffic, against the whole handler and a real Redis: what
// anonymous floods leave in Redis, a Redis with no room to spare, a Redis
// that stalls in the middle of refreshes, and revocations racing the
// sign-ins, exchanges and refreshes they must end.

// noRedirects is an HTTP client that returns every answer as it is.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// flood sends n requests, 16 at a time, and counts the answers by status.
// request builds the i-th request.
func flood(t testing.TB, n int, request func(i int) *http.Request) map[int]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[int]int{}
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				resp, err := noRedirects.Do(request(i))
				status := 0
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				mu.Lock()
				counts[status]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return counts
}

// from is a GET of u as if from addr (the Functions host's X-Forwarded-For).
func from(addr, u string, hdr ...string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("X-Forwarded-For", addr)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return req
}

// postFrom is a POST of a JSON body to u as if from addr.
func postFrom(addr, u, contentType, body string) *http.Request {
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	req.Header.Set("X-Forwarded-For", addr)
	req.Header.Set("Content-Type", contentType)
	return req
}

// footprint is what Redis holds, apart from rate-limit buckets: key names
// and the bytes of names and values. Rate-limit buckets are counted apart:
// one per address and limit, each gone once its bucket is full again.
type footprint struct {
	keys        map[string]int // key -> bytes
	bytes       int
	buckets     int
	bucketBytes int
}

func measure(t testing.TB, rdb redis.UniversalClient) footprint {
	t.Helper()
	ctx := context.Background()
	names, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	f := footprint{keys: map[string]int{}}
	for _, k := range names {
		n := len(k)
		for _, v := range dumpValues(t, rdb, k) {
			n += len(v)
		}
		if strings.HasPrefix(k, "rl:") {
			f.buckets++
			f.bucketBytes += n
			continue
		}
		f.keys[k] = n
		f.bytes += n
	}
	return f
}

// grew lists what after holds that before did not, or holds more of.
func grew(before, after footprint) []string {
	var out []string
	for k, n := range after.keys {
		if n > before.keys[k] {
			out = append(out, fmt.Sprintf("%s (+%d bytes)", k, n-before.keys[k]))
		}
	}
	sort.Strings(out)
	return out
}

// TestAnonymousFloodsStoreNothing: floods of the anonymous routes from one
// address, and from many, leave nothing in Redis but short-lived rate-limit
// buckets (one per address and limit), and another address signs in
// throughout. A redis-server of the test's own: the buckets' expiry is a
// real Redis's.
func TestAnonymousFloodsStoreNothing(t *testing.T) {
	t.Parallel()
	const n = 1500
	check := func(t *testing.T, st *stack, rdb redis.UniversalClient, before footprint, counts map[int]int) {
		t.Helper()
		after := measure(t, rdb)
		if g := grew(before, after); len(g) > 0 {
			t.Errorf("the flood stored: %v", g)
		}
		t.Logf("%d requests: answers %v; Redis bytes per request %.2f (outside rate-limit buckets); %d buckets, %d bytes",
			n, counts, float64(after.bytes-before.bytes)/n, after.buckets, after.bucketBytes)
		if code := st.signIn(t, "reader"); code == "" {
			t.Error("another address could not sign in")
		}
	}

	t.Run("login from one address", func(t *testing.T) {
		rdb := storetest.Server(t)
		st := newStack(t, rdb)
		before := measure(t, rdb)
		counts := flood(t, n, func(int) *http.Request { return from("203.0.113.50", st.base+"/auth/login") })
		if counts[http.StatusFound] > signInBurst+5 || counts[http.StatusTooManyRequests] < n-signInBurst-5 {
			t.Errorf("answers %v: want about %d sign-ins started, the rest 429", counts, signInBurst)
		}
		if f := measure(t, rdb); f.buckets != 1 {
			t.Errorf("%d rate-limit buckets for one address, want 1", f.buckets)
		}
		check(t, st, rdb, before, counts)
	})

	t.Run("login from many addresses", func(t *testing.T) {
		rdb := storetest.Server(t)
		st := newStack(t, rdb)
		before := measure(t, rdb)
		counts := flood(t, n, func(i int) *http.Request {
			return from(fmt.Sprintf("2001:db8:%x::1", i), st.base+"/auth/login")
		})
		if counts[http.StatusFound] != n {
			t.Errorf("answers %v: every address may start a sign-in", counts)
		}
		// Each bucket lives until it is full again: the flood's, one
		// request's worth. Their expiry says so (Redis drops them then),
		// without waiting it out; on a slow machine the first may be gone
		// already. No bucket of any limit is kept for good.
		buckets, err := rdb.Keys(context.Background(), "rl:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(buckets) == 0 { // only if this read came 2 s after the last request
			t.Log("every bucket had expired before it could be read")
		}
		for _, k := range buckets {
			ms, err := rdb.Do(context.Background(), "PTTL", k).Int64()
			switch {
			case err != nil:
				t.Fatal(err)
			case ms == -2: // expired since KEYS
			case ms < 0 || strings.HasPrefix(k, "rl:signin:") && time.Duration(ms)*time.Millisecond > time.Minute/signInRate:
				t.Errorf("bucket %s expires in %d ms, want within one request's refill (%v)", k, ms, time.Minute/signInRate)
			}
		}
		check(t, st, rdb, before, counts)
	})

	t.Run("consent pages", func(t *testing.T) {
		rdb := storetest.Server(t)
		st := newStack(t, rdb)
		id := st.register(t, "Flood", clientRedirect)
		before := measure(t, rdb)
		a := st.newAuthRequest(t, id)
		counts := flood(t, n, func(int) *http.Request { return from("203.0.113.51", a.url(st.base)) })
		if counts[http.StatusOK] > signInBurst+5 || counts[http.StatusTooManyRequests] < n-signInBurst-5 {
			t.Errorf("answers %v: want about %d consent pages, the rest 429", counts, signInBurst)
		}
		check(t, st, rdb, before, counts)
	})

	t.Run("remembered consent", func(t *testing.T) {
		rdb := storetest.Server(t)
		st := newStack(t, rdb)
		id := st.register(t, "Flood", clientRedirect)
		c := browserAt(t, "203.0.113.52")
		a := st.newAuthRequest(t, id)
		st.authorize(t, c, a, "all") // approved and remembered in c
		u, _ := url.Parse(st.base)
		var cookies []string
		for _, ck := range c.Jar.Cookies(u) {
			cookies = append(cookies, ck.Name+"="+ck.Value)
		}
		before := measure(t, rdb)
		counts := flood(t, n, func(int) *http.Request {
			return from("203.0.113.52", a.url(st.base), "Cookie", strings.Join(cookies, "; "))
		})
		if counts[http.StatusFound] > signInBurst+5 || counts[http.StatusTooManyRequests] < n-signInBurst-5 {
			t.Errorf("answers %v: want about %d sign-ins started, the rest 429", counts, signInBurst)
		}
		check(t, st, rdb, before, counts)
	})

	t.Run("callbacks with made-up codes", func(t *testing.T) {
		rdb := storetest.Server(t)
		st, entra := newTappedStack(t, rdb, nil)
		// One real sign-in in progress: its state and cookie, replayed with
		// codes the attacker makes up.
		login := get(t, browserAt(t, "203.0.113.53"), st.base+"/auth/login")
		loc, _ := url.Parse(login.header.Get("Location"))
		state := loc.Query().Get("state")
		cookie := strings.SplitN(login.header.Get("Set-Cookie"), ";", 2)[0]
		before := measure(t, rdb)
		tokensBefore := entra.tokens.Load()
		counts := flood(t, n, func(i int) *http.Request {
			q := url.Values{"state": {state}, "code": {fmt.Sprint("made-up-", i)}}
			return from("203.0.113.53", st.base+"/auth/callback?"+q.Encode(), "Cookie", cookie)
		})
		sent := entra.tokens.Load() - tokensBefore
		t.Logf("%d made-up codes reached Entra", sent)
		if sent > callbackBurst+2 {
			t.Errorf("%d made-up codes reached Entra, want at most the callback burst (%d)", sent, callbackBurst)
		}
		check(t, st, rdb, before, counts)
	})
}

// TestTinyRedisSurvivesAnonymousFloods: a Redis of the test's own with
// 16 MB and noeviction (what infra/ deploys, only smaller) takes every
// anonymous flood, registrations at their budget included, and a second
// user still does everything: sign in, exchange, refresh, call tools,
// register an OAuth client and get its tokens.
func TestTinyRedisSurvivesAnonymousFloods(t *testing.T) {
	t.Parallel()
	const maxMemory = 16 << 20
	rdb := storetest.Server(t, "--maxmemory", fmt.Sprint(maxMemory), "--maxmemory-policy", "noeviction")
	st := newStack(t, rdb)
	ctx := context.Background()
	usedMemory := func() int64 {
		info := rdb.InfoMap(ctx, "memory").Val()["Memory"]
		var n int64
		fmt.Sscan(info["used_memory"], &n)
		return n
	}
	start := usedMemory()

	// Registrations of the largest size accepted, 20 an hour from each of
	// 110 /48s: past the budget of unused registrations, which evicts the
	// oldest.
	bigRegistration := func(i int) string {
		var uris []string
		for j := range 10 {
			uris = append(uris, fmt.Sprintf("https://squat%d.example/%d/%s", i, j, strings.Repeat("a", 340)))
		}
		b, _ := json.Marshal(map[string]any{"client_name": strings.Repeat("n", 100), "redirect_uris": uris,
			"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none"})
		return string(b)
	}
	handle := "0123456789abcdef." + strings.Repeat("A", 26) + "." + strings.Repeat("B", 26)
	floods := map[string]struct {
		n       int
		request func(i int) *http.Request
	}{
		"login from one address": {1000, func(int) *http.Request { return from("203.0.113.60", st.base+"/auth/login") }},
		"login from many": {3000, func(i int) *http.Request {
			return from(fmt.Sprintf("2001:db8:%x::1", i), st.base+"/auth/login")
		}},
		"refresh with made-up handles": {1000, func(i int) *http.Request {
			return postFrom(fmt.Sprintf("198.18.1.%d", i%200), st.base+"/auth/refresh", "application/json", `{"refresh_token":"`+handle+`"}`)
		}},
		"registrations": {2200, func(i int) *http.Request {
			return postFrom(fmt.Sprintf("2001:db8:1%02x::%x", i/20, i%20+1), st.base+"/oauth/register", "application/json", bigRegistration(i))
		}},
	}
	// One flood after another, in the same order every run: each meets
	// what the earlier ones left in Redis.
	names := make([]string, 0, len(floods))
	for name := range floods {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f := floods[name]
		t.Run(name, func(t *testing.T) {
			counts := flood(t, f.n, f.request)
			t.Logf("%s: %d requests, answers %v, used_memory %d KiB", name, f.n, counts, usedMemory()/1024)
			if counts[http.StatusServiceUnavailable] > 0 || counts[0] > 0 {
				t.Errorf("%s: %d answers 503, %d failed", name, counts[http.StatusServiceUnavailable], counts[0])
			}
		})
	}
	if used := usedMemory(); used > maxMemory*3/4 {
		t.Errorf("used_memory %d of %d after the floods", used, maxMemory)
	}
	t.Logf("used_memory: %d KiB before the floods, %d KiB after (maxmemory %d KiB)", start/1024, usedMemory()/1024, maxMemory/1024)

	// The second user.
	_, tk := st.exchange(t, st.signIn(t, "all"), "")
	if tk.AccessToken == "" {
		t.Fatal("exchange failed after the floods")
	}
	r, tk2 := st.refresh(t, tk.RefreshToken)
	if r.status != 200 {
		t.Fatalf("refresh after the floods: %d %s", r.status, r.body)
	}
	res := st.rpc(t, tk2.AccessToken, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_task","arguments":{"title":"after the flood"}}}`)
	if text, isErr := callText(t, res); isErr {
		t.Fatalf("create_task after the floods: %s", text)
	}
	id := st.register(t, "After the flood", clientRedirect)
	a := st.newAuthRequest(t, id)
	got := st.authorize(t, browser(t), a, "all")
	if r, tk := st.redeem(t, a, got.Get("code")); r.status != 200 || tk.RefreshToken == "" {
		t.Fatalf("OAuth client after the floods: %d %s", r.status, r.body)
	}
}

// TestRefreshesSurviveRedisStall: Redis stops answering for longer than the
// client's timeout, twice, while twelve sessions refresh in a loop. Writes
// whose replies are lost still happen (the stalling proxy holds replies,
// not requests); every client that got a 503 retries with the handle it
// has. No session may end.
func TestRefreshesSurviveRedisStall(t *testing.T) {
	t.Parallel()
	base := storetest.Redis(t)
	proxy := testkit.NewProxy(t, base.Options().Addr)
	opts := *base.Options()
	opts.Addr = proxy.Addr()
	// As store.Options sets them, scaled down: a 250 ms read timeout and
	// stalls of 750 ms are a 3 s timeout and 9 s stalls, only faster.
	opts.ReadTimeout, opts.WriteTimeout, opts.DialTimeout, opts.PoolTimeout = 250*time.Millisecond, 250*time.Millisecond, 500*time.Millisecond, 500*time.Millisecond
	opts.MaxRetries, opts.ContextTimeoutEnabled = -1, true
	rdb := redis.NewClient(&opts)
	t.Cleanup(func() { rdb.Close() })
	// One-minute access tokens: MSAL refreshes with Entra and writes the
	// user's cache on every refresh.
	st := newStackWith(t, rdb, func(_ *config.Config, o *devidp.Options) { o.AccessTokenLifetime = time.Minute })

	users := []string{"reader", "writer", "all", "admin"}
	handles := make([]string, 12)
	for i := range handles {
		_, tk := st.exchange(t, st.signIn(t, users[i%len(users)]), "")
		handles[i] = tk.RefreshToken
	}
	var refreshed, unavailable, ended atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range handles {
		wg.Go(func() {
			addr := fmt.Sprintf("198.51.100.%d", 10+i)
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				status, tk := st.refreshNoFatal(addr, handles[i])
				switch status {
				case http.StatusOK:
					handles[i] = tk.RefreshToken
					refreshed.Add(1)
				case http.StatusServiceUnavailable, 0:
					unavailable.Add(1) // retry with the same handle
				case http.StatusBadRequest:
					ended.Add(1)
					return
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	proxy.Stall(750 * time.Millisecond)
	time.Sleep(1250 * time.Millisecond)
	proxy.Stall(750 * time.Millisecond)
	time.Sleep(1250 * time.Millisecond)
	close(stop)
	wg.Wait()

	// Every session still refreshes. A 503 says to retry with the same
	// handle, and under load (-race, a busy machine) one can still come
	// from the 250 ms timeouts after the stalls: retried, as a client would.
	for i, h := range handles {
		r, _ := st.refresh(t, h)
		for try := 0; try < 5 && r.status == http.StatusServiceUnavailable; try++ {
			time.Sleep(200 * time.Millisecond)
			r, _ = st.refresh(t, h)
		}
		if r.status != http.StatusOK {
			ended.Add(1)
			t.Errorf("session %d after the stalls: %d %s", i, r.status, r.body)
		}
	}
	t.Logf("%d refreshes, %d answered 503 during two stalls, %d sessions of %d ended", refreshed.Load(), unavailable.Load(), ended.Load(), len(handles))
	if ended.Load() != 0 {
		t.Errorf("%d sessions ended", ended.Load())
	}
	if unavailable.Load() == 0 {
		t.Error("the stalls caught no refresh: the test tested nothing")
	}

	// Reuse is still reuse: a handle whose successor was used revokes its chain.
	_, next := st.refresh(t, handles[0])
	_, newest := st.refresh(t, next.RefreshToken)
	if r, _ := st.refresh(t, handles[0]); r.status != http.StatusBadRequest {
		t.Errorf("a handle reused after its successor was used: %d", r.status)
	}
	if r, _ := st.refresh(t, newest.RefreshToken); r.status != http.StatusBadRequest {
		t.Errorf("the chain after reuse: %d, want revoked", r.status)
	}
}

// TestRevokeSessionsRacesLeaveNothingAlive: revoke_sessions while the
// user's refreshes, code exchanges and sign-ins are under way (Entra
// answers slowly, so they are at Entra when the revocation runs), many
// times over. Afterwards nothing issued before or during it works, and
// Redis holds none of the user's tokens.
func TestRevokeSessionsRacesLeaveNothingAlive(t *testing.T) {
	t.Parallel()
	rdb := storetest.Redis(t)
	st, entra := newTappedStack(t, rdb, func(_ *config.Config, o *devidp.Options) { o.AccessTokenLifetime = time.Minute })
	reader, _ := devidp.DemoUser("reader")
	admin := st.token(t, "admin")
	obo := store.NewOBOTokens(rdb)
	oboSlot, err := obo.SlotFor(st.idp.TenantID(), reader.ObjectID, "test-scopes")
	if err != nil {
		t.Fatal(err)
	}
	name := oboSlot.SealName()
	tag := name[strings.Index(name, "{") : strings.Index(name, "}")+1]
	const trials = 15
	for trial := range trials {
		var handles, codes, pending []string
		var browsers []*http.Client
		for range 3 {
			_, tk := st.exchange(t, st.signIn(t, "reader"), "")
			handles = append(handles, tk.RefreshToken)
		}
		for range 2 {
			codes = append(codes, st.signIn(t, "reader"))
			c := browser(t)
			pending = append(pending, st.startLogin(t, c, "reader", ""))
			browsers = append(browsers, c)
		}
		// A token on behalf of the user, kept in Redis. (Put there through
		// the store: MSAL calls the stand-in's one-minute tokens expired, which
		// this test needs for refreshes to reach Entra; see
		// TestOBOTokenIssuedDuringRevocationIsNotKept for a real one.)
		_, ep, err := obo.Get(context.Background(), oboSlot)
		if err == nil {
			err = obo.Put(context.Background(), oboSlot, []byte("sealed token"), time.Hour, ep)
		}
		if err != nil {
			t.Fatal(err)
		}

		release := entra.hold(t)
		atEntra := entra.tokens.Load()
		var mu sync.Mutex
		var got []string // handles and codes the racing operations obtained
		keep := func(s string) {
			if s != "" {
				mu.Lock()
				got = append(got, s)
				mu.Unlock()
			}
		}
		var wg sync.WaitGroup
		for i, h := range handles {
			wg.Go(func() {
				_, tk := st.refreshNoFatal(fmt.Sprintf("198.51.100.%d", 20+i), h)
				keep(tk.RefreshToken)
			})
		}
		for i, c := range codes {
			wg.Go(func() {
				_, tk := st.exchangeNoFatal(fmt.Sprintf("198.51.100.%d", 30+i), c)
				keep(tk.RefreshToken)
			})
		}
		for i, cb := range pending {
			wg.Go(func() {
				resp, err := browsers[i].Get(cb)
				if err != nil {
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if m := codeRE.FindSubmatch(body); m != nil {
					keep(string(m[1]))
				}
			})
		}
		// Every racing operation has reached Entra (one token request
		// each), so none of them starts after the revocation: what they
		// obtain was issued before or during it.
		racing := int64(len(handles) + len(codes) + len(pending))
		testkit.WaitFor(t, "the racing operations to reach Entra", func() bool { return entra.tokens.Load()-atEntra >= racing })
		// Entra answers them after the revocation in even trials, and as
		// it starts in odd ones, so that answers land before, during and
		// after it.
		if trial%2 == 1 {
			go release()
		}
		text, isErr := callText(t, st.rpc(t, admin, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"revoke_sessions","arguments":{"oid":"`+reader.ObjectID+`"}}}`))
		if isErr {
			t.Fatalf("revoke_sessions: %s", text)
		}
		release()
		wg.Wait()

		// Checked from addresses of their own: each refusal counts against
		// its address's budget of refused requests.
		for i, s := range append(append(got, handles...), codes...) {
			addr := fmt.Sprintf("198.18.%d.%d", 100+trial, i)
			if strings.Count(s, ".") == 2 {
				if status, _ := st.refreshNoFatal(addr, s); status != http.StatusBadRequest {
					t.Fatalf("trial %d: a refresh token survived revoke_sessions: %d", trial, status)
				}
			} else if status, _ := st.exchangeNoFatal(addr, s); status != http.StatusBadRequest {
				t.Fatalf("trial %d: a one-time code survived revoke_sessions: %d", trial, status)
			}
		}
		for _, pattern := range []string{"msal:" + tag + "*", "rt:" + tag + "*", "obo:" + tag + "*"} {
			if left, _ := rdb.Keys(context.Background(), pattern).Result(); len(left) > 0 {
				t.Fatalf("trial %d: Redis still holds %v", trial, left)
			}
		}
	}
}

// loseReplies is a Redis client hook that lets chosen commands run and
// then loses their replies, as a read timeout does: the write happened, the
// caller gets a network timeout. Every nth matching command is hit.
type loseReplies struct {
	match func(redis.Cmder) bool
	every int64
	seen  atomic.Int64
	lost  atomic.Int64
}

func (h *loseReplies) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *loseReplies) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *loseReplies) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err == nil && h.match(cmd) && h.seen.Add(1)%h.every == 0 {
			h.lost.Add(1)
			lost := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
			cmd.SetErr(lost)
			return lost
		}
		return err
	}
}

// isRotation matches the script that moves a refresh chain on to its
// next handle (store's advanceScript): two keys, the first a chain, and
// five arguments, the second the successor's digest.
func isRotation(cmd redis.Cmder) bool {
	args := cmd.Args()
	if len(args) != 10 || (cmd.Name() != "evalsha" && cmd.Name() != "eval") {
		return false
	}
	first, _ := args[3].(string)
	next, _ := args[6].(string)
	return fmt.Sprint(args[2]) == "2" && strings.HasPrefix(first, "rt:") && len(next) == 64
}

// TestLostRotationRepliesEndNoSession: a third of all refresh-handle
// rotations lose their reply after rotating (the write happened). Every
// client retries with the handle it has, within the grace, and no session
// ends; /oauth/token refreshes the same way.
func TestLostRotationRepliesEndNoSession(t *testing.T) {
	t.Parallel()
	rdb := storetest.Redis(t)
	hook := &loseReplies{match: isRotation, every: 3}
	rdb.AddHook(hook)
	st := newStack(t, rdb)
	users := []string{"reader", "writer", "all", "admin"}
	handles := make([]string, 12)
	for i := range handles {
		_, tk := st.exchange(t, st.signIn(t, users[i%len(users)]), "")
		handles[i] = tk.RefreshToken
	}
	var unavailable, ended atomic.Int64
	var wg sync.WaitGroup
	for i := range handles {
		wg.Go(func() {
			addr := fmt.Sprintf("198.51.100.%d", 40+i)
			for done := 0; done < 10; {
				status, tk := st.refreshNoFatal(addr, handles[i])
				switch status {
				case http.StatusOK:
					handles[i] = tk.RefreshToken
					done++
				case http.StatusServiceUnavailable:
					unavailable.Add(1)
				default:
					ended.Add(1)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d rotations, %d replies lost, %d answered 503, %d sessions of %d ended",
		hook.seen.Load(), hook.lost.Load(), unavailable.Load(), ended.Load(), len(handles))
	if hook.lost.Load() < 20 {
		t.Fatalf("only %d replies lost: the test tested little", hook.lost.Load())
	}
	if ended.Load() != 0 {
		t.Errorf("%d sessions ended after lost replies", ended.Load())
	}

	// The OAuth token endpoint's refresh is the same rotation.
	id := st.register(t, "Retrying client", clientRedirect)
	a := st.newAuthRequest(t, id)
	got := st.authorize(t, browser(t), a, "all")
	_, tk := st.redeem(t, a, got.Get("code"))
	refreshToken := tk.RefreshToken
	for done, tries := 0, 0; done < 6; tries++ {
		if tries > 30 {
			t.Fatal("the OAuth client never got through")
		}
		r, next := st.refreshFor(t, id, refreshToken)
		switch r.status {
		case http.StatusOK:
			refreshToken = next.RefreshToken
			done++
		case http.StatusServiceUnavailable:
		default:
			t.Fatalf("OAuth refresh after a lost reply: %d %s", r.status, r.body)
		}
	}
}

// TestNeighbourJunkDoesNotLockOutGoodTokens: a client behind the same
// address (a NAT, an IPv6 /48) sending made-up codes and refresh tokens
// spends its address's budget of refused requests; a signed-in user's good
// refresh, code exchange and OAuth token request from that address still
// work.
func TestNeighbourJunkDoesNotLockOutGoodTokens(t *testing.T) {
	t.Parallel()
	st := newStack(t, storetest.Redis(t))
	const shared = "203.0.113.77"
	_, tk := st.exchange(t, st.signIn(t, "reader"), "")
	code := st.signIn(t, "writer")
	id := st.register(t, "Neighbour", clientRedirect)
	a := st.newAuthRequest(t, id)
	got := st.authorize(t, browser(t), a, "all")
	_, otk := st.redeem(t, a, got.Get("code"))

	junkHandle := "0123456789abcdef." + strings.Repeat("A", 26) + "." + strings.Repeat("B", 26)
	junkCode := "0123456789abcdef." + strings.Repeat("C", 43)
	counts := map[int]int{}
	for range 60 {
		s, _ := st.refreshNoFatal(shared, junkHandle)
		counts[s]++
		s, _ = st.exchangeNoFatal(shared, junkCode)
		counts[s]++
	}
	if counts[http.StatusTooManyRequests] == 0 {
		t.Fatalf("the neighbour's junk was never limited: %v", counts)
	}
	if s, _ := st.refreshNoFatal(shared, tk.RefreshToken); s != http.StatusOK {
		t.Errorf("a good refresh from the shared address: %d", s)
	}
	if s, _ := st.exchangeNoFatal(shared, code); s != http.StatusOK {
		t.Errorf("a good code exchange from the shared address: %d", s)
	}
	form := url.Values{"grant_type": {"refresh_token"}, "client_id": {id}, "refresh_token": {otk.RefreshToken}}
	if r := send(t, http.DefaultClient, postFrom(shared, st.base+"/oauth/token", "application/x-www-form-urlencoded", form.Encode())); r.status != http.StatusOK {
		t.Errorf("a good OAuth refresh from the shared address: %d %s", r.status, r.body)
	}
}

// TestOBOTokenIssuedDuringRevocationIsNotKept: my_profile is at Entra
// (slow) for an on-behalf-of token when revoke_sessions runs; the token it
// gets is not kept.
func TestOBOTokenIssuedDuringRevocationIsNotKept(t *testing.T) {
	t.Parallel()
	rdb := storetest.Redis(t)
	st, entra := newTappedStack(t, rdb, nil)
	reader, _ := devidp.DemoUser("reader")
	obo := store.NewOBOTokens(rdb)
	slot, err := obo.SlotFor(st.idp.TenantID(), reader.ObjectID, "x")
	if err != nil {
		t.Fatal(err)
	}
	name := slot.SealName()
	pattern := "obo:" + name[strings.Index(name, "{"):strings.Index(name, "}")+1] + "*"
	token := st.token(t, "reader")
	release := entra.hold(t)
	atEntra := entra.tokens.Load()
	done := make(chan string)
	go func() {
		r := st.do(t, http.MethodPost, "/mcp", token, nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"my_profile","arguments":{}}}`)
		done <- string(r.body)
	}()
	// The on-behalf-of request is at Entra (held there), so the
	// revocation runs while it is under way, not before it started.
	testkit.WaitFor(t, "the on-behalf-of request to reach Entra", func() bool { return entra.tokens.Load() > atEntra })
	if text, isErr := callText(t, st.rpc(t, st.token(t, "admin"), `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"revoke_sessions","arguments":{"oid":"`+reader.ObjectID+`"}}}`)); isErr {
		t.Fatalf("revoke_sessions: %s", text)
	}
	release() // Entra answers now, after the revocation
	if body := <-done; !strings.Contains(body, "Rita Reader") {
		t.Fatalf("my_profile: %s", body)
	}
	if left, _ := rdb.Keys(context.Background(), pattern).Result(); len(left) > 0 {
		t.Fatalf("an on-behalf-of token issued during revoke_sessions was kept: %v", left)
	}
	// Afterwards a new token is kept again.
	if text, isErr := callText(t, st.rpc(t, token, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"my_profile","arguments":{}}}`)); isErr {
		t.Fatalf("my_profile after: %s", text)
	}
	if left, _ := rdb.Keys(context.Background(), pattern).Result(); len(left) != 1 {
		t.Errorf("no on-behalf-of token kept after the revocation: %v", left)
	}
}
