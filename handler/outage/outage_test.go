package outage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/outage"
)

func TestError(t *testing.T) {
	t.Parallel()
	cause := errors.New("dial tcp 10.0.0.1:6380: connection refused")
	sentinel := outage.New("entra token service", nil)
	tests := []struct {
		name       string
		err        error
		dependency string
		text       string
		cause      error
	}{
		{"with a cause", outage.New("redis", cause), "redis", "redis unavailable: dial tcp 10.0.0.1:6380: connection refused", cause},
		{"without a cause", sentinel, "entra token service", "entra token service unavailable", nil},
		{"wrapped", fmt.Errorf("store: ping: %w", outage.New("redis", cause)), "redis", "store: ping: redis unavailable: dial tcp 10.0.0.1:6380: connection refused", cause},
		{"sentinel wrapped with a cause", fmt.Errorf("%w: %w", sentinel, context.DeadlineExceeded), "entra token service", "entra token service unavailable: context deadline exceeded", context.DeadlineExceeded},
		{"outermost named", fmt.Errorf("%w: %w", sentinel, outage.New("redis", cause)), "entra token service", "entra token service unavailable: redis unavailable: dial tcp 10.0.0.1:6380: connection refused", cause},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if !errors.Is(tc.err, outage.ErrUnavailable) {
				t.Errorf("%v does not match ErrUnavailable", tc.err)
			}
			if got := outage.Dependency(tc.err); got != tc.dependency {
				t.Errorf("Dependency = %q, want %q", got, tc.dependency)
			}
			if got := tc.err.Error(); got != tc.text {
				t.Errorf("Error() = %q, want %q", got, tc.text)
			}
			if tc.cause != nil && !errors.Is(tc.err, tc.cause) {
				t.Errorf("%v does not wrap its cause", tc.err)
			}
		})
	}
}

func TestNotAnOutage(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("store: get task: %w", errors.New("WRONGTYPE"))
	if errors.Is(err, outage.ErrUnavailable) || outage.Dependency(err) != "" {
		t.Errorf("%v is reported as an outage", err)
	}
	if outage.Dependency(nil) != "" {
		t.Error("nil is reported as an outage")
	}
}
