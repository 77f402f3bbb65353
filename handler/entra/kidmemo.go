package entra

import (
	"container/list"
	"time"
	"unicode/utf8"
)

// maxRememberedKids bounds each kidMemo. Kids come from tokens, so anyone
// can make up new ones; forgetting the oldest keeps a flood of them from
// growing memory. A real key set holds a handful of kids.
const maxRememberedKids = 1024

// kidMemo remembers a time per kid, for at most max kids: when full, the
// kid set longest ago is forgotten. It is not safe for concurrent use.
type kidMemo struct {
	max   int
	order *list.List // of kidTime, least recently set first
	byKid map[string]*list.Element
}

type kidTime struct {
	kid string
	at  time.Time
}

func newKidMemo(max int) *kidMemo {
	return &kidMemo{max: max, order: list.New(), byKid: make(map[string]*list.Element)}
}

// within reports whether kid was set less than d before now.
func (m *kidMemo) within(kid string, now time.Time, d time.Duration) bool {
	e, ok := m.byKid[kid]
	return ok && now.Sub(e.Value.(kidTime).at) < d
}

// set records at for kid, forgetting the least recently set kid if full.
func (m *kidMemo) set(kid string, at time.Time) {
	if e, ok := m.byKid[kid]; ok {
		e.Value = kidTime{kid, at}
		m.order.MoveToBack(e)
		return
	}
	if m.order.Len() >= m.max {
		oldest := m.order.Front()
		m.order.Remove(oldest)
		delete(m.byKid, oldest.Value.(kidTime).kid)
	}
	m.byKid[kid] = m.order.PushBack(kidTime{kid, at})
}

func (m *kidMemo) len() int { return m.order.Len() }

// maxLoggedKid is how much of a kid goes into logs and refusal reasons. An
// Entra kid is under 40 bytes; the kid is chosen by whoever sent the token,
// so it is cut rather than copied whole.
const maxLoggedKid = 40

// shortKid is kid cut to maxLoggedKid bytes on a rune boundary.
func shortKid(kid string) string {
	if len(kid) <= maxLoggedKid {
		return kid
	}
	i := maxLoggedKid
	for i > 0 && !utf8.RuneStart(kid[i]) {
		i--
	}
	return kid[:i] + "…"
}
