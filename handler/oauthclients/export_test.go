package oauthclients

// Key names, for the external tests.
const (
	PendingKey      = pendingKey
	PendingOrderKey = pendingOrderKey
)
