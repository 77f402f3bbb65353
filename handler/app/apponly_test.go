package app

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/devidp"
	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
	"github.com/entra-mcp/functions-mcp/handler/tools"
	"github.com/entra-mcp/functions-mcp/handler/tools/toolstest"
)

// appToken gets an app-only token from the stand-in's token endpoint, as
// an agent with a client secret does (client credentials).
func (st *stack) appToken(t *testing.T, app devidp.App) string {
	t.Helper()
	resp, err := st.idp.HTTPClient().PostForm(st.idp.TokenURL(), url.Values{
		"grant_type": {"client_credentials"}, "client_id": {app.ClientID}, "client_secret": {app.Secret},
		"scope": {"api://" + st.idp.ClientID() + "/.default"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tk struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tk); err != nil || resp.StatusCode != http.StatusOK || tk.AccessToken == "" {
		t.Fatalf("client credentials for %s: %d %v", app.DisplayName, resp.StatusCode, err)
	}
	return tk.AccessToken
}

// readerForApps is the default role table with Task.Read open to
// applications (app-only callers) as well as people.
func readerForApps() authz.Table {
	table := authz.DefaultTable()
	for i, r := range table.Roles {
		if r.Value == "Task.Read" {
			table.Roles[i].Members = []string{authz.MemberUser, authz.MemberApplication}
		}
	}
	return table
}

// TestAppOnlyCallers: agents calling as themselves (client-credentials
// tokens) are served only for roles the role table marks for
// applications; a tool that acts on behalf of a person tells them so; and
// with no role marked for applications app-only tokens are refused at the
// door, as before.
func TestAppOnlyCallers(t *testing.T) {
	t.Parallel()
	table := readerForApps()
	reader := devidp.AppsFor(table, "reader-agent-secret")[0]
	// Task.All is assigned to this one, but the table keeps that role for people.
	allAgent := devidp.App{ClientID: "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b", ObjectID: "6f7a8b9c-0d1e-4f2a-8b3c-4d5e6f7a8b9c",
		DisplayName: "All agent", Secret: "all-agent-secret", Roles: []string{"Task.All"}}
	apps := []devidp.App{reader, allAgent}

	st := newStackWith(t, storetest.Redis(t), func(c *config.Config, o *devidp.Options) {
		c.Roles = table
		o.Apps = apps
	})
	golden := toolstest.Load(t)
	// What the demo user of a role lists (with the conformance build's
	// fixtures, which every signed-in caller lists); signed-in alone: the
	// tools no role is needed for.
	signedIn := slices.DeleteFunc(golden.Lists(t, "reader"), func(n string) bool {
		return !golden.IsFixture(n) && n != "whoami"
	})
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	call := func(name string) string {
		return `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"` + name + `","arguments":{}}}`
	}

	t.Run("a role marked for applications", func(t *testing.T) {
		tok := st.appToken(t, reader)
		got := toolNames(st.rpc(t, tok, list))
		if want := golden.Lists(t, "reader"); !slices.Equal(got, want) {
			t.Errorf("tools/list %v, want %v", got, want)
		}
		who, isErr := callText(t, st.rpc(t, tok, call("whoami")))
		if isErr || !strings.Contains(who, `"caller": "app"`) || !strings.Contains(who, reader.ClientID) {
			t.Errorf("whoami: %s", who)
		}
		if text, isErr := callText(t, st.rpc(t, tok, call("my_profile"))); !isErr || text != tools.NeedsUserText {
			t.Errorf("my_profile for an app: %v %q", isErr, text)
		}
		if text, isErr := callText(t, st.rpc(t, tok, call("list_tasks"))); isErr {
			t.Errorf("list_tasks: %s", text)
		}
	})
	t.Run("a role kept for people grants an app nothing", func(t *testing.T) {
		tok := st.appToken(t, allAgent)
		if got := toolNames(st.rpc(t, tok, list)); !slices.Equal(got, signedIn) {
			t.Errorf("tools/list %v, want only what needs no role: %v", got, signedIn)
		}
	})
	t.Run("people are served as before", func(t *testing.T) {
		if got, want := toolNames(st.rpc(t, st.token(t, "all"), list)), golden.Lists(t, "all"); !slices.Equal(got, want) {
			t.Errorf("tools/list for Task.All %v, want %v", got, want)
		}
	})

	t.Run("no role for applications: app-only tokens refused", func(t *testing.T) {
		t.Parallel()
		plain := newStackWith(t, storetest.Redis(t), func(_ *config.Config, o *devidp.Options) { o.Apps = apps })
		r := plain.do(t, http.MethodPost, "/mcp", plain.appToken(t, reader), nil, list)
		if r.status != http.StatusUnauthorized {
			t.Errorf("an app-only token without any role for applications: %d %s", r.status, r.body)
		}
	})
}
