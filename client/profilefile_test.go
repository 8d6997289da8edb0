package client

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A profile file is written 0600, read back whole, never replaced by
// accident, and refused when it is from a newer keygate or not one at all.
func TestProfileFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "alice.keygate.json")
	f := ProfileFile{Version: ProfileFileVersion, Profile: SuggestedProfileName("https://keygate.example.com:8443"),
		Server: "https://keygate.example.com:8443", User: "alice", SessionID: "s1", Credential: "kgs_secret",
		Expires: time.Date(2030, 1, 1, 18, 0, 0, 0, time.UTC)}
	if f.Profile != "keygate.example.com" {
		t.Errorf("suggested profile %q, want the server's host name", f.Profile)
	}
	if err := WriteProfileFile(path, f, false); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("profile file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	got, err := ReadProfileFile(path)
	if err != nil || got != f {
		t.Fatalf("read back %+v, %v; want %+v", got, err, f)
	}
	err = WriteProfileFile(path, ProfileFile{Version: 1, Credential: "kgs_other"}, false)
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("replacing without force: %v", err)
	}
	if got, _ := ReadProfileFile(path); got.Credential != "kgs_secret" {
		t.Fatalf("a refused write changed the file: %+v", got)
	}
	f.SessionID = "s2"
	if err := WriteProfileFile(path, f, true); err != nil {
		t.Fatal(err)
	}
	if got, _ := ReadProfileFile(path); got.SessionID != "s2" {
		t.Fatalf("forced write did not replace the file: %+v", got)
	}

	for name, tt := range map[string]struct{ raw, want string }{
		"newer":        {`{"keygate_profile": 2, "profile": "p", "server": "https://h:1", "user": "a", "credential": "c"}`, "upgrade keygate"},
		"not a file":   {`{"server": "https://h:1"}`, "not a keygate profile file"},
		"not json":     {`[default]`, "not a keygate profile file"},
		"plain http":   {`{"keygate_profile": 1, "profile": "p", "server": "http://h:1", "user": "a", "credential": "c"}`, "https://HOST:PORT"},
		"no session":   {`{"keygate_profile": 1, "profile": "p", "server": "https://h:1"}`, "holds no session"},
		"bad CA":       {`{"keygate_profile": 1, "profile": "p", "server": "https://h:1", "user": "a", "credential": "c", "ca_pem": "x"}`, "no PEM certificate"},
		"bad profile":  {`{"keygate_profile": 1, "profile": "../x", "server": "https://h:1", "user": "a", "credential": "c"}`, "profile name"},
		"empty object": {`{}`, "not a keygate profile file"},
	} {
		p := filepath.Join(dir, "bad.json")
		if err := os.WriteFile(p, []byte(tt.raw), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadProfileFile(p); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, tt.want)
		}
	}
}

// Set repoints an existing profile in place: its other keys, comments and
// the other profiles stay as they were written.
func TestProfilesSet(t *testing.T) {
	dir := t.TempDir()
	const file = `# mine
[default]
server = https://old.example.com:8443
database = orders
CA=/old/ca.pem

[profile staging]
server = https://staging.example.com:8443
`
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	ps, err := LoadProfiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := ps.Set(Profile{Name: "default", Server: "https://new.example.com:8443", CA: "/new/ca.pem"}); err != nil {
		t.Fatal(err)
	}
	if err := ps.Set(Profile{Name: "fresh", Server: "https://fresh.example.com:8443"}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(ps.Path())
	if err != nil {
		t.Fatal(err)
	}
	const want = `# mine
[default]
server = https://new.example.com:8443
ca = /new/ca.pem
database = orders

[profile staging]
server = https://staging.example.com:8443

[profile fresh]
server = https://fresh.example.com:8443
`
	if string(raw) != want {
		t.Fatalf("profiles file:\n%s\nwant:\n%s", raw, want)
	}
	again, err := LoadProfiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, server := range map[string]string{"default": "https://new.example.com:8443", "staging": "https://staging.example.com:8443", "fresh": "https://fresh.example.com:8443"} {
		if p, ok := again.Get(name); !ok || p.Server != server {
			t.Errorf("profile %s = %+v, want server %s", name, p, server)
		}
	}
	if p, _ := again.Get("default"); p.Database != "orders" || p.CA != "/new/ca.pem" {
		t.Errorf("default = %+v, want database kept and the new CA", p)
	}
}
