package devidp

import (
	"slices"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/authz"
)

// TestDemoPeopleAndAgentsFromTheRoleTable: one demo user per role people
// may hold, one demo agent per role applications may hold, none for a
// retired role; the default table's users keep their keys and object ids.
func TestDemoPeopleAndAgentsFromTheRoleTable(t *testing.T) {
	t.Parallel()
	tb, err := authz.ParseTable([]byte(`{"roles":[
		{"value":"Task.Read","permissions":["tasks.read"],"members":["User","Application"],"demoUser":{"key":"reader","name":"Rita Reader"}},
		{"value":"Deploy.Read","permissions":["deploy.read"],"members":["User"]},
		{"value":"Agent.Run","permissions":["agent.run"],"members":["Application"]},
		{"value":"Old.Role","permissions":["tasks.read"],"members":["User","Application"],"retired":true}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, u := range UsersFor(tb) {
		keys = append(keys, u.Key+"="+u.Roles[0])
	}
	if !slices.Equal(keys, []string{"reader=Task.Read", "deploy-read=Deploy.Read"}) {
		t.Errorf("users %v", keys)
	}
	var agents []string
	for _, a := range AppsFor(tb, "s") {
		agents = append(agents, a.Roles[0])
		if a.Secret != "s" || a.ClientID == a.ObjectID {
			t.Errorf("agent %+v", a)
		}
	}
	if !slices.Equal(agents, []string{"Task.Read", "Agent.Run"}) {
		t.Errorf("agents %v", agents)
	}
	clash, err := authz.ParseTable([]byte(`{"roles":[
		{"value":"Task.Read","permissions":["tasks.read"],"members":["User"],"demoUser":{"key":"reader","name":"Rita Reader"}},
		{"value":"Reader","permissions":["tasks.read"],"members":["User"]},
		{"value":"Deploy.Read","permissions":["tasks.read"],"members":["User"]},
		{"value":"Deploy-Read","permissions":["tasks.read"],"members":["User"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	keys = nil
	for _, u := range UsersFor(clash) {
		keys = append(keys, u.Key)
	}
	if !slices.Equal(keys, []string{"reader", "reader-2", "deploy-read", "deploy-read-2"}) {
		t.Errorf("made-up keys that collide: %v", keys)
	}
	if u, _ := DemoUser("admin"); u.ObjectID != "0a1b2c3d-0004-4000-8000-000000000004" || u.Name != "Ada Admin" {
		t.Errorf("the default table's admin: %+v", u)
	}
}
