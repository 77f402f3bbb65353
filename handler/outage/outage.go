// Package outage says that a dependency could not serve a request, and
// which one: Redis, Entra, Microsoft Graph, a client's metadata host.
//
// Callers that only need to answer "try again later" test for
// ErrUnavailable and need not know the dependency; log lines and error
// texts name it, so an Entra outage is not reported as a Redis one. Each
// package classifies the failures of the dependencies it talks to.
package outage

import "errors"

// ErrUnavailable is matched (errors.Is) by every *Error: some dependency
// could not serve the request.
var ErrUnavailable = errors.New("a dependency is unavailable")

// Error says that Dependency could not serve a request: it was
// unreachable, too slow, overloaded or failing over. Err, if not nil, is
// what the dependency's client reported.
type Error struct {
	Dependency string
	Err        error
}

// New returns an *Error saying that dependency is unavailable because of
// err (which may be nil).
func New(dependency string, err error) *Error {
	return &Error{Dependency: dependency, Err: err}
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Dependency + " unavailable"
	}
	return e.Dependency + " unavailable: " + e.Err.Error()
}

// Unwrap returns the dependency client's error.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnavailable) hold for every *Error.
func (e *Error) Is(target error) bool { return target == ErrUnavailable }

// Dependency names the unavailable dependency err reports (the outermost,
// if several), or "" if err is not an outage.
func Dependency(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Dependency
	}
	return ""
}
