package oauthclients_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/oauthclients"
	"github.com/entra-mcp/functions-mcp/handler/oautherr"
	"github.com/entra-mcp/functions-mcp/handler/outage"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
)

func newRegistry(t *testing.T, rdb redis.UniversalClient, opts oauthclients.Options) *oauthclients.Registry {
	t.Helper()
	opts.Redis = rdb
	r, err := oauthclients.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// wantCode checks that err is an *oautherr.Error with the code.
func wantCode(t *testing.T, what string, err error, code string) *oautherr.Error {
	t.Helper()
	var e *oautherr.Error
	if !errors.As(err, &e) {
		t.Errorf("%s: error %v; want an *oautherr.Error with code %s", what, err, code)
		return nil
	}
	if e.Code != code {
		t.Errorf("%s: code %s (%s); want %s", what, e.Code, e.Description, code)
	}
	if e.Description == "" {
		t.Errorf("%s: no description", what)
	}
	return e
}

func TestRegisterStoresAndLooksUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := storetest.Redis(t)
	issued := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	r := newRegistry(t, rdb, oauthclients.Options{Now: func() time.Time { return issued }})

	c, err := r.Register(ctx, []byte(`{
		"client_name": "  Inspector  ",
		"client_uri": "https://inspector.example/about",
		"logo_uri": "https://inspector.example/logo.png",
		"redirect_uris": ["http://127.0.0.1/callback", "http://localhost:6274/oauth/callback",
			"http://[::1]/cb", "https://app.example/cb?x=1", "com.example.app:/oauth", "http://127.0.0.1/callback"],
		"grant_types": ["authorization_code", "refresh_token"],
		"response_types": ["code"],
		"token_endpoint_auth_method": "none",
		"scope": "anything",
		"software_id": "ignored"
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.ClientID) < 22 || strings.Trim(c.ClientID, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != "" {
		t.Errorf("client_id %q is not a ≥128-bit URL-safe random value", c.ClientID)
	}
	want := oauthclients.Client{
		ClientID: c.ClientID, ClientIDIssuedAt: issued.Unix(), ClientName: "Inspector",
		ClientURI: "https://inspector.example/about", LogoURI: "https://inspector.example/logo.png",
		RedirectURIs: []string{"http://127.0.0.1/callback", "http://localhost:6274/oauth/callback",
			"http://[::1]/cb", "https://app.example/cb?x=1", "com.example.app:/oauth"},
		GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"},
		TokenEndpointAuthMethod: "none", Source: oauthclients.SourceRegistered,
	}
	if !equalClients(c, want) {
		t.Errorf("registered\n %+v\nwant\n %+v", c, want)
	}

	// The registration response is the Client's JSON: RFC 7591 names, no Source.
	out, _ := json.Marshal(c)
	var resp map[string]any
	json.Unmarshal(out, &resp)
	for _, k := range []string{"client_id", "client_id_issued_at", "redirect_uris", "grant_types", "response_types", "token_endpoint_auth_method", "client_name"} {
		if _, ok := resp[k]; !ok {
			t.Errorf("registration response lacks %s: %s", k, out)
		}
	}
	if _, ok := resp["client_secret"]; ok || strings.Contains(string(out), "registered") {
		t.Errorf("registration response has a secret or the source: %s", out)
	}

	// Unused, it is pending: in the budget, for a day at most. A lookup
	// does not extend that; only a completed sign-in (Confirm) does.
	key := "oauthclient:" + c.ClientID
	if wantPending(t, "registered", rdb, c.ClientID, true); rdb.Exists(ctx, key).Val() != 0 {
		t.Errorf("an unused registration is at %s", key)
	}
	for _, k := range []string{oauthclients.PendingKey, oauthclients.PendingOrderKey} {
		if ttl := rdb.TTL(ctx, k).Val(); ttl < oauthclients.DefaultUnusedTTL-time.Minute || ttl > oauthclients.DefaultUnusedTTL {
			t.Errorf("TTL of %s %v; want about %v", k, ttl, oauthclients.DefaultUnusedTTL)
		}
	}
	got, err := r.Lookup(ctx, c.ClientID, "requester")
	if err != nil {
		t.Fatal(err)
	}
	if !equalClients(got, want) {
		t.Errorf("looked up\n %+v\nwant\n %+v", got, want)
	}
	if err := r.Confirm(ctx, got, testUser); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.TTL(ctx, key).Val(); ttl < oauthclients.DefaultRegistrationTTL-time.Minute {
		t.Errorf("TTL after Confirm %v; want about %v", ttl, oauthclients.DefaultRegistrationTTL)
	}
	wantPending(t, "confirmed", rdb, c.ClientID, false)

	// Once used, a lookup keeps it alive.
	rdb.Expire(ctx, key, 30*time.Hour)
	got, err = r.Lookup(ctx, c.ClientID, "requester")
	if err != nil || !equalClients(got, want) {
		t.Fatalf("lookup of a confirmed client: %+v, %v", got, err)
	}
	if ttl := rdb.TTL(ctx, key).Val(); ttl < oauthclients.DefaultRegistrationTTL-time.Minute {
		t.Errorf("TTL after lookup %v; want refreshed to about %v", ttl, oauthclients.DefaultRegistrationTTL)
	}
	doc := oauthclients.Client{ClientID: "https://app.example/client.json", Source: oauthclients.SourceMetadataDocument}
	if err := r.Confirm(ctx, doc, testUser); err != nil {
		t.Errorf("Confirm of a document client: %v", err)
	}
	if keys := rdb.Keys(ctx, "*").Val(); !sameKeys(keys, key, oauthclients.UserKeyPrefix+testUser) {
		t.Errorf("keys %v; want only the confirmed client's and the user's count of them", keys)
	}
}

// sameKeys reports whether got holds exactly want, in any order.
func sameKeys(got []string, want ...string) bool {
	slices.Sort(got)
	slices.Sort(want)
	return slices.Equal(got, want)
}

func TestRegisterDefaultsAndTTL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := storetest.Redis(t)
	r := newRegistry(t, rdb, oauthclients.Options{RegistrationTTL: 2 * time.Hour, UnusedRegistrationTTL: time.Hour, ExtraRedirectSchemes: []string{"cursor"}})
	c, err := r.Register(ctx, []byte(`{"redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback"],"client_name":null}`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.GrantTypes, " ") != "authorization_code" || strings.Join(c.ResponseTypes, " ") != "code" || c.TokenEndpointAuthMethod != "none" {
		t.Errorf("defaults: %+v; want grant_types [authorization_code], response_types [code], auth method none", c)
	}
	if c.AllowsGrant("refresh_token") || !c.AllowsGrant("authorization_code") {
		t.Errorf("AllowsGrant wrong for %v", c.GrantTypes)
	}
	if ttl := rdb.TTL(ctx, oauthclients.PendingKey).Val(); ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("TTL %v; want the configured hour", ttl)
	}
	got, err := r.Lookup(ctx, c.ClientID, "requester")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Confirm(ctx, got, testUser); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.TTL(ctx, "oauthclient:"+c.ClientID).Val(); ttl <= 119*time.Minute || ttl > 2*time.Hour {
		t.Errorf("TTL after Confirm %v; want the configured two hours", ttl)
	}
}

// TestRegisterClientNameOptional: RFC 7591 makes client_name optional, and
// MCP requires it only in metadata documents (TestDocumentClientName), so a
// registration without one, or with one of only white space, is accepted
// without a name (the consent page then says the client is unnamed).
func TestRegisterClientNameOptional(t *testing.T) {
	t.Parallel()
	r := newRegistry(t, storetest.Redis(t), oauthclients.Options{})
	for name, body := range map[string]string{
		"a registration without client_name is accepted":      `{"redirect_uris":["http://127.0.0.1/cb"]}`,
		"a registration with a blank client_name is accepted": `{"redirect_uris":["http://127.0.0.1/cb"],"client_name":" \t "}`,
		"a registration with a null client_name is accepted":  `{"redirect_uris":["http://127.0.0.1/cb"],"client_name":null}`,
	} {
		t.Run(name, func(t *testing.T) {
			c, err := r.Register(context.Background(), []byte(body))
			if err != nil || c.ClientName != "" {
				t.Errorf("%+v, %v; want registered without a name", c, err)
			}
		})
	}
}

func TestRegisterRefuses(t *testing.T) {
	t.Parallel()
	rdb := storetest.Redis(t)
	r := newRegistry(t, rdb, oauthclients.Options{})
	const (
		redirect = oautherr.InvalidRedirectURI
		metadata = oautherr.InvalidClientMetadata
	)
	withURI := func(u string) string { return `{"redirect_uris":[` + jsonString(u) + `]}` }
	withField := func(field string) string { return `{"redirect_uris":["https://app.example/cb"],` + field + `}` }
	many := make([]string, oauthclients.MaxRedirectURIs+1)
	for i := range many {
		many[i] = jsonString("https://app.example/cb" + strings.Repeat("x", i))
	}
	cases := []struct {
		name, body, code string
	}{
		{"not JSON", `redirect_uris=https://app.example/cb`, metadata},
		{"array", `[]`, metadata},
		{"null", `null`, metadata},
		{"trailing data", withField(`"x":1`) + `{}`, metadata},
		{"too large", withField(`"padding":"` + strings.Repeat("a", oauthclients.MaxRegistrationBytes) + `"`), metadata},
		{"no redirect_uris", `{"client_name":"x"}`, redirect},
		{"empty redirect_uris", `{"redirect_uris":[]}`, redirect},
		{"redirect_uris a string", `{"redirect_uris":"https://app.example/cb"}`, redirect},
		{"redirect_uris numbers", `{"redirect_uris":[1]}`, redirect},
		{"too many redirect_uris", `{"redirect_uris":[` + strings.Join(many, ",") + `]}`, redirect},
		{"http to a public host", withURI("http://app.example/cb"), redirect},
		{"http to another loopback address", withURI("http://127.0.0.2/cb"), redirect},
		{"http to a private address", withURI("http://10.0.0.1/cb"), redirect},
		{"fragment", withURI("https://app.example/cb#frag"), redirect},
		{"empty fragment", withURI("https://app.example/cb#"), redirect},
		{"userinfo", withURI("https://user:pw@app.example/cb"), redirect},
		{"loopback userinfo", withURI("http://user@127.0.0.1/cb"), redirect},
		{"relative", withURI("/cb"), redirect},
		{"no host", withURI("https:///cb"), redirect},
		{"opaque https", withURI("https:app.example"), redirect},
		{"javascript", withURI("javascript:alert(1)"), redirect},
		{"data", withURI("data:text/html,hi"), redirect},
		{"scheme without a dot", withURI("myapp:/cb"), redirect},
		{"non-ASCII", withURI("https://exämple.com/cb"), redirect},
		{"space", withURI("https://app.example/c b"), redirect},
		{"too long", withURI("https://app.example/" + strings.Repeat("a", oauthclients.MaxURILength)), redirect},
		{"client secret auth", withField(`"token_endpoint_auth_method":"client_secret_basic"`), metadata},
		{"private_key_jwt", withField(`"token_endpoint_auth_method":"private_key_jwt"`), metadata},
		{"auth method not a string", withField(`"token_endpoint_auth_method":true`), metadata},
		{"client_credentials", withField(`"grant_types":["authorization_code","client_credentials"]`), metadata},
		{"implicit", withField(`"grant_types":["implicit"]`), metadata},
		{"refresh_token alone", withField(`"grant_types":["refresh_token"]`), metadata},
		{"empty grant_types", withField(`"grant_types":[]`), metadata},
		{"grant_types a string", withField(`"grant_types":"authorization_code"`), metadata},
		{"token response", withField(`"response_types":["code","token"]`), metadata},
		{"empty response_types", withField(`"response_types":[]`), metadata},
		{"long client_name", withField(`"client_name":"` + strings.Repeat("n", oauthclients.MaxClientName+1) + `"`), metadata},
		{"bidi override in client_name", withField(`"client_name":"Good\u202eliv"`), metadata},
		{"zero-width in client_name", withField(`"client_name":"Cl\u200baude"`), metadata},
		{"newline in client_name", withField(`"client_name":"a\nb"`), metadata},
		{"client_name a number", withField(`"client_name":5`), metadata},
		{"http client_uri", withField(`"client_uri":"http://app.example"`), metadata},
		{"client_uri userinfo", withField(`"client_uri":"https://bank.example@evil.example/"`), metadata},
		{"data logo_uri", withField(`"logo_uri":"data:image/png;base64,AAAA"`), metadata},
		{"relative logo_uri", withField(`"logo_uri":"/logo.png"`), metadata},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Register(context.Background(), []byte(tc.body))
			wantCode(t, tc.name, err, tc.code)
		})
	}
	if n := rdb.DBSize(context.Background()).Val(); n != 0 {
		t.Errorf("refused registrations left %d keys", n)
	}
}

func TestLookupUnknown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRegistry(t, storetest.Redis(t), oauthclients.Options{})
	for _, id := range []string{"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "", "not-ours", strings.Repeat("A", 27)} {
		_, err := r.Lookup(ctx, id, "requester")
		wantCode(t, "client_id "+id, err, oautherr.InvalidClient)
	}

	// Malformed ids are refused without asking Redis (which here is down).
	down := newRegistry(t, storetest.Down(t), oauthclients.Options{})
	for _, id := range []string{"oauthclient:x", "../../x", "abc"} {
		_, err := down.Lookup(ctx, id, "requester")
		wantCode(t, "malformed client_id "+id, err, oautherr.InvalidClient)
	}
}

func TestRedisDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRegistry(t, storetest.Down(t), oauthclients.Options{})
	if _, err := r.Register(ctx, []byte(`{"redirect_uris":["https://app.example/cb"]}`)); !errors.Is(err, outage.ErrUnavailable) {
		t.Errorf("Register with Redis down: %v; want ErrUnavailable", err)
	}
	if _, err := r.Lookup(ctx, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "requester"); !errors.Is(err, outage.ErrUnavailable) {
		t.Errorf("Lookup with Redis down: %v; want ErrUnavailable", err)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	t.Parallel()
	rdb := storetest.Mini(t)
	for name, opts := range map[string]oauthclients.Options{
		"no Redis":           {},
		"negative TTL":       {Redis: rdb, RegistrationTTL: -time.Second},
		"negative size":      {Redis: rdb, MaxDocumentBytes: -1},
		"negative budget":    {Redis: rdb, MaxPendingRegistrations: -1},
		"negative timeout":   {Redis: rdb, HeaderTimeout: -time.Second},
		"scheme with colon":  {Redis: rdb, ExtraRedirectSchemes: []string{"cursor:"}},
		"upper-case scheme":  {Redis: rdb, ExtraRedirectSchemes: []string{"Cursor"}},
		"http as extra":      {Redis: rdb, ExtraRedirectSchemes: []string{"http"}},
		"empty extra scheme": {Redis: rdb, ExtraRedirectSchemes: []string{""}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := oauthclients.New(opts); err == nil {
				t.Errorf("%s: New accepted it", name)
			}
		})
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func equalClients(a, b oauthclients.Client) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y) && a.Source == b.Source
}

func TestRegisterStoresLittle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := storetest.Redis(t)
	r := newRegistry(t, rdb, oauthclients.Options{})
	var uris []string
	for i := range 10 {
		uris = append(uris, fmt.Sprintf("https://app.example/%s/%d", strings.Repeat("p", 400), i))
	}
	body, _ := json.Marshal(map[string]any{"redirect_uris": uris})
	_, err := r.Register(ctx, body)
	wantCode(t, "metadata over the stored cap", err, oautherr.InvalidClientMetadata)
	if n := rdb.DBSize(ctx).Val(); n != 0 {
		t.Errorf("%d keys stored after a refused registration", n)
	}
}
