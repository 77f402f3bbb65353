package devidp

import "net/http"

// Paths of the v2 sign-in endpoints under /{tenant}.
const (
	authorizePath = "/oauth2/v2.0/authorize"
	tokenPath     = "/oauth2/v2.0/token"
)

// routes builds the HTTPS listener's mux, so the URL space is readable in one
// place. The authorize page is served here too, as on Entra's one host, but
// discovery sends browsers to the plain-HTTP copy (authorizeRoutes).
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", s.handleDiscoveryV2)
	mux.HandleFunc("GET /{tenant}/.well-known/openid-configuration", s.handleDiscoveryV1)
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", s.handleJWKS)
	mux.HandleFunc("GET /{tenant}/discovery/keys", s.handleJWKS)
	mux.HandleFunc("GET /{tenant}"+authorizePath, s.handleAuthorize)
	mux.HandleFunc("POST /{tenant}"+authorizePath, s.handleAuthorize)
	mux.HandleFunc("POST /{tenant}"+tokenPath, s.handleToken)
	mux.HandleFunc("GET "+graphPrefix+"/v1.0/me", s.handleGraphMe)
	return mux
}

// authorizeRoutes builds the plain-HTTP listener's mux: the authorize page
// and nothing else, so no token ever travels without TLS.
func (s *Server) authorizeRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}"+authorizePath, s.handleAuthorize)
	mux.HandleFunc("POST /{tenant}"+authorizePath, s.handleAuthorize)
	return mux
}

// handleDiscoveryV2 serves the v2 OpenID configuration of any tenant named in
// the path, with the fields Entra's has. Like Entra, it has no
// code_challenge_methods_supported. Its authorization_endpoint is the
// plain-HTTP listener (see the package comment); MSAL's AuthCodeURL uses it.
func (s *Server) handleDiscoveryV2(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	base := s.host + "/" + tenant
	writeJSON(w, map[string]any{
		"issuer":                                s.issuerV2(tenant),
		"authorization_endpoint":                s.authHost + "/" + tenant + authorizePath,
		"token_endpoint":                        base + tokenPath,
		"device_authorization_endpoint":         base + "/oauth2/v2.0/devicecode",
		"end_session_endpoint":                  base + "/oauth2/v2.0/logout",
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"claims_supported": []string{
			"sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
			"msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username",
			"name", "tid", "ver", "at_hash", "c_hash", "email",
		},
		"request_uri_parameter_supported": false,
		"http_logout_supported":           true,
		"frontchannel_logout_supported":   true,
		"tenant_region_scope":             nil,
		"cloud_instance_name":             "microsoftonline.com",
		"cloud_graph_host_name":           "graph.windows.net",
		"msgraph_host":                    "graph.microsoft.com",
	})
}

// handleDiscoveryV1 serves the v1 OpenID configuration, whose issuer is
// AuthorityHost()/<tid>/ (Entra's is https://sts.windows.net/<tid>/).
func (s *Server) handleDiscoveryV1(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	base := s.host + "/" + tenant
	writeJSON(w, map[string]any{
		"issuer":                                s.issuerV1(tenant),
		"authorization_endpoint":                base + "/oauth2/authorize",
		"token_endpoint":                        base + "/oauth2/token",
		"end_session_endpoint":                  base + "/oauth2/logout",
		"jwks_uri":                              base + "/discovery/keys",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "token id_token", "token"},
		"scopes_supported":                      []string{"openid"},
		"microsoft_multi_refresh_token":         true,
		"check_session_iframe":                  base + "/oauth2/checksession",
		"http_logout_supported":                 true,
		"tenant_region_scope":                   nil,
		"cloud_instance_name":                   "microsoftonline.com",
		"cloud_graph_host_name":                 "graph.windows.net",
		"msgraph_host":                          "graph.microsoft.com",
	})
}
