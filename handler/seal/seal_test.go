package seal_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/seal"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, seal.KeySize) }

func mustRing(t *testing.T, keys ...[]byte) *seal.Ring {
	t.Helper()
	r, err := seal.NewRing(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustOpen(t *testing.T, r *seal.Ring, name string, sealed []byte) []byte {
	t.Helper()
	plain, err := r.Open(name, sealed)
	if err != nil {
		t.Fatalf("open %q: %v", name, err)
	}
	return plain
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	r := mustRing(t, key(1))
	for _, plain := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("refresh token "), 500)} {
		sealed, err := r.Seal("msal:a.b", plain)
		if err != nil {
			t.Fatal(err)
		}
		if len(plain) > 4 && bytes.Contains(sealed, plain[:5]) {
			t.Error("sealed value contains plaintext")
		}
		if got := mustOpen(t, r, "msal:a.b", sealed); !bytes.Equal(got, plain) {
			t.Errorf("opened %q, want %q", got, plain)
		}
	}
}

func TestEveryBitFlipFails(t *testing.T) {
	t.Parallel()
	r := mustRing(t, key(1))
	sealed, err := r.Seal("flow:x", []byte("pkce verifier"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(sealed) * 8 {
		changed := bytes.Clone(sealed)
		changed[i/8] ^= 1 << (i % 8)
		if _, err := r.Open("flow:x", changed); !errors.Is(err, seal.ErrOpen) {
			t.Fatalf("bit %d flipped: err %v, want ErrOpen", i, err)
		}
	}
}

func TestWrongNameFails(t *testing.T) {
	t.Parallel()
	r := mustRing(t, key(1))
	sealed, _ := r.Seal("code:aaaa", []byte("tid oid"))
	for _, name := range []string{"code:aaab", "", "code:aaaa ", "code:aaa"} {
		if _, err := r.Open(name, sealed); !errors.Is(err, seal.ErrOpen) {
			t.Errorf("open under %q: err %v, want ErrOpen", name, err)
		}
	}
}

func TestTruncationFails(t *testing.T) {
	t.Parallel()
	r := mustRing(t, key(1))
	sealed, _ := r.Seal("n", []byte("some secret"))
	for n := range len(sealed) {
		if _, err := r.Open("n", sealed[:n]); !errors.Is(err, seal.ErrOpen) {
			t.Fatalf("truncated to %d bytes: err %v, want ErrOpen", n, err)
		}
	}
	if _, err := r.Open("n", append(bytes.Clone(sealed), 0)); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("extended: err %v, want ErrOpen", err)
	}
}

func TestRotation(t *testing.T) {
	t.Parallel()
	oldRing := mustRing(t, key(1))
	newRing := mustRing(t, key(2), key(1))

	before, _ := oldRing.Seal("n", []byte("v"))
	if got := mustOpen(t, newRing, "n", before); string(got) != "v" {
		t.Errorf("new ring opened %q", got)
	}

	after, _ := newRing.Seal("n", []byte("w"))
	oldID, newID := oldRing.KeyIDs()[0], newRing.KeyIDs()[0]
	if oldID == newID || newRing.KeyIDs()[1] != oldID {
		t.Fatalf("key ids old %v new %v", oldRing.KeyIDs(), newRing.KeyIDs())
	}
	if got := idOf(after); got != newID {
		t.Errorf("new value carries key id %s, want %s", got, newID)
	}
	if got := idOf(before); got != oldID {
		t.Errorf("old value carries key id %s, want %s", got, oldID)
	}
	if _, err := oldRing.Open("n", after); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("old ring opened a value sealed with the new key: %v", err)
	}
}

func idOf(sealed []byte) string {
	const hexdigits = "0123456789abcdef"
	var b strings.Builder
	for _, c := range sealed[1:9] {
		b.WriteByte(hexdigits[c>>4])
		b.WriteByte(hexdigits[c&15])
	}
	return b.String()
}

func TestNoncesDiffer(t *testing.T) {
	t.Parallel()
	r := mustRing(t, key(1))
	a, _ := r.Seal("n", []byte("same"))
	b, _ := r.Seal("n", []byte("same"))
	if bytes.Equal(a[9:21], b[9:21]) || bytes.Equal(a, b) {
		t.Error("two seals of the same value share a nonce")
	}
}

func TestParseKeys(t *testing.T) {
	t.Parallel()
	k1, k2 := key(0xfb), key(0xfe) // 0xfb.. and 0xfe.. encode with + and / in std base64
	std := base64.StdEncoding.EncodeToString
	for _, s := range []string{
		std(k1),
		base64.RawStdEncoding.EncodeToString(k1),
		base64.URLEncoding.EncodeToString(k1),
		base64.RawURLEncoding.EncodeToString(k1),
		" " + std(k1) + " ",
	} {
		r, err := seal.ParseKeys(s)
		if err != nil {
			t.Errorf("ParseKeys(%q): %v", s, err)
			continue
		}
		if r.KeyIDs()[0] != mustRing(t, k1).KeyIDs()[0] {
			t.Errorf("ParseKeys(%q) decoded another key", s)
		}
	}

	r, err := seal.ParseKeys(std(k2) + ", " + base64.RawURLEncoding.EncodeToString(k1))
	if err != nil {
		t.Fatal(err)
	}
	if ids := r.KeyIDs(); len(ids) != 2 || ids[0] != mustRing(t, k2).KeyIDs()[0] {
		t.Errorf("two keys: ids %v, want newest (k2) first", ids)
	}

	secretLooking := std(bytes.Repeat([]byte("S3CR"), 4)) // 16 bytes: wrong length
	for name, s := range map[string]string{
		"empty":          "",
		"blank":          "  ",
		"empty entry":    std(k1) + ",",
		"not base64":     "not*base64!",
		"short":          secretLooking,
		"long":           std(append(key(1), 0)),
		"duplicate":      std(k1) + "," + std(k2) + "," + base64.RawURLEncoding.EncodeToString(k1),
		"bad second key": std(k1) + "," + secretLooking,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := seal.ParseKeys(s)
			if err == nil {
				t.Errorf("%s: ParseKeys(%q) succeeded", name, s)
				return
			}
			for _, part := range strings.Split(s, ",") {
				part = strings.TrimSpace(part)
				if len(part) >= 8 && strings.Contains(err.Error(), part[:8]) {
					t.Errorf("%s: error %q contains key material", name, err)
				}
			}
		})
	}
}

func TestNewRingRejects(t *testing.T) {
	t.Parallel()
	if _, err := seal.NewRing(); err == nil {
		t.Error("empty ring accepted")
	}
	if _, err := seal.NewRing(key(1)[:31]); err == nil {
		t.Error("31-byte key accepted")
	}
	if _, err := seal.NewRing(key(1), key(2), key(1)); err == nil {
		t.Error("duplicate key accepted")
	}
}

func TestGenerateKey(t *testing.T) {
	t.Parallel()
	a, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := seal.GenerateKey()
	if a == b {
		t.Error("two generated keys are equal")
	}
	r, err := seal.ParseKeys(a + "," + b)
	if err != nil {
		t.Fatalf("generated keys do not parse: %v", err)
	}
	sealed, _ := r.Seal("n", []byte("v"))
	if got := mustOpen(t, r, "n", sealed); string(got) != "v" {
		t.Errorf("opened %q", got)
	}
}

// TestUpdateRotatesInPlace: a store holding the ring seals with the new key
// after Update, and still opens what the old key sealed.
func TestUpdateRotatesInPlace(t *testing.T) {
	t.Parallel()
	oldKey, newKey := bytes.Repeat([]byte{1}, seal.KeySize), bytes.Repeat([]byte{2}, seal.KeySize)
	held, err := seal.NewRing(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := held.Seal("k", []byte("v1"))
	rotated, _ := seal.NewRing(newKey, oldKey)
	held.Update(rotated)
	after, _ := held.Seal("k", []byte("v2"))
	if p, err := held.Open("k", before); err != nil || string(p) != "v1" {
		t.Fatalf("old value after rotation: %q %v", p, err)
	}
	onlyOld, _ := seal.NewRing(oldKey)
	if _, err := onlyOld.Open("k", after); err == nil {
		t.Fatal("a value sealed after Update opened with the old key alone")
	}
	if ids := held.KeyIDs(); len(ids) != 2 {
		t.Fatalf("key ids after update: %v", ids)
	}
}
