package devidp

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Client assertion constants, as Entra and RFC 7523 name them.
const (
	// ClientAssertionType is the client_assertion_type of a JWT client
	// assertion.
	ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// TokenExchangeAudience is the audience Entra requires of a federated
	// credential's assertion by default, such as a managed identity's token.
	TokenExchangeAudience = "api://AzureADTokenExchange"
)

// FederatedCredential is a federated identity credential on the API
// application: in place of the client secret the token endpoint accepts a
// client assertion (client_assertion_type ClientAssertionType) whose iss,
// sub and aud are these. The stand-in verifies an assertion's signature only
// against its own published keys, so the assertions it accepts are tokens it
// minted itself — which is what a managed identity's token is in dev mode and
// tests (Mint with WithClaims setting aud and sub). Certificate credentials
// (an assertion the client signs itself) are not supported.
type FederatedCredential struct {
	// Issuer is the assertion's iss; Server.Issuer() when empty.
	Issuer string
	// Subject is the assertion's sub, such as a managed identity's object id.
	Subject string
	// Audience must be among the assertion's aud; TokenExchangeAudience when
	// empty.
	Audience string
}

// authenticateClient checks client_id and the client's credential — a
// client_secret in the body or in Basic authentication, or a federated
// client assertion — and returns the client id.
func (s *Server) authenticateClient(r *http.Request, form url.Values) (string, *aadError) {
	clientID, secret, err := clientIDAndSecret(r, form)
	if err != nil {
		return "", err
	}
	if clientID == "" {
		return "", missingParam("client_id")
	}
	if clientID != s.clientID {
		return "", newAADError(http.StatusBadRequest, "unauthorized_client", 700016,
			"Application with identifier '%s' was not found in the directory '%s'.", clientID, s.tenantID)
	}
	if err := s.checkCredential(secret, form); err != nil {
		return "", err
	}
	return clientID, nil
}

// clientIDAndSecret reads the client id and secret from the body or from
// Basic authentication, refusing both at once when they disagree.
func clientIDAndSecret(r *http.Request, form url.Values) (clientID, secret string, _ *aadError) {
	clientID, secret = form.Get("client_id"), form.Get("client_secret")
	id, pw, ok := r.BasicAuth()
	if !ok {
		return clientID, secret, nil
	}
	// RFC 6749 §2.3.1: Basic credentials are form-encoded first.
	id, errID := url.QueryUnescape(id)
	pw, errPW := url.QueryUnescape(pw)
	if errID != nil || errPW != nil || (clientID != "" && clientID != id) || secret != "" {
		return "", "", newAADError(http.StatusBadRequest, "invalid_request", 90023,
			"The client credentials in the Authorization header and the body disagree.")
	}
	return id, pw, nil
}

// checkCredential checks the one credential the client presented: its
// secret, or a federated client assertion.
func (s *Server) checkCredential(secret string, form url.Values) *aadError {
	assertion := form.Get("client_assertion")
	switch {
	case secret != "" && assertion != "":
		return newAADError(http.StatusBadRequest, "invalid_request", 90023,
			"Only one client credential may be presented: 'client_secret' or 'client_assertion'.")
	case secret != "":
		if subtle.ConstantTimeCompare([]byte(secret), []byte(s.clientSecret)) != 1 {
			return newAADError(http.StatusUnauthorized, "invalid_client", 7000215,
				"Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", s.clientID)
		}
		return nil
	case assertion != "":
		if t := form.Get("client_assertion_type"); t != ClientAssertionType {
			return newAADError(http.StatusBadRequest, "invalid_request", 900144,
				"The request body must contain the following parameter: 'client_assertion_type' with the value '%s'.", ClientAssertionType)
		}
		return s.verifyAssertion(assertion)
	}
	return newAADError(http.StatusUnauthorized, "invalid_client", 7000218,
		"The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
}

// verifyAssertion checks a federated client assertion: RS256 under one of
// the stand-in's published keys, within its time range, and matching one of
// the federated credentials.
func (s *Server) verifyAssertion(assertion string) *aadError {
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(assertion, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		return s.keys.publishedKey(kid)
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithExpirationRequired(), jwt.WithTimeFunc(s.now), jwt.WithLeeway(time.Minute))
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return newAADError(http.StatusUnauthorized, "invalid_client", 50027, "JWT token is invalid or malformed.")
	case errors.Is(err, jwt.ErrTokenExpired), errors.Is(err, jwt.ErrTokenNotValidYet):
		return newAADError(http.StatusUnauthorized, "invalid_client", 700024, "Client assertion is not within its valid time range.")
	case err != nil:
		return newAADError(http.StatusUnauthorized, "invalid_client", 700027, "Client assertion failed signature validation.")
	}
	for _, fc := range s.federated {
		iss, aud := fc.Issuer, fc.Audience
		if iss == "" {
			iss = s.Issuer()
		}
		if aud == "" {
			aud = TokenExchangeAudience
		}
		if claims.Issuer == iss && claims.Subject == fc.Subject && slices.Contains(claims.Audience, aud) {
			return nil
		}
	}
	return newAADError(http.StatusUnauthorized, "invalid_client", 70021,
		"No matching federated identity record found for presented assertion. Assertion Issuer: '%s'. Assertion Subject: '%s'. Assertion Audience: '%s'.",
		claims.Issuer, claims.Subject, claims.Audience)
}
