package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/mark3labs/mcp-go/mcp"
)

// Spec is what a typed tool declares about itself besides its types.
type Spec struct {
	Name        string // the tool's name in tools/list and tools/call
	Title       string
	Description string
	// Permissions the caller must hold, all of them, by name (authz's
	// roles.json says which App Roles grant them). None: nobody may.
	Permissions []string
	// Behaviour hints (MCP ToolAnnotations), all stated, as clients read
	// an unset hint as the unsafe default.
	ReadOnly, Destructive, Idempotent, OpenWorld bool
	// Arguments adjusts the input schema inferred from the argument type,
	// for what struct tags cannot say: patterns, formats, enums, bounds.
	// The validator enforces whatever the schema says.
	Arguments func(*jsonschema.Schema)
}

// Define declares a tool whose arguments are an In and whose structured
// result is an Out. The input and output schemas are inferred from the
// types (field names from their json tags, descriptions from jsonschema
// tags, fields without omitempty required, no other fields allowed) and
// shown in tools/list; each call's arguments are validated against the
// input schema before they are decoded into an In, so run sees only
// arguments that pass it, and a caller who sent others gets a tool error
// naming the argument and the rule.
//
// run returns its result, or a *mcp.CallToolResult error of its own made
// with Refuse for a problem the caller can fix; any other error is an
// internal failure: logged, and a generic tool error for the caller.
func Define[In, Out any](spec Spec, run func(ctx context.Context, call Call, in In) (Out, error)) (Tool, error) {
	in, err := jsonschema.For[In](nil)
	if err != nil {
		return Tool{}, fmt.Errorf("tool %s: input schema from %T: %w", spec.Name, *new(In), err)
	}
	if in.Type != "object" {
		return Tool{}, fmt.Errorf("tool %s: arguments must be a struct, not %T", spec.Name, *new(In))
	}
	if spec.Arguments != nil {
		spec.Arguments(in)
	}
	out, err := jsonschema.For[Out](nil)
	if err != nil {
		return Tool{}, fmt.Errorf("tool %s: output schema from %T: %w", spec.Name, *new(Out), err)
	}
	inJSON, err := json.Marshal(in)
	if err != nil {
		return Tool{}, fmt.Errorf("tool %s: encode input schema: %w", spec.Name, err)
	}
	outJSON, err := json.Marshal(out)
	if err != nil {
		return Tool{}, fmt.Errorf("tool %s: encode output schema: %w", spec.Name, err)
	}
	def := define(spec.Name, spec.Title, spec.Description,
		hints{readOnly: spec.ReadOnly, destructive: spec.Destructive, idempotent: spec.Idempotent},
		mcp.WithRawInputSchema(inJSON), mcp.WithRawOutputSchema(outJSON))
	def.Annotations.OpenWorldHint = mcp.ToBoolPtr(spec.OpenWorld)
	def.InputSchema = mcp.ToolInputSchema{} // the raw one is the schema; mcp-go refuses both
	validator, err := newInputValidator(def)
	if err != nil {
		return Tool{}, err
	}
	return Tool{
		Def:         def,
		Permissions: spec.Permissions,
		Run: func(ctx context.Context, call Call) (*mcp.CallToolResult, error) {
			if call.Principal == nil {
				return nil, fmt.Errorf("%s: call has no principal", spec.Name)
			}
			args, err := decodeArgs[In](validator, call.Request)
			var bad *argError
			if errors.As(err, &bad) {
				return Errorf("%s", bad.msg), nil
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", spec.Name, err)
			}
			res, err := run(ctx, call, args)
			var refusal *Refusal
			if errors.As(err, &refusal) {
				return Errorf("%s", refusal.Message), nil
			}
			if err != nil {
				return nil, err
			}
			return jsonResult(res)
		},
	}, nil
}

// Refusal is a typed tool's answer to a call it cannot carry out for a
// reason the caller can act on (no such task, a value out of range for
// today): the caller gets it as a tool error, as written.
type Refusal struct{ Message string }

func (r *Refusal) Error() string { return r.Message }

// Refuse returns a Refusal with a formatted message.
func Refuse(format string, a ...any) error { return &Refusal{Message: fmt.Sprintf(format, a...)} }

// decodeArgs validates a call's arguments and decodes them into an In.
// Null stands for an argument left out, as clients send it.
func decodeArgs[In any](v *inputValidator, req mcp.CallToolRequest) (In, error) {
	var in In
	raw, err := rawArgs(req)
	if err != nil {
		return in, err
	}
	for name, val := range raw {
		if val == nil {
			delete(raw, name)
		}
	}
	if err := v.check(raw); err != nil {
		return in, err
	}
	b, err := json.Marshal(raw)
	if err == nil {
		err = json.Unmarshal(b, &in)
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		// JSON Schema calls 10.0 and 1e400 integers; a Go int does not take
		// them, and a number may be too big for its field.
		return in, badArg("argument %q: %s does not fit: give a whole number in range", typeErr.Field, typeErr.Value)
	}
	if err != nil {
		return in, fmt.Errorf("decode arguments: %w", err)
	}
	return in, nil
}
