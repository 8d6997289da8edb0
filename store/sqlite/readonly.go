package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/keygate/keygate/store"
)

// ReadOnly is a store in data_dir opened for reading only, for the CLI to
// answer from while the server is stopped: nothing is migrated, created or
// written, and SQLite refuses writes on these connections besides. (SQLite
// may create an empty WAL and its shared-memory index beside a database it
// reads, as any reader of a WAL database does; the server uses them when it
// next starts.) WAL also lets it read alongside a running server, seeing
// what the server has committed.
type ReadOnly struct {
	s *Store
}

// OpenReadOnly opens the store at path and its audit log at AuditPath(path)
// for reading. It refuses when either file is missing, is not a keygate
// store, or has a schema other than the one this keygate knows: a newer
// schema may hold what this binary would misread, and an older one is
// migrated by the server when it next starts.
func OpenReadOnly(ctx context.Context, path string) (*ReadOnly, error) {
	state, err := openReadOnlyFile(ctx, path, "state")
	if err != nil {
		return nil, err
	}
	audit, err := openReadOnlyFile(ctx, AuditPath(path), "audit")
	if err != nil {
		state.close()
		return nil, err
	}
	return &ReadOnly{s: &Store{state: state, audit: audit, now: time.Now}}, nil
}

func openReadOnlyFile(ctx context.Context, path, migrationSet string) (*file, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist: check data_dir in the config; keygate server creates it when it first starts", path)
	} else if err != nil {
		return nil, fmt.Errorf("open store %s read-only: %w", path, err)
	}
	q := url.Values{}
	q.Add("mode", "ro")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "query_only(1)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open store %s read-only: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	if err := checkSchema(ctx, db, path, migrationSet); err != nil {
		db.Close()
		return nil, err
	}
	// One handle serves both roles: every write through it fails.
	return &file{w: db, r: db}, nil
}

// checkSchema refuses a file whose migrations differ from this binary's.
// It reads goose's version table itself: goose would try to create the
// table where it is missing, which a read-only open must not attempt.
func checkSchema(ctx context.Context, db *sql.DB, path, migrationSet string) error {
	sub, err := fs.Sub(migrations, "migrations/"+migrationSet)
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sub)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	sources := p.ListSources()
	known := sources[len(sources)-1].Version
	var current sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT MAX(version_id) FROM goose_db_version`).Scan(&current); err != nil {
		return fmt.Errorf("open store %s read-only: read its schema version: %w (is it a keygate store?)", path, err)
	}
	switch {
	case current.Int64 > known:
		return fmt.Errorf("%s has schema version %d, newer than this keygate knows (%d): use the keygate binary the server runs", path, current.Int64, known)
	case current.Int64 < known:
		return fmt.Errorf("%s has schema version %d, older than this keygate's (%d): start keygate server once to migrate it, or use the keygate binary that wrote it", path, current.Int64, known)
	}
	return nil
}

// ListAudit is Store.ListAudit.
func (r *ReadOnly) ListAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditEvent, error) {
	return r.s.ListAudit(ctx, q)
}

// LastAudit is Store.LastAudit.
func (r *ReadOnly) LastAudit(ctx context.Context) (store.AuditEvent, error) {
	return r.s.LastAudit(ctx)
}

// ChainHead is Store.ChainHead.
func (r *ReadOnly) ChainHead(ctx context.Context, chain string) (store.AuditEvent, error) {
	return r.s.ChainHead(ctx, chain)
}

// Close closes both files.
func (r *ReadOnly) Close() error { return r.s.Close() }
