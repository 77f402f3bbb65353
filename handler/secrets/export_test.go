package secrets

import "time"

// ForgetLastLoad lets the next unknown key reload at once (tests only).
func (s *Store) ForgetLastLoad() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastLoad = time.Time{}
}
