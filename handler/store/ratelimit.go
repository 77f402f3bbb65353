package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/redis/go-redis/v9"
)

// Limiter limits how often a key (a client address) may do something,
// counted in Redis so that every instance shares one count.
//
// It is a token bucket in the form of GCRA (the generic cell rate
// algorithm): a bucket is one number, the time at which it will be full
// again, so each check is one short script and one key, and requests are
// spread evenly instead of allowing a double burst at a window's edge as a
// fixed window would. Time comes from Redis (TIME), so instances whose
// clocks disagree still share one clock.
//
// Keys: rl:<name>:<h(key)>, a string, with a TTL of the time until the
// bucket is full again (then it is the same as no key).
type Limiter struct {
	rdb      redis.UniversalClient
	prefix   string
	interval time.Duration // time to earn one request
	burst    int
}

var limiterName = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// NewLimiter returns a limiter named name (a-z, 0-9, _ and -) that allows
// rate requests per per for each key, and up to burst at once. Limits are
// part of the program, so bad arguments are a programming error: it panics.
func NewLimiter(rdb redis.UniversalClient, name string, rate int, per time.Duration, burst int) *Limiter {
	if !limiterName.MatchString(name) {
		panic("store: NewLimiter: name must be 1 to 32 of a-z, 0-9, _ and -")
	}
	if rate < 1 || burst < 1 || per/time.Duration(max(rate, 1)) < time.Microsecond {
		panic(fmt.Sprintf("store: NewLimiter %s: want rate ≥ 1, burst ≥ 1 and at most one request per µs", name))
	}
	return &Limiter{rdb: rdb, prefix: "rl:" + name + ":", interval: per / time.Duration(rate), burst: burst}
}

// Allow counts one request for key. If the request is over the limit it
// returns false and how long to wait before one more would be allowed. If
// Redis cannot answer, the error wraps ErrUnavailable: refuse the request
// (503) rather than let it through uncounted.
func (l *Limiter) Allow(ctx context.Context, key string) (ok bool, retryAfter time.Duration, err error) {
	interval := l.interval.Microseconds()
	reply, err := gcraScript.Run(ctx, l.rdb, []string{l.prefix + digest(key)},
		interval, interval*int64(l.burst)).Int64Slice()
	if err != nil {
		return false, 0, wrap("rate limit", err)
	}
	if len(reply) != 2 {
		return false, 0, errors.New("store: rate limit: unexpected reply")
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
