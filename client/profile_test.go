package client

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestProfilesFile(t *testing.T) {
	dir := t.TempDir()
	const file = `# written by hand
[default]
server = https://keygate.example.com:8443
ca = /etc/keygate/ca.pem

; staging
[profile staging]
server=https://staging.example.com:8443
database = orders
ACCESS = rw
`
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	ps, err := LoadProfiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	def, ok := ps.Get("default")
	if !ok || def.Server != "https://keygate.example.com:8443" || def.CA != "/etc/keygate/ca.pem" || def.Database != "" {
		t.Errorf("default = %+v, %v", def, ok)
	}
	st, ok := ps.Get("staging")
	if !ok || st.Server != "https://staging.example.com:8443" || st.Database != "orders" || st.Access != "rw" {
		t.Errorf("staging = %+v, %v", st, ok)
	}
	if p, ok := ps.Get("prod"); ok || p.Name != "prod" || p.Server != "" {
		t.Errorf("prod = %+v, %v", p, ok)
	}

	// Adding a profile keeps every byte that was there.
	if err := ps.Add(Profile{Name: "prod", Server: "https://prod.example.com", Database: "billing"}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "config"))
	if !strings.HasPrefix(string(got), file) || !strings.HasSuffix(string(got), "\n[profile prod]\nserver = https://prod.example.com\ndatabase = billing\n") {
		t.Errorf("after Add:\n%s", got)
	}
	again, err := LoadProfiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := again.Get("prod"); !ok || p.Database != "billing" {
		t.Errorf("prod after reload = %+v, %v", p, ok)
	}
	if err := again.Add(Profile{Name: "prod"}); err == nil {
		t.Error("adding an existing profile succeeded")
	}
}

func TestProfilesFileErrors(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"server = x\n", "config:1: \"server = x\" comes before any [profile NAME] header"},
		{"[default]\nregion = eu\n", "config:2: unknown key \"region\""},
		{"[default\n", "config:1: a section header ends with ]"},
		{"[profile ../x]\n", "config:1: profile name \"../x\""},
		{"[default]\nserver\n", "config:2: expected key = value"},
	} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "config"), []byte(tc.file), 0o600)
		_, err := LoadProfiles(dir)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.file, err, tc.want)
		}
	}
	if ps, err := LoadProfiles(t.TempDir()); err != nil || len(ps.profiles) != 0 {
		t.Errorf("missing file: %v, %v", ps, err)
	}
}

func TestSessionCache(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keygate")
	if _, err := LoadSession(dir, "default"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("no cache: %v", err)
	}
	want := CachedSession{Server: "https://k:8443", Credential: "kgs_secret", ID: "s1", User: "alice", Expires: time.Date(2026, 5, 1, 20, 0, 0, 0, time.UTC), MFA: true, Method: "saml"}
	if err := SaveSession(dir, "default", want); err != nil {
		t.Fatal(err)
	}
	path := SessionCachePath(dir, "default")
	for p, mode := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s has mode %04o, want %04o", p, st.Mode().Perm(), mode)
		}
	}
	got, err := LoadSession(dir, "default")
	if err != nil || got != want {
		t.Fatalf("LoadSession = %+v, %v", got, err)
	}
	// A cache others can read is refused, as ssh refuses such a key.
	os.Chmod(path, 0o644)
	if _, err := LoadSession(dir, "default"); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Errorf("world-readable cache: %v", err)
	}
	if err := RemoveSession(dir, "default"); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSession(dir, "default"); !errors.Is(err, ErrNoSession) {
		t.Errorf("after RemoveSession: %v", err)
	}
	if err := RemoveSession(dir, "default"); err != nil {
		t.Errorf("removing twice: %v", err)
	}
}
