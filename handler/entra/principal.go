package entra

import "time"

// CallerKind says whether a token was issued for a signed-in user or for an
// application acting as itself.
type CallerKind string

// Caller kinds.
const (
	// CallerUser is a user, through a client application: a delegated
	// access token, which carries scp.
	CallerUser CallerKind = "user"
	// CallerApp is an application acting as itself (a daemon, an agent, a
	// managed identity): an app-only access token from the client
	// credentials grant, which carries roles and no scp. Accepted only when
	// Config.AcceptAppTokens is set.
	CallerApp CallerKind = "app"
)

// Principal is the verified caller of a request. Identity for data and audit
// is TenantID + ObjectID; Name and Username are for display only.
//
// For a user, ObjectID is the user's object id. For an application it is
// the object id of the application's service principal in the tenant (oid,
// which app-only tokens repeat in sub); AppID names the application, and
// Name and Username are empty, since app-only tokens carry neither.
type Principal struct {
	Kind     CallerKind // CallerUser (scp present) or CallerApp (app-only token)
	TenantID string     // tid
	ObjectID string     // oid, lower case: the user, or the app's service principal
	Name     string     // name; display only, empty for apps
	Username string     // preferred_username (v2) or upn (v1); display only, empty for apps
	AppID    string     // azp (v2) or appid (v1): the client the token was issued to
	Roles    []string   // roles: App Roles assigned to the user or the app
	Scopes   []string   // scp, split on spaces; empty for apps
	Expires  time.Time  // exp
}
