package store

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/entra-mcp/functions-mcp/handler/valid"
	"github.com/redis/go-redis/v9"
)

// Task states.
const (
	StatusOpen = "open"
	StatusDone = "done"
)

// Limits on task data. Titles and notes are counted in Unicode code points,
// as JSON Schema's maxLength counts them.
const (
	MaxTitle        = 200
	MaxNotes        = 4000
	MaxQuery        = 200
	MaxListLimit    = 100
	DefaultLimit    = 20
	DefaultMaxTasks = 10000
	// SearchScanLimit bounds how many of a tenant's newest tasks one search
	// reads, so that a search costs the same however many tasks there are.
	SearchScanLimit = 2000
	maxActorID      = 128
	maxActorName    = 256
	idLen           = 12
	scanBatch       = 100
)

var (
	// ErrNotFound means the task does not exist in the caller's tenant.
	ErrNotFound = errors.New("task not found")
	// ErrLimit means the tenant holds as many tasks as it may.
	ErrLimit = errors.New("task limit reached")
)

// ValidationError reports input that the caller can fix. Its message is
// safe to show to the caller.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }

func invalid(field, format string, a ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, a...)}
}

// Task is one item of a tenant's task list. The By fields hold the Entra
// object id of the user; the Name fields are for display only.
type Task struct {
	ID            string    `json:"id"`
	Title         string    `json:"title"`
	Notes         string    `json:"notes"`
	Status        string    `json:"status"`
	CreatedBy     string    `json:"createdBy"`
	CreatedByName string    `json:"createdByName"`
	CreatedAt     time.Time `json:"createdAt"`
	UpdatedBy     string    `json:"updatedBy"`
	UpdatedByName string    `json:"updatedByName"`
	UpdatedAt     time.Time `json:"updatedAt"`
}

// Actor is the user making a change: the object id recorded for audit and a
// name for display.
type Actor struct {
	ID   string
	Name string
}

// Change holds the fields an update sets; nil fields stay as they are.
type Change struct {
	Title  *string
	Notes  *string
	Status *string
}

// ListQuery selects a page of tasks, newest first.
type ListQuery struct {
	Status string // "", "open" or "done"
	Limit  int    // 0 means DefaultLimit; at most MaxListLimit
	Cursor string // NextCursor of the previous page, or ""
}

// Page is one page of tasks. NextCursor is empty on the last page.
type Page struct {
	Tasks      []Task
	NextCursor string
}

// SearchResult holds the tasks that matched a search, newest first.
// Complete is false when the search stopped before it had looked at every
// task (it reached its limit or SearchScanLimit), so more may match.
type SearchResult struct {
	Tasks    []Task
	Complete bool
}

// Tasks is a small task tracker per tenant, kept in Redis.
//
// Keys, all of one tenant in one hash slot (the braces) so that scripts may
// touch several of them on a cluster:
//
//	tasks:{<tid>}:t:<id>  hash, one task
//	tasks:{<tid>}:all     sorted set of ids by creation sequence
//	tasks:{<tid>}:open    the same, open tasks only
//	tasks:{<tid>}:done    the same, done tasks only
//	tasks:{<tid>}:seq     creation sequence counter
//
// Every write is one Lua script, so item and indexes change together or not
// at all. The tenant id comes from the verified token and is part of every
// key, so one tenant cannot name another's task.
type Tasks struct {
	rdb      redis.UniversalClient
	maxTasks int
	now      func() time.Time
}

// TasksOption configures Tasks.
type TasksOption func(*Tasks)

// WithMaxTasks sets how many tasks a tenant may hold.
func WithMaxTasks(n int) TasksOption {
	return func(t *Tasks) { t.maxTasks = n }
}

// WithClock sets the clock used for timestamps.
func WithClock(now func() time.Time) TasksOption {
	return func(t *Tasks) { t.now = now }
}

// NewTasks returns a task store over rdb.
func NewTasks(rdb redis.UniversalClient, opts ...TasksOption) *Tasks {
	t := &Tasks{rdb: rdb, maxTasks: DefaultMaxTasks, now: time.Now}
	for _, o := range opts {
		o(t)
	}
	return t
}

// MaxTasks is how many tasks a tenant may hold.
func (t *Tasks) MaxTasks() int { return t.maxTasks }

type tenantKeys struct{ prefix string }

func (k tenantKeys) item(id string) string { return k.prefix + "t:" + id }
func (k tenantKeys) all() string           { return k.prefix + "all" }
func (k tenantKeys) open() string          { return k.prefix + "open" }
func (k tenantKeys) done() string          { return k.prefix + "done" }
func (k tenantKeys) seq() string           { return k.prefix + "seq" }

func (k tenantKeys) byStatus(status string) string {
	switch status {
	case StatusOpen:
		return k.open()
	case StatusDone:
		return k.done()
	default:
		return k.all()
	}
}

// keysFor checks the tenant id, which becomes part of key names, and
// normalises its case so one tenant has one namespace.
func keysFor(tid string) (tenantKeys, error) {
	tid = strings.ToLower(tid)
	if !valid.LowerGUID(tid) {
		// Not a ValidationError: the tenant comes from a verified token, so a
		// bad one is our bug, not the caller's.
		return tenantKeys{}, errors.New("store: tenant id is not a GUID")
	}
	return tenantKeys{prefix: "tasks:{" + tid + "}:"}, nil
}

const idAlphabet = "abcdefghijklmnopqrstuvwxyz234567"

var idEncoding = base32.NewEncoding(idAlphabet).WithPadding(base32.NoPadding)

// newID returns 12 base32 characters: 60 random bits.
func newID() string {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand panics on failure since Go 1.24)
	return idEncoding.EncodeToString(b[:])[:idLen]
}

func checkID(id string) error {
	if len(id) != idLen || strings.Trim(id, idAlphabet) != "" {
		return invalid("id", "must be %d characters of a-z and 2-7, as returned by create_task or list_tasks", idLen)
	}
	return nil
}

func checkActor(by Actor) (Actor, error) {
	if by.ID == "" || len(by.ID) > maxActorID {
		return Actor{}, errors.New("store: actor id missing or too long")
	}
	by.Name = truncateRunes(by.Name, maxActorName)
	return by, nil
}

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

func checkTitle(title string) (string, error) {
	title = strings.TrimSpace(title)
	switch {
	case title == "":
		return "", invalid("title", "must not be empty")
	case utf8.RuneCountInString(title) > MaxTitle:
		return "", invalid("title", "must be at most %d characters", MaxTitle)
	case !utf8.ValidString(title) || strings.IndexFunc(title, unicode.IsControl) >= 0:
		return "", invalid("title", "must be one line of text without control characters")
	}
	return title, nil
}

func checkNotes(notes string) (string, error) {
	isBadControl := func(r rune) bool {
		return unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t'
	}
	switch {
	case utf8.RuneCountInString(notes) > MaxNotes:
		return "", invalid("notes", "must be at most %d characters", MaxNotes)
	case !utf8.ValidString(notes) || strings.IndexFunc(notes, isBadControl) >= 0:
		return "", invalid("notes", "must be text without control characters other than newlines and tabs")
	}
	return notes, nil
}

func checkStatus(status string) error {
	if status != StatusOpen && status != StatusDone {
		return invalid("status", "must be %q or %q", StatusOpen, StatusDone)
	}
	return nil
}

func checkLimit(limit int) (int, error) {
	switch {
	case limit == 0:
		return DefaultLimit, nil
	case limit < 0 || limit > MaxListLimit:
		return 0, invalid("limit", "must be between 1 and %d", MaxListLimit)
	}
	return limit, nil
}

// Create adds an open task to the tenant's list.
func (t *Tasks) Create(ctx context.Context, tid string, by Actor, title, notes string) (Task, error) {
	k, err := keysFor(tid)
	if err != nil {
		return Task{}, err
	}
	if by, err = checkActor(by); err != nil {
		return Task{}, err
	}
	if title, err = checkTitle(title); err != nil {
		return Task{}, err
	}
	if notes, err = checkNotes(notes); err != nil {
		return Task{}, err
	}
	now := t.now().UTC()
	task := Task{
		Title: title, Notes: notes, Status: StatusOpen,
		CreatedBy: by.ID, CreatedByName: by.Name, CreatedAt: now,
		UpdatedBy: by.ID, UpdatedByName: by.Name, UpdatedAt: now,
	}
	// An id collision is a 1-in-2^60 event per pair; retry rather than fail.
	for range 3 {
		task.ID = newID()
		res, err := createScript.Run(ctx, t.rdb,
			[]string{k.item(task.ID), k.all(), k.open(), k.seq()},
			append([]any{t.maxTasks, task.ID}, taskFields(task)...)...,
		).Int64()
		if err != nil {
			return Task{}, wrap("create task", err)
		}
		switch res {
		case createdOK:
			return task, nil
		case createdFull:
			return Task{}, fmt.Errorf("%w: at most %d tasks per tenant", ErrLimit, t.maxTasks)
		case createdDup:
			continue
		}
	}
	return Task{}, errors.New("store: create task: could not find a free id")
}

// Get returns one task of the tenant.
func (t *Tasks) Get(ctx context.Context, tid, id string) (Task, error) {
	k, err := keysFor(tid)
	if err != nil {
		return Task{}, err
	}
	if err := checkID(id); err != nil {
		return Task{}, err
	}
	fields, err := t.rdb.HGetAll(ctx, k.item(id)).Result()
	if err != nil {
		return Task{}, wrap("get task", err)
	}
	if len(fields) == 0 {
		return Task{}, ErrNotFound
	}
	return parseTask(fields)
}

// List returns one page of the tenant's tasks, newest first.
func (t *Tasks) List(ctx context.Context, tid string, q ListQuery) (Page, error) {
	k, err := keysFor(tid)
	if err != nil {
		return Page{}, err
	}
	if q.Status != "" {
		if err := checkStatus(q.Status); err != nil {
			return Page{}, err
		}
	}
	limit, err := checkLimit(q.Limit)
	if err != nil {
		return Page{}, err
	}
	upper := "+inf"
	if q.Cursor != "" {
		seq, err := strconv.ParseUint(q.Cursor, 10, 53)
		if err != nil {
			return Page{}, invalid("cursor", "is not a cursor returned by list_tasks")
		}
		upper = "(" + strconv.FormatUint(seq, 10) // exclusive: after the cursor
	}
	// One more than asked, to learn whether there is a next page.
	entries, err := t.rdb.ZRevRangeByScoreWithScores(ctx, k.byStatus(q.Status), &redis.ZRangeBy{
		Max: upper, Min: "-inf", Count: int64(limit + 1),
	}).Result()
	if err != nil {
		return Page{}, wrap("list tasks", err)
	}
	more := len(entries) > limit
	if more {
		entries = entries[:limit]
	}
	tasks, err := t.load(ctx, k, entries)
	if err != nil {
		return Page{}, wrap("list tasks", err)
	}
	page := Page{Tasks: filterStatus(tasks, q.Status)}
	if more {
		page.NextCursor = strconv.FormatInt(int64(entries[len(entries)-1].Score), 10)
	}
	return page, nil
}

// filterStatus drops tasks whose status changed between reading the index
// and reading the tasks.
func filterStatus(tasks []Task, status string) []Task {
	if status == "" {
		return tasks
	}
	out := tasks[:0]
	for _, task := range tasks {
		if task.Status == status {
			out = append(out, task)
		}
	}
	return out
}

// Search returns the tenant's tasks whose title or notes contain query,
// ignoring case, newest first. It reads at most SearchScanLimit tasks.
func (t *Tasks) Search(ctx context.Context, tid, query string, limit int) (SearchResult, error) {
	k, err := keysFor(tid)
	if err != nil {
		return SearchResult{}, err
	}
	query = strings.TrimSpace(query)
	if query == "" {
		return SearchResult{}, invalid("query", "must not be empty")
	}
	if utf8.RuneCountInString(query) > MaxQuery {
		return SearchResult{}, invalid("query", "must be at most %d characters", MaxQuery)
	}
	if limit, err = checkLimit(limit); err != nil {
		return SearchResult{}, err
	}
	needle := strings.ToLower(query)
	res := SearchResult{Tasks: []Task{}}
	for start := 0; start < SearchScanLimit; start += scanBatch {
		ids, err := t.rdb.ZRevRangeWithScores(ctx, k.all(), int64(start), int64(start+scanBatch-1)).Result()
		if err != nil {
			return SearchResult{}, wrap("search tasks", err)
		}
		batch, err := t.load(ctx, k, ids)
		if err != nil {
			return SearchResult{}, wrap("search tasks", err)
		}
		for i, task := range batch {
			if !matches(task, needle) {
				continue
			}
			res.Tasks = append(res.Tasks, task)
			if len(res.Tasks) == limit {
				// Complete only if nothing is left to look at.
				res.Complete = i == len(batch)-1 && len(ids) < scanBatch
				return res, nil
			}
		}
		if len(ids) < scanBatch {
			res.Complete = true
			return res, nil
		}
	}
	return res, nil
}

func matches(task Task, lowerNeedle string) bool {
	return strings.Contains(strings.ToLower(task.Title), lowerNeedle) ||
		strings.Contains(strings.ToLower(task.Notes), lowerNeedle)
}

// load reads the tasks named by index entries in one round trip, in order.
// A task deleted since the index was read is skipped.
func (t *Tasks) load(ctx context.Context, k tenantKeys, entries []redis.Z) ([]Task, error) {
	if len(entries) == 0 {
		return []Task{}, nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(entries))
	_, err := t.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, e := range entries {
			id, _ := e.Member.(string)
			cmds[i] = p.HGetAll(ctx, k.item(id))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	tasks := make([]Task, 0, len(entries))
	for _, c := range cmds {
		fields := c.Val()
		if len(fields) == 0 {
			continue
		}
		task, err := parseTask(fields)
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, task)
	}
	return tasks, nil
}

// Update changes a task's title, notes and/or status. Fields that already
// hold the given value are left alone; when nothing changes, neither do the
// Updated fields, so repeating an update has no further effect.
func (t *Tasks) Update(ctx context.Context, tid, id string, by Actor, ch Change) (Task, error) {
	k, err := keysFor(tid)
	if err != nil {
		return Task{}, err
	}
	if err := checkID(id); err != nil {
		return Task{}, err
	}
	if by, err = checkActor(by); err != nil {
		return Task{}, err
	}
	sets, err := changeFields(ch)
	if err != nil {
		return Task{}, err
	}
	args := append([]any{by.ID, by.Name, formatTime(t.now())}, sets...)
	reply, err := updateScript.Run(ctx, t.rdb,
		[]string{k.item(id), k.open(), k.done()}, args...).StringSlice()
	if errors.Is(err, redis.Nil) {
		return Task{}, ErrNotFound
	}
	if err != nil {
		return Task{}, wrap("update task", err)
	}
	return parseTask(pairs(reply))
}

// Complete marks a task done. Completing a done task changes nothing.
func (t *Tasks) Complete(ctx context.Context, tid, id string, by Actor) (Task, error) {
	done := StatusDone
	return t.Update(ctx, tid, id, by, Change{Status: &done})
}

// Delete removes a task and returns it as it was.
func (t *Tasks) Delete(ctx context.Context, tid, id string) (Task, error) {
	k, err := keysFor(tid)
	if err != nil {
		return Task{}, err
	}
	if err := checkID(id); err != nil {
		return Task{}, err
	}
	reply, err := deleteScript.Run(ctx, t.rdb,
		[]string{k.item(id), k.all(), k.open(), k.done()}, id).StringSlice()
	if errors.Is(err, redis.Nil) {
		return Task{}, ErrNotFound
	}
	if err != nil {
		return Task{}, wrap("delete task", err)
	}
	return parseTask(pairs(reply))
}

// changeFields validates a change and returns it as hash field/value pairs.
func changeFields(ch Change) ([]any, error) {
	var sets []any
	if ch.Title != nil {
		title, err := checkTitle(*ch.Title)
		if err != nil {
			return nil, err
		}
		sets = append(sets, "title", title)
	}
	if ch.Notes != nil {
		notes, err := checkNotes(*ch.Notes)
		if err != nil {
			return nil, err
		}
		sets = append(sets, "notes", notes)
	}
	if ch.Status != nil {
		if err := checkStatus(*ch.Status); err != nil {
			return nil, err
		}
		sets = append(sets, "status", *ch.Status)
	}
	if len(sets) == 0 {
		return nil, invalid("update", "give at least one of title, notes or status")
	}
	return sets, nil
}

// taskFields lays a task out as hash field/value pairs (without id and seq,
// which the create script sets).
func taskFields(task Task) []any {
	return []any{
		"title", task.Title,
		"notes", task.Notes,
		"status", task.Status,
		"createdBy", task.CreatedBy,
		"createdByName", task.CreatedByName,
		"createdAt", formatTime(task.CreatedAt),
		"updatedBy", task.UpdatedBy,
		"updatedByName", task.UpdatedByName,
		"updatedAt", formatTime(task.UpdatedAt),
	}
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseTask(f map[string]string) (Task, error) {
	created, err1 := time.Parse(time.RFC3339Nano, f["createdAt"])
	updated, err2 := time.Parse(time.RFC3339Nano, f["updatedAt"])
	if err := errors.Join(err1, err2); err != nil {
		return Task{}, fmt.Errorf("store: corrupt task %q: %w", f["id"], err)
	}
	return Task{
		ID: f["id"], Title: f["title"], Notes: f["notes"], Status: f["status"],
		CreatedBy: f["createdBy"], CreatedByName: f["createdByName"], CreatedAt: created,
		UpdatedBy: f["updatedBy"], UpdatedByName: f["updatedByName"], UpdatedAt: updated,
	}, nil
}

// pairs turns a flat HGETALL reply from a script into a map.
func pairs(flat []string) map[string]string {
	m := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		m[flat[i]] = flat[i+1]
	}
	return m
}

// Results of createScript.
const (
	createdOK   = 1
	createdFull = -1
	createdDup  = -2
)

// createScript adds a task and its index entries if the tenant is under its
// cap. KEYS: item, all, open, seq. ARGV: cap, id, field/value pairs.
var createScript = redis.NewScript(`
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[1]) then return -1 end
if redis.call('EXISTS', KEYS[1]) == 1 then return -2 end
local seq = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[1], 'id', ARGV[2], 'seq', seq, unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], seq, ARGV[2])
redis.call('ZADD', KEYS[3], seq, ARGV[2])
return 1
`)

// updateScript sets the given fields of an existing task, moves it between
// the status indexes, and stamps who changed it if anything changed.
// KEYS: item, open, done. ARGV: updatedBy, updatedByName, updatedAt,
// field/value pairs. Returns nil if the task does not exist, else the task.
var updateScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local changed = false
local status = nil
for i = 4, #ARGV, 2 do
  local field, value = ARGV[i], ARGV[i + 1]
  if redis.call('HGET', KEYS[1], field) ~= value then
    changed = true
    redis.call('HSET', KEYS[1], field, value)
    if field == 'status' then status = value end
  end
end
if changed then
  redis.call('HSET', KEYS[1], 'updatedBy', ARGV[1], 'updatedByName', ARGV[2], 'updatedAt', ARGV[3])
end
if status then
  local id = redis.call('HGET', KEYS[1], 'id')
  local seq = redis.call('HGET', KEYS[1], 'seq')
  local from, to = KEYS[2], KEYS[3]
  if status == 'open' then from, to = KEYS[3], KEYS[2] end
  redis.call('ZREM', from, id)
  redis.call('ZADD', to, seq, id)
end
return redis.call('HGETALL', KEYS[1])
`)

// deleteScript removes a task and its index entries.
// KEYS: item, all, open, done. ARGV: id. Returns nil if the task does not
// exist, else the task as it was.
var deleteScript = redis.NewScript(`
local task = redis.call('HGETALL', KEYS[1])
if #task == 0 then return false end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return task
`)
