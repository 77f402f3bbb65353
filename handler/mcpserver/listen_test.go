package mcpserver

import (
	"net/http/httptest"
	"testing"
)

// TestAckWatcherSeesTheAcknowledgement: the watcher passes everything
// through, and says the acknowledgement is written only once all of it is,
// however the writes split it.
func TestAckWatcherSeesTheAcknowledgement(t *testing.T) {
	t.Parallel()
	event := "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/subscriptions/acknowledged\"}\n\n"
	for _, split := range []int{0, 20, 45, 60, len(event)} {
		rec := httptest.NewRecorder()
		a := newAckWatcher(rec)
		if _, err := a.Write([]byte(event[:split])); err != nil {
			t.Fatal(err)
		}
		select {
		case <-a.written():
			if split < 89 { // the marker ends at byte 89
				t.Errorf("split at %d: acknowledged before the marker was whole", split)
			}
		default:
		}
		if _, err := a.Write([]byte(event[split:])); err != nil {
			t.Fatal(err)
		}
		a.Flush()
		select {
		case <-a.written():
		default:
			t.Errorf("split at %d: the acknowledgement was not seen", split)
		}
		if rec.Body.String() != event || !rec.Flushed {
			t.Errorf("split at %d: passed through %q, flushed %v", split, rec.Body.String(), rec.Flushed)
		}
	}
}
