package seal

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
)

func key(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	b, err := New(key(t))
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte("-----BEGIN PRIVATE KEY-----")
	sealed := b.Seal("ca.key", plain)
	if bytes.Contains(sealed, plain) {
		t.Fatal("the sealed value holds the plain text")
	}
	if again := b.Seal("ca.key", plain); bytes.Equal(again, sealed) {
		t.Fatal("two seals of one value are the same: the nonce repeats")
	}
	got, err := b.Open("ca.key", sealed)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	// Moved into another secret's place.
	if _, err := b.Open("admin.credential", sealed); !errors.Is(err, ErrWrongKey) {
		t.Errorf("opened under another name: %v", err)
	}
	// Another key.
	other, _ := New(key(t))
	if _, err := other.Open("ca.key", sealed); !errors.Is(err, ErrWrongKey) {
		t.Errorf("opened with another key: %v", err)
	}
	// One bit flipped anywhere.
	for i := 1; i < len(sealed); i++ {
		bad := bytes.Clone(sealed)
		bad[i] ^= 1
		if _, err := b.Open("ca.key", bad); err == nil {
			t.Fatalf("opened with byte %d altered", i)
		}
	}
	for _, bad := range [][]byte{nil, {version}, append([]byte{9}, sealed[1:]...)} {
		if _, err := b.Open("ca.key", bad); err == nil {
			t.Errorf("opened %x", bad)
		}
	}
	if _, err := New(make([]byte, 16)); err == nil {
		t.Error("New accepted a 16-byte key")
	}
}
