package main

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Zip writes the staged folder dir into the zip file at path, the package
// azd deploys as it is (azure.yaml's dist). Every entry carries its Unix
// mode explicitly, 0755 for the handler binary and 0644 for the rest, on
// whatever system staged it: azd's own zip writer stored no modes before
// 1.26.0, and a handler unpacked without its exec bit does not start.
// Entries are in name order with a fixed time, so the same staging gives
// the same bytes.
func Zip(dir, path string) (err error) {
	var files []string
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		} else if !d.IsDir() {
			return fmt.Errorf("zip: %s is neither a file nor a folder", p)
		}
		return nil
	}); err != nil {
		return err
	}
	sort.Strings(files)
	if len(files) == 0 {
		return errors.New("zip: nothing staged")
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	w := zip.NewWriter(f)
	for _, name := range files {
		if err := addFile(w, filepath.Join(dir, filepath.FromSlash(name)), name); err != nil {
			return fmt.Errorf("zip %s: %w", name, err)
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// Whole or not at all: azd must never deploy half a zip.
	return os.Rename(tmp, path)
}

// zipTime is every entry's modification time.
var zipTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func addFile(w *zip.Writer, src, name string) error {
	mode := fs.FileMode(0o644)
	if name == BinaryName {
		mode = 0o755
	}
	h := &zip.FileHeader{Name: name, Method: zip.Deflate, Modified: zipTime}
	h.SetMode(mode)
	dst, err := w.CreateHeader(h)
	if err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	_, err = io.Copy(dst, in)
	return err
}
