package entra

import "time"

// Principal is the verified caller of a request. Identity for data and audit
// is TenantID + ObjectID; Name and Username are for display only.
type Principal struct {
	TenantID string
	ObjectID string
	Name     string
	Username string // preferred_username (v2) or upn (v1); display only
	AppID    string // azp (v2) or appid (v1): the client the token was issued to
	Roles    []string
	Scopes   []string
	Expires  time.Time
}
