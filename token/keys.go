package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	"aidanwoods.dev/go-paseto"

	"github.com/keygate/keygate/internal/atomicfile"
)

// KeySet holds the signing key and every key whose tokens are still accepted.
// Rotation adds a new signing key and keeps the old one for verification
// until its tokens have expired.
type KeySet struct {
	// Propagation is how long a new key only verifies before it signs:
	// when several servers share the keys, each learns of a key another
	// made within this time, so none refuses a token signed with it.
	// Zero for a lone server, whose new key signs at once.
	Propagation time.Duration

	mu     sync.RWMutex
	path   string
	keys   []*signingKey // oldest first
	byID   map[string]paseto.V4AsymmetricPublicKey
	stored keyFile
}

type signingKey struct {
	id      string
	created time.Time
	secret  paseto.V4AsymmetricSecretKey
}

type keyFile struct {
	Keys []storedKey `json:"keys"`
}

type storedKey struct {
	ID      string    `json:"kid"`
	Created time.Time `json:"created"`
	// Seed is the Ed25519 private key seed, base64.
	Seed string `json:"seed"`
}

// LoadKeys reads the key set at path (mode 0600), creating it with one key on
// first use.
func LoadKeys(path string, now time.Time) (*KeySet, error) {
	ks := &KeySet{path: path}
	raw, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := ks.Rotate(now); err != nil {
			return nil, err
		}
		return ks, nil
	case err != nil:
		return nil, fmt.Errorf("read token keys: %w", err)
	}
	if err := json.Unmarshal(raw, &ks.stored); err != nil {
		return nil, fmt.Errorf("read token keys %s: %w", path, err)
	}
	if err := ks.index(); err != nil {
		return nil, fmt.Errorf("read token keys %s: %w", path, err)
	}
	return ks, nil
}

// Reload reads the key set's file again, for a file another server's
// rotation replaced; it reports whether the keys changed.
func (ks *KeySet) Reload() (bool, error) {
	raw, err := os.ReadFile(ks.path)
	if err != nil {
		return false, fmt.Errorf("read token keys: %w", err)
	}
	var next keyFile
	if err := json.Unmarshal(raw, &next); err != nil {
		return false, fmt.Errorf("read token keys %s: %w", ks.path, err)
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if keyFilesEqual(next, ks.stored) {
		return false, nil
	}
	prev := ks.stored
	ks.stored = next
	if err := ks.indexLocked(); err != nil {
		ks.stored = prev
		return false, fmt.Errorf("read token keys %s: %w", ks.path, err)
	}
	return true, nil
}

func keyFilesEqual(a, b keyFile) bool {
	if len(a.Keys) != len(b.Keys) {
		return false
	}
	for i := range a.Keys {
		if a.Keys[i].ID != b.Keys[i].ID || !a.Keys[i].Created.Equal(b.Keys[i].Created) {
			return false
		}
	}
	return true
}

// NewMemoryKeys makes a key set with one fresh key that lives only in memory.
func NewMemoryKeys() *KeySet {
	ks := &KeySet{}
	if err := ks.Rotate(time.Now()); err != nil {
		panic(err)
	}
	return ks
}

// Rotate adds a new signing key. Tokens signed with earlier keys stay valid.
func (ks *KeySet) Rotate(now time.Time) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate token key: %w", err)
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	next := ks.stored
	next.Keys = append(append([]storedKey(nil), next.Keys...), storedKey{
		ID:      keyID(priv.Public().(ed25519.PublicKey)),
		Created: now.UTC(),
		Seed:    base64.StdEncoding.EncodeToString(priv.Seed()),
	})
	return ks.commitLocked(next)
}

// Signing keys are replaced after KeyLifetime; a replaced key keeps
// verifying for RetiredKeyLifetime, longer than any token lives.
const (
	KeyLifetime        = 30 * 24 * time.Hour
	RetiredKeyLifetime = 2 * time.Hour
)

// Maintain rotates the signing key when it is older than KeyLifetime and
// forgets keys that stopped signing more than RetiredKeyLifetime ago. The
// server calls it at start and daily.
func (ks *KeySet) Maintain(now time.Time) (rotated bool, err error) {
	ks.mu.RLock()
	keys := ks.stored.Keys
	age := now.Sub(keys[len(keys)-1].Created)
	ks.mu.RUnlock()
	if age > KeyLifetime {
		if err := ks.Rotate(now); err != nil {
			return false, err
		}
		rotated = true
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	keys = ks.stored.Keys
	var keep []storedKey
	for i, k := range keys {
		// A key stopped signing when its successor was created.
		if i+1 < len(keys) && now.Sub(keys[i+1].Created) > RetiredKeyLifetime {
			continue
		}
		keep = append(keep, k)
	}
	if len(keep) == len(keys) {
		return rotated, nil
	}
	return rotated, ks.commitLocked(keyFile{Keys: keep})
}

// KeyIDs lists the accepted key ids, oldest first; the last one signs.
func (ks *KeySet) KeyIDs() []string {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	ids := make([]string, len(ks.keys))
	for i, k := range ks.keys {
		ids[i] = k.id
	}
	return ids
}

// commitLocked saves next, when the set has a file, and makes it current.
func (ks *KeySet) commitLocked(next keyFile) error {
	if ks.path != "" {
		raw, err := json.MarshalIndent(next, "", "  ")
		if err != nil {
			return fmt.Errorf("encode token keys: %w", err)
		}
		if err := atomicfile.WriteFile(ks.path, raw, 0o600); err != nil {
			return fmt.Errorf("save token keys: %w", err)
		}
	}
	ks.stored = next
	return ks.indexLocked()
}

func (ks *KeySet) index() error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.indexLocked()
}

func (ks *KeySet) indexLocked() error {
	if len(ks.stored.Keys) == 0 {
		return errors.New("no keys")
	}
	keys := make([]*signingKey, 0, len(ks.stored.Keys))
	byID := make(map[string]paseto.V4AsymmetricPublicKey, len(ks.stored.Keys))
	for _, k := range ks.stored.Keys {
		seed, err := base64.StdEncoding.DecodeString(k.Seed)
		if err != nil || len(seed) != ed25519.SeedSize {
			return fmt.Errorf("key %q: bad seed", k.ID)
		}
		priv := ed25519.NewKeyFromSeed(seed)
		pub := priv.Public().(ed25519.PublicKey)
		if keyID(pub) != k.ID {
			return fmt.Errorf("key %q: id does not match its key", k.ID)
		}
		secret, err := paseto.NewV4AsymmetricSecretKeyFromEd25519(priv)
		if err != nil {
			return fmt.Errorf("key %q: %w", k.ID, err)
		}
		keys = append(keys, &signingKey{id: k.ID, created: k.Created, secret: secret})
		byID[k.ID] = secret.Public()
	}
	ks.keys, ks.byID = keys, byID
	return nil
}

// current is the key that signs: the newest, or with Propagation the
// newest that every server has had time to learn of.
func (ks *KeySet) current(now time.Time) *signingKey {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	if ks.Propagation > 0 {
		ready := now.Add(-ks.Propagation)
		for i := len(ks.keys) - 1; i > 0; i-- {
			if !ks.keys[i].created.After(ready) {
				return ks.keys[i]
			}
		}
		return ks.keys[0]
	}
	return ks.keys[len(ks.keys)-1]
}

func (ks *KeySet) verificationKey(id string) (paseto.V4AsymmetricPublicKey, bool) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	k, ok := ks.byID[id]
	return k, ok
}

// keyID names a key by a digest of its public half, so an id can never point
// at a different key than the one that made it.
func keyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}
