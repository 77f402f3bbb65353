package devidp

import (
	"crypto/tls"
	"encoding/pem"
	"net"
	"time"

	"github.com/entra-mcp/functions-mcp/handler/internal/selfsigned"
)

// selfSignedCert makes the stand-in's certificate for 127.0.0.1, ::1 and
// localhost, and returns it with its PEM, which clients add to their pool.
func selfSignedCert() (tls.Certificate, []byte, error) {
	cert, leaf, err := selfsigned.New(selfsigned.Names{
		CommonName: "devidp (Entra ID stand-in)",
		DNS:        []string{"localhost"},
		IPs:        []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}, 30*24*time.Hour)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), nil
}
