package telemetry

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// maxPipelineNames caps how many command names a pipeline's item lists.
const maxPipelineNames = 8

// RedisHook returns a go-redis hook (client.AddHook) that records every
// command, pipeline and dial as a Redis dependency on target (the server
// address). Only command names are recorded, never keys, arguments or
// values: keys carry user ids, values carry sealed tokens.
func (c *Client) RedisHook(target string) redis.Hook {
	return redisHook{c: c, target: target}
}

type redisHook struct {
	c      *Client
	target string
}

func (h redisHook) DialHook(next redis.DialHook) redis.DialHook {
	if !h.c.Enabled() {
		return next
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		start := time.Now()
		conn, err := next(ctx, network, addr)
		h.c.Dependency(ctx, DependencyItem{
			Type: TypeRedis, Target: h.target, Name: "connect",
			Start: start, Duration: time.Since(start),
			Success: err == nil, ResultCode: redisResult(err),
		})
		return conn, err
	}
}

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	if !h.c.Enabled() {
		return next
	}
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		h.c.Dependency(ctx, DependencyItem{
			Type: TypeRedis, Target: h.target, Name: strings.ToUpper(cmd.Name()),
			Start: start, Duration: time.Since(start),
			Success: redisOK(err), ResultCode: redisResult(err),
		})
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	if !h.c.Enabled() {
		return next
	}
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		// The pipeline fails if any command did (redis.Nil is an answer).
		failed := err
		if redisOK(failed) {
			for _, cmd := range cmds {
				if e := cmd.Err(); !redisOK(e) {
					failed = e
					break
				}
			}
		}
		h.c.Dependency(ctx, DependencyItem{
			Type: TypeRedis, Target: h.target, Name: pipelineName(cmds),
			Start: start, Duration: time.Since(start),
			Success: redisOK(failed), ResultCode: redisResult(failed),
		})
		return err
	}
}

// pipelineName is "PIPELINE" and the command names in order, e.g.
// "PIPELINE MULTI SET EXPIRE EXEC": stable per call site, so items group.
func pipelineName(cmds []redis.Cmder) string {
	var b strings.Builder
	b.WriteString("PIPELINE")
	for i, cmd := range cmds {
		if i == maxPipelineNames {
			b.WriteString(" ...")
			break
		}
		b.WriteByte(' ')
		b.WriteString(strings.ToUpper(cmd.Name()))
	}
	return b.String()
}

func redisOK(err error) bool { return err == nil || errors.Is(err, redis.Nil) }

// redisResult is a short code: never the error text, which for scripts
// can quote the values they handled.
func redisResult(err error) string {
	var rerr redis.Error
	var nerr net.Error
	switch {
	case err == nil:
		return "OK"
	case errors.Is(err, redis.Nil):
		return "nil"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &rerr):
		// Server errors start with an upper-case code: ERR, WRONGTYPE, NOSCRIPT, MOVED...
		code, _, _ := strings.Cut(rerr.Error(), " ")
		if code != "" && strings.ToUpper(code) == code && len(code) <= 16 {
			return code
		}
		return "error"
	default:
		return "error"
	}
}
