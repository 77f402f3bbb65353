//go:build conformance

package tools

// The conformance suite's multi round-trip fixtures (SEP-2322, protocol
// 2026-07-28). A tool that needs the client's help (a user's answer, an
// LLM completion, the client's roots) does not send the client a request:
// it answers with an input_required result naming what it needs, and the
// client calls again with the answers in inputResponses, echoing
// requestState. That fits a stateless endpoint: the state travels with the
// client, signed so that a changed one is refused. (On the 2025 revisions
// mcp-go would have to send those requests to the client instead, which a
// stateless endpoint cannot; these fixtures are for the 2026-07-28 suite.)

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// stateKey signs the fixtures' requestState. One key per process is
// enough for a test build that runs as one instance; a production tool
// would use the deployment's shared sealing keys.
var stateKey = func() []byte {
	k := make([]byte, 32)
	rand.Read(k) // never fails (crypto/rand, Go 1.24+)
	return k
}()

// fixtureState is what a fixture's requestState carries.
type fixtureState struct {
	Tool  string `json:"tool"`  // the tool that issued it: a state is no good elsewhere
	Round int    `json:"round"` // the round the client is answering
	Nonce string `json:"nonce"` // makes every state distinct
}

// signState returns the requestState for round of tool: the JSON state
// and its HMAC, both base64url, joined by a dot.
func signState(tool string, round int) string {
	nonce := make([]byte, 12)
	rand.Read(nonce)
	payload, _ := json.Marshal(fixtureState{Tool: tool, Round: round, Nonce: base64.RawURLEncoding.EncodeToString(nonce)})
	body := base64.RawURLEncoding.EncodeToString(payload)
	return body + "." + base64.RawURLEncoding.EncodeToString(stateMAC(body))
}

func stateMAC(body string) []byte {
	m := hmac.New(sha256.New, stateKey)
	m.Write([]byte(body))
	return m.Sum(nil)
}

// errTamperedState answers a requestState that this process did not issue
// for this tool.
var errTamperedState = &RequestError{Message: "requestState failed its integrity check: start the call again without it"}

// openState checks a requestState and returns the round it is for; 0 when
// there is none (a first call). A state that fails the check is refused.
func openState(tool, state string) (int, error) {
	if state == "" {
		return 0, nil
	}
	body, mac, ok := strings.Cut(state, ".")
	got, err := base64.RawURLEncoding.DecodeString(mac)
	if !ok || err != nil || !hmac.Equal(got, stateMAC(body)) {
		return 0, errTamperedState
	}
	payload, err := base64.RawURLEncoding.DecodeString(body)
	var st fixtureState
	if err != nil || json.Unmarshal(payload, &st) != nil || st.Tool != tool || st.Round < 1 {
		return 0, errTamperedState
	}
	return st.Round, nil
}

// The suite's questions, by the keys it looks for in inputRequests.
var (
	askName = mcp.ElicitationParams{
		Message:         "What is your name?",
		RequestedSchema: stringSchema("name"),
	}
	askConfirm = mcp.ElicitationParams{
		Message: "Please confirm",
		RequestedSchema: map[string]any{
			"type":       "object",
			"properties": map[string]any{"ok": map[string]any{"type": "boolean"}},
			"required":   []string{"ok"},
		},
	}
	askCapital  = samplingParams("What is the capital of France?", 100)
	askGreeting = samplingParams("Generate a greeting", 50)
)

// stringSchema is a form with one required string field.
func stringSchema(field string) map[string]any {
	return map[string]any{
		"type":       "object",
		"properties": map[string]any{field: map[string]any{"type": "string"}},
		"required":   []string{field},
	}
}

func samplingParams(question string, maxTokens int) mcp.CreateMessageParams {
	return mcp.CreateMessageParams{
		Messages:  []mcp.SamplingMessage{{Role: mcp.RoleUser, Content: mcp.NewTextContent(question)}},
		MaxTokens: maxTokens,
	}
}

// mrtrTools returns the input_required fixtures.
func mrtrTools(fixture func(mcp.Tool, Handler, ...string) Tool) []Tool {
	return []Tool{
		fixture(fixtureDef("test_input_required_result_elicitation", "Asks the user for their name, then greets them"),
			runAskName, ClientElicitation),
		fixture(fixtureDef("test_input_required_result_sampling", "Asks the client's LLM a question and returns its answer"),
			runAskCapital, ClientSampling),
		fixture(fixtureDef("test_input_required_result_list_roots", "Asks the client for its roots and lists them"),
			runAskRoots, ClientRoots),
		fixture(fixtureDef("test_input_required_result_request_state", "Asks for a confirmation and checks its requestState"),
			runConfirmWithState("test_input_required_result_request_state"), ClientElicitation),
		fixture(fixtureDef("test_input_required_result_tampered_state", "Asks for a confirmation and refuses a changed requestState"),
			runConfirmWithState("test_input_required_result_tampered_state"), ClientElicitation),
		fixture(fixtureDef("test_input_required_result_multiple_inputs", "Asks for a name, an LLM greeting and the client's roots at once"),
			runAskAll, ClientElicitation, ClientSampling, ClientRoots),
		fixture(fixtureDef("test_input_required_result_multi_round", "Asks for a name, then a colour, in two rounds"),
			runTwoRounds),
		fixture(fixtureDef("test_input_required_result_capabilities", "Asks only for what the client declared it can give"),
			runAskDeclared),
		// The suite checks that the answer to a call that needs the user
		// carries no request of the server's own: it asks for the
		// elicitation in an input_required result.
		fixture(fixtureDef("test_streaming_elicitation", "Needs the user's confirmation"),
			runConfirmOnce, ClientElicitation),
	}
}

// inputs returns the call's inputResponses and requestState.
func inputs(call Call) (mcp.InputResponses, string) {
	p := call.Request.Params.MultiRoundTripParams
	return p.InputResponses, p.RequestState
}

// acceptedField returns content[field] of an accepted elicitation answer
// under key, as a string; ok is false when there is no usable answer, so
// the fixture asks again (SEP-2322: re-request what is missing or invalid).
func acceptedField(responses mcp.InputResponses, key, field string) (string, bool) {
	r := server.ElicitationResponse(responses, key)
	if r == nil || r.Action != mcp.ElicitationResponseActionAccept {
		return "", false
	}
	content, _ := r.Content.(map[string]any)
	v, ok := content[field].(string)
	return v, ok
}

// samplingText returns the text of the client's LLM answer under key.
func samplingText(responses mcp.InputResponses, key string) (string, bool) {
	r := server.SamplingResponse(responses, key)
	if r == nil {
		return "", false
	}
	switch c := r.Content.(type) {
	case mcp.TextContent:
		return c.Text, true
	case map[string]any:
		text, ok := c["text"].(string)
		return text, ok
	}
	return "", false
}

func runAskName(_ context.Context, call Call) (*mcp.CallToolResult, error) {
	responses, _ := inputs(call)
	if name, ok := acceptedField(responses, "user_name", "name"); ok {
		return mcp.NewToolResultText("Hello, " + name + "!"), nil
	}
	return server.NewInputRequestBuilder("").Elicit("user_name", askName).ToolResult(), nil
}

func runAskCapital(_ context.Context, call Call) (*mcp.CallToolResult, error) {
	responses, _ := inputs(call)
	if text, ok := samplingText(responses, "capital_question"); ok {
		return mcp.NewToolResultText("The LLM answered: " + text), nil
	}
	return server.NewInputRequestBuilder("").Sample("capital_question", askCapital).ToolResult(), nil
}

func runAskRoots(_ context.Context, call Call) (*mcp.CallToolResult, error) {
	responses, _ := inputs(call)
	if roots := server.RootsResponse(responses, "client_roots"); roots != nil {
		return mcp.NewToolResultText(fmt.Sprintf("The client has %d roots: %s", len(roots.Roots), rootURIs(roots))), nil
	}
	return server.NewInputRequestBuilder("").Roots("client_roots").ToolResult(), nil
}

func rootURIs(r *mcp.ListRootsResult) string {
	uris := make([]string, len(r.Roots))
	for i, root := range r.Roots {
		uris[i] = root.URI
	}
	return strings.Join(uris, ", ")
}

// runConfirmWithState asks for a confirmation with a signed requestState
// and, on the retry, refuses a state it did not issue.
func runConfirmWithState(tool string) Handler {
	return func(_ context.Context, call Call) (*mcp.CallToolResult, error) {
		responses, state := inputs(call)
		round, err := openState(tool, state)
		if err != nil {
			return nil, err
		}
		if r := server.ElicitationResponse(responses, "confirm"); round == 1 && r != nil {
			return mcp.NewToolResultText(fmt.Sprintf("state-ok: the user answered %q", r.Action)), nil
		}
		return server.NewInputRequestBuilder(signState(tool, 1)).Elicit("confirm", askConfirm).ToolResult(), nil
	}
}

func runConfirmOnce(_ context.Context, call Call) (*mcp.CallToolResult, error) {
	responses, _ := inputs(call)
	if r := server.ElicitationResponse(responses, "confirm"); r != nil {
		return mcp.NewToolResultText(fmt.Sprintf("The user answered %q.", r.Action)), nil
	}
	return server.NewInputRequestBuilder("").Elicit("confirm", askConfirm).ToolResult(), nil
}

// runAskAll asks for three things at once and asks again for whatever an
// answer lacked.
func runAskAll(_ context.Context, call Call) (*mcp.CallToolResult, error) {
	const tool = "test_input_required_result_multiple_inputs"
	responses, state := inputs(call)
	round, err := openState(tool, state)
	if err != nil {
		return nil, err
	}
	name, haveName := acceptedField(responses, "user_name", "name")
	greeting, haveGreeting := samplingText(responses, "greeting")
	roots := server.RootsResponse(responses, "client_roots")
	if round == 1 && haveName && haveGreeting && roots != nil {
		return mcp.NewToolResultText(fmt.Sprintf("%s, %s (%d roots)", greeting, name, len(roots.Roots))), nil
	}
	b := server.NewInputRequestBuilder(signState(tool, 1))
	if !haveName {
		b.Elicit("user_name", askName)
	}
	if !haveGreeting {
		b.Sample("greeting", askGreeting)
	}
	if roots == nil {
		b.Roots("client_roots")
	}
	return b.ToolResult(), nil
}

// runTwoRounds asks for a name, then, in a second round with a new
// requestState, for a colour.
func runTwoRounds(_ context.Context, call Call) (*mcp.CallToolResult, error) {
	const tool = "test_input_required_result_multi_round"
	responses, state := inputs(call)
	round, err := openState(tool, state)
	if err != nil {
		return nil, err
	}
	if round == 2 {
		if colour, ok := acceptedField(responses, "step2", "color"); ok {
			return mcp.NewToolResultText("Favourite colour: " + colour), nil
		}
	}
	if round == 2 || round == 1 && hasAccepted(responses, "step1", "name") {
		return server.NewInputRequestBuilder(signState(tool, 2)).Elicit("step2", mcp.ElicitationParams{
			Message:         "Step 2: What is your favorite color?",
			RequestedSchema: stringSchema("color"),
		}).ToolResult(), nil
	}
	return server.NewInputRequestBuilder(signState(tool, 1)).Elicit("step1", mcp.ElicitationParams{
		Message:         "Step 1: What is your name?",
		RequestedSchema: stringSchema("name"),
	}).ToolResult(), nil
}

func hasAccepted(responses mcp.InputResponses, key, field string) bool {
	_, ok := acceptedField(responses, key, field)
	return ok
}

// runAskDeclared asks only for what the request's clientCapabilities
// declare: a server must not ask a client for what it cannot give.
func runAskDeclared(ctx context.Context, call Call) (*mcp.CallToolResult, error) {
	const tool = "test_input_required_result_capabilities"
	responses, state := inputs(call)
	round, err := openState(tool, state)
	if err != nil {
		return nil, err
	}
	if round == 1 && len(responses) > 0 {
		return mcp.NewToolResultText(fmt.Sprintf("Got %d answers.", len(responses))), nil
	}
	var caps mcp.ClientCapabilities
	if info := server.RequestProtocolInfoFromContext(ctx); info != nil && info.ClientCapabilities != nil {
		caps = *info.ClientCapabilities
	}
	b := server.NewInputRequestBuilder(signState(tool, 1))
	asked := false
	if caps.Elicitation != nil {
		b.Elicit("user_name", askName)
		asked = true
	}
	if caps.Sampling != nil {
		b.Sample("greeting", askGreeting)
		asked = true
	}
	if !asked {
		return Errorf("This tool needs a client that can ask its user or its LLM."), nil
	}
	return b.ToolResult(), nil
}
