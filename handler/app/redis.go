package app

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/config"
	"github.com/entra-mcp/functions-mcp/handler/redisauth"
	"github.com/entra-mcp/functions-mcp/handler/store"
)

// openRedis makes the Redis client. With REDIS_AUTH=entra it signs in with
// the managed identity's token instead of an access key, and renews the
// token on every pooled connection before it expires. It dials nothing:
// the first command does.
func openRedis(cfg config.Redis, cred azcore.TokenCredential, log *slog.Logger) (*redis.Client, *redisauth.Provider, error) {
	opts, err := store.Options(cfg.URL)
	if err != nil {
		return nil, nil, fmt.Errorf("open redis: %w", err)
	}
	if cfg.Auth != config.RedisAuthEntra {
		return redis.NewClient(opts), nil, nil
	}
	if cred == nil {
		return nil, nil, errors.New("REDIS_AUTH=entra: no Azure credential (a managed identity in Azure)")
	}
	// An explicit user name spares reading it from the token, unverified.
	p, err := redisauth.New(cred, redisauth.Options{UserName: cfg.Username, Logger: log})
	if err != nil {
		return nil, nil, fmt.Errorf("REDIS_AUTH=entra: %w", err)
	}
	if err := redisauth.Configure(opts, p); err != nil {
		p.Close()
		return nil, nil, fmt.Errorf("REDIS_AUTH=entra: %w", err)
	}
	return redis.NewClient(opts), p, nil
}
