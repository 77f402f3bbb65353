// Package ratelimit limits how often a key (a client address, a user) may
// do something, counted in Redis so that every instance shares one count.
package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/store"
)

// Limiter limits how often a key (a client address, a user) may do
// something, counted in Redis so that every instance shares one count.
//
// It is a token bucket in the form of GCRA (the generic cell rate
// algorithm): a bucket is one number, the time at which it will be full
// again, so each check is one short script and one key, and requests are
// spread evenly instead of allowing a double burst at a window's edge as a
// fixed window would. Time comes from Redis (TIME), so instances whose
// clocks disagree still share one clock.
//
// When Redis cannot count (down, or full and refusing writes under
// noeviction), the limiter counts in process instead, with the same rate
// per instance: an outage must neither lift every limit nor refuse every
// request.
//
// Keys: rl:<name>:<h(key)>, a string, with a TTL of the time until the
// bucket is full again (then it is the same as no key). A bucket exists
// only while its key is being refused or refilling: what one key costs
// Redis does not grow with the number of its requests.
type Limiter struct {
	rdb      redis.UniversalClient
	name     string
	prefix   string
	interval time.Duration // time to earn one request
	burst    int
	log      *slog.Logger
	local    *localBuckets
	reported *reportOnce // refusals logged once per window per key
	outage   *reportOnce // "counting in process" logged once a minute
}

var limiterName = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// Option configures a Limiter.
type Option func(*Limiter)

// WithLogger logs the first refusal of each key in each window (the
// time the bucket takes to fill), so an operator sees an attack without a
// line per refused request, and when Redis cannot count.
func WithLogger(log *slog.Logger) Option {
	return func(l *Limiter) { l.log = log }
}

// New returns a limiter named name (a-z, 0-9, _ and -) that allows
// rate requests per per for each key, and up to burst at once. Limits are
// part of the program, so bad arguments are a programming error: it panics.
func New(rdb redis.UniversalClient, name string, rate int, per time.Duration, burst int, opts ...Option) *Limiter {
	if !limiterName.MatchString(name) {
		panic("ratelimit: New: name must be 1 to 32 of a-z, 0-9, _ and -")
	}
	if rate < 1 || burst < 1 || per/time.Duration(max(rate, 1)) < time.Microsecond {
		panic(fmt.Sprintf("ratelimit: New %s: want rate ≥ 1, burst ≥ 1 and at most one request per µs", name))
	}
	l := &Limiter{
		rdb: rdb, name: name, prefix: "rl:" + name + ":", interval: per / time.Duration(rate), burst: burst,
		log: slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(l)
	}
	window := l.interval * time.Duration(burst)
	l.local = newLocalBuckets(maxLocalBuckets)
	l.reported = newReportOnce(maxReported, window)
	l.outage = newReportOnce(1, time.Minute)
	return l
}

// Bounds on the in-process state, so that a flood of distinct keys cannot
// grow it: the fallback buckets and the keys whose refusal was logged.
const (
	maxLocalBuckets = 10000
	maxReported     = 4096
)

// Allow counts one request for key. If the request is over the limit it
// returns false and how long to wait before one more would be allowed.
// When Redis cannot count it counts in process and still answers; the
// error is then nil, so callers need no outage path of their own.
func (l *Limiter) Allow(ctx context.Context, key string) (ok bool, retryAfter time.Duration, err error) {
	ok, retryAfter, err = l.allowRedis(ctx, key)
	if err != nil {
		if l.outage.first("") {
			l.log.LogAttrs(ctx, slog.LevelWarn, "rate limit counted in process: Redis cannot count",
				slog.String("limit", l.name), slog.String("err", err.Error()))
		}
		ok, retryAfter = l.local.allow(key, l.interval, l.burst, time.Now())
	}
	if !ok && l.reported.first(key) {
		l.log.LogAttrs(ctx, slog.LevelWarn, "rate limit reached",
			slog.String("limit", l.name), slog.String("key", key),
			slog.Duration("retry_after", retryAfter))
	}
	return ok, retryAfter, nil
}

func (l *Limiter) allowRedis(ctx context.Context, key string) (bool, time.Duration, error) {
	interval := l.interval.Microseconds()
	reply, err := gcraScript.Run(ctx, l.rdb, []string{l.prefix + digest(key)},
		interval, interval*int64(l.burst)).Int64Slice()
	if err != nil {
		return false, 0, fmt.Errorf("ratelimit: %w", store.MarkUnavailable(err))
	}
	if len(reply) != 2 {
		return false, 0, errors.New("ratelimit: unexpected reply")
	}
	if reply[0] == 1 {
		return true, 0, nil
	}
	return false, time.Duration(reply[1]) * time.Microsecond, nil
}

// gcraScript admits a request if the bucket's "full again" time (tat),
// after adding one interval, is at most burst intervals ahead of now.
// Times are microseconds, written with %.0f because Lua would print such
// large numbers in exponent form and lose digits.
// KEYS: bucket. ARGV: interval (µs), burst × interval (µs).
// Returns {1, 0} if allowed, {0, µs to wait} if not.
var gcraScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new = tat + tonumber(ARGV[1])
local wait = new - now - tonumber(ARGV[2])
if wait > 0 then return {0, wait} end
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', string.format('%.0f', math.ceil((new - now) / 1000)))
return {1, 0}
`)

// localBuckets is GCRA in process, for when Redis cannot count. It holds
// at most max keys; when full it drops buckets that are full again (the
// same as absent), and failing that an arbitrary one, which then starts
// afresh: a flood of new keys must not lock out the keys already counted,
// nor grow memory.
type localBuckets struct {
	mu  sync.Mutex
	max int
	tat map[string]time.Time
}

func newLocalBuckets(size int) *localBuckets {
	return &localBuckets{max: size, tat: make(map[string]time.Time)}
}

func (b *localBuckets) allow(key string, interval time.Duration, burst int, now time.Time) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	tat, ok := b.tat[key]
	if !ok {
		b.makeRoom(now)
	}
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(interval)
	if wait := next.Sub(now) - interval*time.Duration(burst); wait > 0 {
		return false, wait
	}
	b.tat[key] = next
	return true, 0
}

func (b *localBuckets) makeRoom(now time.Time) {
	if len(b.tat) < b.max {
		return
	}
	for k, t := range b.tat {
		if !t.After(now) {
			delete(b.tat, k)
		}
	}
	for k := range b.tat {
		if len(b.tat) < b.max {
			return
		}
		delete(b.tat, k)
	}
}

// reportOnce says whether an event for a key is the first in its window,
// remembering at most max keys.
type reportOnce struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	until  map[string]time.Time
}

func newReportOnce(size int, window time.Duration) *reportOnce {
	return &reportOnce{max: size, window: max(window, time.Second), until: make(map[string]time.Time)}
}

func (r *reportOnce) first(key string) bool {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.until[key]; ok && now.Before(t) {
		return false
	}
	if len(r.until) >= r.max {
		for k, t := range r.until {
			if !now.Before(t) || len(r.until) >= r.max {
				delete(r.until, k)
			}
		}
	}
	r.until[key] = now.Add(r.window)
	return true
}

// digest names a key in Redis without its text (an address, a user id).
func digest(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}
