package store

// LocalBucketCount is how many in-process buckets l holds (tests only).
func LocalBucketCount(l *Limiter) int {
	l.local.mu.Lock()
	defer l.local.mu.Unlock()
	return len(l.local.tat)
}
