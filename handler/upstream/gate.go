package upstream

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Breaker defaults: five failures in a row open it for thirty seconds,
// then one call tries the upstream again. A call finding every slot taken
// waits for one at most slotWait, then fails: long enough to ride out a
// burst, short enough that a stuck upstream's callers are told at once.
const (
	breakerThreshold = 5
	breakerCooldown  = 30 * time.Second
	slotWait         = 2 * time.Second
)

var (
	// errBusy: the upstream already has its cap of calls in flight from
	// this instance.
	errBusy = errors.New("too many calls in flight")
	// errOpen: the breaker is open after repeated failures.
	errOpen = errors.New("circuit breaker open")
)

// gate keeps one slow or failing upstream from taking the whole server's
// capacity: a cap on calls in flight (more wait briefly, then fail rather
// than queue), and a circuit breaker that stops calling an upstream that keeps
// failing and lets one call through after the cooldown to see whether it
// is back.
type gate struct {
	slots     chan struct{}
	now       func() time.Time
	threshold int
	cooldown  time.Duration
	wait      time.Duration // slotWait; shorter in tests
	// waiting, when set, is called as a call starts waiting for a slot: a
	// test lets the calls holding the slots finish only once another
	// waits, so it knows that call waited. nil in production.
	waiting func()

	mu        sync.Mutex
	failures  int       // in a row
	openUntil time.Time // zero: closed
	probing   bool      // a half-open trial call is in flight
}

func newGate(maxConcurrent int, now func() time.Time) *gate {
	return &gate{slots: make(chan struct{}, maxConcurrent), now: now, threshold: breakerThreshold, cooldown: breakerCooldown, wait: slotWait}
}

// verdict is what a call through the gate says about the upstream.
type verdict int

const (
	// answered: any answer, a tool error or a refusal of the request
	// included.
	answered verdict = iota
	// failed: it could not be reached, timed out or answered garbage.
	failed
	// abandoned: the caller went away first, which says nothing about the
	// upstream.
	abandoned
)

// enter admits a call, or says why not (errBusy, errOpen with how long
// until the next trial). done must be called once with the call's verdict.
func (g *gate) enter(ctx context.Context) (done func(verdict), retryAfter time.Duration, err error) {
	probe, wait, err := g.admit()
	if err != nil {
		return nil, wait, err
	}
	if err := g.takeSlot(ctx); err != nil {
		if probe {
			g.mu.Lock()
			g.probing = false
			g.mu.Unlock()
		}
		return nil, 0, err
	}
	var once sync.Once
	return func(v verdict) {
		once.Do(func() {
			<-g.slots
			g.record(v, probe)
		})
	}, 0, nil
}

// takeSlot takes a slot, waiting at most g.wait for one.
func (g *gate) takeSlot(ctx context.Context) error {
	select {
	case g.slots <- struct{}{}:
		return nil
	default:
	}
	if g.waiting != nil {
		g.waiting()
	}
	t := time.NewTimer(g.wait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return nil
	case <-t.C:
		return errBusy
	case <-ctx.Done():
		return ctx.Err()
	}
}

// admit decides by the breaker's state; probe is set for the one trial
// call of a half-open breaker.
func (g *gate) admit() (probe bool, wait time.Duration, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.openUntil.IsZero() {
		return false, 0, nil
	}
	if now := g.now(); now.Before(g.openUntil) || g.probing {
		return false, max(time.Second, g.openUntil.Sub(now)), errOpen
	}
	g.probing = true
	return true, 0, nil
}

func (g *gate) record(v verdict, probe bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if probe {
		g.probing = false
	}
	switch v {
	case abandoned:
		return // an abandoned trial leaves the next call to try
	case answered:
		g.failures = 0
		g.openUntil = time.Time{}
		return
	}
	g.failures++
	if probe || g.failures >= g.threshold {
		g.openUntil = g.now().Add(g.cooldown)
	}
}

// state is the breaker's state for health reports: closed, open or
// half-open (the cooldown is over; the next call is a trial).
func (g *gate) state() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.openUntil.IsZero():
		return "closed"
	case g.now().Before(g.openUntil):
		return "open"
	}
	return "half-open"
}

// inFlight is how many calls hold a slot now.
func (g *gate) inFlight() int { return len(g.slots) }
