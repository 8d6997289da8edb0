// Package credential makes and hashes keygate's bearer credentials: the
// admin credential, sign-in sessions and provisioning tokens. They are 256
// random bits with a prefix that says what they are, and only their SHA-256
// is ever stored; a lookup by hash compares nothing secret byte by byte.
package credential

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// Prefixes make a leaked credential recognisable.
const (
	AdminPrefix        = "kga_"
	SessionPrefix      = "kgs_"
	ProvisioningPrefix = "kgp_"
)

// New makes a random credential with a prefix.
func New(prefix string) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// Hash is how a credential is stored and looked up.
func Hash(c string) [sha256.Size]byte { return sha256.Sum256([]byte(c)) }
