package oauthclients

// Key names and fetch limits, for the external tests.
const (
	PendingKey             = pendingKey
	PendingOrderKey        = pendingOrderKey
	MaxConcurrentFetches   = maxConcurrentFetches
	MaxFetchesPerHost      = maxFetchesPerHost
	MaxFetchesPerRequester = maxFetchesPerRequester
	ReservedFetches        = reservedFetches
)

// SiteOf is siteOf (tests only).
var SiteOf = siteOf
