package obo

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	msalerrors "github.com/AzureAD/microsoft-authentication-library-for-go/apps/errors"

	"github.com/entra-mcp/functions-mcp/handler/outage"
)

// callErr is MSAL's error for an HTTP answer with status and body.
func callErr(status int, body string) error {
	return msalerrors.CallErr{
		Resp: &http.Response{StatusCode: status, Body: io.NopCloser(strings.NewReader(body))},
		Err:  errors.New("http call error"),
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	scopes := []string{"https://graph.microsoft.com/User.Read"}
	const (
		consent     = "consent"
		interaction = "interaction"
		unavailable = "unavailable"
		other       = "other"
	)
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"AADSTS65001", callErr(400, `{"error":"invalid_grant","error_codes":[65001],"suberror":"consent_required"}`), consent},
		{"suberror alone", callErr(400, `{"error":"invalid_grant","suberror":"consent_required"}`), consent},
		{"MFA", callErr(400, `{"error":"interaction_required","error_codes":[50076],"claims":"{\"access_token\":{}}"}`), interaction},
		{"503", callErr(503, `{"error":"temporarily_unavailable","error_codes":[90033]}`), unavailable},
		{"500 not JSON", callErr(500, `<html>oops</html>`), unavailable},
		{"429", callErr(429, ``), unavailable},
		{"bad secret", callErr(401, `{"error":"invalid_client","error_codes":[7000215],"trace_id":"t1","correlation_id":"c1"}`), other},
		{"dial", &url.Error{Op: "Post", URL: "https://login.example/t/oauth2/v2.0/token", Err: &net.OpError{Op: "dial", Err: errors.New("refused")}}, unavailable},
		{"deadline", context.DeadlineExceeded, unavailable},
		{"canceled", context.Canceled, other},
		{"MSAL's own", errors.New("token response failed because declined scopes are present"), other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := classify(tc.err, "app-id", scopes)
			var ce *ConsentError
			got := other
			switch {
			case errors.As(err, &ce) && ce.InteractionRequired:
				got = interaction
			case errors.As(err, &ce):
				got = consent
			case errors.Is(err, ErrUnavailable):
				got = unavailable
			}
			if got != tc.want {
				t.Errorf("%s: %v is %s, want %s", tc.name, err, got, tc.want)
			}
			if got == unavailable && (!errors.Is(err, outage.ErrUnavailable) || outage.Dependency(err) != Dependency ||
				!strings.HasPrefix(err.Error(), "entra token service unavailable") || strings.Contains(err.Error(), "redis")) {
				t.Errorf("%s: %q does not name Entra's token service as the outage", tc.name, err)
			}
			if tc.name == "bad secret" && !strings.Contains(err.Error(), "AADSTS7000215 trace_id=t1 correlation_id=c1") {
				t.Errorf("bad secret: %v", err)
			}
			if tc.name == "MFA" {
				msg := ce.UserMessage()
				if ce.Code != 50076 || ce.Claims == "" || !strings.Contains(msg, "Conditional Access") || !strings.Contains(msg, "app-id") {
					t.Errorf("MFA: %+v %s", ce, msg)
				}
			}
		})
	}
}
