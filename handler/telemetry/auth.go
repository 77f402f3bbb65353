package telemetry

import (
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// refreshMargin renews a token this long before it expires, so a batch in
// flight never carries a token that dies on the way.
const refreshMargin = 5 * time.Minute

// bearerTransport adds "Authorization: Bearer <token>" to ingestion posts.
// It caches the token itself because a TokenCredential need not (a test
// credential or a custom one), and every batch would otherwise ask Entra.
type bearerTransport struct {
	base  http.RoundTripper
	cred  azcore.TokenCredential
	scope string

	mu  sync.Mutex
	tok azcore.AccessToken
}

func (t *bearerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := t.token(req)
	if err != nil {
		if req.Body != nil {
			req.Body.Close() // RoundTrippers must close the body, even on error
		}
		return nil, err
	}
	// RoundTrippers must not modify the caller's request.
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return t.base.RoundTrip(r)
}

func (t *bearerTransport) token(req *http.Request) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	refreshAt := t.tok.ExpiresOn.Add(-refreshMargin)
	if !t.tok.RefreshOn.IsZero() && t.tok.RefreshOn.Before(refreshAt) {
		refreshAt = t.tok.RefreshOn
	}
	if t.tok.Token != "" && now.Before(refreshAt) {
		return t.tok.Token, nil
	}
	tok, err := t.cred.GetToken(req.Context(), policy.TokenRequestOptions{Scopes: []string{t.scope}})
	if err != nil {
		// A token that is still valid beats dropping the batch.
		if t.tok.Token != "" && now.Before(t.tok.ExpiresOn) {
			return t.tok.Token, nil
		}
		return "", fmt.Errorf("telemetry: get ingestion token for %s: %w", t.scope, err)
	}
	t.tok = tok
	return tok.Token, nil
}

// reportTransport logs failed ingestion posts. The SDK reports them only
// to a process-wide diagnostics listener, so without this a missing role
// assignment (403) or a wrong key (400) would lose telemetry silently.
// Only the status or error is logged: never headers or the payload.
type reportTransport struct {
	base http.RoundTripper
	log  *slog.Logger
}

func (t *reportTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	switch {
	case err != nil:
		t.log.Warn("telemetry post failed", slog.String("error", scrubText(err.Error())))
	case resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent:
		t.log.Warn("telemetry post refused", slog.Int("status", resp.StatusCode))
	}
	return resp, err
}
