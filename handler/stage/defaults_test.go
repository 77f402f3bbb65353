package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/config"
)

// TestDefaultsAreDefinedOnce: a setting's default is written once, in
// config.Settings; the README's Configuration table states it (its default
// column starts with it) and infra/main.parameters.json, where it fills a
// setting in, fills in nothing else.
func TestDefaultsAreDefinedOnce(t *testing.T) {
	t.Parallel()
	rows := readmeTable(t, readReadme(t), "| setting | meaning | default | in Azure |")
	readmeDefault := map[string]string{}
	for _, row := range rows {
		if m := backticked.FindStringSubmatch(row[0]); m != nil && len(row) == 4 {
			readmeDefault[m[1]] = row[2]
		}
	}

	infraDefault, _ := azdValues(t) // the README test reports malformed ones

	for _, s := range config.Settings() {
		t.Run(s.Name, func(t *testing.T) {
			if d, ok := readmeDefault[s.Name]; ok && s.Default != "" && !strings.HasPrefix(d, "`"+s.Default+"`") {
				t.Errorf("README's default is %q, the handler's %q", d, s.Default)
			}
			if d := infraDefault[s.Name]; d != "" && d != s.Default {
				t.Errorf("infra/main.parameters.json fills in %q, the handler's default is %q", d, s.Default)
			}
		})
	}
}

// TestInfraSealingKeyNameIsTheDefault: infra/ creates the sealing key
// under the name the handler reads by default, since it leaves
// KEY_VAULT_SEALING_KEY_NAME unset.
func TestInfraSealingKeyNameIsTheDefault(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(moduleRoot, "infra", "main.bicep"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^var sealingKeySecretName = '([^']*)'`).FindSubmatch(b)
	if m == nil {
		t.Fatal("infra/main.bicep: no sealingKeySecretName")
	}
	if string(m[1]) != config.DefaultSealingKeyName {
		t.Errorf("infra/ creates the sealing key as %q, the handler reads %q", m[1], config.DefaultSealingKeyName)
	}
}
