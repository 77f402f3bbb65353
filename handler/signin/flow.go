package signin

import (
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/webpage"
)

// A sign-in in progress lives with the browser, not in Redis: /auth/login
// seals it (AES-GCM with the sealing key ring, the state's hash as
// additional data) into a cookie of its own, and the callback opens it.
// So an anonymous flood of /auth/login writes nothing anywhere; only a
// sign-in Entra accepted leaves a marker (store.MarkFlowDone), so that it
// completes once.

// flow is one sign-in in progress, from /auth/login (or a hand-off, see
// StartFor) until Entra calls back. It is a person's sign-in or a hand-off,
// never both: which one is present says whose it is. Short JSON names: it
// travels in a cookie.
type flow struct {
	Verifier string `json:"v"` // our PKCE verifier towards Entra
	Nonce    string `json:"n"` // OIDC nonce sent to Entra
	// Person is a sign-in through /auth/login, ending at our code page
	// or at an allow-listed return_to.
	Person *personFlow `json:"p,omitempty"`
	// Handoff is the continuation's own record of a sign-in it started
	// (StartFor): opaque here, handed back to it at the callback.
	Handoff json.RawMessage `json:"h,omitempty"`
	Expires int64           `json:"x"` // Unix ms
}

// personFlow is what /auth/login was asked for.
type personFlow struct {
	ReturnTo  string `json:"r,omitempty"` // an allow-listed return_to; "" shows the code page
	Challenge string `json:"c,omitempty"` // the PKCE S256 challenge the code is bound to; "" for none
}

const (
	// flowCookiePrefix starts every flow cookie's name; the rest is a hash
	// of the flow's state, so several sign-ins in one browser (two tabs)
	// do not overwrite each other.
	flowCookiePrefix = "mcp-signin-"
	// maxFlowCookie bounds a flow cookie's value: browsers keep 4096 bytes
	// per cookie, name and attributes included.
	maxFlowCookie = 3800
	// maxFlowCookies is how many sign-ins one browser keeps in progress;
	// older ones are dropped, so abandoned sign-ins cannot make the
	// browser's requests to us too large to serve.
	maxFlowCookies = 4
)

// errFlowTooLarge is a flow that does not fit in a cookie: a hand-off
// whose record is enormous (an OAuth client's client_id, redirect URI and
// state).
var errFlowTooLarge = errors.New("the sign-in request is too large")

// flowCookie is the cookie of the flow with state.
func (s *Service) flowCookie(state string) webpage.BrowserCookie {
	sum := sha256.Sum256([]byte(state))
	return webpage.BrowserCookie{
		Name:     flowCookiePrefix + base64.RawURLEncoding.EncodeToString(sum[:9]),
		Secure:   s.secure,
		SameSite: http.SameSiteLaxMode,
	}
}

// sealingName is the additional data of a flow's seal: a cookie opens only
// with the state it was made for.
// Its version changes with the flow record's shape, so a cookie sealed by an
// older instance fails to open (an expired sign-in) instead of decoding into
// the wrong kind of flow.
func sealingName(state string) string { return "signin-flow/2:" + hashHex(state) }

// sealFlow returns the cookie value for f.
func (s *Service) sealFlow(state string, f flow) (string, error) {
	plain, err := json.Marshal(f)
	if err != nil {
		return "", err
	}
	sealed, err := s.opts.Sealer.Seal(sealingName(state), plain)
	if err != nil {
		return "", fmt.Errorf("seal sign-in flow: %w", err)
	}
	// The expiry leads in the clear for dropOldFlows, which cannot open a
	// cookie without its state; the sealed copy is the one that counts.
	v := strconv.FormatInt(f.Expires, 10) + "." + base64.RawURLEncoding.EncodeToString(sealed)
	if len(v) > maxFlowCookie {
		return "", errFlowTooLarge
	}
	return v, nil
}

// openFlow reads the flow of state from r's cookies. It fails for a
// missing, forged, expired or foreign cookie alike.
func (s *Service) openFlow(r *http.Request, state string, now time.Time) (flow, bool) {
	v := s.flowCookie(state).Value(r)
	_, v, _ = strings.Cut(v, ".")
	if v == "" || len(v) > maxFlowCookie {
		return flow{}, false
	}
	sealed, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return flow{}, false
	}
	plain, err := s.opts.Sealer.Open(sealingName(state), sealed)
	if err != nil {
		return flow{}, false
	}
	var f flow
	if json.Unmarshal(plain, &f) != nil || f.Verifier == "" || now.UnixMilli() >= f.Expires || (f.Person == nil) == (f.Handoff == nil) {
		return flow{}, false
	}
	return f, true
}

// dropOldFlows clears the browser's flow cookies beyond the newest
// maxFlowCookies-1, making room for one more.
func (s *Service) dropOldFlows(w http.ResponseWriter, r *http.Request) {
	type kept struct {
		name    string
		expires int64
	}
	var flows []kept
	for _, c := range r.Cookies() {
		name := strings.TrimPrefix(c.Name, "__Host-")
		if strings.HasPrefix(name, flowCookiePrefix) {
			flows = append(flows, kept{name: name, expires: flowExpiry(c.Value)})
		}
		if len(flows) > 4*maxFlowCookies {
			break // whoever sends this many is not a browser of ours
		}
	}
	if len(flows) < maxFlowCookies {
		return
	}
	slices.SortFunc(flows, func(a, b kept) int { return cmp.Compare(b.expires, a.expires) })
	for _, f := range flows[maxFlowCookies-1:] {
		webpage.BrowserCookie{Name: f.name, Secure: s.secure, SameSite: http.SameSiteLaxMode}.Clear(w)
	}
}

// flowExpiry is the expiry a flow cookie's value shows in the clear, or 0.
func flowExpiry(v string) int64 {
	exp, _, _ := strings.Cut(v, ".")
	ms, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return 0
	}
	return ms
}

// FitsInCookie reports whether a sign-in handing off handoff (see StartFor)
// would fit in its cookie, so that a request too large for one is refused
// before the user is asked anything, not after.
func (s *Service) FitsInCookie(handoff json.RawMessage) bool {
	filler := strings.Repeat("A", 43) // the size of a state, verifier and nonce
	_, err := s.sealFlow(filler, flow{Verifier: filler, Nonce: filler, Handoff: handoff,
		Expires: time.Now().Add(flowTTL).UnixMilli()})
	return err == nil
}
