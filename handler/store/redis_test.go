package store_test

import (
	"strings"
	"testing"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/store"
)

func TestOptions(t *testing.T) {
	t.Parallel()
	opts, err := store.Options("rediss://user:secret@cache.example.net:6380/2")
	if err != nil {
		t.Fatal(err)
	}
	if opts.Addr != "cache.example.net:6380" || opts.DB != 2 || opts.Username != "user" || opts.Password != "secret" {
		t.Errorf("parsed %s db %d user %q", opts.Addr, opts.DB, opts.Username)
	}
	if opts.TLSConfig == nil || opts.TLSConfig.ServerName != "cache.example.net" {
		t.Errorf("rediss:// must use TLS with the host's name")
	}
	if opts.DialTimeout != 5*time.Second || opts.ReadTimeout != 3*time.Second || opts.WriteTimeout != 3*time.Second {
		t.Errorf("timeouts dial %v read %v write %v", opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout)
	}

	plain, err := store.Options("redis://127.0.0.1:6379/0")
	if err != nil || plain.TLSConfig != nil {
		t.Errorf("redis:// = %+v, %v; want no TLS", plain, err)
	}

	_, err = store.Options("http://user:hunter2@example.net")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad URL: %v (must fail without echoing the password)", err)
	}
}
