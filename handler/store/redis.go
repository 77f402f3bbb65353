// Package store owns the sign-in data in Redis (its key families and their
// atomic operations), the Redis client's options, and the way Redis
// failures are reported. Tasks (package taskstore) and rate limits (package
// ratelimit) keep key families of their own and use Options and
// MarkUnavailable from here.
//
// Every failure to reach Redis in time is an *outage.Error naming Redis, so
// callers can tell "try again later" from a bug with errors.Is(err,
// outage.ErrUnavailable).
package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/outage"
)

// Dependency is how outages of Redis are named: every error that comes
// from Redis being unreachable, slow, out of memory, loading or failing
// over wraps an *outage.Error for it.
const Dependency = "redis"

// Timeouts and pool sizes for a serverless instance: fail fast rather than
// hold a request for the host's whole timeout, and keep few idle connections
// because many instances may share one Redis.
const (
	dialTimeout  = 5 * time.Second
	readTimeout  = 3 * time.Second
	writeTimeout = 3 * time.Second
	poolSize     = 8
	poolTimeout  = 4 * time.Second
	idleTimeout  = 4 * time.Minute
)

// Options parses a REDIS_URL (redis://[user:password@]host:port/db, or
// rediss:// for TLS) into client options tuned for a Functions instance.
// Callers may add credentials (for example a StreamingCredentialsProvider
// for Entra ID) before calling redis.NewClient.
func Options(url string) (*redis.Options, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		// ParseURL's message may echo the URL, and a URL may hold a password.
		return nil, errors.New("parse REDIS_URL: want redis://host:port/db or rediss://host:port/db")
	}
	opts.DialTimeout = dialTimeout
	opts.ReadTimeout = readTimeout
	opts.WriteTimeout = writeTimeout
	opts.PoolSize = poolSize
	opts.PoolTimeout = poolTimeout
	opts.ConnMaxIdleTime = idleTimeout
	opts.MinIdleConns = 0
	// One more dial after a failed one, then give up: a request should fail
	// within seconds rather than wait through go-redis's default five dials.
	opts.DialerRetries = 2
	// No command retries: a script whose reply was lost may have run, and
	// running a create twice would make two tasks. Callers retry instead.
	opts.MaxRetries = -1
	// Honour the request's deadline as well as our own timeouts.
	opts.ContextTimeoutEnabled = true
	if opts.TLSConfig != nil {
		opts.TLSConfig.MinVersion = tls.VersionTLS12
	}
	return opts, nil
}

// Ping checks that Redis answers. Its error wraps outage.ErrUnavailable.
func Ping(ctx context.Context, rdb redis.UniversalClient) error {
	if err := rdb.Ping(ctx).Err(); err != nil {
		return wrap("ping", err)
	}
	return nil
}

// wrap adds what was being done to a Redis error, and marks it as an
// outage of Redis when Redis could not serve the request.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("store: %s: %w", op, MarkUnavailable(err))
}

// MarkUnavailable returns a Redis client error as an *outage.Error naming
// Redis when it means Redis could not serve the request (so callers answer
// 503 and retry), or err as it is. For packages that keep keys of their own.
func MarkUnavailable(err error) error {
	if err != nil && unavailable(err) {
		return outage.New(Dependency, err)
	}
	return err
}

// unavailable reports whether err means Redis could not serve a request, as
// opposed to a request Redis rejected (a bug on our side).
func unavailable(err error) bool {
	if errors.Is(err, context.Canceled) {
		// The caller went away; Redis may be fine.
		return false
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		// Dial, I/O, timeout, pool and closed-client errors.
		return true
	}
	return redis.IsLoadingError(err) ||
		redis.IsReadOnlyError(err) ||
		redis.IsClusterDownError(err) ||
		redis.IsTryAgainError(err) ||
		redis.IsMasterDownError(err) ||
		redis.IsMaxClientsError(err) ||
		redis.IsOOMError(err) ||
		redis.IsAuthError(err) ||
		redis.HasErrorPrefix(err, "BUSY")
}
