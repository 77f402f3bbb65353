package store

// UserTag is the hash tag of a user's keys (tests only).
func UserTag(tid, oid string) string {
	u, err := keysOf(tid, oid)
	if err != nil {
		panic(err)
	}
	return u.tag
}
