package token

import (
	"errors"
	"testing"
	"time"
)

// A token verified once is not trusted for more than its signature:
// its window is checked again on every use, and its key must still be
// one the verifier accepts.
func TestVerifiedTokensAreCheckedAgain(t *testing.T) {
	ks := NewMemoryKeys()
	tok, _ := mint(t, ks, t0, 15*time.Minute)
	now := t0
	v := &Verifier{Keys: ks, Now: func() time.Time { return now }}
	if _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("second use: %v", err)
	}
	now = t0.Add(15 * time.Minute)
	if _, err := v.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("a remembered token past its expiry: %v, want ErrExpired", err)
	}
	now = t0
	v.Keys = NewMemoryKeys()
	if _, err := v.Verify(tok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("a remembered token whose key is gone: %v, want ErrUnknownKey", err)
	}
	// A changed token is a different token: its signature is checked.
	v.Keys = ks
	if _, err := v.Verify(tok[:len(tok)-3] + "AAA"); err == nil {
		t.Fatal("a tampered token verified")
	}
}

func TestVerifiedCacheIsBounded(t *testing.T) {
	var vc verifiedCache
	for i := range maxVerified + 10 {
		vc.put([32]byte{byte(i), byte(i >> 8)}, Claims{Expires: t0.Add(time.Hour)}, "k", t0)
	}
	if n := len(vc.entries); n > maxVerified {
		t.Fatalf("%d tokens remembered, bound %d", n, maxVerified)
	}
}

func BenchmarkVerify(b *testing.B) {
	ks := NewMemoryKeys()
	tok, _, err := (&Issuer{Keys: ks, Now: clock(t0)}).Mint(sampleClaims(t0.Add(time.Hour)))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("first", func(b *testing.B) {
		for b.Loop() {
			v := &Verifier{Keys: ks, Now: clock(t0)}
			if _, err := v.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("again", func(b *testing.B) {
		v := &Verifier{Keys: ks, Now: clock(t0)}
		for b.Loop() {
			if _, err := v.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}
