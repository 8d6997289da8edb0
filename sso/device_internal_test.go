package sso

import (
	"crypto/sha256"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFlowsBounded checks that a caller who only asks for device codes
// cannot make the server hold more than maxFlows, and that expired flows
// make room again.
func TestFlowsBounded(t *testing.T) {
	f := newFlows()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for i := range maxFlows {
		fl := &flow{deviceHash: sha256.Sum256([]byte(strconv.Itoa(i))), userCode: strconv.Itoa(i), expires: now.Add(DeviceCodeTTL)}
		f.byUser[fl.userCode], f.byDevice[fl.deviceHash] = fl, fl
	}
	if _, _, ok := f.start(now, ""); ok {
		t.Fatalf("a flow was started with %d pending", maxFlows)
	}
	now = now.Add(DeviceCodeTTL + time.Second)
	code, fl, ok := f.start(now, "")
	if !ok {
		t.Fatal("expired flows do not make room")
	}
	if len(f.byUser) != 1 || len(f.byDevice) != 1 {
		t.Errorf("%d flows by user code, %d by device code after the sweep; want 1", len(f.byUser), len(f.byDevice))
	}
	if res, got := f.poll(now, code); res != pollPending || got != fl {
		t.Errorf("poll of the new flow = %v", res)
	}
}

func TestRandomUserCode(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		c := randomUserCode()
		if len(c) != 8 || strings.Trim(c, userCodeAlphabet) != "" {
			t.Fatalf("user code %q: want 8 letters of %s", c, userCodeAlphabet)
		}
		if normalizeUserCode(formatUserCode(c)) != c || normalizeUserCode(strings.ToLower(c)) != c {
			t.Fatalf("user code %q does not survive formatting and typing", c)
		}
		seen[c] = true
	}
	if len(seen) < 990 {
		t.Errorf("%d distinct codes in 1000", len(seen))
	}
}

// FuzzNormalizeUserCode feeds normalizeUserCode what anyone may put in
// ?user_code= or the device page's form: whatever it is, the result is a
// lookup key made only of the alphabet, and normalising it again changes
// nothing.
func FuzzNormalizeUserCode(f *testing.F) {
	for _, s := range []string{"BCDF-GHJK", "bcdfghjk", " bcdf ghjk ", "BCDF–GHJK", "ſſſſ-ſſſſ", "ÀÉÎ", "\x00\xff", strings.Repeat("b", 5000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := normalizeUserCode(s)
		if strings.Trim(n, userCodeAlphabet) != "" {
			t.Fatalf("normalizeUserCode(%q) = %q: not only the alphabet", s, n)
		}
		if len(n) > len(s) {
			t.Fatalf("normalizeUserCode(%q) = %q: longer than the input allows", s, n)
		}
		if again := normalizeUserCode(n); again != n {
			t.Fatalf("normalizeUserCode(%q) = %q, then %q", s, n, again)
		}
		if len(n) == 8 && normalizeUserCode(formatUserCode(n)) != n {
			t.Fatalf("formatUserCode(%q) = %q does not normalise back", n, formatUserCode(n))
		}
	})
}
