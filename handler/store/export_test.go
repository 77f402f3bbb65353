package store

// LocalBucketCount is how many in-process buckets l holds (tests only).
func LocalBucketCount(l *Limiter) int {
	l.local.mu.Lock()
	defer l.local.mu.Unlock()
	return len(l.local.tat)
}

// UserTag is the hash tag of a user's keys (tests only).
func UserTag(tid, oid string) string {
	u, err := keysOf(tid, oid)
	if err != nil {
		panic(err)
	}
	return u.tag
}
