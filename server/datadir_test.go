package server

import (
	"bytes"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A data_dir written with a loose umask is made private: the directory
// 0700, state, keys and credentials 0600, certificates left readable.
// The databases exist, 0600, before SQLite first opens them.
func TestPrepareDataDirTightens(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]fs.FileMode{
		TokenKeysFile:       0o644,
		AdminCredentialFile: 0o640,
		"ca.key":            0o644,
		"ca.pem":            0o666,
		"keygate.db-wal":    0o644,
	}
	for name, mode := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, name), mode); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	if err := prepareDataDir(dir, true, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
		t.Fatal(err)
	}
	want := map[string]fs.FileMode{
		".":                 0o700,
		TokenKeysFile:       0o600,
		AdminCredentialFile: 0o600,
		"ca.key":            0o600,
		"ca.pem":            0o644,
		"keygate.db-wal":    0o600,
		StoreFile:           0o600,
		"keygate-audit.db":  0o600,
	}
	for name, mode := range want {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	if !strings.Contains(logs.String(), "restricted a data_dir file that others could read") {
		t.Errorf("the changes were not logged:\n%s", logs.String())
	}
}

// Spill files left by an earlier shutdown are named at start-up.
func TestWarnSpills(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	warnSpills(dir, log)
	if logs.Len() != 0 {
		t.Fatalf("a data_dir without spill files warned: %s", logs.String())
	}
	spill := filepath.Join(dir, "audit-unwritten-20260101T000000.000000000Z.jsonl")
	if err := os.WriteFile(spill, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	warnSpills(dir, log)
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), spill) {
		t.Errorf("no warning naming %s:\n%s", spill, logs.String())
	}
}
