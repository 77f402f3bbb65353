package telemetry

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ingestion is a stand-in for the Application Insights ingestion endpoint:
// it accepts what the SDK posts (gzip, newline-delimited JSON envelopes)
// and keeps it for assertions.
type ingestion struct {
	t   *testing.T
	srv *httptest.Server

	mu    sync.Mutex
	posts []post
	envs  []envelope

	// hold, when set, delays every answer until it is closed.
	hold chan struct{}
	// status, when set, is the answer to every post (after recording it).
	status int
}

type post struct {
	Path          string
	Authorization string
	Body          string // decompressed
}

type envelope struct {
	Name string            `json:"name"`
	Time string            `json:"time"`
	IKey string            `json:"iKey"`
	Tags map[string]string `json:"tags"`
	Data struct {
		BaseType string   `json:"baseType"`
		BaseData baseData `json:"baseData"`
	} `json:"data"`
}

// baseData holds the fields of request, dependency, event and exception
// data that the tests look at.
type baseData struct {
	ID           string            `json:"id"`
	Name         string            `json:"name"`
	URL          string            `json:"url"`
	Duration     string            `json:"duration"`
	ResponseCode string            `json:"responseCode"`
	ResultCode   string            `json:"resultCode"`
	Success      *bool             `json:"success"`
	Type         string            `json:"type"`
	Target       string            `json:"target"`
	Data         string            `json:"data"`
	Properties   map[string]string `json:"properties"`
	Exceptions   []struct {
		TypeName     string `json:"typeName"`
		Message      string `json:"message"`
		HasFullStack bool   `json:"hasFullStack"`
	} `json:"exceptions"`
}

func newIngestion(t *testing.T) *ingestion {
	in := &ingestion{t: t}
	in.srv = httptest.NewServer(http.HandlerFunc(in.serve))
	t.Cleanup(in.srv.Close)
	return in
}

func (in *ingestion) serve(w http.ResponseWriter, r *http.Request) {
	if in.hold != nil {
		select {
		case <-in.hold:
		case <-r.Context().Done():
			return
		}
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Encoding") != "gzip" {
		http.Error(w, "want gzip POST", http.StatusBadRequest)
		return
	}
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var body strings.Builder
	var got []envelope
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		body.WriteString(line + "\n")
		if strings.TrimSpace(line) == "" {
			continue
		}
		var e envelope
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			in.t.Errorf("ingestion: bad envelope %q: %v", line, err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got = append(got, e)
	}
	if err := sc.Err(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	in.mu.Lock()
	in.posts = append(in.posts, post{Path: r.URL.Path, Authorization: r.Header.Get("Authorization"), Body: body.String()})
	in.envs = append(in.envs, got...)
	in.mu.Unlock()
	if in.status != 0 {
		http.Error(w, `{"itemsReceived":0,"itemsAccepted":0,"errors":[]}`, in.status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"itemsReceived":%d,"itemsAccepted":%d,"errors":[]}`, len(got), len(got))
}

func (in *ingestion) snapshot() ([]post, []envelope) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]post(nil), in.posts...), append([]envelope(nil), in.envs...)
}

// find returns the envelopes of a base type ("RequestData", ...).
func find(envs []envelope, baseType string) []envelope {
	var out []envelope
	for _, e := range envs {
		if e.Data.BaseType == baseType {
			out = append(out, e)
		}
	}
	return out
}

// parseDuration reads the SDK's "d.hh:mm:ss.fffffff" durations.
func parseDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	days, rest, ok := strings.Cut(s, ".")
	parts := strings.Split(rest, ":")
	if !ok || len(parts) != 3 {
		t.Fatalf("duration %q: bad format", s)
	}
	secs, frac, _ := strings.Cut(parts[2], ".")
	n := func(v string) time.Duration {
		i, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("duration %q: %v", s, err)
		}
		return time.Duration(i)
	}
	return n(days)*24*time.Hour + n(parts[0])*time.Hour + n(parts[1])*time.Minute +
		n(secs)*time.Second + n(frac)*100*time.Nanosecond
}
