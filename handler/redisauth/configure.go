package redisauth

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/redis/go-redis/v9"
)

// Configure makes a client built from opts authenticate with p's tokens:
// it sets StreamingCredentialsProvider and clears every other credential
// (a user or password from the URL would otherwise be confusing, as go-redis
// ignores them once a streaming provider is set).
//
// A token is a bearer credential, so Configure insists on TLS: use a
// rediss:// URL (Azure Managed Redis listens on port 10000, Azure Cache for
// Redis on 6380). It raises the minimum TLS version to 1.2, which both
// require, and sets the server name from the host when missing. Plain text
// is accepted only to a loopback address or a Unix socket, for local tests.
//
// Typical use, with the store package's options:
//
//	opts, err := store.Options(redisURL) // rediss://<name>.<region>.redis.azure.net:10000
//	p, err := redisauth.New(cred, redisauth.Options{Logger: log})
//	err = redisauth.Configure(opts, p)
//	rdb := redis.NewClient(opts)
//	// on shutdown: rdb.Close(); p.Close()
func Configure(opts *redis.Options, p *Provider) error {
	if opts == nil || p == nil {
		return errors.New("redisauth: Configure needs options and a provider")
	}
	if opts.TLSConfig == nil {
		if !local(opts) {
			return fmt.Errorf("redisauth: %s is not reached over TLS; use rediss:// so the token is not sent in clear", opts.Addr)
		}
	} else {
		// Clone: the caller may share the config with other clients.
		tc := opts.TLSConfig.Clone()
		if tc.MinVersion < tls.VersionTLS12 {
			tc.MinVersion = tls.VersionTLS12
		}
		if tc.ServerName == "" {
			if host, _, err := net.SplitHostPort(opts.Addr); err == nil {
				tc.ServerName = host
			}
		}
		opts.TLSConfig = tc
	}
	opts.Username = ""
	opts.Password = ""
	opts.CredentialsProvider = nil
	opts.CredentialsProviderContext = nil
	opts.StreamingCredentialsProvider = p
	return nil
}

// local reports whether opts reach Redis on this machine only.
func local(opts *redis.Options) bool {
	if opts.Network == "unix" {
		return true
	}
	host, _, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
