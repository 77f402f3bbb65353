// Package jsonfile reads the Functions host's JSON files (host.json,
// function.json) for the staging command and the host stand-in, which must
// judge the same file the same way.
package jsonfile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Read decodes the JSON file at path into v strictly enough to catch a
// broken file: unknown fields are fine (host.json has many that neither
// reader checks), trailing data is not. Errors name the file.
func Read(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	if dec.More() {
		return fmt.Errorf("%s: trailing data after the JSON object", filepath.Base(path))
	}
	return nil
}
