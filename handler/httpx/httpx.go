// Package httpx holds the small HTTP guards every endpoint shares: a
// request body read with its content type checked and its size capped,
// JSON answers, and the rate guard counted per client address (decided by
// package clientip). Refusals are *oautherr.Error, written by its one
// writer.
package httpx

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/clientip"
	"github.com/entra-mcp/functions-mcp/handler/oautherr"
)

// Body is what an endpoint accepts as its request body.
type Body struct {
	// MediaType is the only Content-Type accepted (parameters such as
	// charset are allowed).
	MediaType string
	// Max caps the body in bytes.
	Max int64
	// Code is the OAuth error code of a refusal (default invalid_request).
	Code string
	// WrongTypeStatus answers another Content-Type (default 415).
	WrongTypeStatus int
}

// Read checks r's Content-Type and reads its body, at most b.Max bytes
// (the connection is closed after a larger one). It returns the refusal to
// answer with instead, or nil.
func (b Body) Read(w http.ResponseWriter, r *http.Request) ([]byte, *oautherr.Error) {
	code := b.Code
	if code == "" {
		code = oautherr.InvalidRequest
	}
	if !HasMediaType(r, b.MediaType) {
		status := b.WrongTypeStatus
		if status == 0 {
			status = http.StatusUnsupportedMediaType
		}
		return nil, oautherr.New(code, "Content-Type must be "+b.MediaType).WithStatus(status)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, b.Max))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, oautherr.New(code, "the request body is too large").WithStatus(http.StatusRequestEntityTooLarge)
		}
		return nil, oautherr.New(code, "could not read the request body")
	}
	return body, nil
}

// HasMediaType reports whether r's Content-Type is mediaType, parameters
// aside.
func HasMediaType(r *http.Request, mediaType string) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == mediaType
}

// WriteJSON answers status with v as JSON, never cached.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Limiter counts requests per key; over the limit it says how long to wait.
// It answers even when its store cannot count (a *ratelimit.Limiter counts in
// process then).
type Limiter interface {
	Allow(ctx context.Context, key string) (ok bool, retryAfter time.Duration, err error)
}

// Allow counts one request of r's client address (clientip.KeyOf) against
// l and, over the limit, answers 429 slow_down with Retry-After. The
// limiter logs the first refusal of each address per window.
func Allow(w http.ResponseWriter, r *http.Request, l Limiter) bool {
	ok, retry := Spend(r, l)
	if !ok {
		oautherr.Write(w, oautherr.TooManyRequests("too many requests; retry later", retry))
	}
	return ok
}

// Spend counts one request of r's client address against l, for callers
// that answer a refusal their own way (a page for a browser).
func Spend(r *http.Request, l Limiter) (bool, time.Duration) {
	ok, retry, _ := l.Allow(r.Context(), clientip.KeyOf(r))
	return ok, retry
}
