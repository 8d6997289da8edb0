package server

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/store/sqlite"
)

// stateDir makes a data_dir as a server leaves it: keys, certificates,
// the admin credential, and a store with people, groups and audit events.
func stateDir(t *testing.T) string {
	t.Helper()
	cfg := testConfig(t, "")
	srv, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 3 {
		if _, err := srv.store.CreateUser(ctx, identity.User{UserName: fmt.Sprintf("person%d", i), Active: true}); err != nil {
			t.Fatal(err)
		}
		srv.audit.Record(audit.Event{Type: "admin.user.create", User: fmt.Sprintf("person%d", i)})
	}
	if _, err := srv.store.CreateGroup(ctx, identity.Group{Name: "analysts"}); err != nil {
		t.Fatal(err)
	}
	srv.close()
	return cfg.Resolve(cfg.DataDir)
}

func backupOf(t *testing.T, dataDir string) (string, Manifest) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "keygate-backup.tar.gz")
	m, err := Backup(context.Background(), dataDir, dst, "v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	return dst, m
}

// A backup holds the databases, the keys, certificates and credential,
// and a manifest with their checksums; restored into an empty directory
// it gives the same state, each file at its mode, and a store that opens.
func TestBackupRestoreRoundTrip(t *testing.T) {
	dataDir := stateDir(t)
	dst, m := backupOf(t, dataDir)
	fi, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("backup has mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := os.Stat(dst + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s.tmp left behind: %v", dst, err)
	}
	if m.People != 3 || m.Groups != 1 || m.AuditLastSeq < 3 || m.Schemas != sqlite.KnownSchemas() || m.Version != "v1.2.3" {
		t.Errorf("manifest %+v", m)
	}
	var names []string
	for _, f := range m.Files {
		names = append(names, f.Name)
		if len(f.SHA256) != 64 || f.Size == 0 {
			t.Errorf("manifest line %+v", f)
		}
	}
	for _, want := range []string{StoreFile, "keygate-audit.db", TokenKeysFile, AdminCredentialFile, "ca.pem", "ca.key"} {
		if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+want+" ") {
			t.Errorf("backup lacks %s: %v", want, names)
		}
	}

	target := filepath.Join(t.TempDir(), "restored")
	res, err := Restore(context.Background(), dst, target, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.People != 3 || len(res.Replaced) != 0 {
		t.Errorf("restore result %+v", res)
	}
	for _, f := range m.Files {
		got, err := describe(filepath.Join(target, f.Name))
		if err != nil || got != f {
			t.Errorf("restored %s: %+v, %v; want %+v", f.Name, got, err, f)
		}
		fi, _ := os.Stat(filepath.Join(target, f.Name))
		if want := restoredMode(f.Name); fi.Mode().Perm() != want {
			t.Errorf("restored %s has mode %v, want %v", f.Name, fi.Mode().Perm(), want)
		}
	}
	if _, err := os.Stat(filepath.Join(target, restoreTmp)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left behind: %v", restoreTmp, err)
	}
	for _, name := range []string{TokenKeysFile, AdminCredentialFile} {
		a, _ := os.ReadFile(filepath.Join(dataDir, name))
		b, _ := os.ReadFile(filepath.Join(target, name))
		if string(a) != string(b) {
			t.Errorf("restored %s differs from the original", name)
		}
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(target, StoreFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if n, err := audit.Verify(context.Background(), st); err != nil || n != m.AuditLastSeq {
		t.Errorf("restored audit log: %d events, %v", n, err)
	}
}

// A restore refuses a directory in use, one that holds something unless
// forced, and a forced restore removes the journals SQLite would replay.
func TestRestoreRefusals(t *testing.T) {
	dst, m := backupOf(t, stateDir(t))
	ctx := context.Background()

	busy := t.TempDir()
	held, err := AcquireLock(busy, "server")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Restore(ctx, dst, busy, true)
	held.Release()
	var inUse *InUseError
	if !errors.As(err, &inUse) || !strings.Contains(err.Error(), fmt.Sprintf("keygate server pid %d", os.Getpid())) ||
		!strings.Contains(err.Error(), "stop it before restoring") {
		t.Errorf("restore into a locked dir: %v", err)
	}

	full := t.TempDir()
	for _, name := range []string{"notes.txt", StoreFile + "-wal", "audit-unwritten-20260101T000000.000000000Z.jsonl"} {
		if err := os.WriteFile(filepath.Join(full, name), []byte("stale"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err = Restore(ctx, dst, full, false)
	if err == nil || !strings.Contains(err.Error(), "is not empty") || !strings.Contains(err.Error(), "pass --force") {
		t.Errorf("restore into a non-empty dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(full, StoreFile)); !errors.Is(err, os.ErrNotExist) {
		t.Error("a refused restore wrote into the directory")
	}
	res, err := Restore(ctx, dst, full, true)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(res.Replaced) != "[audit-unwritten-20260101T000000.000000000Z.jsonl keygate.db-wal]" {
		t.Errorf("replaced %v", res.Replaced)
	}
	if _, err := os.Stat(filepath.Join(full, "notes.txt")); err != nil {
		t.Error("--force removed a file that is not keygate's")
	}
	sum, err := sqlite.Summarize(ctx, filepath.Join(full, StoreFile), filepath.Join(full, "keygate-audit.db"))
	if err != nil || sum.People != m.People {
		t.Errorf("after a forced restore: %+v, %v", sum, err)
	}
}

// rewrite copies the backup at src to a new file, changing the manifest
// with editManifest and each file's content with editFile.
func rewrite(t *testing.T, src string, editManifest func(*Manifest), editFile func(name string, b []byte) []byte) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	zr, err := gzip.NewReader(in)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	dst := filepath.Join(t.TempDir(), "edited.tar.gz")
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(out)
	tw := tar.NewWriter(zw)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		if hdr.Name == ManifestFile {
			var m Manifest
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			editManifest(&m)
			b, _ = json.Marshal(m)
		} else {
			b = editFile(hdr.Name, b)
		}
		hdr.Size = int64(len(b))
		tw.WriteHeader(hdr)
		tw.Write(b)
	}
	tw.Close()
	zw.Close()
	out.Close()
	return dst
}

// A backup whose file does not match its checksum, or whose schema is
// newer than this keygate's, is refused and nothing is restored.
func TestRestoreRefusesDamagedAndNewer(t *testing.T) {
	dst, _ := backupOf(t, stateDir(t))
	ctx := context.Background()
	same := func(_ string, b []byte) []byte { return b }

	damaged := rewrite(t, dst, func(*Manifest) {}, func(name string, b []byte) []byte {
		if name == TokenKeysFile {
			b = append([]byte{}, b...)
			b[len(b)/2] ^= 1
		}
		return b
	})
	target := filepath.Join(t.TempDir(), "d")
	_, err := Restore(ctx, damaged, target, false)
	if err == nil || !strings.Contains(err.Error(), TokenKeysFile+" does not match its checksum in the manifest") {
		t.Errorf("restore of a damaged backup: %v", err)
	}
	if entries, _ := os.ReadDir(target); len(entries) != 1 {
		t.Errorf("a refused restore left %v", entries)
	}

	newer := rewrite(t, dst, func(m *Manifest) { m.Schemas.State = sqlite.KnownSchemas().State + 1; m.Version = "v9.0.0" }, same)
	_, err = Restore(ctx, newer, filepath.Join(t.TempDir(), "n"), false)
	want := fmt.Sprintf("was taken by keygate v9.0.0, whose databases are newer (schema state %d", sqlite.KnownSchemas().State+1)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "restore it with that version or newer") {
		t.Errorf("restore of a newer backup: %v", err)
	}

	_, err = Restore(ctx, dst+".missing", filepath.Join(t.TempDir(), "m"), false)
	if err == nil {
		t.Error("restore of a missing file succeeded")
	}
}

// A backup of an audit log that was edited in place — every checksum
// right, the chain broken — is refused.
func TestRestoreRefusesBrokenChain(t *testing.T) {
	dataDir := stateDir(t)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "keygate-audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{`DROP TRIGGER audit_events_no_update`, `UPDATE audit_events SET user_name = 'nobody' WHERE seq = 2`} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	db.Close()
	dst, _ := backupOf(t, dataDir)
	_, err = Restore(context.Background(), dst, filepath.Join(t.TempDir(), "r"), false)
	if err == nil || !strings.Contains(err.Error(), "audit log broken at event 2") || !strings.Contains(err.Error(), "keep the backup as evidence") {
		t.Errorf("restore of a broken chain: %v", err)
	}
}

// A crafted backup cannot plant a journal SQLite would replay, nor a file
// outside what data_dir holds, nor fill the disk with a file longer than
// its manifest says.
func TestRestoreRefusesCraftedFiles(t *testing.T) {
	dst, _ := backupOf(t, stateDir(t))
	ctx := context.Background()
	for _, name := range []string{StoreFile + "-wal", "keygate-audit.db-shm", "../escape", ".hidden.pem", "notes.txt", LockFile, ManifestFile} {
		if backupName(name) {
			t.Errorf("backupName(%q) = true", name)
		}
	}
	for _, name := range []string{StoreFile, "keygate-audit.db", TokenKeysFile, AdminCredentialFile, "ca.pem", "ca.key"} {
		if !backupName(name) {
			t.Errorf("backupName(%q) = false", name)
		}
	}
	planted := rewrite(t, dst, func(m *Manifest) {
		m.Files = append(m.Files, BackupFile{Name: StoreFile + "-wal", Size: 0, SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"})
	}, func(_ string, b []byte) []byte { return b })
	if _, err := Restore(ctx, planted, filepath.Join(t.TempDir(), "p"), false); err == nil || !strings.Contains(err.Error(), StoreFile+"-wal") {
		t.Errorf("restore of a backup naming a journal: %v", err)
	}
	long := rewrite(t, dst, func(*Manifest) {}, func(name string, b []byte) []byte {
		if name == TokenKeysFile {
			return append(b, make([]byte, 1<<20)...)
		}
		return b
	})
	target := filepath.Join(t.TempDir(), "l")
	if _, err := Restore(ctx, long, target, false); err == nil || !strings.Contains(err.Error(), "does not match its checksum") {
		t.Errorf("restore of an overlong file: %v", err)
	}
	var size int64
	filepath.Walk(target, func(_ string, fi os.FileInfo, _ error) error {
		if fi != nil && !fi.IsDir() {
			size += fi.Size()
		}
		return nil
	})
	if size > 1<<20 {
		t.Errorf("a refused restore left %d bytes", size)
	}
}
