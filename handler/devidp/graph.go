package devidp

// A stand-in for the one Microsoft Graph call the server makes, GET
// /v1.0/me, served on the HTTPS listener under GraphBaseURL() so that code
// configured with a Graph base URL (as for sovereign clouds) can use it.
// It accepts only Graph tokens the stand-in issued through on-behalf-of and
// answers with Graph's JSON shapes, errors included.

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// graphPrefix is the path of the Graph stand-in on the HTTPS listener.
const graphPrefix = "/graph"

// GraphBaseURL is the base URL of the Graph stand-in, in place of
// "https://graph.microsoft.com": "https://127.0.0.1:PORT/graph".
func (s *Server) GraphBaseURL() string { return s.host + graphPrefix }

// SetGraphStatus makes the Graph stand-in answer every request with status
// (such as 500, 503 or 429) and Graph's error body while status is non-zero,
// to simulate an outage or throttling. 0 restores normal service.
func (s *Server) SetGraphStatus(status int) { s.obo.graphStatus.Store(int32(status)) }

// GraphRequests is the number of requests the Graph stand-in has received,
// including refused ones.
func (s *Server) GraphRequests() int64 { return s.obo.graphRequests.Load() }

// graphUser is Graph's user resource with /me's default properties, in
// Graph's order.
type graphUser struct {
	ODataContext      string   `json:"@odata.context"`
	BusinessPhones    []string `json:"businessPhones"`
	DisplayName       string   `json:"displayName"`
	GivenName         *string  `json:"givenName"`
	JobTitle          *string  `json:"jobTitle"`
	Mail              *string  `json:"mail"`
	MobilePhone       *string  `json:"mobilePhone"`
	OfficeLocation    *string  `json:"officeLocation"`
	PreferredLanguage *string  `json:"preferredLanguage"`
	Surname           *string  `json:"surname"`
	UserPrincipalName string   `json:"userPrincipalName"`
	ID                string   `json:"id"`
}

// jobTitle is a demo user's job title in the directory; their mail is
// their sign-in name.
func jobTitle(userKey string) (string, bool) {
	switch userKey {
	case "reader":
		return "Research Analyst", true
	case "writer":
		return "Technical Writer", true
	case "all":
		return "Operations Lead", true
	case "admin":
		return "IT Administrator", true
	}
	return "", false
}

// profile is u's directory entry as Graph returns it.
func (s *Server) profile(u User) graphUser {
	given, surname, _ := strings.Cut(u.Name, " ")
	p := graphUser{
		ODataContext:      s.GraphBaseURL() + "/v1.0/$metadata#users/$entity",
		BusinessPhones:    []string{},
		DisplayName:       u.Name,
		GivenName:         &given,
		Surname:           &surname,
		Mail:              &u.Username,
		UserPrincipalName: u.Username,
		ID:                u.ObjectID,
	}
	if title, ok := jobTitle(u.Key); ok {
		p.JobTitle = &title
	}
	return p
}

// graphClaims are the claims of a Graph token the stand-in reads.
type graphClaims struct {
	jwt.RegisteredClaims
	TenantID string `json:"tid"`
	ObjectID string `json:"oid"`
	Scp      string `json:"scp"`
}

// handleGraphMe serves GET /v1.0/me for the user a Graph token names.
func (s *Server) handleGraphMe(w http.ResponseWriter, r *http.Request) {
	s.obo.graphRequests.Add(1)
	if status := int(s.obo.graphStatus.Load()); status != 0 {
		code := "generalException"
		switch status {
		case http.StatusServiceUnavailable:
			code = "serviceNotAvailable"
			w.Header().Set("Retry-After", "1")
		case http.StatusTooManyRequests:
			code = "TooManyRequests"
			w.Header().Set("Retry-After", "1")
		}
		s.writeGraphError(w, r, status, code, "The service is unavailable (devidp: SetGraphStatus).")
		return
	}
	c, msg := s.verifyGraphToken(r)
	if msg != "" {
		// Graph's challenge names Entra and Graph's own client id.
		w.Header().Set("WWW-Authenticate", `Bearer realm="", authorization_uri="`+s.host+`/common/oauth2/authorize", client_id="`+GraphAppID+`"`)
		s.writeGraphError(w, r, http.StatusUnauthorized, "InvalidAuthenticationToken", msg)
		return
	}
	if !slices.ContainsFunc(strings.Fields(c.Scp), func(p string) bool { return strings.EqualFold(p, GraphUserRead) }) {
		s.writeGraphError(w, r, http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
		return
	}
	u, ok := s.directoryUser(c.ObjectID)
	if !ok {
		s.writeGraphError(w, r, http.StatusNotFound, "Request_ResourceNotFound",
			"Resource '"+c.ObjectID+"' does not exist or one of its queried reference-property objects are not present.")
		return
	}
	s.graphHeaders(w, r)
	writeNoStoreJSON(w, http.StatusOK, s.profile(u))
}

// verifyGraphToken checks the bearer token of a Graph request: signed by
// the stand-in, within its time range, and for Graph. On failure it returns
// Graph's message for the 401.
func (s *Server) verifyGraphToken(r *http.Request) (graphClaims, string) {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return graphClaims{}, "Access token is empty."
	}
	var c graphClaims
	_, err := jwt.ParseWithClaims(strings.TrimSpace(token), &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		return s.keys.publishedKey(kid)
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithExpirationRequired(), jwt.WithTimeFunc(s.now), jwt.WithLeeway(5*time.Minute))
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return graphClaims{}, "IDX14100: JWT is not well formed."
	case errors.Is(err, jwt.ErrTokenExpired), errors.Is(err, jwt.ErrTokenNotValidYet):
		return graphClaims{}, "Lifetime validation failed, the token is expired."
	case err != nil:
		return graphClaims{}, "Access token validation failure."
	}
	if !slices.Contains(c.Audience, GraphAppID) && !slices.Contains(c.Audience, GraphResource) && !slices.Contains(c.Audience, GraphResource+"/") {
		return graphClaims{}, "Access token validation failure. Invalid audience."
	}
	if c.Issuer != s.issuerV1(c.TenantID) && c.Issuer != s.issuerV2(c.TenantID) {
		return graphClaims{}, "Access token validation failure. Invalid issuer."
	}
	if c.ObjectID == "" {
		return graphClaims{}, "Access token validation failure."
	}
	return c, ""
}

// graphHeaders sets the request ids Graph puts on every answer.
func (s *Server) graphHeaders(w http.ResponseWriter, r *http.Request) (requestID, clientRequestID string) {
	requestID = newUUID()
	clientRequestID = r.Header.Get("client-request-id")
	if !uuidPattern.MatchString(clientRequestID) {
		clientRequestID = requestID
	}
	w.Header().Set("request-id", requestID)
	w.Header().Set("client-request-id", clientRequestID)
	return requestID, clientRequestID
}

// writeGraphError writes Graph's error shape.
func (s *Server) writeGraphError(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	requestID, clientRequestID := s.graphHeaders(w, r)
	writeNoStoreJSON(w, status, map[string]any{
		"error": map[string]any{
			"code":    code,
			"message": message,
			"innerError": map[string]any{
				"date":              s.now().UTC().Format("2006-01-02T15:04:05"),
				"request-id":        requestID,
				"client-request-id": clientRequestID,
			},
		},
	})
}
