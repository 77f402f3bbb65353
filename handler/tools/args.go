package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/mark3labs/mcp-go/mcp"
)

// Errorf returns a tool result that reports a problem the caller can fix.
func Errorf(format string, a ...any) *mcp.CallToolResult {
	return mcp.NewToolResultError(fmt.Sprintf(format, a...))
}

// args are a call's arguments after checking them against the tool's input
// schema: strings are strings, integers are ints, and only declared
// arguments are present.
type args map[string]any

// str returns a string argument and whether it was given.
func (a args) str(name string) (string, bool) {
	s, ok := a[name].(string)
	return s, ok
}

// strPtr returns a string argument, or nil if it was not given.
func (a args) strPtr(name string) *string {
	if s, ok := a.str(name); ok {
		return &s
	}
	return nil
}

// integer returns an integer argument, or 0 if it was not given.
func (a args) integer(name string) int {
	n, _ := a[name].(int)
	return n
}

// argsHandler runs a call whose arguments have been checked.
type argsHandler func(ctx context.Context, call Call, a args) (*mcp.CallToolResult, error)

// newTool binds a definition, the permission it needs and its handler. The arguments are
// checked against the definition's own input schema before the handler
// runs, so what the schema promises is what the handler gets.
func newTool(def mcp.Tool, permission string, run argsHandler) Tool {
	validator, err := newInputValidator(def)
	if err != nil {
		// The schemas are literals in this package: a programming error,
		// which every test that lists the tools finds.
		panic(err)
	}
	return Tool{
		Def:         def,
		Permissions: []string{permission},
		Run: func(ctx context.Context, call Call) (*mcp.CallToolResult, error) {
			if call.Principal == nil {
				return nil, fmt.Errorf("%s: call has no principal", def.Name)
			}
			a, err := bindArgs(def.InputSchema, validator, call.Request)
			var bad *argError
			if errors.As(err, &bad) {
				return Errorf("%s", bad.msg), nil
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", def.Name, err)
			}
			return run(ctx, call, a)
		},
	}
}

// argError is an argument problem the caller can fix.
type argError struct{ msg string }

func (e *argError) Error() string { return e.msg }

func badArg(format string, a ...any) error {
	return &argError{msg: fmt.Sprintf(format, a...)}
}

// bindArgs checks a call's arguments against schema: no unknown names, all
// required names, and each value of its declared type and within its
// declared bounds. Only the parts of JSON Schema our tools use are
// understood; any other type is an error in the tool, not the call.
func bindArgs(schema mcp.ToolInputSchema, validator *inputValidator, req mcp.CallToolRequest) (args, error) {
	raw, err := rawArgs(req)
	if err != nil {
		return nil, err
	}
	// Clients often send null for an optional argument they leave unset.
	for name, val := range raw {
		if val == nil && !slices.Contains(schema.Required, name) {
			delete(raw, name)
		}
	}
	for name := range raw {
		if _, ok := schema.Properties[name]; !ok {
			return nil, badArg("unknown argument %q; this tool takes %s", name, argNames(schema))
		}
	}
	out := args{}
	for name, prop := range schema.Properties {
		v, given := raw[name]
		// Clients often send null for an optional argument they leave unset.
		if !given || v == nil {
			if slices.Contains(schema.Required, name) {
				return nil, badArg("missing required argument %q", name)
			}
			continue
		}
		p, ok := prop.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("schema of %q is not an object", name)
		}
		if out[name], err = checkValue(name, p, v); err != nil {
			return nil, err
		}
	}
	// What the checks above do not cover (patterns, formats, and any other
	// rule the schema states) the validator does.
	if err := validator.check(raw); err != nil {
		return nil, err
	}
	return out, nil
}

func argNames(schema mcp.ToolInputSchema) string {
	if len(schema.Properties) == 0 {
		return "no arguments"
	}
	names := make([]string, 0, len(schema.Properties))
	for n := range schema.Properties {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// rawArgs returns the arguments as a JSON object with numbers kept exact.
func rawArgs(req mcp.CallToolRequest) (map[string]any, error) {
	data := []byte(req.Params.RawArguments)
	if len(data) == 0 {
		switch v := req.Params.Arguments.(type) {
		case nil:
			return map[string]any{}, nil
		case json.RawMessage:
			data = v
		default:
			b, err := json.Marshal(v)
			if err != nil {
				return nil, badArg("arguments must be a JSON object")
			}
			data = b
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, badArg("arguments must be a JSON object")
	}
	if m == nil { // "null"
		m = map[string]any{}
	}
	return m, nil
}

func checkValue(name string, prop map[string]any, v any) (any, error) {
	switch prop["type"] {
	case "string":
		return checkString(name, prop, v)
	case "integer":
		return checkInteger(name, prop, v)
	default:
		return nil, fmt.Errorf("argument %q has unsupported schema type %v", name, prop["type"])
	}
}

func checkString(name string, prop map[string]any, v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", badArg("argument %q must be a string", name)
	}
	n := utf8.RuneCountInString(s) // JSON Schema counts code points
	if hi, ok := schemaInt(prop["maxLength"]); ok && n > hi {
		return "", badArg("argument %q must be at most %d characters", name, hi)
	}
	if lo, ok := schemaInt(prop["minLength"]); ok && n < lo {
		return "", badArg("argument %q must be at least %d characters", name, lo)
	}
	if enum, ok := prop["enum"].([]string); ok && !slices.Contains(enum, s) {
		return "", badArg("argument %q must be one of: %s", name, strings.Join(enum, ", "))
	}
	return s, nil
}

func checkInteger(name string, prop map[string]any, v any) (int, error) {
	n, ok := toInt(v)
	if !ok {
		return 0, badArg("argument %q must be an integer", name)
	}
	lo, hasLo := schemaInt(prop["minimum"])
	hi, hasHi := schemaInt(prop["maximum"])
	switch {
	case hasLo && hasHi && (n < lo || n > hi):
		return 0, badArg("argument %q must be between %d and %d", name, lo, hi)
	case hasLo && n < lo:
		return 0, badArg("argument %q must be at least %d", name, lo)
	case hasHi && n > hi:
		return 0, badArg("argument %q must be at most %d", name, hi)
	}
	return n, nil
}

// toInt accepts a JSON number with no fractional part (JSON Schema counts
// 10.0 as an integer) that fits an int.
func toInt(v any) (int, bool) {
	var f float64
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return int(i), int64(int(i)) == i
		}
		var err error
		if f, err = x.Float64(); err != nil {
			return 0, false
		}
	case float64:
		f = x
	case int:
		return x, true
	case int64:
		return int(x), int64(int(x)) == x
	default:
		return 0, false
	}
	if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int(f), true
}

// schemaInt reads a bound from a property schema built by mcp-go, which
// stores what it was given (an int) or, for a parsed schema, a float64.
func schemaInt(v any) (int, bool) {
	switch x := v.(type) {
	case int:
		return x, true
	case float64:
		return int(x), true
	}
	return 0, false
}
