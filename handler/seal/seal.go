// Package seal encrypts values kept in Redis with AES-256-GCM under a ring
// of keys, so that keys can be rotated without losing what is stored.
//
// A sealed value is
//
//	version (1 byte) | key id (8 bytes) | nonce (12 bytes) | ciphertext and tag
//
// The key id is derived from the key, so nothing needs to be configured
// beyond the keys themselves. The name a value is stored under (its Redis
// key) is authenticated with it, so a value copied to another name does not
// open.
package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
)

// KeySize is the length of a sealing key in bytes (AES-256).
const KeySize = 32

const (
	version   byte = 1
	idSize         = 8
	nonceSize      = 12
	tagSize        = 16
	header         = 1 + idSize
	overhead       = header + nonceSize + tagSize
	// idDomain separates key ids from any other use of a hash over the key.
	idDomain = "functions-mcp/seal key id v1\x00"
)

// ErrOpen is wrapped by every error from Open: an unknown key, a value that
// was changed or truncated, or a value stored under another name.
var ErrOpen = errors.New("seal: cannot open sealed value")

// Ring holds the sealing keys, newest first. It is safe for concurrent use.
type Ring struct {
	// keys is swapped whole by Update, so a key vault reload can rotate the
	// keys of a ring that stores already hold, without a lock on every seal.
	keys atomic.Pointer[[]ringKey]
}

type ringKey struct {
	id   [idSize]byte
	aead cipher.AEAD
}

// NewRing returns a ring of 32-byte keys, newest first. Seal uses the first
// key; Open accepts any of them.
func NewRing(keys ...[]byte) (*Ring, error) {
	if len(keys) == 0 {
		return nil, errors.New("seal: no keys")
	}
	ring := make([]ringKey, 0, len(keys))
	for i, k := range keys {
		if len(k) != KeySize {
			return nil, fmt.Errorf("seal: key %d is %d bytes, want %d", i+1, len(k), KeySize)
		}
		id := keyID(k)
		for j, prev := range ring {
			if prev.id == id {
				return nil, fmt.Errorf("seal: key %d is the same as key %d", i+1, j+1)
			}
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("seal: key %d: %w", i+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("seal: key %d: %w", i+1, err)
		}
		ring = append(ring, ringKey{id: id, aead: aead})
	}
	r := &Ring{}
	r.keys.Store(&ring)
	return r, nil
}

// ParseKeys reads TOKEN_SEALING_KEYS: comma-separated base64 (standard or
// URL alphabet, with or without padding) of 32-byte keys, newest first.
// Its errors name keys by position and never contain key material.
func ParseKeys(s string) (*Ring, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("seal: TOKEN_SEALING_KEYS is empty")
	}
	parts := strings.Split(s, ",")
	keys := make([][]byte, 0, len(parts))
	for i, p := range parts {
		k, err := decodeKey(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("seal: TOKEN_SEALING_KEYS key %d: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	return NewRing(keys...)
}

// decodeKey decodes one base64 key. Its errors do not echo the input, not
// even the position of a bad character.
func decodeKey(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("empty")
	}
	s = strings.TrimRight(s, "=")
	k, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		k, err = base64.RawURLEncoding.DecodeString(s)
	}
	if err != nil {
		return nil, errors.New("not base64")
	}
	if len(k) != KeySize {
		return nil, fmt.Errorf("decodes to %d bytes, want %d", len(k), KeySize)
	}
	return k, nil
}

// GenerateKey returns a new random key in the form ParseKeys reads.
func GenerateKey() (string, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return "", fmt.Errorf("seal: generate key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

func keyID(k []byte) [idSize]byte {
	h := sha256.New()
	h.Write([]byte(idDomain))
	h.Write(k)
	var id [idSize]byte
	copy(id[:], h.Sum(nil))
	return id
}

// KeyIDs returns the hex ids of the ring's keys, newest first, so operators
// can check which keys an instance holds without seeing them.
func (r *Ring) KeyIDs() []string {
	keys := *r.keys.Load()
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = hex.EncodeToString(k.id[:])
	}
	return ids
}

// Seal encrypts plaintext with the newest key. name is the name the value
// will be stored under; Open must be given the same name.
func (r *Ring) Seal(name string, plaintext []byte) ([]byte, error) {
	k := (*r.keys.Load())[0]
	out := make([]byte, header+nonceSize, overhead+len(plaintext))
	out[0] = version
	copy(out[1:header], k.id[:])
	nonce := out[header : header+nonceSize]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	return k.aead.Seal(out, nonce, plaintext, additionalData(out[:header], name)), nil
}

// Open decrypts a value sealed by Seal under the same name with any key of
// the ring. Every failure wraps ErrOpen.
func (r *Ring) Open(name string, sealed []byte) ([]byte, error) {
	if len(sealed) < overhead {
		return nil, fmt.Errorf("%w: too short", ErrOpen)
	}
	if sealed[0] != version {
		return nil, fmt.Errorf("%w: unknown format version", ErrOpen)
	}
	id := sealed[1:header]
	for _, k := range *r.keys.Load() {
		if !bytes.Equal(k.id[:], id) {
			continue
		}
		nonce := sealed[header : header+nonceSize]
		plain, err := k.aead.Open(nil, nonce, sealed[header+nonceSize:], additionalData(sealed[:header], name))
		if err != nil {
			// Changed, truncated, or stored under another name: GCM cannot
			// tell which, and neither should we.
			return nil, fmt.Errorf("%w: authentication failed", ErrOpen)
		}
		return plain, nil
	}
	return nil, fmt.Errorf("%w: sealed with a key this ring does not hold", ErrOpen)
}

// Update gives r the keys of from, newest first, as one atomic step: values
// sealed from then on use from's newest key, and every key from holds still
// opens. Stores that hold r see the new keys without being rebuilt.
func (r *Ring) Update(from *Ring) {
	r.keys.Store(from.keys.Load())
}

// additionalData binds the header (format and key id) and the value's name
// to the ciphertext. The header has a fixed length, so the concatenation is
// unambiguous.
func additionalData(hdr []byte, name string) []byte {
	ad := make([]byte, 0, len(hdr)+len(name))
	ad = append(ad, hdr...)
	return append(ad, name...)
}
