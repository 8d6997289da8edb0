// Package seal encrypts the secrets servers share through the state
// database (signing keys, the CA key, the admin credential) with the key
// the operator gives every server, so that the database and its backups
// hold none of them in the clear. Each sealed value is bound to its name:
// one cannot be moved into another's place.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// KeySize is the size of a key.
const KeySize = 32

// version is the first byte of a sealed value: AES-256-GCM, a random
// 96-bit nonce, the name as additional data.
const version = 1

// ErrWrongKey is returned by Open for a value sealed with another key, or
// altered since.
var ErrWrongKey = errors.New("the value does not open with this key: it was sealed with another key, or altered")

// Box seals and opens values with one key.
type Box struct {
	aead cipher.AEAD
}

// New makes a box for key, which must be KeySize random bytes.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("seal: a key is %d bytes, not %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return &Box{aead: aead}, nil
}

func additional(name string) []byte { return []byte("keygate secret\x00" + name) }

// Seal encrypts plain as the value named name.
func (b *Box) Seal(name string, plain []byte) []byte {
	out := make([]byte, 1+b.aead.NonceSize(), 1+b.aead.NonceSize()+len(plain)+b.aead.Overhead())
	out[0] = version
	if _, err := rand.Read(out[1:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return b.aead.Seal(out, out[1:], plain, additional(name))
}

// Open decrypts the value named name.
func (b *Box) Open(name string, sealed []byte) ([]byte, error) {
	n := b.aead.NonceSize()
	if len(sealed) < 1+n+b.aead.Overhead() || sealed[0] != version {
		return nil, fmt.Errorf("open secret %q: not a sealed value of this keygate", name)
	}
	plain, err := b.aead.Open(nil, sealed[1:1+n], sealed[1+n:], additional(name))
	if err != nil {
		return nil, fmt.Errorf("open secret %q: %w", name, ErrWrongKey)
	}
	return plain, nil
}
