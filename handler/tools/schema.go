package tools

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// english prints the validator's messages.
var english = message.NewPrinter(language.English)

// inputValidator checks a call's arguments against the tool's input schema
// with a real JSON Schema validator (the one mcp-go itself validates with),
// so every rule the schema states — patterns, formats, enums, bounds,
// unknown and missing arguments, types — holds before the tool runs.
type inputValidator struct{ schema *jsonschema.Schema }

// newInputValidator compiles def's input schema, with formats asserted (a
// validator treats them as annotations unless told otherwise).
func newInputValidator(def mcp.Tool) (*inputValidator, error) {
	raw, err := json.Marshal(def.InputSchema)
	if len(def.RawInputSchema) > 0 {
		raw, err = def.RawInputSchema, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tool %s: encode input schema: %w", def.Name, err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("tool %s: input schema: %w", def.Name, err)
	}
	url := "mem:///tools/" + def.Name + "/input.json"
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("tool %s: input schema: %w", def.Name, err)
	}
	s, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("tool %s: compile input schema: %w", def.Name, err)
	}
	return &inputValidator{schema: s}, nil
}

// check validates raw, the call's arguments with numbers as json.Number
// and nulls (clients send them for optional arguments they leave unset)
// already dropped. A failure is an *argError naming each argument and the
// rule it broke.
func (v *inputValidator) check(raw map[string]any) error {
	err := v.schema.Validate(raw)
	if err == nil {
		return nil
	}
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return fmt.Errorf("validate arguments: %w", err)
	}
	var msgs []string
	for _, leaf := range leaves(verr) {
		msg := leaf.ErrorKind.LocalizedString(english)
		if len(leaf.InstanceLocation) > 0 {
			msg = fmt.Sprintf("argument %q: %s", strings.Join(leaf.InstanceLocation, "."), msg)
		}
		// The caller's own values are quoted back: bounded, so a huge
		// argument does not come back larger.
		if len(msg) > maxProblem {
			msg = msg[:maxProblem] + "…"
		}
		msgs = append(msgs, msg)
	}
	slices.Sort(msgs)
	msgs = slices.Compact(msgs)
	if len(msgs) > maxProblems {
		msgs = append(msgs[:maxProblems], fmt.Sprintf("and %d more", len(msgs)-maxProblems))
	}
	return badArg("%s", strings.Join(msgs, "; "))
}

// An argument error names at most maxProblems problems of at most
// maxProblem bytes each.
const (
	maxProblems = 10
	maxProblem  = 300
)

// leaves are the failures themselves, without the "allOf failed" kind of
// nodes above them.
func leaves(e *jsonschema.ValidationError) []*jsonschema.ValidationError {
	if len(e.Causes) == 0 {
		return []*jsonschema.ValidationError{e}
	}
	var out []*jsonschema.ValidationError
	for _, c := range e.Causes {
		out = append(out, leaves(c)...)
	}
	return out
}
