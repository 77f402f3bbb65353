package azuretest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
	"github.com/entra-mcp/functions-mcp/handler/azuretest"
	"github.com/entra-mcp/functions-mcp/handler/internal/testkit"
)

func get(t *testing.T, c *http.Client, u string, header map[string]string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	a := testkit.Do(t, c, req)
	var m map[string]any
	if err := json.Unmarshal([]byte(a.Body), &m); err != nil {
		t.Fatalf("GET %s: %d, body %q is not JSON", u, a.Status, a.Body)
	}
	return a.Status, a.Header, m
}

func TestManagedIdentityProtocol(t *testing.T) {
	t.Parallel()
	ua := azuretest.NewIdentity()
	msi, err := azuretest.StartManagedIdentity(azuretest.ManagedIdentityOptions{UserAssigned: []azuretest.Identity{ua}})
	if err != nil {
		t.Fatal(err)
	}
	defer msi.Close()
	if !strings.HasPrefix(msi.Endpoint(), "http://127.0.0.1:") {
		t.Errorf("endpoint %s is not plain-http loopback", msi.Endpoint())
	}
	c := &http.Client{}
	q := url.Values{"resource": {"https://vault.azure.net"}, "api-version": {azuretest.MSIAPIVersion}}
	hdr := map[string]string{"X-IDENTITY-HEADER": msi.Header()}

	for name, c2 := range map[string]struct {
		q   url.Values
		hdr map[string]string
	}{
		"no header":      {q, nil},
		"wrong header":   {q, map[string]string{"X-IDENTITY-HEADER": "nope"}},
		"old version":    {url.Values{"resource": {"r"}, "api-version": {"2017-09-01"}}, hdr},
		"no resource":    {url.Values{"api-version": {azuretest.MSIAPIVersion}}, hdr},
		"unknown client": {url.Values{"resource": {"r"}, "api-version": {azuretest.MSIAPIVersion}, "client_id": {"x"}}, hdr},
	} {
		t.Run(name, func(t *testing.T) {
			if status, _, _ := get(t, c, msi.Endpoint()+"?"+c2.q.Encode(), c2.hdr); status != http.StatusBadRequest {
				t.Errorf("%s: status %d, want 400", name, status)
			}
		})
	}
	if msi.Refused() != 5 || len(msi.Requests()) != 0 {
		t.Errorf("refused %d, answered %d", msi.Refused(), len(msi.Requests()))
	}

	q.Set("client_id", ua.ClientID)
	status, _, body := get(t, c, msi.Endpoint()+"?"+q.Encode(), hdr)
	if status != 200 || body["token_type"] != "Bearer" || body["resource"] != "https://vault.azure.net" || body["client_id"] != ua.ClientID {
		t.Fatalf("token response %d %v", status, body)
	}
	expiresOn, _ := body["expires_on"].(string)
	if !regexp.MustCompile(`^\d{10}$`).MatchString(expiresOn) {
		t.Errorf("expires_on %q is not a string of Unix seconds", expiresOn)
	}
	tok, _ := body["access_token"].(string)
	claims, err := msi.Verify(tok, "https://vault.azure.net")
	if err != nil || claims.ObjectID != ua.ObjectID || claims.AppID != ua.ClientID {
		t.Errorf("claims %+v, %v", claims, err)
	}
	if _, err := msi.Verify(tok, "https://redis.azure.com"); err == nil {
		t.Error("Verify accepted the token for another resource")
	}

	msi.SetFailing(http.StatusInternalServerError)
	if status, _, _ := get(t, c, msi.Endpoint()+"?"+q.Encode(), hdr); status != 500 {
		t.Errorf("failing: status %d", status)
	}
}

func TestKeyVaultProtocol(t *testing.T) {
	t.Parallel()
	msi, err := azuretest.StartManagedIdentity(azuretest.ManagedIdentityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer msi.Close()
	kv, err := azuretest.StartKeyVault(azuretest.KeyVaultOptions{Name: "proto", PageSize: 2, Accept: msi.Accepts(azuretest.KeyVaultResource)})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	if kv.URL() != "https://proto.vault.azure.net" {
		t.Fatalf("URL %s", kv.URL())
	}
	c := kv.HTTPClient()
	v1 := kv.SetSecret("s", "one")
	v2 := kv.SetSecret("s", "two")
	v3 := kv.SetSecret("s", "three")
	kv.SetEnabled("s", v3, false)
	api := "?api-version=2026-04-01"

	// The challenge.
	status, h, body := get(t, c, kv.URL()+"/secrets/s/"+api, nil)
	want := `Bearer authorization="https://login.microsoftonline.com/` + azuretest.DefaultTenantID + `", resource="https://vault.azure.net"`
	if status != 401 || h.Get("WWW-Authenticate") != want {
		t.Errorf("unauthenticated: %d %q, want 401 %q", status, h.Get("WWW-Authenticate"), want)
	}
	if e, _ := body["error"].(map[string]any); e["code"] != "Unauthorized" {
		t.Errorf("401 body %v", body)
	}

	// The identity's token for the vault passes Accept.
	_, _, tb := get(t, &http.Client{}, msi.Endpoint()+"?resource=https://vault.azure.net&api-version="+azuretest.MSIAPIVersion,
		map[string]string{"X-IDENTITY-HEADER": msi.Header()})
	auth := map[string]string{"Authorization": "Bearer " + tb["access_token"].(string)}

	cases := []struct {
		path   string
		status int
		value  string
		code   string
	}{
		{"/secrets/s/" + api, 403, "", "Forbidden"}, // the latest version is disabled
		{"/secrets/s/" + v2 + api, 200, "two", ""},
		{"/secrets/s/" + v3 + api, 403, "", "Forbidden"},
		{"/secrets/nope" + api, 404, "", "SecretNotFound"},
		{"/secrets/s/" + v1, 400, "", "MissingApiVersionParameter"},
	}
	for _, c2 := range cases {
		t.Run(c2.path, func(t *testing.T) {
			status, _, body := get(t, c, kv.URL()+c2.path, auth)
			e, _ := body["error"].(map[string]any)
			if status != c2.status || (c2.value != "" && body["value"] != c2.value) || (c2.code != "" && e["code"] != c2.code) {
				t.Errorf("GET %s: %d %v", c2.path, status, body)
			}
		})
	}
	if _, _, body := get(t, c, kv.URL()+"/secrets/s/"+v2+api, auth); !strings.HasSuffix(body["id"].(string), "/secrets/s/"+v2) {
		t.Errorf("id %v", body["id"])
	}

	// Listing pages through nextLink and never includes values.
	var ids []string
	next := kv.URL() + "/secrets/s/versions" + api
	for pages := 0; next != ""; pages++ {
		if pages > 3 {
			t.Fatal("too many pages")
		}
		_, _, body := get(t, c, next, auth)
		for _, it := range body["value"].([]any) {
			item := it.(map[string]any)
			if _, ok := item["value"]; ok {
				t.Error("a list item holds a value")
			}
			ids = append(ids, item["id"].(string))
		}
		next, _ = body["nextLink"].(string)
	}
	if len(ids) != 3 {
		t.Errorf("listed %d versions, want 3", len(ids))
	}

	// Only the vault's host is reachable through its client.
	if _, err := c.Get("https://other.vault.azure.net/secrets/s" + api); err == nil || !strings.Contains(err.Error(), "only proto.vault.azure.net:443") {
		t.Errorf("dial elsewhere: %v", err)
	}

	kv.SetMode(azuretest.Unavailable)
	if status, _, _ := get(t, c, kv.URL()+"/secrets/s/"+v2+api, auth); status != 503 {
		t.Errorf("unavailable: %d", status)
	}
	kv.SetMode(azuretest.Closed)
	if _, err := c.Get(kv.URL() + "/secrets/s/" + v2 + api); err == nil {
		t.Error("closed: a request succeeded")
	}
	kv.SetMode(azuretest.Healthy)
	if n := kv.RequestCount(); n < 10 {
		t.Errorf("counted %d requests", n)
	}
}

// TestKeyVaultWithSDK drives the stand-in with azsecrets itself, challenge
// resource verification on, and a token credential that records what it
// was asked for.
func TestKeyVaultWithSDK(t *testing.T) {
	t.Parallel()
	msi, err := azuretest.StartManagedIdentity(azuretest.ManagedIdentityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer msi.Close()
	kv, err := azuretest.StartKeyVault(azuretest.KeyVaultOptions{Accept: msi.Accepts(azuretest.KeyVaultResource), PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	kv.SetSecret("a", "1")
	kv.SetSecret("a", "2")

	cred := &msiCred{t: t, msi: msi}
	client, err := azsecrets.NewClient(kv.URL(), cred, &azsecrets.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: kv.HTTPClient()}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.GetSecret(context.Background(), "a", "", nil)
	if err != nil || *resp.Value != "2" {
		t.Fatalf("GetSecret: %v", err)
	}
	if cred.scope != "https://vault.azure.net/.default" || cred.tenant != azuretest.DefaultTenantID {
		t.Errorf("credential asked for scope %q tenant %q", cred.scope, cred.tenant)
	}
	n := 0
	for pager := client.NewListSecretPropertiesVersionsPager("a", nil); pager.More(); {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.Value)
	}
	if n != 2 {
		t.Errorf("listed %d versions", n)
	}
}

// msiCred gets tokens from the MSI stand-in directly, so this package's
// tests need no process environment.
type msiCred struct {
	t             *testing.T
	msi           *azuretest.ManagedIdentity
	scope, tenant string
}

func (c *msiCred) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.scope, c.tenant = o.Scopes[0], o.TenantID
	_, _, body := get(c.t, &http.Client{}, c.msi.Endpoint()+"?resource="+url.QueryEscape(strings.TrimSuffix(o.Scopes[0], "/.default"))+
		"&api-version="+azuretest.MSIAPIVersion, map[string]string{"X-IDENTITY-HEADER": c.msi.Header()})
	return azcore.AccessToken{Token: body["access_token"].(string), ExpiresOn: time.Now().Add(time.Hour)}, nil
}
