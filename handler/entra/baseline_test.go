package entra

import (
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// The baselines put BenchmarkVerifyFirstSeen in context on a shared, noisy
// machine: the bare RS256 check is the floor, golang-jwt's full parse the
// alternative we chose not to use.

// BenchmarkBaselineRS256Only is the signature check alone.
func BenchmarkBaselineRS256Only(b *testing.B) {
	e, tokens := benchEnv(b)
	key := must(e.idp.PublicKey(""))
	tok := tokens[0]
	i := strings.LastIndexByte(tok, '.')
	sig := must(b64.DecodeString(tok[i+1:]))
	b.ReportAllocs()
	for b.Loop() {
		if err := jwt.SigningMethodRS256.Verify(tok[:i], sig, key); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBaselineJWTParse is golang-jwt's ParseWithClaims with the options
// the design notes name.
func BenchmarkBaselineJWTParse(b *testing.B) {
	e, tokens := benchEnv(b)
	key := must(e.idp.PublicKey(""))
	p := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithExpirationRequired(), jwt.WithTimeFunc(e.clock.Now), jwt.WithStrictDecoding())
	type cl struct {
		jwt.RegisteredClaims
		Roles []string `json:"roles"`
		Tid   string   `json:"tid"`
		Oid   string   `json:"oid"`
	}
	b.ReportAllocs()
	for b.Loop() {
		var c cl
		if _, err := p.ParseWithClaims(tokens[0], &c, func(*jwt.Token) (any, error) { return key, nil }); err != nil {
			b.Fatal(err)
		}
	}
}
