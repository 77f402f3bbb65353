package devidp

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"sync"
)

// signingKey is one RSA key the stand-in signs with.
type signingKey struct {
	kid       string
	priv      *rsa.PrivateKey
	published bool // listed in the JWKS
}

// keyRing holds every key ever made; retired keys stay so tests can still
// sign with them and check that verifiers refuse the result.
type keyRing struct {
	mu      sync.Mutex
	keys    []*signingKey
	current *signingKey
}

// rotate publishes priv, or a new RSA-2048 key when priv is nil, and
// makes it current.
func (r *keyRing) rotate(priv *rsa.PrivateKey) (string, error) {
	if priv == nil {
		var err error
		if priv, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return "", fmt.Errorf("generating RSA key: %w", err)
		}
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return "", fmt.Errorf("encoding public key: %w", err)
	}
	// Entra's kids are 27-character base64url thumbprints; this has the same
	// shape and is derived from the key, so kids never collide.
	sum := sha256.Sum256(der)
	k := &signingKey{kid: base64.RawURLEncoding.EncodeToString(sum[:20]), priv: priv, published: true}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys = append(r.keys, k)
	r.current = k
	return k.kid, nil
}

// retire stops publishing kid. The current key stays current: signing with
// it afterwards yields tokens no verifier should accept.
func (r *keyRing) retire(kid string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range r.keys {
		if k.kid == kid {
			k.published = false
		}
	}
}

// key returns the key named kid, or the current key when kid is empty.
func (r *keyRing) key(kid string) (*signingKey, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if kid == "" {
		return r.current, nil
	}
	for _, k := range r.keys {
		if k.kid == kid {
			return k, nil
		}
	}
	return nil, fmt.Errorf("devidp: no key with kid %q", kid)
}

// jwk is one entry of a JSON Web Key Set, as Entra publishes it (minus the
// x5c certificate chain, which verifiers must not need).
type jwk struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Kid string `json:"kid"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// jwks returns the published keys.
func (r *keyRing) jwks() []jwk {
	r.mu.Lock()
	defer r.mu.Unlock()
	set := []jwk{}
	for _, k := range r.keys {
		if !k.published {
			continue
		}
		pub := k.priv.PublicKey
		set = append(set, jwk{
			Kty: "RSA",
			Use: "sig",
			Kid: k.kid,
			N:   base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
			E:   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		})
	}
	return set
}

// RotateKey makes a new signing key current and publishes it. Earlier keys
// stay published until RetireKey.
func (s *Server) RotateKey() (kid string, err error) {
	kid, err = s.keys.rotate(nil)
	if err != nil {
		return "", fmt.Errorf("devidp: rotating key: %w", err)
	}
	return kid, nil
}

// RetireKey stops publishing the key kid. Retiring the current key does not
// make another current; call RotateKey first for that.
func (s *Server) RetireKey(kid string) { s.keys.retire(kid) }

// CurrentKeyID is the kid of the key Mint and Sign use by default.
func (s *Server) CurrentKeyID() string {
	k, _ := s.keys.key("")
	return k.kid
}

// PublicKey returns the public half of key kid (current key when empty).
func (s *Server) PublicKey(kid string) (*rsa.PublicKey, error) {
	k, err := s.keys.key(kid)
	if err != nil {
		return nil, err
	}
	return &k.priv.PublicKey, nil
}

// handleJWKS serves the key set, or 503 while SetJWKSFailing(true).
func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	s.jwksFetches.Add(1)
	if s.jwksFailing.Load() {
		http.Error(w, "key set unavailable", http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, map[string]any{"keys": s.keys.jwks()})
}

func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=86400, private")
	_, _ = w.Write(body)
}

// publishedKey returns the public half of the published key kid, for
// verifying what the stand-in itself signed.
func (r *keyRing) publishedKey(kid string) (*rsa.PublicKey, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range r.keys {
		if k.kid == kid && k.published {
			return &k.priv.PublicKey, nil
		}
	}
	return nil, fmt.Errorf("devidp: no published key with kid %q", kid)
}
