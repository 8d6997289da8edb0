package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

func appendAudit(t *testing.T, s *Store, from, to int64) {
	t.Helper()
	var events []store.AuditEvent
	for seq := from; seq <= to; seq++ {
		events = append(events, store.AuditEvent{ChainSeq: seq, Time: time.Unix(seq, 0), Type: "query", User: "alice", Query: "SELECT 1", PrevHash: []byte{0}, Hash: []byte{1}})
	}
	if err := s.AppendAudit(context.Background(), events); err != nil {
		t.Fatal(err)
	}
}

// dirState is each file's size and modification time.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = fi.ModTime().String() + " " + time.Duration(fi.Size()).String()
	}
	return out
}

func TestReadOnlyReadsWhatTheServerWrote(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keygate.db")
	s, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendAudit(t, s, 1, 3)

	// Alongside the running writer: committed events are visible.
	ro, err := OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	appendAudit(t, s, 4, 5)
	events, err := ro.ListAudit(ctx, store.AuditQuery{AfterSeq: 1})
	if err != nil || len(events) != 4 {
		t.Fatalf("ListAudit alongside the writer = %d events, %v; want 4", len(events), err)
	}
	if last, err := ro.LastAudit(ctx); err != nil || last.Seq != 5 {
		t.Errorf("LastAudit = %d, %v; want 5", last.Seq, err)
	}
	// SQLite itself refuses writes on the read-only connections.
	if _, err := ro.s.audit.w.ExecContext(ctx, `INSERT INTO audit_events (seq, time, type, prev_hash, hash) VALUES (99, 0, 'x', x'00', x'01')`); err == nil {
		t.Error("INSERT through the read-only store succeeded")
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Stopped: reading changes no database file in data_dir. SQLite may
	// leave an empty WAL and its shared-memory index beside them, which
	// the server uses when it next starts.
	before := dirState(t, filepath.Dir(path))
	ro, err = OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	events, err = ro.ListAudit(ctx, store.AuditQuery{Type: "query"})
	if err != nil || len(events) != 5 {
		t.Errorf("ListAudit after the writer closed = %d events, %v; want 5", len(events), err)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	after := dirState(t, filepath.Dir(path))
	for name, st := range after {
		if strings.HasSuffix(name, "-wal") || strings.HasSuffix(name, "-shm") {
			continue
		}
		if before[name] != st {
			t.Errorf("%s changed while read-only: %q → %q", name, before[name], st)
		}
	}
	for name := range before {
		if _, ok := after[name]; !ok {
			t.Errorf("%s disappeared while read-only", name)
		}
	}
}

func TestReadOnlyRefusesMissingFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keygate.db")
	_, err := OpenReadOnly(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), path+" does not exist") || !strings.Contains(err.Error(), "data_dir") {
		t.Errorf("OpenReadOnly on an empty data_dir: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("OpenReadOnly created %d files", len(entries))
	}

	// The state without its audit log.
	s, err := Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.Remove(AuditPath(path)); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenReadOnly(context.Background(), path); err == nil || !strings.Contains(err.Error(), AuditPath(path)+" does not exist") {
		t.Errorf("OpenReadOnly without the audit file: %v", err)
	}
}

func TestReadOnlyRefusesOtherSchemas(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, change, want string
	}{
		{"newer", `INSERT INTO goose_db_version (version_id, is_applied) VALUES (9999, 1)`, "newer than this keygate knows"},
		{"older", `DELETE FROM goose_db_version WHERE version_id = (SELECT MAX(version_id) FROM goose_db_version)`, "start keygate server once to migrate it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keygate.db")
			s, err := Open(ctx, path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.audit.w.ExecContext(ctx, tc.change); err != nil {
				t.Fatal(err)
			}
			s.Close()
			_, err = OpenReadOnly(ctx, path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), AuditPath(path)) {
				t.Errorf("OpenReadOnly = %v, want an error about %s saying %q", err, AuditPath(path), tc.want)
			}
		})
	}
}

func TestReadOnlyRefusesAForeignFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keygate.db")
	if err := os.WriteFile(path, []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := OpenReadOnly(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), "is it a keygate store?") {
		t.Errorf("OpenReadOnly on a text file: %v", err)
	}
}
