// Package taskstore keeps each tenant's task list in Redis (the tasks:{<tid>}
// key family): its limits, its atomic operations and its errors. The task
// tools in package tools present it to MCP callers.
package taskstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/store"
	"github.com/entra-mcp/functions-mcp/handler/valid"
)

// Task states.
const (
	StatusOpen = "open"
	StatusDone = "done"
)

// Limits on task data. Titles and notes are counted in Unicode code points,
// as JSON Schema's maxLength counts them, and in bytes of UTF-8, which is
// what Redis stores: 200 characters of CJK or emoji would otherwise be
// 800 bytes.
const (
	MaxTitle        = 200
	MaxTitleBytes   = 512
	MaxNotes        = 4000
	MaxNotesBytes   = 8 << 10
	MaxQuery        = 200
	MaxListLimit    = 100
	DefaultLimit    = 20
	DefaultMaxTasks = 10000
	// DefaultMaxBytes is a tenant's task storage budget (WithMaxBytes): about
	// 1,400 tasks with maximal titles and notes, and more than
	// DefaultMaxTasks ordinary ones.
	DefaultMaxBytes = 16 << 20
	// TaskOverhead is what each task counts for beyond the lengths of its
	// stored fields: field names, the key, two index entries and the
	// allocator's rounding. Measured on Redis 7 (used_memory): a small task
	// takes about 700 bytes and counts about 1,200; a maximal one takes
	// about 12,300 (the allocator rounds 8 KiB of notes up to 10 KiB) and
	// counts about 9,900. So a full budget takes at most about 1.25× its
	// size in Redis, and the task cap, not the budget, limits small tasks.
	TaskOverhead = 1024
	// SearchScanLimit bounds how many of a tenant's newest tasks one search
	// reads, so that a search costs the same however many tasks there are.
	SearchScanLimit = 2000
	// SearchByteLimit bounds how much task text (titles and notes) one
	// search reads from Redis; it stops after the batch that reaches it.
	SearchByteLimit = 1 << 20
	// MaxKeyLen is the longest idempotency key.
	MaxKeyLen = 64
	// IdempotencyWindow is how long CreateIdempotent remembers a key.
	IdempotencyWindow = 24 * time.Hour
	// MaxRememberedKeys bounds the idempotency keys a tenant's store
	// remembers by default (WithMaxKeys); past it the oldest is forgotten
	// before its window ends.
	MaxRememberedKeys = 10000
	maxActorID        = 128
	maxActorName      = 256
	idLen             = 12
	scanBatch         = 100
)

var (
	// ErrNotFound means the task does not exist in the caller's tenant.
	ErrNotFound = errors.New("task not found")
	// ErrLimit means the tenant holds as many tasks as it may.
	ErrLimit = errors.New("task limit reached")
	// ErrStorageFull means the change would take the tenant's task data
	// past its byte budget. Deleting tasks (or shortening notes) makes room.
	ErrStorageFull = errors.New("task storage full")
	// ErrKeyReplayDeleted means an earlier call with the same idempotency
	// key created a task that has since been deleted; nothing was created.
	ErrKeyReplayDeleted = errors.New("the task created with this idempotency key was deleted")
	// ErrKeyConflict means the idempotency key was used before to create a
	// task with a different title or notes; nothing was created.
	ErrKeyConflict = errors.New("idempotency key used for a different task")
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
// task (it reached its limit, SearchScanLimit or SearchByteLimit), so more
// may match.
type SearchResult struct {
	Tasks    []Task
	Complete bool
}

// Created is the result of CreateIdempotent.
type Created struct {
	Task Task
	// Replayed is true when an earlier call with the same key created Task
	// (as it is now); this call created nothing.
	Replayed bool
}

// Store is a small task tracker per tenant, kept in Redis.
//
// Keys, all of one tenant in one hash slot (the braces) so that scripts may
// touch several of them on a cluster:
//
//	tasks:{<tid>}:t:<id>    hash, one task
//	tasks:{<tid>}:all       sorted set of ids by creation sequence
//	tasks:{<tid>}:open      the same, open tasks only
//	tasks:{<tid>}:done      the same, done tasks only
//	tasks:{<tid>}:seq       creation sequence counter
//	tasks:{<tid>}:bytes     bytes the tenant's tasks count for (the budget)
//	tasks:{<tid>}:idem      hash, h(oid, idempotency key) -> "<id> h(title, notes)"
//	tasks:{<tid>}:idemexp   sorted set of the same h(oid, key) by expiry (ms)
//
// Every write is one Lua script, so item, indexes and byte count change
// together or not at all. The tenant id comes from the verified token and
// is part of every key, so one tenant cannot name another's task.
type Store struct {
	rdb      redis.UniversalClient
	maxTasks int
	maxBytes int64
	maxKeys  int
	now      func() time.Time
}

// Option configures a Store.
type Option func(*Store)

// WithMaxTasks sets how many tasks a tenant may hold.
func WithMaxTasks(n int) Option {
	return func(t *Store) { t.maxTasks = n }
}

// WithMaxBytes sets a tenant's task storage budget: the sum over its tasks
// of the lengths of their stored fields plus TaskOverhead each.
func WithMaxBytes(n int64) Option {
	return func(t *Store) { t.maxBytes = n }
}

// WithMaxKeys sets how many idempotency keys a tenant's store remembers at
// most (MaxRememberedKeys by default).
func WithMaxKeys(n int) Option {
	return func(t *Store) { t.maxKeys = n }
}

// WithClock sets the clock used for timestamps and idempotency windows.
func WithClock(now func() time.Time) Option {
	return func(t *Store) { t.now = now }
}

// New returns a task store over rdb.
func New(rdb redis.UniversalClient, opts ...Option) *Store {
	t := &Store{rdb: rdb, maxTasks: DefaultMaxTasks, maxBytes: DefaultMaxBytes, maxKeys: MaxRememberedKeys, now: time.Now}
	for _, o := range opts {
		o(t)
	}
	return t
}

// MaxTasks is how many tasks a tenant may hold.
func (t *Store) MaxTasks() int { return t.maxTasks }

// MaxBytes is a tenant's task storage budget in bytes.
func (t *Store) MaxBytes() int64 { return t.maxBytes }

type tenantKeys struct{ prefix string }

func (k tenantKeys) item(id string) string { return k.prefix + "t:" + id }
func (k tenantKeys) all() string           { return k.prefix + "all" }
func (k tenantKeys) open() string          { return k.prefix + "open" }
func (k tenantKeys) done() string          { return k.prefix + "done" }
func (k tenantKeys) seq() string           { return k.prefix + "seq" }
func (k tenantKeys) bytes() string         { return k.prefix + "bytes" }
func (k tenantKeys) idem() string          { return k.prefix + "idem" }
func (k tenantKeys) idemExp() string       { return k.prefix + "idemexp" }

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
		return tenantKeys{}, errors.New("taskstore: tenant id is not a GUID")
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
		return Actor{}, errors.New("taskstore: actor id missing or too long")
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
	case len(title) > MaxTitleBytes:
		return "", invalid("title", "must be at most %d bytes of UTF-8 (characters outside ASCII take 2 to 4 bytes each)", MaxTitleBytes)
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
	case len(notes) > MaxNotesBytes:
		return "", invalid("notes", "must be at most %d bytes of UTF-8 (characters outside ASCII take 2 to 4 bytes each)", MaxNotesBytes)
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

func checkKey(key string) error {
	if key == "" || len(key) > MaxKeyLen || strings.Trim(key, keyAlphabet) != "" {
		return invalid("idempotency_key", "must be 1 to %d characters of A-Z, a-z, 0-9, '.', '_', ':' and '-'", MaxKeyLen)
	}
	return nil
}

const keyAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"

// taskDigest is a short hash of parts, unambiguous however they are split:
// 128 bits in hex, enough to tell apart what one tenant sends.
func taskDigest(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Create adds an open task to the tenant's list.
func (t *Store) Create(ctx context.Context, tid string, by Actor, title, notes string) (Task, error) {
	c, err := t.create(ctx, tid, by, "", title, notes)
	return c.Task, err
}

// CreateIdempotent is Create made safe to retry: a call with the key of an
// earlier call by the same user (by.ID) within IdempotencyWindow creates
// nothing and returns the task that call created, as it is now, with
// Replayed set. If that task has been deleted since, the error is
// ErrKeyReplayDeleted (and Created.Task.ID names it); if the earlier call
// had a different title or notes, ErrKeyConflict. Key, task and byte count
// are written by one script, so a retry after a lost reply finds the key
// exactly when the task exists.
func (t *Store) CreateIdempotent(ctx context.Context, tid string, by Actor, key, title, notes string) (Created, error) {
	if err := checkKey(key); err != nil {
		return Created{}, err
	}
	return t.create(ctx, tid, by, key, title, notes)
}

func (t *Store) create(ctx context.Context, tid string, by Actor, key, title, notes string) (Created, error) {
	k, err := keysFor(tid)
	if err != nil {
		return Created{}, err
	}
	if by, err = checkActor(by); err != nil {
		return Created{}, err
	}
	if title, err = checkTitle(title); err != nil {
		return Created{}, err
	}
	if notes, err = checkNotes(notes); err != nil {
		return Created{}, err
	}
	now := t.now().UTC()
	task := Task{
		Title: title, Notes: notes, Status: StatusOpen,
		CreatedBy: by.ID, CreatedByName: by.Name, CreatedAt: now,
		UpdatedBy: by.ID, UpdatedByName: by.Name, UpdatedAt: now,
	}
	var keyField, request string
	if key != "" {
		// Per user: another user's key never names this user's task.
		keyField, request = taskDigest(by.ID, key), taskDigest(title, notes)
	}
	keys := []string{k.item(""), k.all(), k.open(), k.seq(), k.bytes(), k.idem(), k.idemExp()}
	// An id collision is a 1-in-2^60 event per pair; retry rather than fail.
	for range 3 {
		task.ID = newID()
		keys[0] = k.item(task.ID)
		reply, err := createScript.Run(ctx, t.rdb, keys,
			append([]any{
				t.maxTasks, t.maxBytes, task.ID, k.prefix,
				keyField, request, now.UnixMilli(), now.Add(IdempotencyWindow).UnixMilli(), t.maxKeys,
			}, taskFields(task)...)...,
		).Slice()
		if err != nil {
			return Created{}, wrap("create task", err)
		}
		code, _ := reply[0].(int64)
		switch code {
		case createdOK:
			return Created{Task: task}, nil
		case createdReplay:
			old, err := parseTask(pairs(stringsOf(reply[1:])))
			return Created{Task: old, Replayed: true}, err
		case createdReplayDeleted:
			id, _ := reply[1].(string)
			return Created{Task: Task{ID: id}, Replayed: true}, fmt.Errorf("%w: task %s", ErrKeyReplayDeleted, id)
		case createdKeyConflict:
			return Created{}, ErrKeyConflict
		case createdFull:
			return Created{}, fmt.Errorf("%w: at most %d tasks per tenant", ErrLimit, t.maxTasks)
		case createdOverBudget:
			return Created{}, fmt.Errorf("%w: at most %d bytes per tenant", ErrStorageFull, t.maxBytes)
		case createdDup:
			continue
		}
		return Created{}, fmt.Errorf("taskstore: create task: unexpected reply %v", reply[0])
	}
	return Created{}, errors.New("taskstore: create task: could not find a free id")
}

// stringsOf keeps the string elements of a script's array reply.
func stringsOf(vs []any) []string {
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// Get returns one task of the tenant.
func (t *Store) Get(ctx context.Context, tid, id string) (Task, error) {
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
func (t *Store) List(ctx context.Context, tid string, q ListQuery) (Page, error) {
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
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i], _ = e.Member.(string)
	}
	tasks, err := t.load(ctx, k, ids)
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
// ignoring case, newest first. It reads only titles and notes to match, and
// whole tasks only for matches; it stops after SearchScanLimit tasks or
// once it has read SearchByteLimit bytes of text, whichever comes first.
func (t *Store) Search(ctx context.Context, tid, query string, limit int) (SearchResult, error) {
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
	var matched []string
	complete, read := false, 0
scan:
	for start := 0; start < SearchScanLimit; start += scanBatch {
		ids, err := t.rdb.ZRevRange(ctx, k.all(), int64(start), int64(start+scanBatch-1)).Result()
		if err != nil {
			return SearchResult{}, wrap("search tasks", err)
		}
		texts, err := t.texts(ctx, k, ids)
		if err != nil {
			return SearchResult{}, wrap("search tasks", err)
		}
		last := len(ids) < scanBatch // nothing older to look at
		for i, text := range texts {
			read += len(text[0]) + len(text[1])
			if !contains(text, needle) {
				continue
			}
			matched = append(matched, ids[i])
			if len(matched) == limit {
				complete = last && i == len(ids)-1
				break scan
			}
		}
		if last {
			complete = true
			break
		}
		if read >= SearchByteLimit {
			break
		}
	}
	tasks, err := t.load(ctx, k, matched)
	if err != nil {
		return SearchResult{}, wrap("search tasks", err)
	}
	return SearchResult{Tasks: tasks, Complete: complete}, nil
}

func contains(text [2]string, lowerNeedle string) bool {
	return strings.Contains(strings.ToLower(text[0]), lowerNeedle) ||
		strings.Contains(strings.ToLower(text[1]), lowerNeedle)
}

// texts reads the title and notes of each task named, in one round trip;
// a task deleted since its id was read has empty ones.
func (t *Store) texts(ctx context.Context, k tenantKeys, ids []string) ([][2]string, error) {
	cmds := make([]*redis.SliceCmd, len(ids))
	_, err := t.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HMGet(ctx, k.item(id), "title", "notes")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([][2]string, len(ids))
	for i, c := range cmds {
		v := c.Val()
		if len(v) == 2 {
			out[i][0], _ = v[0].(string)
			out[i][1], _ = v[1].(string)
		}
	}
	return out, nil
}

// load reads the tasks named in one round trip, in order. A task deleted
// since its id was read is skipped.
func (t *Store) load(ctx context.Context, k tenantKeys, ids []string) ([]Task, error) {
	if len(ids) == 0 {
		return []Task{}, nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err := t.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, k.item(id))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	tasks := make([]Task, 0, len(ids))
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
func (t *Store) Update(ctx context.Context, tid, id string, by Actor, ch Change) (Task, error) {
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
	args := append([]any{by.ID, by.Name, formatTime(t.now()), t.maxBytes, k.prefix}, sets...)
	reply, err := updateScript.Run(ctx, t.rdb,
		[]string{k.item(id), k.open(), k.done(), k.bytes(), k.all()}, args...).Result()
	if errors.Is(err, redis.Nil) {
		return Task{}, ErrNotFound
	}
	if err != nil {
		return Task{}, wrap("update task", err)
	}
	switch v := reply.(type) {
	case []any:
		return parseTask(pairs(stringsOf(v)))
	case int64:
		if v == updatedOverBudget {
			return Task{}, fmt.Errorf("%w: at most %d bytes per tenant", ErrStorageFull, t.maxBytes)
		}
	}
	return Task{}, fmt.Errorf("taskstore: update task: unexpected reply %v", reply)
}

// Complete marks a task done. Completing a done task changes nothing.
func (t *Store) Complete(ctx context.Context, tid, id string, by Actor) (Task, error) {
	done := StatusDone
	return t.Update(ctx, tid, id, by, Change{Status: &done})
}

// Delete removes a task and returns it as it was.
func (t *Store) Delete(ctx context.Context, tid, id string) (Task, error) {
	k, err := keysFor(tid)
	if err != nil {
		return Task{}, err
	}
	if err := checkID(id); err != nil {
		return Task{}, err
	}
	reply, err := deleteScript.Run(ctx, t.rdb,
		[]string{k.item(id), k.all(), k.open(), k.done(), k.bytes()}, id).StringSlice()
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

// storedFields are the fields of a task hash whose lengths count against
// the byte budget, in the order taskFields lays them out. id and seq, of
// bounded length, are part of TaskOverhead.
var storedFields = []string{
	"title", "notes", "status",
	"createdBy", "createdByName", "createdAt",
	"updatedBy", "updatedByName", "updatedAt",
}

// taskFields lays a task out as hash field/value pairs, one per
// storedField (id and seq are set by the create script).
func taskFields(task Task) []any {
	values := map[string]string{
		"title":         task.Title,
		"notes":         task.Notes,
		"status":        task.Status,
		"createdBy":     task.CreatedBy,
		"createdByName": task.CreatedByName,
		"createdAt":     formatTime(task.CreatedAt),
		"updatedBy":     task.UpdatedBy,
		"updatedByName": task.UpdatedByName,
		"updatedAt":     formatTime(task.UpdatedAt),
	}
	out := make([]any, 0, 2*len(storedFields))
	for _, f := range storedFields {
		out = append(out, f, values[f])
	}
	return out
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseTask(f map[string]string) (Task, error) {
	created, err1 := time.Parse(time.RFC3339Nano, f["createdAt"])
	updated, err2 := time.Parse(time.RFC3339Nano, f["updatedAt"])
	if err := errors.Join(err1, err2); err != nil {
		return Task{}, fmt.Errorf("taskstore: corrupt task %q: %w", f["id"], err)
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

// Results of createScript (the first element of its reply).
const (
	createdOK            = 1
	createdReplay        = 2 // followed by the task's field/value pairs
	createdFull          = -1
	createdDup           = -2
	createdReplayDeleted = -3 // followed by the id
	createdKeyConflict   = -4
	createdOverBudget    = -5
)

// updatedOverBudget is updateScript's reply when the change would take the
// tenant past its budget.
const updatedOverBudget = -1

// luaBudget defines what every script that changes a task's size shares:
//
//   - stored(key): what a stored task counts for, TaskOverhead plus the
//     lengths of its storedFields as Redis holds them (HSTRLEN), or 0 if
//     there is no such task.
//   - used(bytes, all, prefix): the tenant's count. When the count is
//     missing (tasks written before there was one, or none yet) it sums
//     the tasks in the all index, at most the task cap, and keeps the sum.
//
// Creates and updates add what they are about to store, computed from the
// same lengths (a value's length is its HSTRLEN once stored), so that the
// count always equals the sum of stored(task). Item keys built from the
// prefix share the tenant's hash tag, so they are in the script's slot.
var luaBudget = fmt.Sprintf(`
local FIELDS = {%s}
local function stored(key)
  if redis.call('EXISTS', key) == 0 then return 0 end
  local n = %d
  for _, f in ipairs(FIELDS) do n = n + redis.call('HSTRLEN', key, f) end
  return n
end
local function used(bytes, all, prefix)
  local n = redis.call('GET', bytes)
  if n then return tonumber(n) end
  n = 0
  for _, id in ipairs(redis.call('ZRANGE', all, 0, -1)) do
    n = n + stored(prefix .. 't:' .. id)
  end
  redis.call('SET', bytes, n)
  return n
end
`, luaList(storedFields), TaskOverhead)

func luaList(names []string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = "'" + n + "'"
	}
	return strings.Join(quoted, ", ")
}

// createScript adds a task and its index entries if the tenant is under
// its task cap and byte budget, and remembers the idempotency key if one
// is given; a remembered key returns what the earlier call created
// instead. Expired keys are forgotten a hundred at a time, and the oldest
// when the most it keeps would be passed, so the keys stay bounded.
// KEYS: item, all, open, seq, bytes, idem, idemexp.
// ARGV: 1 task cap, 2 byte budget, 3 id, 4 key prefix, 5 h(oid, key) or
// "", 6 h(title, notes), 7 now (ms), 8 key expiry (ms), 9 keys kept at
// most, 10… field/value pairs (storedFields).
// Returns {code, …}: see the created* constants.
var createScript = redis.NewScript(luaBudget + `
local key = ARGV[5]
if key ~= '' then
  local old = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', ARGV[7], 'LIMIT', 0, 100)
  if #old > 0 then
    redis.call('HDEL', KEYS[6], unpack(old))
    redis.call('ZREM', KEYS[7], unpack(old))
  end
  local seen = redis.call('HGET', KEYS[6], key)
  if seen then
    local id, request = string.match(seen, '^(%S+) (%S+)$')
    if request ~= ARGV[6] then return {-4} end
    local task = redis.call('HGETALL', ARGV[4] .. 't:' .. id)
    if #task == 0 then return {-3, id} end
    return {2, unpack(task)}
  end
end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[1]) then return {-1} end
if redis.call('EXISTS', KEYS[1]) == 1 then return {-2} end
local size = ` + strconv.Itoa(TaskOverhead) + `
for i = 11, #ARGV, 2 do size = size + #ARGV[i] end
if used(KEYS[5], KEYS[2], ARGV[4]) + size > tonumber(ARGV[2]) then return {-5} end
local seq = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[1], 'id', ARGV[3], 'seq', seq, unpack(ARGV, 10))
redis.call('ZADD', KEYS[2], seq, ARGV[3])
redis.call('ZADD', KEYS[3], seq, ARGV[3])
redis.call('INCRBY', KEYS[5], size)
if key ~= '' then
  local over = redis.call('ZCARD', KEYS[7]) - tonumber(ARGV[9]) + 1
  if over > 0 then
    local oldest = redis.call('ZPOPMIN', KEYS[7], over)
    for i = 1, #oldest, 2 do redis.call('HDEL', KEYS[6], oldest[i]) end
  end
  redis.call('HSET', KEYS[6], key, ARGV[3] .. ' ' .. ARGV[6])
  redis.call('ZADD', KEYS[7], ARGV[8], key)
end
return {1}
`)

// updateScript sets the given fields of an existing task, moves it between
// the status indexes, and stamps who changed it if anything changed. A
// change that makes the task bigger must fit the tenant's budget; one that
// makes it smaller always may.
// KEYS: item, open, done, bytes, all. ARGV: updatedBy, updatedByName,
// updatedAt, byte budget, key prefix, field/value pairs. Returns nil if
// the task does not exist, -1 if over budget, else the task.
var updateScript = redis.NewScript(luaBudget + `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local sets, delta, status = {}, 0, nil
local function set(field, value)
  sets[#sets + 1] = field
  sets[#sets + 1] = value
  delta = delta + #value - redis.call('HSTRLEN', KEYS[1], field)
end
for i = 6, #ARGV, 2 do
  local field, value = ARGV[i], ARGV[i + 1]
  if redis.call('HGET', KEYS[1], field) ~= value then
    set(field, value)
    if field == 'status' then status = value end
  end
end
if #sets == 0 then return redis.call('HGETALL', KEYS[1]) end
set('updatedBy', ARGV[1])
set('updatedByName', ARGV[2])
set('updatedAt', ARGV[3])
if delta > 0 and used(KEYS[4], KEYS[5], ARGV[5]) + delta > tonumber(ARGV[4]) then return -1 end
redis.call('HSET', KEYS[1], unpack(sets))
-- A missing count is summed when next needed, from what is stored then.
if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('INCRBY', KEYS[4], delta) end
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

// deleteScript removes a task and its index entries, and gives back what it
// counted for. KEYS: item, all, open, done, bytes. ARGV: id. Returns nil
// if the task does not exist, else the task as it was.
var deleteScript = redis.NewScript(luaBudget + `
local task = redis.call('HGETALL', KEYS[1])
if #task == 0 then return false end
local size = stored(KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
if redis.call('EXISTS', KEYS[5]) == 1 then redis.call('DECRBY', KEYS[5], size) end
return task
`)

// wrap adds what was being done to a Redis error, and marks it as an
// outage of Redis when Redis could not serve the request.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("taskstore: %s: %w", op, store.MarkUnavailable(err))
}
