package devidp

// The client credentials grant (Entra's OAuth 2.0 client credentials flow):
// an application — a daemon, an agent, a managed identity's application —
// gets an access token for the API, or for one of Options.APIs, as itself,
// with no user. Entra's v2 endpoint takes exactly one "<resource>/.default"
// scope, authenticates the client by a secret or an assertion, and issues a
// token carrying the App Roles assigned to the client's service principal
// (roles), no scp, and no refresh or ID token. What is modelled here
// follows Microsoft's v2-oauth2-client-creds-grant-flow,
// access-token-claims-reference and optional-claims pages, and app-only
// tokens observed from Entra.

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// App is an application registered in the tenant that calls the API as
// itself through the client credentials grant.
type App struct {
	// ClientID is the application (client) id: azp (v2) or appid (v1).
	ClientID string
	// ObjectID is the object id of the application's service principal in
	// the tenant: an app-only token's oid, and its sub too.
	ObjectID string
	// DisplayName names the application for people reading dev-mode
	// configuration and tests. It is not a claim: Entra puts no name in
	// app-only tokens for an API registered in the tenant.
	DisplayName string
	// Secret is the application's client secret; empty when it has none.
	Secret string
	// FederatedCredentials are the application's federated identity
	// credentials: a managed identity's token (in dev mode, one the
	// stand-in minted) presented as a client assertion.
	FederatedCredentials []FederatedCredential
	// Roles are the values of the API's App Roles assigned to the
	// application's service principal: the token's roles claim. With none,
	// Entra still issues a token, without a roles claim (see
	// "Controlling tokens without the roles claim" in its client
	// credentials page); the API's own checks must then refuse it. Tokens
	// for one of Options.APIs carry that API's AppRoles instead: the
	// stand-in does not model assignments per application there.
	Roles []string
}

// registerApps checks the Options.Apps and indexes copies of them by
// client id.
func (s *Server) registerApps(apps []App) (map[string]*App, error) {
	byID := make(map[string]*App, len(apps))
	objects := map[string]bool{}
	for i, a := range apps {
		switch {
		case !uuidPattern.MatchString(a.ClientID):
			return nil, fmt.Errorf("devidp: app %d (%s): client id %q is not a GUID", i, a.DisplayName, a.ClientID)
		case !uuidPattern.MatchString(a.ObjectID):
			return nil, fmt.Errorf("devidp: app %s: object id %q is not a GUID", a.ClientID, a.ObjectID)
		case strings.EqualFold(a.ClientID, s.clientID):
			// The API's own credentials are Options.ClientSecret and
			// FederatedCredentials; it has no service principal here.
			return nil, fmt.Errorf("devidp: app %s is the API application itself", a.ClientID)
		case byID[a.ClientID] != nil:
			return nil, fmt.Errorf("devidp: app %s is listed twice", a.ClientID)
		case objects[a.ObjectID]:
			return nil, fmt.Errorf("devidp: app %s: object id %s belongs to another app too", a.ClientID, a.ObjectID)
		}
		a.FederatedCredentials = slices.Clone(a.FederatedCredentials)
		a.Roles = slices.Clone(a.Roles)
		byID[a.ClientID] = &a
		objects[a.ObjectID] = true
	}
	return byID, nil
}

// clientCredentialsGrant issues an app-only access token to the
// authenticated application c for the resource its scope names.
func (s *Server) clientCredentialsGrant(form url.Values, c client) (tokenResponse, *aadError) {
	if c.app == nil {
		// The API application may well call itself in Entra; the stand-in
		// gives it no service principal to assign App Roles to.
		return tokenResponse{}, newAADError(http.StatusUnauthorized, "invalid_client", 7000229,
			"The client application %s is missing service principal in the tenant %s. (devidp gives app-only tokens to Options.Apps only.)", c.id, s.tenantID)
	}
	if form.Get("scope") == "" {
		return tokenResponse{}, missingParam("scope")
	}
	resource, api, err := s.parseAppScope(form.Get("scope"))
	if err != nil {
		return tokenResponse{}, err
	}
	opts := []MintOption{WithLifetime(s.atLifetime), WithIssuedAt(s.now()), withClientAuth(c.acr), withAudience(resource)}
	app := *c.app
	if api != nil {
		// A downstream API asks for v2 tokens and its own idtyp, whatever
		// the API's registration says; the roles are its App Roles.
		app.Roles = api.AppRoles
		opts = append(opts, WithVersion(2), WithClaims(map[string]any{"aud": api.AppID, "idtyp": "app"}))
	}
	at, merr := s.MintApp(app, opts...)
	if merr != nil {
		return tokenResponse{}, issueFailed(merr)
	}
	// No scope, refresh token, id_token or client_info: the client can ask
	// again with its credential, and there is no user.
	return tokenResponse{
		TokenType:    "Bearer",
		ExpiresIn:    int64(s.atLifetime.Seconds()),
		ExtExpiresIn: int64(s.atLifetime.Seconds()),
		AccessToken:  at,
	}, nil
}

// parseAppScope reads the scope of a client credentials request and returns
// the resource it names, as written, and the API of Options.APIs it is, if
// it is not the API itself. OpenID Connect scopes are ignored, as Entra
// ignores them here: MSAL adds them to every request. What remains must be
// exactly one "<resource>/.default" (the permissions of an app are granted
// beforehand, not asked for), and the resource must be the API or one of
// Options.APIs, by its Application ID URI or its client id.
func (s *Server) parseAppScope(raw string) (string, *downstream, *aadError) {
	var defaults, named []string
	for _, sc := range strings.Fields(raw) {
		switch {
		case slices.Contains(oidcScopes, sc):
		case strings.HasSuffix(sc, "/.default"):
			defaults = append(defaults, sc)
		default:
			named = append(named, sc)
		}
	}
	switch {
	case len(defaults) == 0:
		return "", nil, newAADError(http.StatusBadRequest, "invalid_scope", 1002012,
			"The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", raw)
	case len(defaults)+len(named) > 1:
		return "", nil, newAADError(http.StatusBadRequest, "invalid_scope", 70011,
			"The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope %s is not valid. static scope limit exceeded.", raw)
	}
	resource := strings.TrimSuffix(defaults[0], "/.default")
	if resource == s.appIDURI() || resource == s.clientID {
		return resource, nil, nil
	}
	if api := s.configuredAPI(resource); api != nil {
		return resource, api, nil
	}
	return "", nil, newAADError(http.StatusBadRequest, "invalid_resource", 500011,
		"The resource principal named %s was not found in the tenant named %s. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant. (devidp issues app-only tokens for %s and Options.APIs only.)",
		resource, s.tenantID, s.appIDURI())
}

// withClientAuth sets how the client authenticated (azpacr, appidacr).
func withClientAuth(acr string) MintOption { return func(c *mintConfig) { c.appACR = acr } }

// withAudience sets a v1 token's aud to the resource as the client named
// it: Entra's v1 aud "can be the client ID or the resource URI used in the
// request". A v2 token's aud is always the client id.
func withAudience(resource string) MintOption { return func(c *mintConfig) { c.appAud = resource } }

// MintApp issues an app-only access token for app, as the client credentials
// grant does for an app that authenticated with its secret: the API's
// audience and issuer for the token version (WithVersion, default
// Options.AccessTokenVersion), tid, oid and sub both the app's ObjectID, azp
// and azpacr "1" (v2) or appid and appidacr "1" (v1), the app's roles
// (none: no roles claim), idtyp "app" if Options.IDTypClaim is set, and no
// scp, name or username. WithLifetime, WithIssuedAt, WithTenant, WithKeyID
// and WithClaims apply as for Mint; WithScopes and WithClientApp do not.
func (s *Server) MintApp(app App, opts ...MintOption) (string, error) {
	c := s.mintConfig(opts)
	if app.ClientID == "" || app.ObjectID == "" {
		return "", fmt.Errorf("devidp: minting app token: app %q needs a client id and an object id", app.DisplayName)
	}
	if c.version != 1 && c.version != 2 {
		return "", fmt.Errorf("devidp: minting app token: unknown version %d", c.version)
	}
	iat := c.issuedAt
	if iat.IsZero() {
		iat = s.now()
	}
	acr := c.appACR
	if acr == "" {
		acr = "1"
	}
	claims := map[string]any{
		"iat": iat.Unix(),
		"nbf": iat.Unix(),
		"exp": iat.Add(c.lifetime).Unix(),
		"aio": randomString(48),
		"oid": app.ObjectID,
		"rh":  "0." + randomString(40) + ".",
		"sub": app.ObjectID,
		"tid": c.tenant,
		"uti": randomString(16),
	}
	if len(app.Roles) > 0 {
		claims["roles"] = slices.Clone(app.Roles)
	}
	if s.idtyp {
		claims["idtyp"] = "app"
	}
	if c.version == 2 {
		claims["aud"] = s.clientID
		claims["iss"] = s.issuerV2(c.tenant)
		claims["azp"] = app.ClientID
		claims["azpacr"] = acr
		claims["ver"] = "2.0"
	} else {
		aud := c.appAud
		if aud == "" {
			aud = s.appIDURI()
		}
		claims["aud"] = aud
		claims["iss"] = s.issuerV1(c.tenant)
		claims["idp"] = s.issuerV1(c.tenant) // as in Entra's v1 app-only tokens
		claims["appid"] = app.ClientID
		claims["appidacr"] = acr
		claims["ver"] = "1.0"
	}
	return s.signMinted(claims, c)
}
