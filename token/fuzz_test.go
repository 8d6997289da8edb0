package token

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/access"
)

// The fuzz key set and clock are fixed, so the seed tokens (and the files
// committed under testdata/fuzz/FuzzVerify) are the same on every run:
// Ed25519 signatures are deterministic.
var fuzzNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func fuzzKeys(tb testing.TB) *KeySet {
	tb.Helper()
	seed := sha256.Sum256([]byte("keygate token fuzz key"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	ks := &KeySet{stored: keyFile{Keys: []storedKey{{
		ID:      keyID(priv.Public().(ed25519.PublicKey)),
		Created: fuzzNow.Add(-24 * time.Hour),
		Seed:    base64.StdEncoding.EncodeToString(seed[:]),
	}}}}
	if err := ks.index(); err != nil {
		tb.Fatal(err)
	}
	return ks
}

type fuzzSeeds struct {
	valid       string
	validClaims Claims
	expired     string
	future      string
	tampered    string
}

func makeFuzzSeeds(tb testing.TB, ks *KeySet) fuzzSeeds {
	tb.Helper()
	mintAt := func(now time.Time, id string) (string, Claims) {
		tok, c, err := (&Issuer{Keys: ks, Now: clock(now)}).Mint(Claims{
			ID: id, User: "alice", Database: "orders", Access: access.ReadOnly, Session: "sess-fuzz",
			Expires: now.Add(15 * time.Minute),
		})
		if err != nil {
			tb.Fatal(err)
		}
		return tok, c
	}
	var s fuzzSeeds
	s.valid, s.validClaims = mintAt(fuzzNow.Add(-time.Minute), "fuzz-valid")
	s.expired, _ = mintAt(fuzzNow.Add(-time.Hour), "fuzz-expired")
	s.future, _ = mintAt(fuzzNow.Add(time.Hour), "fuzz-future")
	// Change one character in the middle of the signed payload.
	s.tampered = flip(s.valid, len(Prefix)+20)
	return s
}

// FuzzVerify: Verify never panics; it returns one of its sentinel errors,
// whose text never carries the input; and the only input that verifies is
// the token the key set actually minted, byte for byte.
func FuzzVerify(f *testing.F) {
	ks := fuzzKeys(f)
	s := makeFuzzSeeds(f, ks)
	other, _, err := (&Issuer{Keys: NewMemoryKeys(), Now: clock(fuzzNow)}).Mint(sampleClaims(fuzzNow.Add(time.Minute)))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		s.valid, s.tampered, s.expired, s.future, other,
		"", "junk", Prefix, Prefix + ".", Prefix + "..", "v4.public.AAAA.e30",
		strings.ToUpper(s.valid), s.valid + ".", s.valid[:len(s.valid)-1],
		"v4.local." + strings.TrimPrefix(s.valid, Prefix),
	} {
		f.Add(seed)
	}
	sentinels := []error{ErrMalformed, ErrUnknownKey, ErrBadSignature, ErrExpired, ErrNotYetValid}
	v := &Verifier{Keys: ks, Now: clock(fuzzNow)}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(tok)
		if err == nil {
			if tok != s.valid {
				t.Fatalf("Verify accepted a token the key set did not mint: %q", tok)
			}
			if c.ID == "" || c.User == "" || c.Database == "" || c.Access == "" || c.IssuedAt.IsZero() || c.Expires.IsZero() {
				t.Fatalf("Verify returned incomplete claims %+v", c)
			}
			if !sameClaims(c, s.validClaims) {
				t.Fatalf("claims = %+v, want %+v", c, s.validClaims)
			}
			return
		}
		if c != (Claims{}) {
			t.Fatalf("claims %+v returned with error %v", c, err)
		}
		known := false
		for _, e := range sentinels {
			known = known || errors.Is(err, e)
		}
		if !known {
			t.Fatalf("Verify returned a non-sentinel error %v", err)
		}
		if len(tok) >= 8 && strings.Contains(err.Error(), tok) {
			t.Fatalf("error %q contains the input", err)
		}
	})
}

// TestFuzzSeeds checks the seeds mean what their names say, so the corpus
// exercises each path.
func TestFuzzSeeds(t *testing.T) {
	ks := fuzzKeys(t)
	s := makeFuzzSeeds(t, ks)
	v := &Verifier{Keys: ks, Now: clock(fuzzNow)}
	if _, err := v.Verify(s.valid); err != nil {
		t.Errorf("valid seed: %v", err)
	}
	for tok, want := range map[string]error{s.expired: ErrExpired, s.future: ErrNotYetValid, s.tampered: ErrBadSignature, "junk": ErrMalformed} {
		if _, err := v.Verify(tok); !errors.Is(err, want) {
			t.Errorf("seed %.30q...: error %v, want %v", tok, err, want)
		}
	}
}

// TestFuzzCorpusFiles checks the committed corpus: every file is in Go's
// corpus format, and the files named after a seed still hold that seed (they
// would go stale if the token format or the fuzz key changed).
func TestFuzzCorpusFiles(t *testing.T) {
	s := makeFuzzSeeds(t, fuzzKeys(t))
	want := map[string]string{"valid": s.valid, "tampered": s.tampered, "expired": s.expired}
	dir := filepath.Join("testdata", "fuzz", "FuzzVerify")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
		if len(lines) != 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "string(") || !strings.HasSuffix(lines[1], ")") {
			t.Errorf("%s is not a one-string corpus file: %q", e.Name(), raw)
			continue
		}
		val, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "string("), ")"))
		if err != nil {
			t.Errorf("%s: %v", e.Name(), err)
			continue
		}
		if w, ok := want[e.Name()]; ok {
			found[e.Name()] = true
			if val != w {
				t.Errorf("%s holds %q, want %q", e.Name(), val, w)
			}
		}
	}
	for name := range want {
		if !found[name] {
			t.Errorf("corpus file %s is missing", name)
		}
	}
}
