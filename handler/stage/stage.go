package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BinaryName is the handler binary's file name in the staged folder; host.json
// names it in customHandler.description.defaultExecutablePath.
const BinaryName = "handler"

// Source layout, relative to the module root.
const (
	hostJSON     = "host.json"
	functionsDir = "functions"
	functionJSON = "function.json"
	// upstreamsJSON is the upstream MCP servers' configuration; the handler
	// reads it from its working directory, the package root
	// (config.UpstreamsFile).
	upstreamsJSON = "infra/upstreams.json"
	handlerPkg    = "./handler"
	devPkg        = "./handler/dev"
)

// Options says how Stage builds the handler.
type Options struct {
	// Build builds the handler binary into the folder; without it the
	// layout is staged and validated without the binary.
	Build bool
	// Dev builds the dev command (./handler/dev: the Entra stand-in and an
	// embedded Redis) in place of the handler, for a local run under the
	// Functions host (func start, or handler/funchost in CI). Never for a
	// deployment: the production handler does not contain dev mode.
	Dev bool
	// Tags are Go build tags for the handler, comma-separated: CI stages
	// the conformance suite's fixtures (tag conformance) this way, so they
	// run from a package staged exactly as the deployed one. Empty for a
	// deployment.
	Tags string
}

// pkg is the main package opts builds.
func (opts Options) pkg() string {
	if opts.Dev {
		return devPkg
	}
	return handlerPkg
}

// Stage empties out, copies host.json, infra/upstreams.json and every
// functions/<name>/function.json into it as direct children, builds the
// handler into it (with opts.Build), and validates the result (without the
// binary when it did not build one).
func Stage(root, out string, opts Options) ([]Function, error) {
	out, err := filepath.Abs(out)
	if err != nil {
		return nil, err
	}
	if err := cleanDir(root, out); err != nil {
		return nil, err
	}
	// host.json goes first: it marks the folder as ours, so cleanDir will
	// empty it next time even if this run fails half-way.
	if err := copyFile(filepath.Join(root, hostJSON), filepath.Join(out, hostJSON), 0o644); err != nil {
		return nil, err
	}
	if err := copyFunctions(root, out); err != nil {
		return nil, err
	}
	if err := copyFile(filepath.Join(root, upstreamsJSON), filepath.Join(out, filepath.Base(upstreamsJSON)), 0o644); err != nil {
		return nil, err
	}
	if opts.Build {
		if err := buildHandler(root, filepath.Join(out, BinaryName), opts); err != nil {
			return nil, err
		}
		// The Functions host executes the file as is: it needs the exec bit
		// (Zip writes it into the package explicitly).
		if err := os.Chmod(filepath.Join(out, BinaryName), 0o755); err != nil {
			return nil, err
		}
		return Validate(out)
	}
	return ValidateLayout(out)
}

// findModuleRoot walks up from the working directory to the folder holding
// go.mod, so the command works from any folder inside the module.
func findModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod in this folder or above it")
		}
		dir = parent
	}
}

// cleanDir makes out an empty folder. Because it deletes, it refuses a
// folder that holds the module, and a non-empty folder that is not a
// previous staging (no host.json): a mistyped -out must not wipe a tree.
func cleanDir(root, out string) error {
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	if rel, err := filepath.Rel(out, absRoot); err == nil && !strings.HasPrefix(rel, "..") {
		return fmt.Errorf("refusing to clean %s: it holds the module", out)
	}
	entries, err := os.ReadDir(out)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return os.MkdirAll(out, 0o755)
	case err != nil:
		return err
	}
	if len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(out, hostJSON)); err != nil {
			return fmt.Errorf("refusing to clean %s: not empty and holds no %s from an earlier staging", out, hostJSON)
		}
	}
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	return os.MkdirAll(out, 0o755)
}

// buildHandler cross-compiles the main package opts names for the
// Functions workers: static (no cgo), linux/amd64, without paths of this
// machine, and stripped (the function table, which the runtime needs, stays).
func buildHandler(root, binary string, opts Options) error {
	args := []string{"build", "-trimpath", "-o", binary, "-ldflags", "-s -w"}
	if opts.Tags != "" {
		args = append(args, "-tags", opts.Tags)
	}
	cmd := exec.Command("go", append(args, opts.pkg())...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build %s: %w", opts.pkg(), err)
	}
	return nil
}

// copyFunctions copies functions/<name>/function.json to out/<name>/.
// Only function.json is copied: the host reads nothing else there.
func copyFunctions(root, out string) error {
	src := filepath.Join(root, functionsDir)
	entries, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("read %s: %w", functionsDir, err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		from := filepath.Join(src, e.Name(), functionJSON)
		if _, err := os.Stat(from); err != nil {
			return fmt.Errorf("%s/%s has no %s", functionsDir, e.Name(), functionJSON)
		}
		if err := os.MkdirAll(filepath.Join(out, e.Name()), 0o755); err != nil {
			return err
		}
		if err := copyFile(from, filepath.Join(out, e.Name(), functionJSON), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string, perm os.FileMode) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	_, err = io.Copy(out, in)
	return err
}
