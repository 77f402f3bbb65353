package tools

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/outage"
	"github.com/entra-mcp/functions-mcp/handler/taskstore"
)

// taskList is the structured result of list_tasks.
type taskList struct {
	Tasks      []taskstore.Task `json:"tasks"`
	NextCursor string           `json:"nextCursor,omitempty"`
}

// searchResult is the structured result of search_tasks.
type searchResult struct {
	Tasks    []taskstore.Task `json:"tasks"`
	Complete bool             `json:"complete"`
}

// taskHandlers run the task tools against the caller's tenant. The tenant
// and the user always come from the verified token, never from arguments.
type taskHandlers struct {
	tasks *taskstore.Store
}

func taskTools(d Deps) []Tool {
	h := taskHandlers{tasks: d.Tasks}
	create := newTool(createTaskDef(), permWrite, h.withStore(h.create))
	create.Unavailable = "A service this tool needs did not answer in time, so the task may have been created. " +
		"Calling create_task again with the same idempotency_key will not create a second one; without one, " +
		"check with list_tasks (if you may read tasks) before creating it again."
	del := newTool(deleteTaskDef(), permWrite, h.withStore(h.delete))
	del.Unavailable = "A service this tool needs did not answer in time, so the task may or may not have been deleted. " +
		"Calling delete_task again with the same id is safe; get_task (if you may read tasks) tells whether it is gone."
	return []Tool{
		newTool(listTasksDef(), permRead, h.withStore(h.list)),
		newTool(getTaskDef(), permRead, h.withStore(h.get)),
		newTool(searchTasksDef(), permRead, h.withStore(h.search)),
		create,
		newTool(updateTaskDef(), permWrite, h.withStore(h.update)),
		newTool(completeTaskDef(), permWrite, h.withStore(h.complete)),
		del,
	}
}

// The task tools' permissions: the role table grants them.
const (
	permRead  = "tasks.read"
	permWrite = "tasks.write"
)

// withStore fails a call when the server runs without a task store, the way
// it fails when Redis is down, so tools/list still shows the tools.
func (h taskHandlers) withStore(run argsHandler) argsHandler {
	return func(ctx context.Context, call Call, a args) (*mcp.CallToolResult, error) {
		if h.tasks == nil {
			return nil, fmt.Errorf("no task store configured: %w", outage.New("task store", nil))
		}
		return run(ctx, call, a)
	}
}

// Schemas.

func taskSchema() map[string]any { return object(taskProperties()) }

// writeSchema is what the write tools answer: the whole task to a caller who
// may read tasks, only its id and status (a taskReceipt) to one who may not.
func writeSchema() map[string]any {
	return objectWith(taskProperties(), []string{"id", "status"})
}

func taskProperties() map[string]any {
	return map[string]any{
		"id":            str("Task id"),
		"title":         str("Title"),
		"notes":         str("Notes"),
		"status":        map[string]any{"type": "string", "enum": []string{taskstore.StatusOpen, taskstore.StatusDone}},
		"createdBy":     str("Object id of the user who created the task"),
		"createdByName": str("Name of the user who created the task"),
		"createdAt":     map[string]any{"type": "string", "format": "date-time"},
		"updatedBy":     str("Object id of the user who last changed the task"),
		"updatedByName": str("Name of the user who last changed the task"),
		"updatedAt":     map[string]any{"type": "string", "format": "date-time"},
	}
}

func idArg() mcp.ToolOption {
	return mcp.WithString("id", mcp.Required(),
		mcp.Description("Task id, as returned by create_task, list_tasks or search_tasks"),
		mcp.MinLength(12), mcp.MaxLength(12), mcp.Pattern("^[a-z2-7]{12}$"))
}

func limitArg(what string) mcp.ToolOption {
	return mcp.WithInteger("limit",
		mcp.Description(fmt.Sprintf("Most %s to return (default %d)", what, taskstore.DefaultLimit)),
		mcp.Min(1), mcp.Max(taskstore.MaxListLimit), mcp.DefaultNumber(taskstore.DefaultLimit))
}

func statusArg(description string, opts ...mcp.PropertyOption) mcp.ToolOption {
	return mcp.WithString("status", append([]mcp.PropertyOption{
		mcp.Description(description), mcp.Enum(taskstore.StatusOpen, taskstore.StatusDone),
	}, opts...)...)
}

func titleArg(opts ...mcp.PropertyOption) mcp.ToolOption {
	return mcp.WithString("title", append([]mcp.PropertyOption{
		mcp.Description(fmt.Sprintf("Short title, one line: at most %d characters and %d bytes of UTF-8",
			taskstore.MaxTitle, taskstore.MaxTitleBytes)),
		mcp.MinLength(1), mcp.MaxLength(taskstore.MaxTitle),
	}, opts...)...)
}

func notesArg() mcp.ToolOption {
	return mcp.WithString("notes",
		mcp.Description(fmt.Sprintf("Free-text notes; may span lines. At most %d characters and %d bytes of UTF-8 "+
			"(characters outside ASCII take 2 to 4 bytes each)", taskstore.MaxNotes, taskstore.MaxNotesBytes)),
		mcp.MaxLength(taskstore.MaxNotes))
}

func idempotencyKeyArg() mcp.ToolOption {
	return mcp.WithString("idempotency_key",
		mcp.Description(fmt.Sprintf("A key you choose for this one task, such as a UUID: 1 to %d characters of "+
			"A-Z, a-z, 0-9, '.', '_', ':' and '-'. If a call fails or times out, call again with the same key "+
			"and arguments: for %d hours, you get the task the first call created instead of a second one. "+
			"Use a new key for each new task.", taskstore.MaxKeyLen, int(taskstore.IdempotencyWindow.Hours()))),
		mcp.MinLength(1), mcp.MaxLength(taskstore.MaxKeyLen), mcp.Pattern(`^[A-Za-z0-9._:-]+$`))
}

func listTasksDef() mcp.Tool {
	return define("list_tasks", "List tasks",
		"Lists your organisation's tasks, newest first, one page at a time. "+
			"Pass nextCursor from a result as cursor to get the next page.",
		readOnly(),
		statusArg("Only tasks with this status (default: all)"),
		limitArg("tasks"),
		mcp.WithString("cursor", mcp.Description("nextCursor from the previous page"), mcp.MaxLength(32)),
		outputSchema(objectWith(map[string]any{
			"tasks":      arrayOf(taskSchema()),
			"nextCursor": str("Cursor for the next page; absent on the last page"),
		}, []string{"tasks"})),
	)
}

func getTaskDef() mcp.Tool {
	return define("get_task", "Get a task",
		"Shows one task of your organisation by id.",
		readOnly(), idArg(), outputSchema(taskSchema()))
}

func searchTasksDef() mcp.Tool {
	return define("search_tasks", "Search tasks",
		fmt.Sprintf("Finds your organisation's tasks whose title or notes contain the query, "+
			"ignoring case, newest first. Looks at the %d newest tasks at most, and stops once it has read "+
			"%d MiB of titles and notes; complete is false when there may be more matches.",
			taskstore.SearchScanLimit, taskstore.SearchByteLimit>>20),
		readOnly(),
		mcp.WithString("query", mcp.Required(), mcp.Description("Text to look for"),
			mcp.MinLength(1), mcp.MaxLength(taskstore.MaxQuery)),
		limitArg("matches"),
		outputSchema(object(map[string]any{
			"tasks":    arrayOf(taskSchema()),
			"complete": map[string]any{"type": "boolean", "description": "Whether every task was searched"},
		})),
	)
}

func createTaskDef() mcp.Tool {
	return define("create_task", "Create a task",
		"Adds an open task to your organisation's task list. "+
			"Pass an idempotency_key so that calling again after a failure or timeout cannot create the task twice.",
		hints{},
		titleArg(mcp.Required()), notesArg(), idempotencyKeyArg(), outputSchema(writeSchema()))
}

func updateTaskDef() mcp.Tool {
	return define("update_task", "Update a task",
		"Changes a task's title, notes and/or status; arguments left out stay as they are. "+
			"Overwrites the previous values.",
		hints{destructive: true, idempotent: true},
		idArg(), titleArg(), notesArg(),
		statusArg("New status: open, or done"),
		outputSchema(writeSchema()))
}

func completeTaskDef() mcp.Tool {
	return define("complete_task", "Complete a task",
		"Marks a task done. Completing a done task changes nothing.",
		hints{idempotent: true},
		idArg(), outputSchema(writeSchema()))
}

func deleteTaskDef() mcp.Tool {
	return define("delete_task", "Delete a task",
		"Deletes a task for good and returns it as it was (its id and status, to callers who may not read tasks).",
		hints{destructive: true, idempotent: true},
		idArg(), outputSchema(writeSchema()))
}

// Handlers.

func (h taskHandlers) list(ctx context.Context, call Call, a args) (*mcp.CallToolResult, error) {
	status, _ := a.str("status")
	cursor, _ := a.str("cursor")
	q := taskstore.ListQuery{Status: status, Limit: a.integer("limit"), Cursor: cursor}
	page, err := h.tasks.List(ctx, call.Principal.TenantID, q)
	if err != nil {
		return h.failed("list tasks", "", err)
	}
	text := listText(page.Tasks, "No tasks.")
	if page.NextCursor != "" {
		text += fmt.Sprintf("\nMore tasks: call list_tasks with cursor %q.", page.NextCursor)
	}
	return mcp.NewToolResultStructured(taskList{Tasks: page.Tasks, NextCursor: page.NextCursor}, text), nil
}

func (h taskHandlers) get(ctx context.Context, call Call, a args) (*mcp.CallToolResult, error) {
	id, _ := a.str("id")
	task, err := h.tasks.Get(ctx, call.Principal.TenantID, id)
	if err != nil {
		return h.failed("get task", id, err)
	}
	return taskResult(task), nil
}

func (h taskHandlers) search(ctx context.Context, call Call, a args) (*mcp.CallToolResult, error) {
	query, _ := a.str("query")
	res, err := h.tasks.Search(ctx, call.Principal.TenantID, query, a.integer("limit"))
	if err != nil {
		return h.failed("search tasks", "", err)
	}
	text := listText(res.Tasks, "No tasks match.")
	if !res.Complete {
		text += "\nThere may be more matches."
	}
	return mcp.NewToolResultStructured(searchResult{Tasks: res.Tasks, Complete: res.Complete}, text), nil
}

func (h taskHandlers) create(ctx context.Context, call Call, a args) (*mcp.CallToolResult, error) {
	title, _ := a.str("title")
	notes, _ := a.str("notes")
	key, ok := a.str("idempotency_key")
	if !ok {
		task, err := h.tasks.Create(ctx, call.Principal.TenantID, actor(call), title, notes)
		if err != nil {
			return h.failed("create task", "", err)
		}
		return writeResult(call, "Created task "+task.ID+".", task), nil
	}
	c, err := h.tasks.CreateIdempotent(ctx, call.Principal.TenantID, actor(call), key, title, notes)
	switch {
	case errors.Is(err, taskstore.ErrKeyReplayDeleted):
		return Errorf("An earlier create_task call with this idempotency_key created task %s, which has since been deleted; "+
			"nothing was created. To create the task again, use a new idempotency_key.", c.Task.ID), nil
	case err != nil:
		return h.failed("create task", "", err)
	case c.Replayed:
		return writeResult(call, "Task "+c.Task.ID+" was already created by an earlier call with this "+
			"idempotency_key; nothing new was created.", c.Task), nil
	}
	return writeResult(call, "Created task "+c.Task.ID+".", c.Task), nil
}

func (h taskHandlers) update(ctx context.Context, call Call, a args) (*mcp.CallToolResult, error) {
	id, _ := a.str("id")
	ch := taskstore.Change{Title: a.strPtr("title"), Notes: a.strPtr("notes"), Status: a.strPtr("status")}
	task, err := h.tasks.Update(ctx, call.Principal.TenantID, id, actor(call), ch)
	if err != nil {
		return h.failed("update task", id, err)
	}
	return writeResult(call, "Updated task "+task.ID+".", task), nil
}

func (h taskHandlers) complete(ctx context.Context, call Call, a args) (*mcp.CallToolResult, error) {
	id, _ := a.str("id")
	task, err := h.tasks.Complete(ctx, call.Principal.TenantID, id, actor(call))
	if err != nil {
		return h.failed("complete task", id, err)
	}
	return writeResult(call, "Completed task "+task.ID+".", task), nil
}

func (h taskHandlers) delete(ctx context.Context, call Call, a args) (*mcp.CallToolResult, error) {
	id, _ := a.str("id")
	task, err := h.tasks.Delete(ctx, call.Principal.TenantID, id)
	if err != nil {
		return h.failed("delete task", id, err)
	}
	return writeResult(call, "Deleted task "+task.ID+".", task), nil
}

// failed turns a store error into a tool result the caller can act on, or
// into an internal error for the server to log and report.
func (h taskHandlers) failed(doing, id string, err error) (*mcp.CallToolResult, error) {
	var invalid *taskstore.ValidationError
	switch {
	case errors.As(err, &invalid):
		return Errorf("invalid %s", invalid), nil
	case errors.Is(err, taskstore.ErrNotFound):
		return Errorf("task %s not found", id), nil
	case errors.Is(err, taskstore.ErrLimit):
		return Errorf("your organisation already has the maximum of %d tasks; delete some first", h.tasks.MaxTasks()), nil
	case errors.Is(err, taskstore.ErrStorageFull):
		return Errorf("Your organisation's task storage is full (%s of task data); nothing was changed. "+
			"Delete tasks that are no longer needed, or shorten notes, to make room.", sizeText(h.tasks.MaxBytes())), nil
	case errors.Is(err, taskstore.ErrKeyConflict):
		return Errorf("This idempotency_key was already used to create a task with a different title or notes; " +
			"nothing was created. Use a new idempotency_key for a new task."), nil
	}
	return nil, fmt.Errorf("%s: %w", doing, err)
}

// sizeText writes a byte count the way settings give it: MiB or KiB when
// whole.
func sizeText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// actor is the caller as recorded on tasks they change.
func actor(call Call) taskstore.Actor {
	name := call.Principal.Name
	if name == "" {
		name = call.Principal.Username
	}
	return taskstore.Actor{ID: call.Principal.ObjectID, Name: name}
}

func taskResult(task taskstore.Task) *mcp.CallToolResult {
	return mcp.NewToolResultStructured(task, taskText(task))
}

// taskReceipt is what a write tool answers a caller who may change tasks
// but not read them: that the change happened. The whole task would make
// every write tool a get_task for anyone who knows an id (complete_task of
// a done task changes nothing and would still show its notes).
type taskReceipt struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// writeResult answers a write tool with summary and the task as it now is,
// or only its receipt when the caller may not read tasks.
func writeResult(call Call, summary string, task taskstore.Task) *mcp.CallToolResult {
	if slices.Contains(call.Grants, permRead) {
		return mcp.NewToolResultStructured(task, summary+"\n"+taskText(task))
	}
	return mcp.NewToolResultStructured(taskReceipt{ID: task.ID, Status: task.Status}, summary+" Its status is "+task.Status+".")
}

func taskText(t taskstore.Task) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s [%s] %s\n", t.ID, t.Status, t.Title)
	if t.Notes != "" {
		fmt.Fprintf(&b, "Notes:\n%s\n", t.Notes)
	}
	fmt.Fprintf(&b, "Created %s by %s; updated %s by %s.",
		t.CreatedAt.Format("2006-01-02 15:04 MST"), t.CreatedByName,
		t.UpdatedAt.Format("2006-01-02 15:04 MST"), t.UpdatedByName)
	return b.String()
}

func listText(tasks []taskstore.Task, empty string) string {
	if len(tasks) == 0 {
		return empty
	}
	var b strings.Builder
	for _, t := range tasks {
		fmt.Fprintf(&b, "%s [%s] %s\n", t.ID, t.Status, t.Title)
	}
	return strings.TrimSuffix(b.String(), "\n")
}
