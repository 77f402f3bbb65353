package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/entra"
	"github.com/entra-mcp/functions-mcp/handler/taskstore"
)

// Resource is an MCP resource at a fixed URI and the permissions reading it
// needs, as a tool's.
type Resource struct {
	Def         mcp.Resource
	Permissions []string
	// Read returns the resource for the verified caller.
	Read func(ctx context.Context, p *entra.Principal) ([]mcp.ResourceContents, error)
}

// ResourceTemplate is an MCP resource template (a URI template such as
// task://{id}) and the permissions reading it needs, as a tool's.
type ResourceTemplate struct {
	Def         mcp.ResourceTemplate
	Permissions []string
	// Read returns the resource at uri for the verified caller, with the
	// template's variables. ErrResourceNotFound: there is none (the
	// caller is told as for a URI no template matches).
	Read func(ctx context.Context, p *entra.Principal, uri string, vars map[string]string) ([]mcp.ResourceContents, error)
}

// Prompt is an MCP prompt and the permissions getting it needs.
type Prompt struct {
	Def         mcp.Prompt
	Permissions []string
	Get         func(ctx context.Context, p *entra.Principal, args map[string]string) (*mcp.GetPromptResult, error)
}

// Components are tools, resources, resource templates and prompts served
// together: what the upstream MCP servers' lists hold.
type Components struct {
	Tools     []Tool
	Resources []Resource
	Templates []ResourceTemplate
	Prompts   []Prompt
}

// ErrResourceNotFound is a Read's answer for a URI that names nothing.
var ErrResourceNotFound = errors.New("resource not found")

// Resources returns every production resource at a fixed URI.
func Resources(d Deps) []Resource {
	return []Resource{openTasks(d)}
}

// openTasks is tasks://open: the first page of the organisation's open
// tasks, newest first, as JSON.
func openTasks(d Deps) Resource {
	const uri = "tasks://open"
	return Resource{
		Def: mcp.NewResource(uri, "open-tasks",
			mcp.WithResourceDescription("Your organisation's open tasks, newest first (the first page), as JSON."),
			mcp.WithMIMEType("application/json")),
		Permissions: []string{permRead},
		Read: func(ctx context.Context, p *entra.Principal) ([]mcp.ResourceContents, error) {
			if d.Tasks == nil {
				return nil, errors.New("no task store configured")
			}
			page, err := d.Tasks.List(ctx, p.TenantID, taskstore.ListQuery{Status: taskstore.StatusOpen, Limit: taskstore.MaxListLimit})
			if err != nil {
				return nil, fmt.Errorf("list open tasks: %w", err)
			}
			b, err := json.Marshal(taskList{Tasks: page.Tasks, NextCursor: page.NextCursor})
			if err != nil {
				return nil, fmt.Errorf("encode tasks: %w", err)
			}
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: uri, MIMEType: "application/json", Text: string(b)}}, nil
		},
	}
}

// Templates returns every production resource template.
func Templates(d Deps) []ResourceTemplate {
	return []ResourceTemplate{taskTemplate(d)}
}

// Prompts returns every production prompt.
func Prompts(d Deps) []Prompt {
	return []Prompt{weeklySummary(d)}
}

// taskID is what a task id looks like (idArg's pattern).
var taskID = regexp.MustCompile(`^[a-z2-7]{12}$`)

// taskTemplate is task://{id}: a task of the caller's organisation as JSON.
func taskTemplate(d Deps) ResourceTemplate {
	return ResourceTemplate{
		Def: mcp.NewResourceTemplate("task://{id}", "task",
			mcp.WithTemplateDescription("A task of your organisation, as JSON (the id as create_task, list_tasks or search_tasks return it)."),
			mcp.WithTemplateMIMEType("application/json")),
		Permissions: []string{permRead},
		Read: func(ctx context.Context, p *entra.Principal, uri string, vars map[string]string) ([]mcp.ResourceContents, error) {
			if d.Tasks == nil {
				return nil, errors.New("no task store configured")
			}
			if !taskID.MatchString(vars["id"]) {
				return nil, ErrResourceNotFound
			}
			task, err := d.Tasks.Get(ctx, p.TenantID, vars["id"])
			if errors.Is(err, taskstore.ErrNotFound) {
				return nil, ErrResourceNotFound
			}
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", uri, err)
			}
			b, err := json.Marshal(task)
			if err != nil {
				return nil, fmt.Errorf("encode task: %w", err)
			}
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: uri, MIMEType: "application/json", Text: string(b)}}, nil
		},
	}
}

// weeklySummary asks the model for a summary of the organisation's open
// tasks, with the tasks in the prompt.
func weeklySummary(d Deps) Prompt {
	return Prompt{
		Def: mcp.NewPrompt("weekly_summary",
			mcp.WithPromptTitle("Weekly summary of open tasks"),
			mcp.WithPromptDescription("A summary of your organisation's open tasks for a weekly update, grouped by theme, with what is overdue or blocked first."),
			mcp.WithArgument("audience", mcp.ArgumentDescription("Who the summary is for, e.g. the team or leadership (default: the team)"))),
		Permissions: []string{permRead},
		Get: func(ctx context.Context, p *entra.Principal, args map[string]string) (*mcp.GetPromptResult, error) {
			if d.Tasks == nil {
				return nil, errors.New("no task store configured")
			}
			audience := strings.TrimSpace(args["audience"])
			if audience == "" {
				audience = "the team"
			}
			if len(audience) > 100 {
				return nil, fmt.Errorf("audience: at most 100 characters")
			}
			page, err := d.Tasks.List(ctx, p.TenantID, taskstore.ListQuery{Status: taskstore.StatusOpen, Limit: taskstore.MaxListLimit})
			if err != nil {
				return nil, fmt.Errorf("list open tasks: %w", err)
			}
			var b strings.Builder
			fmt.Fprintf(&b, "Write a short weekly summary of these open tasks for %s. Group them by theme and put anything that looks overdue or blocked first.\n\n", audience)
			for _, t := range page.Tasks {
				fmt.Fprintf(&b, "- %s (%s, created %s by %s): %s\n", t.Title, t.ID, t.CreatedAt.Format("2006-01-02"), t.CreatedByName, t.Notes)
			}
			if len(page.Tasks) == 0 {
				b.WriteString("(There are no open tasks.)\n")
			}
			return mcp.NewGetPromptResult("Weekly summary of open tasks",
				[]mcp.PromptMessage{mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent(b.String()))}), nil
		},
	}
}
