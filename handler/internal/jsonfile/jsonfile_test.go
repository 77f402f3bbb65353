package jsonfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var v struct{ Version string }
	t.Run("reads an object with fields it does not know", func(t *testing.T) {
		if err := Read(write("ok.json", `{"version":"2.0","extensions":{}}`), &v); err != nil || v.Version != "2.0" {
			t.Fatalf("got %v, %+v", err, v)
		}
	})
	for name, text := range map[string]string{"trailing.json": `{"version":"2.0"} {}`, "broken.json": `{"version":`} {
		t.Run("refuses "+name, func(t *testing.T) {
			err := Read(write(name, text), &v)
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("got %v, want an error naming %s", err, name)
			}
		})
	}
	t.Run("a missing file is an error", func(t *testing.T) {
		if err := Read(filepath.Join(dir, "absent.json"), &v); err == nil {
			t.Fatal("no error")
		}
	})
}
