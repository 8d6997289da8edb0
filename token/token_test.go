package token

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"aidanwoods.dev/go-paseto"

	"github.com/keygate/keygate/access"
)

// t0 is the test clock's epoch; sub-second on purpose.
var t0 = time.Date(2031, 3, 14, 9, 26, 53, 589793238, time.UTC)

func clock(t time.Time) func() time.Time { return func() time.Time { return t } }

func sampleClaims(exp time.Time) Claims {
	return Claims{User: "alice", Database: "orders", Access: access.ReadOnly, Session: "sess-1", Expires: exp}
}

// mint mints a token for sampleClaims at now, valid for ttl.
func mint(t *testing.T, ks *KeySet, now time.Time, ttl time.Duration) (string, Claims) {
	t.Helper()
	tok, c, err := (&Issuer{Keys: ks, Now: clock(now)}).Mint(sampleClaims(now.Add(ttl)))
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	return tok, c
}

func verifier(ks *KeySet, now time.Time) *Verifier { return &Verifier{Keys: ks, Now: clock(now)} }

func sameClaims(a, b Claims) bool {
	return a.ID == b.ID && a.User == b.User && a.Database == b.Database && a.Access == b.Access &&
		a.Session == b.Session && a.IssuedAt.Equal(b.IssuedAt) && a.Expires.Equal(b.Expires)
}

// kidOf reads the key id from a token's footer.
func kidOf(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 4 {
		t.Fatalf("token has %d parts, want 4", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[3])
	if err != nil {
		t.Fatalf("footer: %v", err)
	}
	var f struct {
		KeyID string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("footer %s: %v", raw, err)
	}
	return f.KeyID
}

// checkErr asserts that err is want and that its text does not leak tok.
func checkErr(t *testing.T, err, want error, tok string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("Verify error = %v, want %v", err, want)
	}
	if len(tok) >= 16 && strings.Contains(err.Error(), tok) {
		t.Fatalf("error text %q contains the token", err)
	}
	for _, part := range strings.Split(tok, ".") {
		if len(part) >= 16 && strings.Contains(err.Error(), part) {
			t.Fatalf("error text %q contains part of the token", err)
		}
	}
}

func TestMintVerifyRoundTrip(t *testing.T) {
	ks := NewMemoryKeys()
	in := Claims{
		User: "alice", Database: "orders", Access: access.ReadWrite, Session: "sign-in-42",
		Expires: t0.Add(15*time.Minute + 700*time.Millisecond).In(time.FixedZone("CET", 3600)),
	}
	tok, minted, err := (&Issuer{Keys: ks, Now: clock(t0)}).Mint(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, Prefix) || !LooksLikeToken(tok) {
		t.Fatalf("token %q does not start with %q", tok, Prefix)
	}
	if len(tok) > MaxLen {
		t.Fatalf("token is %d bytes, longer than MaxLen", len(tok))
	}
	if minted.ID == "" {
		t.Error("Mint left ID empty")
	}
	if want := t0.Truncate(time.Second); !minted.IssuedAt.Equal(want) || minted.IssuedAt.Location() != time.UTC {
		t.Errorf("IssuedAt = %v, want %v in UTC", minted.IssuedAt, want)
	}
	if want := in.Expires.UTC().Truncate(time.Second); !minted.Expires.Equal(want) || minted.Expires.Location() != time.UTC {
		t.Errorf("Expires = %v, want %v in UTC", minted.Expires, want)
	}
	if minted.User != in.User || minted.Database != in.Database || minted.Access != in.Access || minted.Session != in.Session {
		t.Errorf("Mint changed claims: %+v", minted)
	}

	got, err := verifier(ks, t0.Add(time.Minute)).Verify(tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !sameClaims(got, minted) {
		t.Errorf("Verify claims = %+v\nwant %+v", got, minted)
	}
	if got.IssuedAt.Nanosecond() != 0 || got.Expires.Nanosecond() != 0 {
		t.Errorf("times not truncated to seconds: %v %v", got.IssuedAt, got.Expires)
	}
	if kid := kidOf(t, tok); kid != ks.KeyIDs()[0] {
		t.Errorf("footer kid = %q, want %q", kid, ks.KeyIDs()[0])
	}
}

func TestMintKeepsGivenIDAndMakesUniqueOnes(t *testing.T) {
	ks := NewMemoryKeys()
	iss := &Issuer{Keys: ks, Now: clock(t0)}
	c := sampleClaims(t0.Add(time.Minute))
	c.ID = "chosen-id"
	tok, minted, err := iss.Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	if minted.ID != "chosen-id" {
		t.Errorf("ID = %q, want chosen-id", minted.ID)
	}
	if got, err := verifier(ks, t0).Verify(tok); err != nil || got.ID != "chosen-id" {
		t.Errorf("Verify = %+v, %v", got, err)
	}
	seen := map[string]bool{}
	for range 50 {
		_, m, err := iss.Mint(sampleClaims(t0.Add(time.Minute)))
		if err != nil {
			t.Fatal(err)
		}
		if seen[m.ID] {
			t.Fatalf("duplicate token ID %q", m.ID)
		}
		seen[m.ID] = true
	}
}

func TestMintRefusesNonPositiveLifetime(t *testing.T) {
	iss := &Issuer{Keys: NewMemoryKeys(), Now: clock(t0)}
	for _, exp := range []time.Time{{}, t0.Add(-time.Minute), t0, t0.Add(200 * time.Millisecond)} {
		tok, _, err := iss.Mint(sampleClaims(exp))
		if err == nil {
			t.Errorf("Mint with Expires %v succeeded", exp)
		}
		if tok != "" {
			t.Errorf("Mint with Expires %v returned a token with its error", exp)
		}
	}
}

func TestValidityWindow(t *testing.T) {
	ks := NewMemoryKeys()
	tok, c := mint(t, ks, t0, 15*time.Minute)
	tests := []struct {
		name   string
		now    time.Time
		leeway time.Duration
		want   error
	}{
		{"at issue", c.IssuedAt, 0, nil},
		{"just before expiry", c.Expires.Add(-time.Nanosecond), 0, nil},
		{"at expiry", c.Expires, 0, ErrExpired},
		{"long after expiry", c.Expires.Add(24 * time.Hour), time.Hour, ErrExpired},
		{"a second before issue", c.IssuedAt.Add(-time.Second), 0, ErrNotYetValid},
		{"an hour before issue", c.IssuedAt.Add(-time.Hour), 0, ErrNotYetValid},
		{"before issue within leeway", c.IssuedAt.Add(-30 * time.Second), 30 * time.Second, nil},
		{"before issue beyond leeway", c.IssuedAt.Add(-31 * time.Second), 30 * time.Second, ErrNotYetValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &Verifier{Keys: ks, Now: clock(tt.now), Leeway: tt.leeway}
			got, err := v.Verify(tok)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if !sameClaims(got, c) {
					t.Fatalf("claims = %+v, want %+v", got, c)
				}
				return
			}
			checkErr(t, err, tt.want, tok)
			if got != (Claims{}) {
				t.Errorf("claims returned with an error: %+v", got)
			}
		})
	}
}

// TestTokenFromTheFuture: an issuer whose clock runs ahead mints a token the
// verifier does not accept yet.
func TestTokenFromTheFuture(t *testing.T) {
	ks := NewMemoryKeys()
	tok, _ := mint(t, ks, t0.Add(10*time.Minute), 15*time.Minute)
	checkErr(t, func() error { _, err := verifier(ks, t0).Verify(tok); return err }(), ErrNotYetValid, tok)
}

// flip replaces the byte at i by a different base64url character.
func flip(tok string, i int) string {
	b := []byte(tok)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func TestTampering(t *testing.T) {
	ks := NewMemoryKeys()
	tok, _ := mint(t, ks, t0, 15*time.Minute)
	v := verifier(ks, t0)
	parts := strings.Split(tok, ".")
	payloadStart := len("v4.public.")
	payloadEnd := payloadStart + len(parts[2])
	// Every character of the payload except the last (whose low bits may be
	// padding that strict decoding rejects) yields a bad signature: the first
	// positions change the claims, the last 86 the signature.
	for i := payloadStart; i < payloadEnd-1; i++ {
		bad := flip(tok, i)
		_, err := v.Verify(bad)
		checkErr(t, err, ErrBadSignature, bad)
	}
	// The last character: either a bad signature or malformed, never valid.
	bad := flip(tok, payloadEnd-1)
	if _, err := v.Verify(bad); !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrMalformed) {
		t.Errorf("last payload character changed: Verify error = %v", err)
	}
	// The footer names the key; changing it breaks the JSON or the key id.
	for i := payloadEnd + 1; i < len(tok); i++ {
		bad := flip(tok, i)
		_, err := v.Verify(bad)
		if err == nil {
			t.Fatalf("footer changed at %d and the token still verified", i)
		}
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrBadSignature) {
			t.Fatalf("footer changed at %d: error %v", i, err)
		}
	}
}

// TestFooterSwap: a footer naming another accepted key makes the signature
// check fail; the footer is authenticated.
func TestFooterSwap(t *testing.T) {
	ks := NewMemoryKeys()
	oldTok, _ := mint(t, ks, t0, 15*time.Minute)
	if err := ks.Rotate(t0); err != nil {
		t.Fatal(err)
	}
	newTok, _ := mint(t, ks, t0, 15*time.Minute)
	o, n := strings.Split(oldTok, "."), strings.Split(newTok, ".")
	if o[3] == n[3] {
		t.Fatal("rotation did not change the footer")
	}
	swapped := strings.Join([]string{o[0], o[1], o[2], n[3]}, ".")
	_, err := verifier(ks, t0).Verify(swapped)
	checkErr(t, err, ErrBadSignature, swapped)
}

// TestReplacedSignature: another key set's signature over the same claims
// does not verify under this key's id.
func TestReplacedSignature(t *testing.T) {
	ks, other := NewMemoryKeys(), NewMemoryKeys()
	c := sampleClaims(t0.Add(15 * time.Minute))
	c.ID = "same"
	tok, _, err := (&Issuer{Keys: ks, Now: clock(t0)}).Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	otherTok, _, err := (&Issuer{Keys: other, Now: clock(t0)}).Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	a, b := strings.Split(tok, "."), strings.Split(otherTok, ".")
	forged := strings.Join([]string{a[0], a[1], b[2], a[3]}, ".")
	_, err = verifier(ks, t0).Verify(forged)
	checkErr(t, err, ErrBadSignature, forged)
}

func TestUnknownKey(t *testing.T) {
	ks, other := NewMemoryKeys(), NewMemoryKeys()
	tok, _ := mint(t, other, t0, 15*time.Minute)
	_, err := verifier(ks, t0).Verify(tok)
	checkErr(t, err, ErrUnknownKey, tok)
}

// signRaw signs a PASETO with ks's current key, with claims set by fn.
func signRaw(ks *KeySet, implicitAssertion []byte, fn func(*paseto.Token), footerJSON string) string {
	tk := paseto.NewToken()
	fn(&tk)
	tk.SetFooter([]byte(footerJSON))
	return tk.V4Sign(ks.current(t0).secret, implicitAssertion)
}

func goodClaims(tk *paseto.Token) {
	tk.SetJti("id")
	tk.SetSubject("alice")
	tk.SetIssuedAt(t0.Truncate(time.Second))
	tk.SetExpiration(t0.Add(time.Hour).Truncate(time.Second))
	tk.SetString("db", "orders")
	tk.SetString("access", "ro")
	tk.SetString("sid", "s")
}

// TestSignedButIncomplete: tokens that carry a valid signature from the key
// set but lack claims, or were signed for another purpose, are refused.
func TestSignedButIncomplete(t *testing.T) {
	ks := NewMemoryKeys()
	v := verifier(ks, t0)
	kidFooter := `{"kid":"` + ks.KeyIDs()[0] + `"}`

	if _, err := v.Verify(signRaw(ks, implicit, goodClaims, kidFooter)); err != nil {
		t.Fatalf("a well-formed hand-signed token failed: %v", err)
	}
	tests := []struct {
		name     string
		implicit []byte
		footer   string
		claims   func(*paseto.Token)
		want     error
	}{
		{"other implicit assertion", []byte("some other purpose"), kidFooter, goodClaims, ErrBadSignature},
		{"no implicit assertion", nil, kidFooter, goodClaims, ErrBadSignature},
		{"no footer", implicit, "", goodClaims, ErrMalformed},
		{"footer without kid", implicit, `{"key":"x"}`, goodClaims, ErrMalformed},
		{"footer not JSON", implicit, `kid=x`, goodClaims, ErrMalformed},
		{"unknown kid", implicit, `{"kid":"nope"}`, goodClaims, ErrUnknownKey},
		{"bad access level", implicit, kidFooter, func(tk *paseto.Token) { goodClaims(tk); tk.SetString("access", "root") }, ErrMalformed},
		{"no user", implicit, kidFooter, func(tk *paseto.Token) { goodClaims(tk); tk.SetSubject("") }, ErrMalformed},
		{"no database", implicit, kidFooter, func(tk *paseto.Token) { goodClaims(tk); tk.SetString("db", "") }, ErrMalformed},
		{"database not a string", implicit, kidFooter, func(tk *paseto.Token) { goodClaims(tk); _ = tk.Set("db", 42) }, ErrMalformed},
		{"no expiry", implicit, kidFooter, func(tk *paseto.Token) {
			tk.SetJti("id")
			tk.SetSubject("alice")
			tk.SetIssuedAt(t0)
			tk.SetString("db", "orders")
			tk.SetString("access", "ro")
			tk.SetString("sid", "s")
		}, ErrMalformed},
		{"no issued-at", implicit, kidFooter, func(tk *paseto.Token) {
			tk.SetJti("id")
			tk.SetSubject("alice")
			tk.SetExpiration(t0.Add(time.Hour))
			tk.SetString("db", "orders")
			tk.SetString("access", "ro")
			tk.SetString("sid", "s")
		}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := signRaw(ks, tt.implicit, tt.claims, tt.footer)
			c, err := v.Verify(tok)
			checkErr(t, err, tt.want, tok)
			if c != (Claims{}) {
				t.Errorf("claims returned with an error: %+v", c)
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	ks := NewMemoryKeys()
	good, _ := mint(t, ks, t0, 15*time.Minute)
	v := verifier(ks, t0)
	parts := strings.Split(good, ".")
	tests := map[string]string{
		"empty":             "",
		"garbage":           "hunter2",
		"prefix only":       Prefix,
		"wrong version":     "v2.public." + parts[2] + "." + parts[3],
		"local purpose":     "v4.local." + parts[2] + "." + parts[3],
		"upper-case prefix": "V4.PUBLIC." + parts[2] + "." + parts[3],
		"leading space":     " " + good,
		"trailing newline":  good + "\n",
		"no footer":         "v4.public." + parts[2],
		"extra part":        good + ".x",
		"bad base64":        "v4.public." + parts[2][:10] + "!!" + parts[2][12:] + "." + parts[3],
		"padded base64":     "v4.public." + parts[2] + "==." + parts[3],
		"short payload":     "v4.public.AAAA." + parts[3],
		"too long":          good + "." + strings.Repeat("A", MaxLen),
		"just too long":     Prefix + strings.Repeat("A", MaxLen-len(Prefix)+1),
		"newline inside":    "v4.public." + parts[2][:20] + "\n" + parts[2][20:] + "." + parts[3],
	}
	for name, tok := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := v.Verify(tok)
			checkErr(t, err, ErrMalformed, tok)
			if c != (Claims{}) {
				t.Errorf("claims returned with an error: %+v", c)
			}
		})
	}
}

func TestLooksLikeToken(t *testing.T) {
	for s, want := range map[string]bool{
		"v4.public.abc": true,
		Prefix:          true,
		"v4.local.abc":  false,
		"hunter2":       false,
		"":              false,
		" v4.public.x":  false,
	} {
		if got := LooksLikeToken(s); got != want {
			t.Errorf("LooksLikeToken(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestErrorTextsAreFixed(t *testing.T) {
	// The sentinel texts go to clients and the audit log; none may carry
	// token material, and they must stay distinct.
	errs := []error{ErrMalformed, ErrUnknownKey, ErrBadSignature, ErrExpired, ErrNotYetValid}
	seen := map[string]bool{}
	for _, e := range errs {
		if seen[e.Error()] {
			t.Errorf("duplicate error text %q", e)
		}
		seen[e.Error()] = true
		if strings.Contains(e.Error(), Prefix) || strings.Contains(e.Error(), "%") {
			t.Errorf("error text %q looks templated or carries a token", e)
		}
	}
	for i, a := range errs {
		for j, b := range errs {
			if i != j && errors.Is(a, b) {
				t.Errorf("%v matches %v", a, b)
			}
		}
	}
}

func TestLoadKeysCreatesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token-keys.json")
	ks, err := LoadKeys(path, t0)
	if err != nil {
		t.Fatalf("LoadKeys: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("key file not created: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", fi.Mode().Perm())
	}
	ids := ks.KeyIDs()
	if len(ids) != 1 || ids[0] == "" {
		t.Fatalf("KeyIDs = %q, want one id", ids)
	}
	var kf keyFile
	raw, _ := os.ReadFile(path)
	if err := json.Unmarshal(raw, &kf); err != nil {
		t.Fatalf("key file is not JSON: %v", err)
	}
	if len(kf.Keys) != 1 || kf.Keys[0].ID != ids[0] || !kf.Keys[0].Created.Equal(t0) {
		t.Errorf("key file = %+v, want one key %s created %v", kf, ids[0], t0)
	}
	// No stray temporary files.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want just the key file", len(entries))
	}

	tok, c := mint(t, ks, t0, 15*time.Minute)
	again, err := LoadKeys(path, t0.Add(time.Hour))
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if !slices.Equal(again.KeyIDs(), ids) {
		t.Errorf("reloaded KeyIDs = %q, want %q", again.KeyIDs(), ids)
	}
	got, err := verifier(again, t0).Verify(tok)
	if err != nil || !sameClaims(got, c) {
		t.Errorf("reloaded keys: Verify = %+v, %v", got, err)
	}
	// The reloaded set signs with the same key.
	tok2, _ := mint(t, again, t0, time.Minute)
	if _, err := verifier(ks, t0).Verify(tok2); err != nil {
		t.Errorf("token from the reloaded set does not verify with the original: %v", err)
	}
}

func TestLoadKeysRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if _, err := LoadKeys(good, t0); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	var kf keyFile
	if err := json.Unmarshal(raw, &kf); err != nil {
		t.Fatal(err)
	}
	other := NewMemoryKeys()

	write := func(name string, v any) string {
		t.Helper()
		var b []byte
		if s, ok := v.(string); ok {
			b = []byte(s)
		} else if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	wrongID := kf
	wrongID.Keys = []storedKey{{ID: other.KeyIDs()[0], Created: t0, Seed: kf.Keys[0].Seed}}
	shortSeed := kf
	shortSeed.Keys = []storedKey{{ID: kf.Keys[0].ID, Created: t0, Seed: base64.StdEncoding.EncodeToString([]byte("short"))}}
	badSeed := kf
	badSeed.Keys = []storedKey{{ID: kf.Keys[0].ID, Created: t0, Seed: "***"}}
	tests := map[string]string{
		"not JSON":          write("garbage.json", "not json"),
		"no keys":           write("empty.json", keyFile{}),
		"id does not match": write("wrongid.json", wrongID),
		"short seed":        write("short.json", shortSeed),
		"seed not base64":   write("badseed.json", badSeed),
	}
	for name, p := range tests {
		if _, err := LoadKeys(p, t0); err == nil {
			t.Errorf("%s: LoadKeys succeeded", name)
		}
	}
	if _, err := LoadKeys(filepath.Join(dir, "missing-dir", "keys.json"), t0); err == nil {
		t.Error("LoadKeys into a missing directory succeeded")
	}
	if err := os.Chmod(good, 0); err == nil && os.Geteuid() != 0 {
		if _, err := LoadKeys(good, t0); err == nil {
			t.Error("LoadKeys of an unreadable file succeeded")
		}
	}
}

func TestRotate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	ks, err := LoadKeys(path, t0)
	if err != nil {
		t.Fatal(err)
	}
	oldID := ks.KeyIDs()[0]
	oldTok, oldClaims := mint(t, ks, t0, 15*time.Minute)
	if err := ks.Rotate(t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	ids := ks.KeyIDs()
	if len(ids) != 2 || ids[0] != oldID || ids[1] == oldID {
		t.Fatalf("KeyIDs after rotation = %q; want [%s, new]", ids, oldID)
	}
	newTok, _ := mint(t, ks, t0.Add(time.Minute), 15*time.Minute)
	if kid := kidOf(t, newTok); kid != ids[1] {
		t.Errorf("new token kid = %q, want the new key %q", kid, ids[1])
	}
	if kid := kidOf(t, oldTok); kid != oldID {
		t.Errorf("old token kid = %q, want %q", kid, oldID)
	}
	v := verifier(ks, t0.Add(2*time.Minute))
	if got, err := v.Verify(oldTok); err != nil || !sameClaims(got, oldClaims) {
		t.Errorf("old token after rotation: %+v, %v", got, err)
	}
	if _, err := v.Verify(newTok); err != nil {
		t.Errorf("new token: %v", err)
	}
	// Rotation is saved.
	again, err := LoadKeys(path, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again.KeyIDs(), ids) {
		t.Errorf("reloaded KeyIDs = %q, want %q", again.KeyIDs(), ids)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file after rotation: %v, %v; want mode 0600", fi.Mode().Perm(), err)
	}
}

// Servers sharing the keys: a key one of them adds only verifies until
// Propagation has passed, time for the others to read it (Reload), and
// then signs.
func TestPropagationAndReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	a, err := LoadKeys(path, t0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadKeys(path, t0)
	if err != nil {
		t.Fatal(err)
	}
	a.Propagation, b.Propagation = 2*time.Minute, 2*time.Minute
	if changed, err := b.Reload(); err != nil || changed {
		t.Fatalf("Reload of an unchanged file = %v, %v", changed, err)
	}
	oldID := a.KeyIDs()[0]
	if err := a.Rotate(t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	newID := a.KeyIDs()[1]
	if tok, _ := mint(t, a, t0.Add(time.Hour+time.Minute), 15*time.Minute); kidOf(t, tok) != oldID {
		t.Errorf("a key a minute old signs; want the old one until the propagation time has passed")
	}
	if changed, err := b.Reload(); err != nil || !changed || !slices.Equal(b.KeyIDs(), []string{oldID, newID}) {
		t.Fatalf("Reload after the rotation = %v, %v, keys %q", changed, err, b.KeyIDs())
	}
	later := t0.Add(time.Hour + 2*time.Minute)
	tok, _ := mint(t, a, later, 15*time.Minute)
	if kidOf(t, tok) != newID {
		t.Errorf("the new key does not sign once the propagation time has passed")
	}
	if _, err := verifier(b, later).Verify(tok); err != nil {
		t.Errorf("the other server refuses a token of the new key: %v", err)
	}
	if err := os.WriteFile(path, []byte(`{"keys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reload(); err == nil || !slices.Equal(b.KeyIDs(), []string{oldID, newID}) {
		t.Errorf("Reload of an empty key file = %v, keys %q; want an error and the keys kept", err, b.KeyIDs())
	}
}

func TestMaintain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	ks, err := LoadKeys(path, t0)
	if err != nil {
		t.Fatal(err)
	}
	firstID := ks.KeyIDs()[0]

	// Young key: nothing happens.
	for _, at := range []time.Time{t0, t0.Add(KeyLifetime)} {
		rotated, err := ks.Maintain(at)
		if err != nil || rotated {
			t.Fatalf("Maintain(%v) = %v, %v; want no rotation", at.Sub(t0), rotated, err)
		}
		if ids := ks.KeyIDs(); len(ids) != 1 {
			t.Fatalf("Maintain(%v) changed keys: %q", at.Sub(t0), ids)
		}
	}

	// Old key: rotated, the old key keeps verifying.
	t1 := t0.Add(KeyLifetime + time.Second)
	oldTok, _ := mint(t, ks, t1.Add(-time.Minute), 15*time.Minute)
	rotated, err := ks.Maintain(t1)
	if err != nil || !rotated {
		t.Fatalf("Maintain(t1) = %v, %v; want a rotation", rotated, err)
	}
	ids := ks.KeyIDs()
	if len(ids) != 2 || ids[0] != firstID {
		t.Fatalf("KeyIDs after Maintain = %q", ids)
	}
	newTok, _ := mint(t, ks, t1, 15*time.Minute)
	if kid := kidOf(t, newTok); kid != ids[1] {
		t.Errorf("token after rotation signed by %q, want %q", kid, ids[1])
	}
	v := verifier(ks, t1.Add(time.Minute))
	if _, err := v.Verify(oldTok); err != nil {
		t.Fatalf("token of the retired key: %v", err)
	}

	// Still within RetiredKeyLifetime: kept.
	rotated, err = ks.Maintain(t1.Add(RetiredKeyLifetime))
	if err != nil || rotated || len(ks.KeyIDs()) != 2 {
		t.Fatalf("Maintain at retirement limit = %v, %v, keys %q; want no change", rotated, err, ks.KeyIDs())
	}

	// Past RetiredKeyLifetime: the retired key is forgotten.
	t2 := t1.Add(RetiredKeyLifetime + time.Second)
	rotated, err = ks.Maintain(t2)
	if err != nil || rotated {
		t.Fatalf("Maintain(t2) = %v, %v", rotated, err)
	}
	if got := ks.KeyIDs(); !slices.Equal(got, ids[1:]) {
		t.Fatalf("KeyIDs after pruning = %q, want %q", got, ids[1:])
	}
	_, err = v.Verify(oldTok)
	checkErr(t, err, ErrUnknownKey, oldTok)
	if _, err := v.Verify(newTok); err != nil {
		t.Errorf("token of the current key after pruning: %v", err)
	}
	// Pruning is saved.
	again, err := LoadKeys(path, t2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again.KeyIDs(), ids[1:]) {
		t.Errorf("reloaded KeyIDs = %q, want %q", again.KeyIDs(), ids[1:])
	}
}

// TestMaintainLongIdle: a server that was off for longer than both lifetimes
// rotates and then keeps the key it just retired (its tokens may still be in
// flight), pruning anything older.
func TestMaintainLongIdle(t *testing.T) {
	ks := NewMemoryKeys()
	start := time.Now()
	if err := ks.Rotate(start); err != nil {
		t.Fatal(err)
	}
	ids := ks.KeyIDs()
	later := start.Add(KeyLifetime + 365*24*time.Hour)
	rotated, err := ks.Maintain(later)
	if err != nil || !rotated {
		t.Fatalf("Maintain = %v, %v", rotated, err)
	}
	got := ks.KeyIDs()
	if len(got) != 2 || got[0] != ids[1] || slices.Contains(got, ids[0]) {
		t.Errorf("KeyIDs = %q; want [%s, new] with %s pruned", got, ids[1], ids[0])
	}
	tok, _ := mint(t, ks, later, time.Minute)
	if _, err := verifier(ks, later).Verify(tok); err != nil {
		t.Error(err)
	}
}

func TestKeyIDNamesThePublicKey(t *testing.T) {
	a, b := NewMemoryKeys(), NewMemoryKeys()
	if a.KeyIDs()[0] == b.KeyIDs()[0] {
		t.Fatal("two fresh keys share an id")
	}
	pub := a.current(t0).secret.Public()
	if got := keyID(pub.ExportBytes()); got != a.KeyIDs()[0] {
		t.Errorf("keyID(public key) = %q, want %q", got, a.KeyIDs()[0])
	}
}

// TestConcurrentRotation runs minting, verification and rotation at once;
// run with -race.
func TestConcurrentRotation(t *testing.T) {
	ks := NewMemoryKeys()
	var wg sync.WaitGroup
	errc := make(chan error, 100)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			iss := &Issuer{Keys: ks, Now: time.Now}
			v := &Verifier{Keys: ks, Now: time.Now}
			for range 25 {
				if g == 0 {
					if err := ks.Rotate(time.Now()); err != nil {
						errc <- err
						return
					}
					continue
				}
				tok, _, err := iss.Mint(sampleClaims(time.Now().Add(time.Minute)))
				if err != nil {
					errc <- err
					return
				}
				if _, err := v.Verify(tok); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

// TestMaxLenBoundary: a real token up to MaxLen verifies; one byte-group
// longer is refused as malformed before any parsing.
func TestMaxLenBoundary(t *testing.T) {
	ks := NewMemoryKeys()
	iss := &Issuer{Keys: ks, Now: clock(t0)}
	v := verifier(ks, t0)
	var longestOK, shortestOver string
	for n := 2700; n < 3200 && shortestOver == ""; n++ {
		c := sampleClaims(t0.Add(time.Minute))
		c.Session = strings.Repeat("s", n)
		tok, _, err := iss.Mint(c)
		if err != nil {
			t.Fatal(err)
		}
		if len(tok) <= MaxLen {
			longestOK = tok
		} else {
			shortestOver = tok
		}
	}
	if longestOK == "" || shortestOver == "" {
		t.Fatal("test bug: did not bracket MaxLen")
	}
	if MaxLen-len(longestOK) > 2 {
		t.Fatalf("test bug: longest token under the limit is %d bytes", len(longestOK))
	}
	if _, err := v.Verify(longestOK); err != nil {
		t.Errorf("token of %d bytes (limit %d): %v", len(longestOK), MaxLen, err)
	}
	_, err := v.Verify(shortestOver)
	checkErr(t, err, ErrMalformed, shortestOver)
}
