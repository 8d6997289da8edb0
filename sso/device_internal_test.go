package sso

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/sqlite"
)

// TestFlowsBounded checks that a caller who only asks for device codes
// cannot make the server hold more than maxFlows, and that expired flows
// make room again.
func TestFlowsBounded(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keygate.db"), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := New(Options{Store: st, Now: func() time.Time { return now }, Log: slog.New(slog.DiscardHandler)})
	for i := range maxFlows {
		if _, _, err := st.PutPending(ctx, store.Pending{Kind: kindFlow, Key: strconv.Itoa(i), Value: []byte("{}"), Expires: now.Add(DeviceCodeTTL)}, now, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.startFlow(ctx, ""); !errors.Is(err, errTooManyFlows) {
		t.Fatalf("a flow was started with %d pending: %v", maxFlows, err)
	}
	now = now.Add(DeviceCodeTTL + time.Second)
	code, _, err := s.startFlow(ctx, "")
	if err != nil {
		t.Fatalf("expired flows do not make room: %v", err)
	}
	if n, err := st.CountPending(ctx, kindFlow, time.Time{}); err != nil || n != 1 {
		t.Errorf("%d flows after the sweep (%v); want 1", n, err)
	}
	if res, _, _, err := s.poll(ctx, code); res != pollPending || err != nil {
		t.Errorf("poll of the new flow = %v, %v", res, err)
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
