package grants_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/entra-mcp/functions-mcp/handler/store"
)

// TestNotFoundNamesTheRecord: every "not found" matches ErrNotFound, and
// its text says which record was missing (tasks have their own, in
// taskstore).
func TestNotFoundNamesTheRecord(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newSessions(t)
	_, chainID, err := s.NewHandle(ctx, record(oidAlice))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		run  func() error
		want string
	}{
		{"one-time code", func() error { _, err := s.RedeemCode(ctx, rand.Text()); return err }, "one-time code not found"},
		{"refresh handle", func() error { _, _, err := s.Rotate(ctx, chainID+"."+rand.Text()); return err }, "refresh handle not found"},
		{"consent", func() error { _, err := s.ConsentedUser(ctx, rand.Text(), "client-a"); return err }, "consent not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("%v, want ErrNotFound", err)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "task") {
				t.Errorf("%q does not say %q", err, tc.want)
			}
		})
	}
	if store.ErrNotFound.Error() != "not found" {
		t.Errorf("ErrNotFound = %q: it names no record of its own", store.ErrNotFound)
	}
}
