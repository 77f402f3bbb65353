package config

import (
	"errors"
	"fmt"
	"strings"
)

// CheckOperatorSettings checks the operator's choices (the settings marked
// Operator) as azd environment values, before anything is provisioned: a
// value the handler would refuse at start-up would otherwise be found only
// after the deployment, by a function app that never starts. It also
// refuses what cannot reach the handler intact: azd substitutes
// environment values into infra/main.parameters.json as they are, inside
// JSON strings, so a quote, a backslash or a control character would break
// or change the parameters file. Every problem is reported, not just the
// first.
func CheckOperatorSettings(getenv func(string) string) error {
	var errs []error
	for _, s := range Settings() {
		if !s.Operator {
			continue
		}
		v := getenv(s.Name)
		if strings.ContainsAny(v, "\"\\") || strings.ContainsFunc(v, isControl) {
			errs = append(errs, fmt.Errorf("%s: holds a quote, a backslash or a control character, which azd cannot carry into infra/main.parameters.json", s.Name))
			continue
		}
		// One setting at a time, so that every bad one is named.
		only := func(name string) string {
			if name == s.Name {
				return v
			}
			return ""
		}
		if err := checkOperatorSetting(only); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkOperatorSetting parses the operator settings getenv returns as the
// handler does at start-up.
func checkOperatorSetting(getenv func(string) string) error {
	if err := LoadChoices(&Config{}, getenv); err != nil {
		return err
	}
	if strings.TrimSpace(getenv("PUBLIC_BASE_URL")) != "" {
		if _, err := publicBaseURL(getenv); err != nil {
			return err
		}
	}
	_, err := parseAllowedTenants(getenv("ENTRA_ALLOWED_TENANTS"))
	return err
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
