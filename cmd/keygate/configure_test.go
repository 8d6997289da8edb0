package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/client"
)

// runKeygate runs the CLI in-process with args, as a person would from a
// shell.
func runKeygate(t *testing.T, args ...string) (stderr string, err error) {
	t.Helper()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err = root.ExecuteContext(t.Context())
	return errOut.String(), err
}

// An import goes to the profile named, or default, or (when default is
// for another server) the name the file suggests; it never repoints a
// profile that is for another server.
func TestImportProfileName(t *testing.T) {
	dir := t.TempDir()
	const profiles = "[default]\nserver = https://other.example.com:8443\n\n[profile mine]\nserver = https://keygate.example.com:8443/\n"
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(profiles), 0o600); err != nil {
		t.Fatal(err)
	}
	ps, err := client.LoadProfiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := client.ProfileFile{Server: "https://keygate.example.com:8443", Profile: "keygate.example.com"}
	tests := []struct {
		profile, want string
		refused       bool
	}{
		{"", "keygate.example.com", false},
		{"mine", "mine", false},
		{"new", "new", false},
		{"default", "", true},
		{"bad/name", "", true},
	}
	for _, tt := range tests {
		got, err := importProfileName(&globals{profile: tt.profile}, ps, f)
		var ue usageError
		if tt.refused != (err != nil) || (err != nil && !errors.As(err, &ue)) || got != tt.want {
			t.Errorf("--profile %q: %q, %v; want %q, refused %v", tt.profile, got, err, tt.want, tt.refused)
		}
	}
	empty, err := client.LoadProfiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := importProfileName(&globals{}, empty, f); err != nil || got != client.DefaultProfile {
		t.Errorf("first import: %q, %v; want default", got, err)
	}
}

// --profile-out never replaces a file without --force, and says so before
// it creates a session nobody would get.
func TestProfileOutRefusesExistingFile(t *testing.T) {
	existing := filepath.Join(t.TempDir(), "alice.keygate.json")
	if err := os.WriteFile(existing, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := runKeygate(t, "admin", "session", "create", "alice", "--config", filepath.Join(t.TempDir(), "absent.yaml"), "--profile-out", existing)
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("err = %v, want a usage error that mentions --force", err)
	}
	if got, _ := os.ReadFile(existing); string(got) != "keep me" {
		t.Fatalf("the file changed: %q", got)
	}
}

// An expired profile file is refused with what to ask for, before
// anything is written.
func TestImportRefusesExpiredSession(t *testing.T) {
	cfgDir := t.TempDir()
	t.Setenv("KEYGATE_CONFIG_DIR", cfgDir)
	path := filepath.Join(t.TempDir(), "alice.keygate.json")
	f := client.ProfileFile{Version: client.ProfileFileVersion, Profile: "default", Server: "https://127.0.0.1:1",
		User: "alice", Credential: "kgs_x", Expires: time.Now().Add(-time.Minute)}
	if err := client.WriteProfileFile(path, f, false); err != nil {
		t.Fatal(err)
	}
	_, err := runKeygate(t, "configure", "--import", path)
	if err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), "keygate admin session create alice --profile-out FILE") {
		t.Fatalf("err = %v, want one that says the session expired and how to get a new one", err)
	}
	if entries, _ := os.ReadDir(cfgDir); len(entries) != 0 {
		t.Fatalf("a refused import wrote %v", entries)
	}
}

// configure needs something to configure, and takes --import or --server,
// not both.
func TestConfigureUsage(t *testing.T) {
	t.Setenv("KEYGATE_CONFIG_DIR", t.TempDir())
	t.Setenv("KEYGATE_SERVER", "")
	for _, args := range [][]string{
		{"configure"},
		{"configure", "--import", "x.json", "--server", "https://h:1"},
	} {
		_, err := runKeygate(t, args...)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("keygate %s: %v, want a usage error", strings.Join(args, " "), err)
		}
	}
}
