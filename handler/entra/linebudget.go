package entra

import "time"

// lineBudget lets at most max log lines through per window and counts the
// ones it holds back, so that the next line can say how many there were.
// Tokens come from anyone: without it, a flood of forged tokens is one
// warning per request. It is not safe for concurrent use.
type lineBudget struct {
	window   time.Time
	inWindow int
	skipped  int64
}

// take reports whether a line may be logged at now, at most max per window
// of length per; when it may, skipped is how many were held back since the
// last line that went out.
func (b *lineBudget) take(now time.Time, per time.Duration, max int) (ok bool, skipped int64) {
	if now.Sub(b.window) >= per {
		b.window, b.inWindow = now, 0
	}
	if b.inWindow >= max {
		b.skipped++
		return false, 0
	}
	b.inWindow++
	skipped, b.skipped = b.skipped, 0
	return true, skipped
}

// skip counts a line held back for a reason of the caller's own.
func (b *lineBudget) skip() { b.skipped++ }
