// Command stage builds the handler for Azure Functions and lays out the
// folder the Functions host runs from: host.json, one folder per function
// holding its function.json, and the Linux binary, all direct children of
// one folder (.dist by default). azd's prepackage hook, local `func start`
// and CI all use it, on Linux, macOS or Windows:
//
//	go run ./handler/stage [-out .dist] [-skip-build] [-dev] [-tags conformance]
//	go run ./handler/stage -check-settings
//
// It empties the output folder first and checks the result with the same
// validation the tests use, so a staged folder that would not load in the
// Functions host fails here rather than after a deployment. With the binary
// built, it also writes the folder as a zip next to it (<out>.zip), the
// package azd deploys, with the binary's exec bit in it. Paths are relative
// to the module root, whatever folder it runs from.
//
// With -dev it stages the dev command (./handler/dev) as the binary, for a
// local run under the Functions host, and writes no zip: a dev package is
// never deployed.
//
// With -check-settings it only checks the operator's choices in its
// environment (azd's preprovision hook passes the azd environment values),
// as the handler will read them, so that a bad value stops `azd provision`
// before anything is created instead of leaving a function app that never
// starts.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/entra-mcp/functions-mcp/handler/config"
)

func main() {
	out := flag.String("out", ".dist", "output folder, relative to the module root unless absolute")
	skipBuild := flag.Bool("skip-build", false, "stage and validate everything but the binary (for builds done separately)")
	dev := flag.Bool("dev", false, "stage dev mode (./handler/dev) for a local run under the Functions host; never for a deployment, so no zip")
	tags := flag.String("tags", "", "Go build tags for the handler (CI: conformance); never for a deployment")
	checkSettings := flag.Bool("check-settings", false, "only check the operator settings in the environment (azd environment values) and exit")
	flag.Parse()

	if *checkSettings {
		if err := config.CheckOperatorSettings(os.Getenv); err != nil {
			fail(fmt.Errorf("azd environment values the handler would refuse (change them with azd env set NAME value):\n%w", err))
		}
		fmt.Println("operator settings: ok")
		return
	}

	root, err := findModuleRoot()
	if err != nil {
		fail(err)
	}
	dir := *out
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	fns, err := Stage(root, dir, Options{Build: !*skipBuild, Dev: *dev, Tags: *tags})
	if err != nil {
		fail(err)
	}
	fmt.Printf("staged %d functions into %s\n", len(fns), dir)
	if *dev {
		// A zip left by an earlier production staging would sit next to
		// a dev folder it does not match.
		if err := os.Remove(dir + ".zip"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			fail(err)
		}
	}
	if !*skipBuild && !*dev {
		if err := Zip(dir, dir+".zip"); err != nil {
			fail(err)
		}
		fmt.Printf("packaged it as %s\n", dir+".zip")
	}
	for _, f := range fns {
		fmt.Printf("  %-12s %-7s /%s\n", f.Name, strings.Join(f.Methods, ","), f.Route)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "stage:", err)
	os.Exit(1)
}
