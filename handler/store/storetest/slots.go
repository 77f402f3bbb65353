package storetest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Slots is a client hook that checks what a Redis Cluster (or Azure Managed
// Redis with the EnterpriseCluster policy) requires: every script and every
// MULTI/EXEC touches keys of one hash slot only. Add it to a client with
// AddHook, run the code under test, then call Check.
//
// Plain multi-key commands (DEL, EXISTS, MGET, ...) are not checked: Azure
// Managed Redis allows those across slots; scripts and transactions it does
// not.
type Slots struct {
	mu         sync.Mutex
	violations []string
	checked    int
}

// Watch adds a Slots hook to rdb and fails t, when it ends, for every
// cross-slot script or transaction it saw.
func Watch(t testing.TB, rdb *redis.Client) *Slots {
	t.Helper()
	s := &Slots{}
	rdb.AddHook(s)
	t.Cleanup(func() {
		for _, v := range s.Violations() {
			t.Errorf("cross-slot: %s", v)
		}
	})
	return s
}

// Check fails the test for every script or transaction that spanned slots,
// and if nothing was checked at all (the hook was not in use).
func (s *Slots) Check(t interface {
	Helper()
	Errorf(string, ...any)
}) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.violations {
		t.Errorf("cross-slot: %s", v)
	}
	if s.checked == 0 {
		t.Errorf("storetest.Slots saw no script or transaction")
	}
}

// Violations lists the scripts and transactions that spanned slots.
func (s *Slots) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

// Checked is how many scripts and transactions the hook has looked at.
func (s *Slots) Checked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checked
}

func (s *Slots) DialHook(next redis.DialHook) redis.DialHook { return next }

func (s *Slots) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		s.look([]redis.Cmder{cmd}, false)
		return next(ctx, cmd)
	}
}

func (s *Slots) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		tx := len(cmds) > 0 && strings.EqualFold(cmds[0].Name(), "multi")
		s.look(cmds, tx)
		return next(ctx, cmds)
	}
}

// look checks each script on its own, and a transaction as a whole.
func (s *Slots) look(cmds []redis.Cmder, tx bool) {
	var txKeys []string
	for _, c := range cmds {
		keys, isScript := scriptKeys(c)
		if isScript {
			s.record(c.Name(), keys)
		}
		if tx {
			txKeys = append(txKeys, keys...)
			if !isScript {
				txKeys = append(txKeys, commandKeys(c)...)
			}
		}
	}
	if tx {
		s.record("multi/exec", txKeys)
	}
}

func (s *Slots) record(what string, keys []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checked++
	if len(keys) < 2 {
		return
	}
	first := Slot(keys[0])
	for _, k := range keys[1:] {
		if Slot(k) != first {
			s.violations = append(s.violations, fmt.Sprintf("%s over %q", what, keys))
			return
		}
	}
}

// scriptKeys returns the KEYS of an EVAL, EVALSHA or FCALL.
func scriptKeys(c redis.Cmder) ([]string, bool) {
	switch strings.ToLower(c.Name()) {
	case "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro":
	default:
		return nil, false
	}
	args := c.Args()
	if len(args) < 3 {
		return nil, true
	}
	n, err := strconv.Atoi(fmt.Sprint(args[2]))
	if err != nil || 3+n > len(args) {
		return nil, true
	}
	keys := make([]string, n)
	for i := range n {
		keys[i] = fmt.Sprint(args[3+i])
	}
	return keys, true
}

// commandKeys returns the key of a one-key command inside a transaction
// (its first argument); the commands this code sends in transactions are
// of that kind.
func commandKeys(c redis.Cmder) []string {
	switch strings.ToLower(c.Name()) {
	case "multi", "exec":
		return nil
	}
	args := c.Args()
	if len(args) < 2 {
		return nil
	}
	return []string{fmt.Sprint(args[1])}
}

// Slot is a key's Redis Cluster hash slot: CRC16 (XMODEM) of the key, or of
// its hash tag (the text between the first "{" and the next "}", if not
// empty), modulo 16384.
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % 16384)
}

func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
