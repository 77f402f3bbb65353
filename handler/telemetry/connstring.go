package telemetry

import (
	"errors"
	"fmt"
	"github.com/entra-mcp/functions-mcp/handler/valid"
	"net/url"
	"strings"
)

// defaultIngestion is where telemetry goes when a connection string names no
// endpoint (old-style "InstrumentationKey=..." strings).
const defaultIngestion = "https://dc.services.visualstudio.com"

// defaultAADScope is the scope Microsoft documents for Entra-authenticated
// ingestion. The double slash is not a typo: the audience is
// "https://monitor.azure.com/" and ".default" is appended after a slash.
const defaultAADScope = "https://monitor.azure.com//.default"

// ConnString is a parsed Application Insights connection string.
type ConnString struct {
	InstrumentationKey string
	// IngestionEndpoint is the base URL (no trailing slash) telemetry is
	// posted to; the track path is added by TrackURL.
	IngestionEndpoint string
	// LiveEndpoint is kept for completeness; Live Metrics is not implemented.
	LiveEndpoint string
	// AADAudience, when set, is the audience to request Entra tokens for
	// (sovereign clouds); empty means the public cloud's.
	AADAudience string
}

// ParseConnectionString parses
// "InstrumentationKey=...;IngestionEndpoint=https://...;LiveEndpoint=...;AADAudience=...".
// Keys are case-insensitive, empty segments (a trailing ";") are ignored,
// unknown keys are ignored, the key must be a GUID and the endpoint https
// (plain http only for a loopback host, which tests use).
func ParseConnectionString(s string) (ConnString, error) {
	var cs ConnString
	var suffix, location string
	kvs, err := pairs(s, "connection string")
	if err != nil {
		return ConnString{}, err
	}
	for _, kv := range kvs {
		k, v := kv[0], kv[1]
		switch k {
		case "instrumentationkey":
			cs.InstrumentationKey = strings.ToLower(v)
		case "ingestionendpoint":
			cs.IngestionEndpoint = v
		case "liveendpoint":
			cs.LiveEndpoint = v
		case "aadaudience":
			cs.AADAudience = v
		case "endpointsuffix":
			suffix = v
		case "location":
			location = v
		}
	}
	if cs.InstrumentationKey == "" {
		return ConnString{}, errors.New("telemetry: connection string: InstrumentationKey is missing")
	}
	if !valid.GUID(cs.InstrumentationKey) {
		return ConnString{}, errors.New("telemetry: connection string: InstrumentationKey is not a GUID")
	}
	if cs.IngestionEndpoint == "" {
		cs.IngestionEndpoint = defaultIngestion
		// Sovereign-cloud strings may give only a suffix (and a region):
		// the ingestion host is then [<location>.]dc.<suffix>.
		if suffix != "" {
			host := "dc." + strings.Trim(suffix, "./")
			if location != "" {
				host = strings.Trim(location, ".") + "." + host
			}
			cs.IngestionEndpoint = "https://" + host
		}
	}
	ep, err := checkEndpoint(cs.IngestionEndpoint)
	if err != nil {
		return ConnString{}, fmt.Errorf("telemetry: connection string: IngestionEndpoint: %w", err)
	}
	cs.IngestionEndpoint = ep
	return cs, nil
}

// TrackURL is the URL the SDK must post to: /v2/track with the
// instrumentation key alone, /v2.1/track with an Entra token.
func (cs ConnString) TrackURL(aad bool) string {
	if aad {
		return cs.IngestionEndpoint + "/v2.1/track"
	}
	return cs.IngestionEndpoint + "/v2/track"
}

// Scope is the token scope for Entra-authenticated ingestion.
func (cs ConnString) Scope() string {
	if cs.AADAudience == "" {
		return defaultAADScope
	}
	return strings.TrimRight(cs.AADAudience, "/") + "/.default"
}

// Auth is a parsed APPLICATIONINSIGHTS_AUTHENTICATION_STRING.
type Auth struct {
	// AAD is true for "Authorization=AAD": send an Entra bearer token.
	AAD bool
	// ClientID is the user-assigned managed identity to use; empty means
	// the system-assigned one (or whatever credential the caller passes).
	ClientID string
}

// ParseAuthenticationString parses "Authorization=AAD[;ClientId=<guid>]".
// An empty string means instrumentation-key-only ingestion.
func ParseAuthenticationString(s string) (Auth, error) {
	var a Auth
	kvs, err := pairs(s, "authentication string")
	if err != nil {
		return Auth{}, err
	}
	for _, kv := range kvs {
		k, v := kv[0], kv[1]
		switch k {
		case "authorization":
			if !strings.EqualFold(v, "AAD") {
				return Auth{}, fmt.Errorf("telemetry: authentication string: Authorization=%q is not supported (only AAD)", v)
			}
			a.AAD = true
		case "clientid":
			if !valid.GUID(v) {
				return Auth{}, errors.New("telemetry: authentication string: ClientId is not a GUID")
			}
			a.ClientID = strings.ToLower(v)
		}
	}
	if a.ClientID != "" && !a.AAD {
		return Auth{}, errors.New("telemetry: authentication string: ClientId without Authorization=AAD")
	}
	return a, nil
}

// checkEndpoint requires an absolute https URL (http only on loopback) with
// no query or fragment, and returns it without a trailing slash.
func checkEndpoint(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("not a URL: %w", err)
	}
	if u.Host == "" {
		return "", errors.New("not an absolute URL")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !valid.LoopbackHost(u.Hostname()) {
			return "", errors.New("plain http is allowed only for a loopback host")
		}
	default:
		return "", fmt.Errorf("scheme %q is not https", u.Scheme)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", errors.New("must not carry a query, fragment or user info")
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// pairs splits "key=value;key=value" into lower-case keys and trimmed
// values; empty segments (a trailing ";") are skipped. A segment without
// "=" is an error that does not echo it: a malformed string may hold a key.
func pairs(s, what string) ([][2]string, error) {
	var out [][2]string
	for part := range strings.SplitSeq(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, errors.New("telemetry: " + what + ": a segment is not key=value")
		}
		out = append(out, [2]string{strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)})
	}
	return out, nil
}
