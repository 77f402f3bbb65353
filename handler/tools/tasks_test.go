package tools_test

import (
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/entra-mcp/functions-mcp/handler/store/storetest"
	"github.com/entra-mcp/functions-mcp/handler/taskstore"
	"github.com/entra-mcp/functions-mcp/handler/tools"
)

func TestCreateWithIdempotencyKey(t *testing.T) {
	t.Parallel()
	s := withRedis(t)
	args := map[string]any{"title": "Book the venue", "idempotency_key": "venue-2026:1"}
	first := s.ok(alice, "create_task", args)
	id := taskID(t, first)

	t.Run("retry returns the first task", func(t *testing.T) {
		again := s.ok(alice, "create_task", args)
		if taskID(t, again) != id || !strings.Contains(text(again), "already created by an earlier call") {
			t.Fatalf("retry: %s", text(again))
		}
		list := structured(t, s.ok(alice, "list_tasks", nil))
		if n := len(list["tasks"].([]any)); n != 1 {
			t.Fatalf("%d tasks after the retry, want 1", n)
		}
	})
	t.Run("same key, other title", func(t *testing.T) {
		msg := s.toolError(alice, "create_task", map[string]any{"title": "Something else", "idempotency_key": "venue-2026:1"})
		if !strings.Contains(msg, "different title or notes") || !strings.Contains(msg, "new idempotency_key") {
			t.Errorf("conflict: %q", msg)
		}
	})
	t.Run("deleted since", func(t *testing.T) {
		s.ok(alice, "delete_task", map[string]any{"id": id})
		msg := s.toolError(alice, "create_task", args)
		if !strings.Contains(msg, "task "+id) || !strings.Contains(msg, "since been deleted") || !strings.Contains(msg, "nothing was created") {
			t.Errorf("retry after delete: %q", msg)
		}
	})
	t.Run("bad keys", func(t *testing.T) {
		for key, want := range map[string]string{
			"":                      `argument "idempotency_key" must be at least 1 characters`,
			strings.Repeat("k", 65): `argument "idempotency_key" must be at most 64 characters`,
			"two words":             `argument "idempotency_key": 'two words' does not match pattern`,
			"ключ":                  `argument "idempotency_key": 'ключ' does not match pattern`,
		} {
			t.Run(key, func(t *testing.T) {
				if msg := s.toolError(alice, "create_task", map[string]any{"title": "x", "idempotency_key": key}); !strings.Contains(msg, want) {
					t.Errorf("key %q: %q, want it to say %q", key, msg, want)
				}
			})
		}
	})
}

func TestStorageFull(t *testing.T) {
	t.Parallel()
	s := newServer(t, tools.Deps{Tasks: taskstore.New(storetest.Redis(t), taskstore.WithMaxBytes(64<<10))})
	notes := strings.Repeat("€", 2700)
	var msg string
	for range 20 {
		res, err := s.call(alice, "create_task", map[string]any{"title": "big", "notes": notes})
		if err != nil {
			t.Fatal(err)
		}
		if res.IsError {
			msg = text(res)
			break
		}
	}
	if !strings.Contains(msg, "task storage is full (64 KiB of task data)") || !strings.Contains(msg, "Delete tasks") {
		t.Fatalf("over the budget: %q", msg)
	}
}

func TestByteCapsInErrors(t *testing.T) {
	t.Parallel()
	s := withRedis(t)
	for arg, value := range map[string]string{"title": strings.Repeat("😀", 129), "notes": strings.Repeat("€", 2731)} {
		args := map[string]any{"title": "x", arg: value}
		if msg := s.toolError(alice, "create_task", args); !strings.Contains(msg, "invalid "+arg+": must be at most") || !strings.Contains(msg, "bytes of UTF-8") {
			t.Errorf("%s past its byte cap: %q", arg, msg)
		}
	}
	// The schema says so too.
	def := s.tools["create_task"].Def
	for arg, want := range map[string]string{"title": "512 bytes", "notes": "8192 bytes", "idempotency_key": "same key"} {
		if d, _ := def.InputSchema.Properties[arg].(map[string]any)["description"].(string); !strings.Contains(d, want) {
			t.Errorf("%s description %q does not say %q", arg, d, want)
		}
	}
	if d := s.tools["search_tasks"].Def.Description; !strings.Contains(d, "1 MiB") {
		t.Errorf("search_tasks description %q does not state its byte bound", d)
	}
}

func TestUnavailableText(t *testing.T) {
	t.Parallel()
	hinted := func(readOnly, idempotent bool) tools.Tool {
		return tools.Tool{Def: mcp.NewTool("t",
			mcp.WithReadOnlyHintAnnotation(readOnly), mcp.WithIdempotentHintAnnotation(idempotent))}
	}
	for name, c := range map[string]struct {
		tool tools.Tool
		want string
	}{
		"read-only":          {hinted(true, true), tools.UnavailableRead},
		"idempotent write":   {hinted(false, true), tools.UnavailableIdempotent},
		"other write":        {hinted(false, false), tools.UnavailableWrite},
		"no hints at all":    {tools.Tool{Def: mcp.Tool{Name: "bare"}}, tools.UnavailableWrite},
		"the tool's own":     {tools.Tool{Def: mcp.Tool{Name: "own"}, Unavailable: "mine"}, "mine"},
		"own beats readOnly": {func() tools.Tool { t := hinted(true, true); t.Unavailable = "mine"; return t }(), "mine"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := c.tool.UnavailableText(); got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
	// Only reads are told to try again; every write says it may have
	// happened, and the task writes say how to check.
	for _, tool := range productionTools(t) {
		msg := tool.UnavailableText()
		readOnly := *tool.Def.Annotations.ReadOnlyHint
		if retry := strings.Contains(strings.ToLower(msg), "try again"); retry != readOnly {
			t.Errorf("%s (read-only %v): %q", tool.Def.Name, readOnly, msg)
		}
		if !readOnly && !strings.Contains(msg, "may") {
			t.Errorf("%s: %q does not say the change may have happened", tool.Def.Name, msg)
		}
	}
	want := map[string][]string{
		"create_task": {"may have been created", "list_tasks", "same idempotency_key"},
		"delete_task": {"get_task", "same id is safe"},
		"update_task": {"same arguments is safe"},
	}
	for _, tool := range productionTools(t) {
		for _, w := range want[tool.Def.Name] {
			if !strings.Contains(tool.UnavailableText(), w) {
				t.Errorf("%s: %q does not say %q", tool.Def.Name, tool.UnavailableText(), w)
			}
		}
	}
}
