package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/store/sqlite"
)

// keygate state backup writes a 0600 backup of --config's data_dir and
// says what it holds; keygate state restore puts it into an empty
// directory and says what to do next, and refuses a non-empty one.
func TestStateBackupAndRestoreCommands(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(dataDir, server.StoreFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ada", "grace"} {
		if _, err := st.CreateUser(context.Background(), identity.User{UserName: name, Active: true}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	cfgPath := filepath.Join(dir, "keygate.yaml")
	if err := os.WriteFile(cfgPath, []byte("data_dir: ./data\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(dir, "keygate.tar.gz")

	out, err := runRoot(t, "state", "backup", backup, "--config", cfgPath)
	if err != nil {
		t.Fatalf("state backup: %v\n%s", err, out)
	}
	for _, want := range []string{"wrote " + backup + " (", "mode 0600", "2 people, 0 groups, 0 audit events (schema: state ", "keygate.db, keygate-audit.db"} {
		if !strings.Contains(out, want) {
			t.Errorf("state backup printed %q, without %q", out, want)
		}
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, %v", fi, err)
	}

	target := filepath.Join(dir, "restored")
	out, err = runRoot(t, "state", "restore", backup, "--data-dir", target)
	if err != nil {
		t.Fatalf("state restore: %v\n%s", err, out)
	}
	for _, want := range []string{"restored " + backup + " into " + target, "2 people, 0 groups, 0 audit events (audit chain intact)",
		"Set data_dir in the server's config to " + target, "keygate server --config FILE"} {
		if !strings.Contains(out, want) {
			t.Errorf("state restore printed %q, without %q", out, want)
		}
	}
	_, err = runRoot(t, "state", "restore", backup, "--data-dir", target)
	if err == nil || !strings.Contains(err.Error(), "pass --force") {
		t.Errorf("a second restore into the same dir: %v", err)
	}
	if out, err := runRoot(t, "state", "restore", backup, "--data-dir", target, "--force"); err != nil {
		t.Errorf("restore --force: %v\n%s", err, out)
	}

	_, err = runRoot(t, "state", "restore", backup)
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "pass --data-dir DIR") {
		t.Errorf("restore without a directory: %v, want a usage error", err)
	}
	_, err = runRoot(t, "state", "backup")
	if !errors.As(err, &ue) {
		t.Errorf("backup without FILE: %v, want a usage error", err)
	}
	_, err = runRoot(t, "state", "backup", filepath.Join(dir, "other.tar.gz"), "--config", stateConfigFile(t, "data_dir: ./nowhere\n"))
	if err == nil || !strings.Contains(err.Error(), "no keygate state in") {
		t.Errorf("backup of a data_dir without state: %v", err)
	}
}

func stateConfigFile(t *testing.T, raw string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keygate.yaml")
	if err := os.WriteFile(path, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestByteSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := byteSize(n); got != want {
			t.Errorf("byteSize(%d) = %q, want %q", n, got, want)
		}
	}
}
