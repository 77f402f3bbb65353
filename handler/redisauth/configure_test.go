package redisauth_test

import (
	"crypto/tls"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/entra-mcp/functions-mcp/handler/redisauth"
	"github.com/entra-mcp/functions-mcp/handler/store"
)

func TestConfigure(t *testing.T) {
	t.Parallel()
	p := newProvider(t, newFakeCred(newFakeClock(), "oid-1"), newFakeClock(), redisauth.Options{})

	t.Run("azure managed redis", func(t *testing.T) {
		opts, err := store.Options("rediss://key:secret@cache1.westeurope.redis.azure.net:10000/0")
		if err != nil {
			t.Fatal(err)
		}
		shared := opts.TLSConfig
		shared.MinVersion = tls.VersionTLS10
		if err := redisauth.Configure(opts, p); err != nil {
			t.Fatal(err)
		}
		if opts.StreamingCredentialsProvider != p {
			t.Error("StreamingCredentialsProvider not set")
		}
		if opts.Username != "" || opts.Password != "" {
			t.Error("user or password from the URL kept")
		}
		if opts.TLSConfig.MinVersion != tls.VersionTLS12 {
			t.Errorf("MinVersion = %x, want TLS 1.2", opts.TLSConfig.MinVersion)
		}
		if opts.TLSConfig.ServerName != "cache1.westeurope.redis.azure.net" {
			t.Errorf("ServerName = %q", opts.TLSConfig.ServerName)
		}
		if shared.MinVersion != tls.VersionTLS10 {
			t.Error("Configure changed the caller's tls.Config instead of a copy")
		}
	})

	t.Run("server name from host", func(t *testing.T) {
		opts := &redis.Options{Addr: "cache2.redis.cache.windows.net:6380", TLSConfig: &tls.Config{MinVersion: tls.VersionTLS13}}
		if err := redisauth.Configure(opts, p); err != nil {
			t.Fatal(err)
		}
		if opts.TLSConfig.ServerName != "cache2.redis.cache.windows.net" || opts.TLSConfig.MinVersion != tls.VersionTLS13 {
			t.Errorf("TLS config = %q/%x, want the host name and TLS 1.3 kept", opts.TLSConfig.ServerName, opts.TLSConfig.MinVersion)
		}
	})

	t.Run("plain text to a remote host", func(t *testing.T) {
		opts, err := store.Options("redis://cache1.westeurope.redis.azure.net:10000/0")
		if err != nil {
			t.Fatal(err)
		}
		if err := redisauth.Configure(opts, p); err == nil {
			t.Fatal("Configure accepted sending tokens in clear to a remote host")
		}
		if opts.StreamingCredentialsProvider != nil {
			t.Error("options changed despite the error")
		}
	})

	t.Run("plain text to loopback", func(t *testing.T) {
		for _, addr := range []string{"127.0.0.1:6379", "localhost:6379", "[::1]:6379"} {
			opts := &redis.Options{Addr: addr}
			if err := redisauth.Configure(opts, p); err != nil {
				t.Errorf("%s: %v", addr, err)
			}
		}
	})
}
