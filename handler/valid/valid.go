// Package valid holds the small shape checks several packages make on
// outside input: Entra identifiers and loopback hosts.
package valid

import (
	"net"
	"strings"
)

// GUID reports whether s has the 8-4-4-4-12 hex shape of a GUID, as
// Entra tenant, client and object ids do, in either case.
func GUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// LowerGUID is GUID in lower case only: the form identifiers take once
// normalised, and the only one accepted in Redis key names.
func LowerGUID(s string) bool {
	return GUID(s) && strings.ToLower(s) == s
}

// LoopbackHost reports whether host (without port; brackets allowed)
// names this machine.
func LoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
