package oauthclients

// Key names and fetch limits, for the external tests.
const (
	PendingKey             = pendingKey
	PendingOrderKey        = pendingOrderKey
	UserKeyPrefix          = userKeyPrefix
	MaxConcurrentFetches   = maxConcurrentFetches
	MaxFetchesPerHost      = maxFetchesPerHost
	MaxFetchesPerRequester = maxFetchesPerRequester
	ReservedFetches        = reservedFetches
)

// SiteOf is siteOf (tests only).
var SiteOf = siteOf

// Joined is how many lookups started or joined the fetch of clientID under
// way; 0 when none is.
func Joined(r *Registry, clientID string) int {
	r.docs.mu.Lock()
	defer r.docs.mu.Unlock()
	if call, ok := r.docs.slots.calls[clientID]; ok {
		return call.joined
	}
	return 0
}
