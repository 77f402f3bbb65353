// Code generated from README.md's "Adding a tool"; TestReadmeExampleTool holds the two equal. DO NOT EDIT.

package tools

import "context"

type deploymentsArgs struct {
	Environment string `json:"environment" jsonschema:"dev, test or prod"`
	Limit       int    `json:"limit,omitempty" jsonschema:"Most to return (default 10)"`
}

type deploymentsResult struct {
	Deployments []string `json:"deployments"`
}

func deploymentTools(Deps) []Tool {
	t, err := Define(Spec{
		Name: "list_deployments", Title: "List deployments",
		Description: "Lists the latest deployments of an environment.",
		Permissions: []string{"deploy.read"},
		ReadOnly:    true, Idempotent: true,
	}, func(ctx context.Context, call Call, in deploymentsArgs) (deploymentsResult, error) {
		if in.Limit > 50 {
			return deploymentsResult{}, Refuse("limit: at most 50")
		}
		return deploymentsResult{Deployments: []string{in.Environment + "-42 by " + call.Principal.ObjectID}}, nil
	})
	if err != nil {
		panic(err) // a schema that cannot be built: every test that lists the tools fails
	}
	return []Tool{t}
}
