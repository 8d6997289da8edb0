package token

import (
	"sync"
	"time"
)

// maxVerified bounds the tokens a Verifier remembers: a few per person
// who connects within a token's lifetime.
const maxVerified = 8192

// verifiedCache remembers verified tokens by their SHA-256: the claims
// and the key that signed them. It is safe for concurrent use; its zero
// value is empty.
type verifiedCache struct {
	mu      sync.Mutex
	entries map[[32]byte]verifiedEntry
}

type verifiedEntry struct {
	claims Claims
	keyID  string
}

func (vc *verifiedCache) get(sum [32]byte) (Claims, string, bool) {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	e, ok := vc.entries[sum]
	return e.claims, e.keyID, ok
}

func (vc *verifiedCache) drop(sum [32]byte) {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	delete(vc.entries, sum)
}

// put remembers a token verified now. When full it first forgets expired
// tokens, and if none were, an arbitrary one: a forgotten token is only
// verified again in full.
func (vc *verifiedCache) put(sum [32]byte, c Claims, keyID string, now time.Time) {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	if vc.entries == nil {
		vc.entries = make(map[[32]byte]verifiedEntry)
	}
	if len(vc.entries) >= maxVerified {
		for k, e := range vc.entries {
			if !now.Before(e.claims.Expires) {
				delete(vc.entries, k)
			}
		}
		for k := range vc.entries {
			if len(vc.entries) < maxVerified {
				break
			}
			delete(vc.entries, k)
		}
	}
	vc.entries[sum] = verifiedEntry{claims: c, keyID: keyID}
}
