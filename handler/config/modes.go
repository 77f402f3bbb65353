package config

import (
	"fmt"
	"strings"
)

// AuthMode is MCP_AUTH_MODE: who Protected Resource Metadata names as the
// authorization server.
type AuthMode string

// Authorization modes.
const (
	// AuthModeProxy (the default): Protected Resource Metadata names this
	// server as the authorization server, and its OAuth front (client
	// registration, consent, PKCE) signs people in with Entra ID for any
	// MCP client.
	AuthModeProxy AuthMode = "proxy"
	// AuthModeEntra: Protected Resource Metadata names the Entra issuer;
	// clients with built-in Entra support sign in there directly.
	AuthModeEntra AuthMode = "entra"
)

// ClientAuth is ENTRA_CLIENT_AUTH: how MSAL authenticates the app
// registration.
type ClientAuth string

// Client authentication modes.
const (
	// ClientAuthSecret (the default): the app registration's client
	// secret, from Key Vault or ENTRA_CLIENT_SECRET.
	ClientAuthSecret ClientAuth = "secret"
	// ClientAuthManagedIdentity: a federated credential trusting the
	// managed identity, whose token is the client assertion; no secret at
	// all.
	ClientAuthManagedIdentity ClientAuth = "managed-identity"
)

// RedisAuth is REDIS_AUTH: how the handler signs in to Redis.
type RedisAuth string

// Redis authentication modes.
const (
	// RedisAuthURL (the default, REDIS_AUTH empty): the credentials in
	// REDIS_URL, if any.
	RedisAuthURL RedisAuth = ""
	// RedisAuthEntra: the managed identity's token as the password, no
	// access keys.
	RedisAuthEntra RedisAuth = "entra"
)

// ParseAuthMode reads MCP_AUTH_MODE: proxy (default) or entra.
func ParseAuthMode(v string) (AuthMode, error) {
	return parseMode("MCP_AUTH_MODE", v, AuthModeProxy, AuthModeEntra)
}

func parseClientAuth(v string) (ClientAuth, error) {
	return parseMode("ENTRA_CLIENT_AUTH", v, ClientAuthSecret, ClientAuthManagedIdentity)
}

func parseRedisAuth(v string) (RedisAuth, error) {
	return parseMode("REDIS_AUTH", v, RedisAuthURL, RedisAuthEntra)
}

// parseMode reads the setting name, whose values are modes: empty (after
// trimming spaces) is the first, the default; anything not in modes is
// refused, naming the setting and what it may be.
func parseMode[M ~string](name, v string, modes ...M) (M, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return modes[0], nil
	}
	var names []string
	for _, m := range modes {
		if v == string(m) {
			return m, nil
		}
		names = append(names, modeName(string(m)))
	}
	return "", fmt.Errorf("%s: %q must be %s", name, v, strings.Join(names, " or "))
}

func modeName(s string) string {
	if s == "" {
		return "empty"
	}
	return s
}
