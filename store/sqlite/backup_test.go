package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/store"
)

// A database that a newer keygate migrated further is refused with a
// message that says what to do, and is left as it was.
func TestNewerSchemaIsRefused(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ file string }{
		{"keygate.db"},
		{"keygate-audit.db"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keygate.db")
			s, err := Open(ctx, path, nil)
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			known := KnownSchemas().State
			if tc.file == "keygate-audit.db" {
				known = KnownSchemas().Audit
			}
			target := filepath.Join(filepath.Dir(path), tc.file)
			db, err := sql.Open("sqlite", "file:"+target)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (?, 1)`, known+3); err != nil {
				t.Fatal(err)
			}
			db.Close()

			_, err = Open(ctx, path, nil)
			var newer *NewerSchemaError
			if !errors.As(err, &newer) {
				t.Fatalf("Open of a newer schema: %v, want a NewerSchemaError", err)
			}
			want := fmt.Sprintf("%s was written by a newer keygate (schema %d, this binary knows up to %d): run that version or newer, or restore a backup taken with this one", tc.file, known+3, known)
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q\ndoes not say %q", err, want)
			}
		})
	}
}

func TestKnownSchemasMatchMigrations(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keygate.db")
	s, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	sum, err := Summarize(ctx, path, AuditPath(path))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Schemas != KnownSchemas() || sum.Schemas.State < 4 || sum.Schemas.Audit < 2 {
		t.Errorf("a fresh store has schemas %+v, KnownSchemas says %+v", sum.Schemas, KnownSchemas())
	}
}

// A snapshot taken while the store is written to is a consistent copy:
// its audit log holds at least every event written before the state was
// copied, and the copy opens as a store of its own.
func TestSnapshotWhileWriting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "keygate.db")
	s, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// One group and one audit event per step, audit after state,
			// as the server does.
			if _, err := s.CreateGroup(ctx, identity.Group{Name: fmt.Sprintf("g%d", i)}); err != nil {
				t.Error(err)
				return
			}
			prev := []byte{byte(i - 1)}
			if err := s.AppendAudit(ctx, []store.AuditEvent{{ChainSeq: int64(i), Type: "admin.group.create", PrevHash: prev, Hash: []byte{byte(i)}}}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	waitGroups(t, s, 20)
	stateCopy, auditCopy := filepath.Join(dir, "copy.db"), filepath.Join(dir, "copy-audit.db")
	if err := Snapshot(ctx, path, stateCopy, auditCopy); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()

	sum, err := Summarize(ctx, stateCopy, auditCopy)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Groups < 20 || sum.AuditLastSeq < sum.Groups {
		t.Errorf("copy holds %d groups and %d audit events: the audit copy misses events of the state copy", sum.Groups, sum.AuditLastSeq)
	}
	if !bytes.Equal(sum.AuditLastHash, []byte{byte(sum.AuditLastSeq)}) {
		t.Errorf("last hash %x for seq %d", sum.AuditLastHash, sum.AuditLastSeq)
	}
	for _, p := range []string{stateCopy, auditCopy} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", p, fi.Mode().Perm())
		}
	}
	copied, err := Open(ctx, stateCopy, nil)
	if err != nil {
		t.Fatalf("open the copy: %v", err)
	}
	copied.Close()
}

// A snapshot of a store no server has open (no -wal or -shm files) works.
func TestSnapshotOfClosedStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "keygate.db")
	s, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, identity.User{UserName: "ada", Active: true}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := Snapshot(ctx, path, filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")); err != nil {
		t.Fatal(err)
	}
	sum, err := Summarize(ctx, filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db"))
	if err != nil {
		t.Fatal(err)
	}
	if sum.People != 1 || sum.AuditLastSeq != 0 {
		t.Errorf("summary %+v, want one person and an empty audit log", sum)
	}
	if err := Snapshot(ctx, filepath.Join(dir, "missing.db"), filepath.Join(dir, "c.db"), filepath.Join(dir, "d.db")); err == nil {
		t.Error("a snapshot of a missing store succeeded")
	}
}

func waitGroups(t *testing.T, s *Store, n int) {
	t.Helper()
	for {
		gs, err := s.ListGroups(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(gs) >= n {
			return
		}
	}
}
