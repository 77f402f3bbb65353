package upstream

import (
	"container/list"
	"sync"
	"time"
)

// Session pool limits, per upstream and instance: enough for every person
// active on an instance at once; beyond it the least recently used session
// ends (it is only started again when its user comes back).
const (
	maxSessions = 2000
	sessionIdle = 10 * time.Minute
)

// pool keeps one connection per principal to one upstream: an upstream
// that keeps sessions keeps one per user, so no caller ever reaches
// another's session, and a stateless one costs an initialize per user and
// instance. It is bounded (least recently used out) and forgets idle
// connections.
type pool struct {
	dial func() (*conn, error)
	now  func() time.Time
	max  int
	idle time.Duration

	mu    sync.Mutex
	conns map[string]*list.Element // key -> element holding *pooled
	lru   list.List                // front: most recently used
}

type pooled struct {
	key  string
	conn *conn
	used time.Time
}

func newPool(dial func() (*conn, error), now func() time.Time) *pool {
	return &pool{dial: dial, now: now, max: maxSessions, idle: sessionIdle, conns: map[string]*list.Element{}}
}

// get returns key's connection, dialling one (no network yet) if it has
// none or its connection sat idle too long, held for the caller until it
// calls release: a connection dropped or evicted meanwhile ends only then.
func (p *pool) get(key string) (c *conn, release func(), err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	p.expire(now)
	if e, ok := p.conns[key]; ok {
		pc := e.Value.(*pooled)
		pc.used = now
		p.lru.MoveToFront(e)
		pc.conn.hold()
		return pc.conn, pc.conn.release, nil
	}
	if c, err = p.dial(); err != nil {
		return nil, nil, err
	}
	c.hold()
	p.conns[key] = p.lru.PushFront(&pooled{key: key, conn: c, used: now})
	for p.lru.Len() > p.max {
		p.remove(p.lru.Back())
	}
	return c, c.release, nil
}

// drop forgets key's connection if it is still c (a broken one: the next
// call starts afresh).
func (p *pool) drop(key string, c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.conns[key]; ok && e.Value.(*pooled).conn == c {
		p.remove(e)
	}
}

// expire ends connections idle for longer than p.idle, oldest first.
func (p *pool) expire(now time.Time) {
	for e := p.lru.Back(); e != nil; e = p.lru.Back() {
		if now.Sub(e.Value.(*pooled).used) < p.idle {
			return
		}
		p.remove(e)
	}
}

func (p *pool) remove(e *list.Element) {
	pc := p.lru.Remove(e).(*pooled)
	delete(p.conns, pc.key)
	pc.conn.close()
}

// size is how many connections are open.
func (p *pool) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lru.Len()
}

// closeAll ends every connection.
func (p *pool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for e := p.lru.Back(); e != nil; e = p.lru.Back() {
		p.remove(e)
	}
}
