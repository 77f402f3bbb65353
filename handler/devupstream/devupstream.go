// Package devupstream is a small MCP server that plays an upstream: dev
// mode fronts it to show federation working, and tests front it to prove
// what an upstream receives. It keeps notes per user, and it checks every
// request's credential for its own audience, as a real upstream would:
// with an Entra verifier for tokens minted for it (on-behalf-of, or a
// managed identity's), or a fixed header value.
//
// It is for development and tests only: nothing here is in the binary
// that gets deployed.
package devupstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/entra-mcp/functions-mcp/handler/authz"
	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/entra"
)

// Tool names. HiddenTool exists upstream, but a configuration that names
// only the others leaves it invisible and uncallable through the front.
const (
	WhoamiTool    = "whoami"
	ListNotesTool = "list_notes"
	AddNoteTool   = "add_note"
	HiddenTool    = "reset_all_notes"
)

// Name is the prefix dev mode fronts it under (notes.whoami, ...).
const Name = "notes"

// ToolNames are every tool the upstream lists, the hidden one included.
func ToolNames() []string { return []string{WhoamiTool, ListNotesTool, AddNoteTool, HiddenTool} }

// Entry is dev mode's configuration entry for this upstream as name, at
// url, called with auth: whoami for every signed-in caller, list_notes for
// readers, add_note for writers, the note template and the summary prompt
// for readers. Its notes://mine is in no rule: dev mode fronts it on behalf
// of the caller, and such an upstream's resource list (one person's) is
// never served. The tools-per-role golden file takes dev mode's lists from
// it too.
func Entry(name, url string, auth config.UpstreamAuth) config.Upstream {
	return config.Upstream{
		Name: name,
		URL:  url,
		Auth: auth,
		Tools: []config.UpstreamRule{
			{Match: WhoamiTool, Permission: authz.SignedIn},
			{Match: ListNotesTool, Permission: "tasks.read"},
			{Match: AddNoteTool, Permission: "tasks.write"},
		},
		Resources: []config.UpstreamRule{{Match: "note://*", Permission: "tasks.read"}},
		Prompts:   []config.UpstreamRule{{Match: SummarizePrompt, Permission: "tasks.read"}},
	}
}

// Resources and prompts. The hidden ones exist upstream but a
// configuration that names only the others leaves them invisible.
const (
	NotesResource   = "notes://mine"
	HiddenResource  = "notes://everyone"
	NoteTemplate    = "note://{index}"
	SummarizePrompt = "summarize_notes"
	HiddenPrompt    = "leak_everything"
)

// Bounds of the notes kept: this is a demo, but it runs on loopback where
// any local program can reach it.
const (
	maxUsers        = 1000
	maxNotesPerUser = 100
	maxNoteLen      = 500
)

// Options configure a Server.
type Options struct {
	// Verifier checks bearer tokens for this upstream's audience; nil
	// takes no token (then Accept, Header, or nothing, is checked).
	Verifier *entra.Verifier
	// Accept checks a bearer token some other way (a managed identity's
	// token, with the identity stand-in's Accepts).
	Accept func(token string) bool
	// Header and Value: when set, every request must carry Header: Value.
	Header, Value string
	// Sessions makes the server keep sessions (Mcp-Session-Id from
	// initialize, required after it), each bound to the user who opened
	// it; otherwise it is stateless.
	Sessions bool
}

// Server is the upstream's HTTP handler (POST /mcp and the rest of
// streamable HTTP).
type Server struct {
	opts    Options
	mcp     http.Handler
	mu      sync.Mutex
	notes   map[string][]string // by user (oid, or "anonymous")
	owners  map[string]string   // session id -> the user who opened it
	tokens  map[string]bool     // hashes of every bearer token received
	crossed atomic.Int64        // requests that used another user's session
	calls   atomic.Int64        // tools/call requests answered
}

type userKey struct{}

// New builds the upstream.
func New(opts Options) *Server {
	s := &Server{opts: opts, notes: map[string][]string{}, owners: map[string]string{}, tokens: map[string]bool{}}
	m := server.NewMCPServer("devupstream", "1", server.WithToolCapabilities(false), server.WithRecovery(),
		server.WithResourceCapabilities(false, false), server.WithPromptCapabilities(false))
	m.AddTools(s.tools()...)
	s.addComponents(m)
	httpOpts := []server.StreamableHTTPOption{
		server.WithDisableStreaming(true),
	}
	if opts.Sessions {
		httpOpts = append(httpOpts, server.WithStateful(true))
	} else {
		httpOpts = append(httpOpts, server.WithStateLess(true))
	}
	s.mcp = server.NewStreamableHTTPServer(m, httpOpts...)
	return s
}

// ServeHTTP checks the credential and the session's owner, then serves MCP.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, claims, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	if sid := r.Header.Get("Mcp-Session-Id"); sid != "" && s.opts.Sessions {
		s.mu.Lock()
		owner, known := s.owners[sid]
		s.mu.Unlock()
		if known && owner != user {
			s.crossed.Add(1)
			http.Error(w, "this session belongs to another user", http.StatusForbidden)
			return
		}
	}
	ctx := context.WithValue(r.Context(), userKey{}, callerInfo{user: user, claims: claims, session: r.Header.Get("Mcp-Session-Id")})
	rec := &sessionRecorder{ResponseWriter: w}
	s.mcp.ServeHTTP(rec, r.WithContext(ctx))
	if sid := rec.Header().Get("Mcp-Session-Id"); sid != "" && s.opts.Sessions {
		s.mu.Lock()
		if _, known := s.owners[sid]; !known && len(s.owners) < 100*maxUsers {
			s.owners[sid] = user
		}
		s.mu.Unlock()
	}
}

// sessionRecorder lets ServeHTTP read the session id mcp-go issued.
type sessionRecorder struct{ http.ResponseWriter }

func (r *sessionRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// callerInfo is who a request came from, as the upstream sees it.
type callerInfo struct {
	user    string
	claims  *entra.Principal
	session string
}

func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (string, *entra.Principal, bool) {
	if s.opts.Header != "" && r.Header.Get(s.opts.Header) != s.opts.Value {
		http.Error(w, "wrong or missing "+s.opts.Header, http.StatusUnauthorized)
		return "", nil, false
	}
	if s.opts.Verifier == nil && s.opts.Accept == nil {
		return "anonymous", nil, true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "no bearer token", http.StatusUnauthorized)
		return "", nil, false
	}
	s.mu.Lock()
	if len(s.tokens) < 100_000 {
		s.tokens[hashOf(tok)] = true
	}
	s.mu.Unlock()
	if s.opts.Verifier == nil {
		if !s.opts.Accept(tok) {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			http.Error(w, "token refused", http.StatusUnauthorized)
			return "", nil, false
		}
		return "service", nil, true
	}
	p, err := s.opts.Verifier.Verify(r.Context(), tok)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "token refused", http.StatusUnauthorized)
		return "", nil, false
	}
	return p.TenantID + "." + p.ObjectID, p, true
}

func hashOf(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// Received reports whether the upstream was ever sent token.
func (s *Server) Received(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens[hashOf(token)]
}

// CrossedSessions counts requests refused because they used a session
// another user opened: always 0 behind a front that keeps sessions apart.
func (s *Server) CrossedSessions() int64 { return s.crossed.Load() }

// Calls counts the tools/call requests the upstream answered.
func (s *Server) Calls() int64 { return s.calls.Load() }

func caller(ctx context.Context) callerInfo {
	c, _ := ctx.Value(userKey{}).(callerInfo)
	return c
}

func (s *Server) tools() []server.ServerTool {
	ro := mcp.ToolAnnotation{ReadOnlyHint: mcp.ToBoolPtr(true), IdempotentHint: mcp.ToBoolPtr(true), DestructiveHint: mcp.ToBoolPtr(false), OpenWorldHint: mcp.ToBoolPtr(false)}
	write := mcp.ToolAnnotation{ReadOnlyHint: mcp.ToBoolPtr(false), IdempotentHint: mcp.ToBoolPtr(false), DestructiveHint: mcp.ToBoolPtr(false), OpenWorldHint: mcp.ToBoolPtr(false)}
	destroy := mcp.ToolAnnotation{ReadOnlyHint: mcp.ToBoolPtr(false), IdempotentHint: mcp.ToBoolPtr(true), DestructiveHint: mcp.ToBoolPtr(true), OpenWorldHint: mcp.ToBoolPtr(false)}
	return []server.ServerTool{
		{Tool: mcp.NewTool(WhoamiTool, mcp.WithDescription("Shows who this upstream server sees: the audience, user and scopes of the token it was sent."),
			mcp.WithToolAnnotation(ro), mcp.WithOutputSchema[whoami]()), Handler: s.whoami},
		{Tool: mcp.NewTool(ListNotesTool, mcp.WithDescription("Lists your notes on the upstream server."),
			mcp.WithToolAnnotation(ro)), Handler: s.listNotes},
		{Tool: mcp.NewTool(AddNoteTool, mcp.WithDescription("Adds a note on the upstream server."), mcp.WithToolAnnotation(write),
			mcp.WithString("text", mcp.Required(), mcp.Description("The note"), mcp.MaxLength(maxNoteLen))), Handler: s.addNote},
		{Tool: mcp.NewTool(HiddenTool, mcp.WithDescription("Deletes every user's notes."), mcp.WithToolAnnotation(destroy)), Handler: s.resetAll},
	}
}

// whoami is what the whoami tool returns.
type whoami struct {
	Audience string   `json:"aud"`
	User     string   `json:"oid"`
	Tenant   string   `json:"tid"`
	Scopes   []string `json:"scopes"`
	Roles    []string `json:"roles"`
	AppID    string   `json:"appId"`
	Session  string   `json:"session"`
}

func (s *Server) whoami(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	s.calls.Add(1)
	c := caller(ctx)
	w := whoami{User: c.user, Session: c.session, Scopes: []string{}, Roles: []string{}}
	if p := c.claims; p != nil {
		w.User, w.Tenant, w.AppID = p.ObjectID, p.TenantID, p.AppID
		w.Audience = s.opts.Verifier.Audience()
		w.Scopes = slices.Clone(p.Scopes)
		w.Roles = slices.Clone(p.Roles)
	}
	b, _ := json.Marshal(w)
	return mcp.NewToolResultStructured(w, string(b)), nil
}

func (s *Server) listNotes(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	s.calls.Add(1)
	s.mu.Lock()
	notes := slices.Clone(s.notes[caller(ctx).user])
	s.mu.Unlock()
	if len(notes) == 0 {
		return mcp.NewToolResultText("You have no notes."), nil
	}
	return mcp.NewToolResultText(strings.Join(notes, "\n")), nil
}

func (s *Server) addNote(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	s.calls.Add(1)
	text, err := req.RequireString("text")
	if err != nil || text == "" || len(text) > maxNoteLen {
		return mcp.NewToolResultError(fmt.Sprintf("text: want 1 to %d characters", maxNoteLen)), nil
	}
	user := caller(ctx).user
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.notes[user]; !ok && len(s.notes) >= maxUsers {
		return mcp.NewToolResultError("this demo server keeps notes for at most 1000 users"), nil
	}
	if len(s.notes[user]) >= maxNotesPerUser {
		return mcp.NewToolResultError("you have 100 notes, the most this demo server keeps"), nil
	}
	s.notes[user] = append(s.notes[user], text)
	return mcp.NewToolResultText(fmt.Sprintf("Noted (%d notes).", len(s.notes[user]))), nil
}

func (s *Server) resetAll(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	s.calls.Add(1)
	s.mu.Lock()
	s.notes = map[string][]string{}
	s.mu.Unlock()
	return mcp.NewToolResultText("All notes deleted."), nil
}

// addComponents adds the resources, the template and the prompts.
func (s *Server) addComponents(m *server.MCPServer) {
	m.AddResource(mcp.NewResource(NotesResource, "my-notes", mcp.WithResourceDescription("Your notes, one per line."), mcp.WithMIMEType("text/plain")),
		func(ctx context.Context, _ mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: NotesResource, MIMEType: "text/plain", Text: strings.Join(s.notesOf(caller(ctx).user), "\n")}}, nil
		})
	m.AddResource(mcp.NewResource(HiddenResource, "everyone's-notes", mcp.WithResourceDescription("Every user's notes.")),
		func(context.Context, mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			s.calls.Add(1)
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: HiddenResource, Text: "everything"}}, nil
		})
	m.AddResourceTemplate(mcp.NewResourceTemplate(NoteTemplate, "note", mcp.WithTemplateDescription("One of your notes, by its index from 1.")),
		func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			notes := s.notesOf(caller(ctx).user)
			var i int
			if _, err := fmt.Sscanf(strings.TrimPrefix(req.Params.URI, "note://"), "%d", &i); err != nil || i < 1 || i > len(notes) {
				return nil, fmt.Errorf("no note %s: %w", req.Params.URI, server.ErrResourceNotFound)
			}
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, MIMEType: "text/plain", Text: notes[i-1]}}, nil
		})
	m.AddPrompt(mcp.NewPrompt(SummarizePrompt, mcp.WithPromptDescription("Asks for a summary of your notes."),
		mcp.WithArgument("style", mcp.ArgumentDescription("How to summarize: brief or detailed"))),
		func(ctx context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			style := req.Params.Arguments["style"]
			if style == "" {
				style = "brief"
			}
			text := fmt.Sprintf("Give a %s summary of these notes:\n%s", style, strings.Join(s.notesOf(caller(ctx).user), "\n"))
			return mcp.NewGetPromptResult("Summarize your notes", []mcp.PromptMessage{mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent(text))}), nil
		})
	m.AddPrompt(mcp.NewPrompt(HiddenPrompt, mcp.WithPromptDescription("Every user's notes as a prompt.")),
		func(context.Context, mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			s.calls.Add(1)
			return mcp.NewGetPromptResult("everything", nil), nil
		})
}

func (s *Server) notesOf(user string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.notes[user])
}
