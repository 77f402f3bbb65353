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
// application or on an App: in place of a client secret the token endpoint
// accepts a client assertion (client_assertion_type ClientAssertionType)
// whose iss, sub and aud are these. The stand-in verifies an assertion's
// signature only against its own published keys, so the assertions it
// accepts are tokens it minted itself — which is what a managed identity's
// token is in dev mode and tests (Mint with WithClaims setting aud and sub,
// and WithVersion(2) if Options.AccessTokenVersion is 1: a managed
// identity's token is not for the API). Certificate credentials (an
// assertion the client signs itself) are not supported.
type FederatedCredential struct {
	// Issuer is the assertion's iss; Server.Issuer() when empty.
	Issuer string
	// Subject is the assertion's sub, such as a managed identity's object id.
	Subject string
	// Audience must be among the assertion's aud; TokenExchangeAudience when
	// empty.
	Audience string
}

// client is a client of the token endpoint that has proved who it is.
type client struct {
	id  string
	app *App // the calling application (Options.Apps); nil for the API application
	// acr is how the client authenticated, as azpacr and appidacr say it:
	// "1" with a secret, "2" with an assertion.
	acr string
}

// authenticateClient checks client_id and the client's credential — a
// client_secret in the body or in Basic authentication, or a federated
// client assertion — against the API application or one of Options.Apps.
func (s *Server) authenticateClient(r *http.Request, form url.Values) (client, *aadError) {
	clientID, secret, err := clientIDAndSecret(r, form)
	if err != nil {
		return client{}, err
	}
	if clientID == "" {
		return client{}, missingParam("client_id")
	}
	c := client{id: clientID}
	wantSecret, federated := s.clientSecret, s.federated
	if clientID != s.clientID {
		app, ok := s.apps[clientID]
		if !ok {
			return client{}, newAADError(http.StatusBadRequest, "unauthorized_client", 700016,
				"Application with identifier '%s' was not found in the directory '%s'.", clientID, s.tenantID)
		}
		c.app = app
		wantSecret, federated = app.Secret, app.FederatedCredentials
	}
	if c.acr, err = s.checkCredential(clientID, secret, form, wantSecret, federated); err != nil {
		return client{}, err
	}
	return c, nil
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

// checkCredential checks the one credential client clientID presented —
// its secret (wantSecret; an application without one has no secret that
// could match), or a federated client assertion matching one of federated —
// and returns how it authenticated, as azpacr says it.
func (s *Server) checkCredential(clientID, secret string, form url.Values, wantSecret string, federated []FederatedCredential) (string, *aadError) {
	assertion := form.Get("client_assertion")
	switch {
	case secret != "" && assertion != "":
		return "", newAADError(http.StatusBadRequest, "invalid_request", 90023,
			"Only one client credential may be presented: 'client_secret' or 'client_assertion'.")
	case secret != "":
		if wantSecret == "" || subtle.ConstantTimeCompare([]byte(secret), []byte(wantSecret)) != 1 {
			return "", newAADError(http.StatusUnauthorized, "invalid_client", 7000215,
				"Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", clientID)
		}
		return "1", nil
	case assertion != "":
		if t := form.Get("client_assertion_type"); t != ClientAssertionType {
			return "", newAADError(http.StatusBadRequest, "invalid_request", 900144,
				"The request body must contain the following parameter: 'client_assertion_type' with the value '%s'.", ClientAssertionType)
		}
		// Entra reports a certificate or federated credential as "2".
		return "2", s.verifyAssertion(assertion, federated)
	}
	return "", newAADError(http.StatusUnauthorized, "invalid_client", 7000218,
		"The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
}

// verifyAssertion checks a federated client assertion: RS256 under one of
// the stand-in's published keys, within its time range, and matching one of
// the client's federated credentials.
func (s *Server) verifyAssertion(assertion string, federated []FederatedCredential) *aadError {
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
	for _, fc := range federated {
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
