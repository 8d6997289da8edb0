package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"

	"github.com/pressly/goose/v3"
)

// NewerSchemaError is returned by Open for a database that a newer keygate
// has migrated past what this binary knows.
type NewerSchemaError struct {
	File   string // base name of the database file
	Schema int64  // the database's schema version
	Known  int64  // the newest this binary knows
}

func (e *NewerSchemaError) Error() string {
	return fmt.Sprintf("%s was written by a newer keygate (schema %d, this binary knows up to %d): run that version or newer, or restore a backup taken with this one",
		e.File, e.Schema, e.Known)
}

func migrationProvider(db *sql.DB, set string) (*goose.Provider, error) {
	sub, err := fs.Sub(migrations, "migrations/"+set)
	if err != nil {
		return nil, err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sub)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return p, nil
}

// newestMigration is the highest version p knows.
func newestMigration(p *goose.Provider) int64 {
	var v int64
	for _, s := range p.ListSources() {
		v = max(v, s.Version)
	}
	return v
}

// Schemas are the schema versions of a store's two files.
type Schemas struct {
	State int64 `json:"state"`
	Audit int64 `json:"audit"`
}

// KnownSchemas are the newest schema versions this binary can open.
func KnownSchemas() Schemas {
	var out Schemas
	for _, f := range []struct {
		set string
		v   *int64
	}{{"state", &out.State}, {"audit", &out.Audit}} {
		entries, err := fs.ReadDir(migrations, "migrations/"+f.set)
		if err != nil {
			panic(err) // embedded at build time
		}
		for _, e := range entries {
			var v int64
			if _, err := fmt.Sscanf(e.Name(), "%d_", &v); err == nil {
				*f.v = max(*f.v, v)
			}
		}
	}
	return out
}

// Snapshot copies the store at path — its state, then its audit log — to
// stateDst and auditDst, each a consistent point-in-time copy taken with
// VACUUM INTO on a connection of its own. It works while a server writes
// to the store: SQLite's WAL lets the copy read a snapshot without
// blocking the writer. The state is copied first: the audit log is
// append-only, so an audit copy taken after the state holds every event
// that the state's copy refers to. The destinations must not exist.
func Snapshot(ctx context.Context, path, stateDst, auditDst string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	for _, c := range []struct{ src, dst string }{{path, stateDst}, {AuditPath(path), auditDst}} {
		if err := vacuumInto(ctx, c.src, c.dst); err != nil {
			return err
		}
	}
	return nil
}

func vacuumInto(ctx context.Context, src, dst string) error {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	// mode=ro: the copy never writes to a live store, and an absent file
	// is an error rather than a new empty database.
	q.Add("mode", "ro")
	db, err := sql.Open("sqlite", "file:"+src+"?"+q.Encode())
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, dst); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	// VACUUM INTO creates the file with the process's umask; a copy of
	// the state is as secret as the state.
	if err := os.Chmod(dst, 0o600); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

// Summary is what a store holds, for a backup's manifest and a restore's
// check.
type Summary struct {
	Schemas Schemas `json:"schema"`
	People  int64   `json:"people"`
	Groups  int64   `json:"groups"`
	// AuditLastSeq and AuditLastHash are the newest audit event's; zero
	// and nil for an empty log.
	AuditLastSeq  int64  `json:"audit_last_seq"`
	AuditLastHash []byte `json:"audit_last_hash"`
}

// Summarize reads a Summary from the store files at statePath and
// auditPath without migrating or changing them.
func Summarize(ctx context.Context, statePath, auditPath string) (Summary, error) {
	var s Summary
	err := readOnly(ctx, statePath, func(db *sql.DB) error {
		var err error
		if s.Schemas.State, err = schemaVersion(ctx, db); err != nil {
			return err
		}
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM users`).Scan(&s.People); err != nil {
			return err
		}
		return db.QueryRowContext(ctx, `SELECT count(*) FROM groups`).Scan(&s.Groups)
	})
	if err != nil {
		return s, err
	}
	err = readOnly(ctx, auditPath, func(db *sql.DB) error {
		var err error
		if s.Schemas.Audit, err = schemaVersion(ctx, db); err != nil {
			return err
		}
		err = db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&s.AuditLastSeq, &s.AuditLastHash)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		return err
	})
	return s, err
}

func readOnly(ctx context.Context, path string, fn func(db *sql.DB) error) error {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer db.Close()
	if err := fn(db); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// schemaVersion is the highest applied goose migration of db.
func schemaVersion(ctx context.Context, db *sql.DB) (int64, error) {
	var v sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT max(version_id) FROM goose_db_version WHERE is_applied`).Scan(&v); err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	return v.Int64, nil
}
