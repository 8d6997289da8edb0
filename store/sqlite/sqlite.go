// Package sqlite is keygate's embedded store: one SQLite file in data_dir,
// pure Go (modernc.org/sqlite), migrated with goose at open. Writes go through
// a single connection so SQLite's one-writer rule never surfaces as "database
// is locked"; reads use a separate pool and see every committed write (WAL).
package sqlite

import (
	"bytes"
	"compress/flate"
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/store"
)

//go:embed migrations
var migrations embed.FS

// Store is the SQLite backend: the state (people, groups, sessions) in one
// file and the audit log in another beside it, so that the audit's constant
// writes never invalidate the page cache of the identity lookups every
// connection makes.
type Store struct {
	state *file
	audit *file
	feed  store.Feed
	now   func() time.Time
	cache *readCache
}

var _ store.Store = (*Store)(nil)

// AuditPath is where the audit log of the store at path lives.
func AuditPath(path string) string {
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "-audit" + ext
}

// Open opens (creating if needed) the store at path, with its audit log at
// AuditPath(path), and applies pending migrations. now is the clock; nil
// means time.Now.
func Open(ctx context.Context, path string, now func() time.Time) (*Store, error) {
	if now == nil {
		now = time.Now
	}
	state, err := openFile(ctx, path, "state")
	if err != nil {
		return nil, err
	}
	audit, err := openFile(ctx, AuditPath(path), "audit")
	if err != nil {
		state.close()
		return nil, err
	}
	return &Store{state: state, audit: audit, now: now, cache: newReadCache()}, nil
}

// file is one SQLite database. Writes go through a single connection so
// SQLite's one-writer rule never surfaces as "database is locked"; reads use
// a separate pool and see every committed write (WAL).
type file struct {
	w, r *sql.DB
	// stmts caches prepared read statements by their text: the gateway
	// authorizes every connection twice, and parsing the SQL again each
	// time was most of the cost.
	stmts sync.Map
	// writes caches prepared write statements on w, by a key the caller
	// chooses: the audit inserts, by rows, run for every batch of events.
	writes sync.Map
}

func openFile(ctx context.Context, path, migrationSet string) (*file, error) {
	dsn := func(extra string) string {
		q := url.Values{}
		q.Add("_pragma", "foreign_keys(1)")
		q.Add("_pragma", "busy_timeout(10000)")
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(NORMAL)")
		return "file:" + path + "?" + q.Encode() + extra
	}
	w, err := sql.Open("sqlite", dsn("&_txlock=immediate"))
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	if err := migrate(ctx, w, migrationSet, filepath.Base(path)); err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", dsn("&_pragma=query_only(1)"))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	return &file{w: w, r: r}, nil
}

// migrate brings the database up to the newest embedded migration of set.
// A database that a newer keygate already migrated further is refused
// before anything runs: this binary does not know what that schema means,
// and writing to it could lose what the newer one stores.
func migrate(ctx context.Context, db *sql.DB, set, name string) error {
	p, err := migrationProvider(db, set)
	if err != nil {
		return err
	}
	have, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if known := newestMigration(p); have > known {
		return &NewerSchemaError{File: name, Schema: have, Known: known}
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

func (f *file) close() error {
	for _, m := range []*sync.Map{&f.stmts, &f.writes} {
		m.Range(func(_, st any) bool {
			st.(*sql.Stmt).Close()
			return true
		})
	}
	return errors.Join(f.r.Close(), f.w.Close())
}

// prepared returns the cached read statement for q, preparing it once.
func (f *file) prepared(ctx context.Context, q string) (*sql.Stmt, error) {
	return prepareOnce(ctx, &f.stmts, f.r, q, q)
}

// preparedWrite returns the cached write statement that text(n) makes,
// preparing it once; text runs only the first time. It must not be
// called inside a transaction of f: preparing takes the writing
// connection.
func (f *file) preparedWrite(ctx context.Context, n int, text func(int) string) (*sql.Stmt, error) {
	if st, ok := f.writes.Load(n); ok {
		return st.(*sql.Stmt), nil
	}
	return prepareOnce(ctx, &f.writes, f.w, n, text(n))
}

func prepareOnce(ctx context.Context, cache *sync.Map, db *sql.DB, key any, q string) (*sql.Stmt, error) {
	if st, ok := cache.Load(key); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if prev, loaded := cache.LoadOrStore(key, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// errRow is a row whose Scan reports an error that came before the query.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

func (f *file) queryRow(ctx context.Context, q string, args ...any) scanner {
	st, err := f.prepared(ctx, q)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

func (f *file) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := f.prepared(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// Close closes both files.
func (s *Store) Close() error {
	return errors.Join(s.audit.close(), s.state.close())
}

// Watch implements store.Store.
func (s *Store) Watch(ctx context.Context) <-chan store.Change { return s.feed.Watch(ctx) }

// tx runs fn in a write transaction of f.
func (f *file) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := f.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// tx runs fn in a write transaction on the state and publishes the changes
// it reports once they are committed.
func (s *Store) tx(ctx context.Context, fn func(tx *sql.Tx) ([]store.Change, error)) error {
	var changes []store.Change
	err := s.state.tx(ctx, func(tx *sql.Tx) error {
		var err error
		changes, err = fn(tx)
		return err
	})
	if err != nil {
		return err
	}
	s.cache.invalidate()
	at := s.now()
	for i := range changes {
		changes[i].At = at
	}
	s.feed.Publish(changes...)
	return nil
}

func nanos(t time.Time) int64 { return t.UnixNano() }

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

func fromNullNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return fromNanos(n.Int64)
}

func isUnique(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
}

// ---- users

const userColumns = `id, user_name, email, display_name, external_id, active, attributes, profile, created, modified, version`

type scanner interface{ Scan(dest ...any) error }

func scanUser(row scanner) (identity.User, error) {
	var u identity.User
	var attrs, profile string
	var created, modified int64
	if err := row.Scan(&u.ID, &u.UserName, &u.Email, &u.DisplayName, &u.ExternalID, &u.Active, &attrs, &profile, &created, &modified, &u.Version); err != nil {
		return identity.User{}, err
	}
	if profile != "" {
		u.Profile = []byte(profile)
	}
	if err := json.Unmarshal([]byte(attrs), &u.Attributes); err != nil {
		return identity.User{}, fmt.Errorf("user %s attributes: %w", u.ID, err)
	}
	u.Created, u.Modified = fromNanos(created), fromNanos(modified)
	return u, nil
}

func attributesJSON(a map[string]string) (string, error) {
	if a == nil {
		a = map[string]string{}
	}
	b, err := json.Marshal(a)
	return string(b), err
}

// CreateUser implements store.Store.
func (s *Store) CreateUser(ctx context.Context, u identity.User) (identity.User, error) {
	if err := identity.ValidateUserName(u.UserName); err != nil {
		return identity.User{}, fmt.Errorf("create user: %w", err)
	}
	now := s.now().UTC()
	u.ID = uuid.NewString()
	u.Created, u.Modified, u.Version = now, now, 1
	attrs, err := attributesJSON(u.Attributes)
	if err != nil {
		return identity.User{}, fmt.Errorf("create user %q: %w", u.UserName, err)
	}
	err = s.tx(ctx, func(tx *sql.Tx) ([]store.Change, error) {
		_, err := tx.ExecContext(ctx, `INSERT INTO users (`+userColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			u.ID, u.UserName, u.Email, u.DisplayName, u.ExternalID, u.Active, attrs, string(u.Profile), nanos(now), nanos(now), u.Version)
		if isUnique(err) {
			return nil, fmt.Errorf("user %q: %w", u.UserName, store.ErrAlreadyExists)
		}
		return []store.Change{{Kind: store.UserChanged, User: u.UserName}}, err
	})
	if err != nil {
		return identity.User{}, fmt.Errorf("create user %q: %w", u.UserName, err)
	}
	return u, nil
}

// GetUser implements store.Store.
func (s *Store) GetUser(ctx context.Context, id string) (identity.User, error) {
	u, err := scanUser(s.state.queryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return identity.User{}, fmt.Errorf("user %s: %w", id, store.ErrNotFound)
	}
	return u, err
}

// GetUserByName implements store.Store.
func (s *Store) GetUserByName(ctx context.Context, name string) (identity.User, error) {
	return through(s.cache, s.cache.users, nocaseKey(name), cloneUser, func() (identity.User, error) {
		u, err := scanUser(s.state.queryRow(ctx, `SELECT `+userColumns+` FROM users WHERE user_name = ? COLLATE NOCASE`, name))
		if errors.Is(err, sql.ErrNoRows) {
			return identity.User{}, fmt.Errorf("user %q: %w", name, store.ErrNotFound)
		}
		return u, err
	})
}

// ListUsers implements store.Store.
func (s *Store) ListUsers(ctx context.Context, q store.UserQuery) ([]identity.User, error) {
	var rows *sql.Rows
	var err error
	switch {
	case q.ExternalID != "" && q.Email != "":
		rows, err = s.state.query(ctx, `SELECT `+userColumns+` FROM users WHERE external_id = ? AND email = ? COLLATE NOCASE ORDER BY created, id`, q.ExternalID, q.Email)
	case q.ExternalID != "":
		rows, err = s.state.query(ctx, `SELECT `+userColumns+` FROM users WHERE external_id = ? ORDER BY created, id`, q.ExternalID)
	case q.Email != "":
		rows, err = s.state.query(ctx, `SELECT `+userColumns+` FROM users WHERE email = ? COLLATE NOCASE ORDER BY created, id`, q.Email)
	default:
		rows, err = s.state.query(ctx, `SELECT `+userColumns+` FROM users ORDER BY created, id`)
	}
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return collect(rows, scanUser)
}

// UpdateUser implements store.Store.
func (s *Store) UpdateUser(ctx context.Context, id string, fn func(identity.User) (identity.User, error)) (identity.User, error) {
	var out identity.User
	err := s.tx(ctx, func(tx *sql.Tx) ([]store.Change, error) {
		old, err := scanUser(tx.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("user %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		u, err := fn(old)
		if err != nil {
			return nil, err
		}
		if err := identity.ValidateUserName(u.UserName); err != nil {
			return nil, err
		}
		u.ID, u.Created, u.Modified, u.Version = old.ID, old.Created, s.now().UTC(), old.Version+1
		attrs, err := attributesJSON(u.Attributes)
		if err != nil {
			return nil, err
		}
		_, err = tx.ExecContext(ctx, `UPDATE users SET user_name = ?, email = ?, display_name = ?, external_id = ?, active = ?, attributes = ?, profile = ?, modified = ?, version = ? WHERE id = ?`,
			u.UserName, u.Email, u.DisplayName, u.ExternalID, u.Active, attrs, string(u.Profile), nanos(u.Modified), u.Version, u.ID)
		if isUnique(err) {
			return nil, fmt.Errorf("user %q: %w", u.UserName, store.ErrAlreadyExists)
		}
		if err != nil {
			return nil, err
		}
		if u.UserName != old.UserName {
			if _, err := tx.ExecContext(ctx, `UPDATE membership_history SET user_name = ? WHERE user_id = ? AND left_at IS NULL`, u.UserName, u.ID); err != nil {
				return nil, err
			}
		}
		// A disabled person loses their sign-in sessions for good: enabling
		// them again does not bring back a session signed in before.
		if old.Active && !u.Active {
			if _, err := tx.ExecContext(ctx, `UPDATE sessions SET revoked = ? WHERE user_id = ? AND revoked IS NULL`, nanos(u.Modified), u.ID); err != nil {
				return nil, err
			}
		}
		out = u
		changes := []store.Change{{Kind: store.UserChanged, User: old.UserName}}
		if u.UserName != old.UserName {
			changes = append(changes, store.Change{Kind: store.UserChanged, User: u.UserName})
		}
		return changes, nil
	})
	if err != nil {
		return identity.User{}, fmt.Errorf("update user %s: %w", id, err)
	}
	return out, nil
}

// DeleteUser implements store.Store.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	err := s.tx(ctx, func(tx *sql.Tx) ([]store.Change, error) {
		var name string
		err := tx.QueryRowContext(ctx, `SELECT user_name FROM users WHERE id = ?`, id).Scan(&name)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("user %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE membership_history SET left_at = ?, left_by = 'user deleted' WHERE user_id = ? AND left_at IS NULL`, nanos(s.now()), id); err != nil {
			return nil, err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM users WHERE id = ?`, id); err != nil {
			return nil, err
		}
		return []store.Change{{Kind: store.UserChanged, User: name}}, nil
	})
	if err != nil {
		return fmt.Errorf("delete user %s: %w", id, err)
	}
	return nil
}

// ---- groups

const groupColumns = `g.id, g.name, g.external_id, g.created, g.modified, g.version`

func scanGroup(row scanner) (identity.Group, error) {
	var g identity.Group
	var created, modified int64
	if err := row.Scan(&g.ID, &g.Name, &g.ExternalID, &created, &modified, &g.Version); err != nil {
		return identity.Group{}, err
	}
	g.Created, g.Modified = fromNanos(created), fromNanos(modified)
	return g, nil
}

// CreateGroup implements store.Store.
func (s *Store) CreateGroup(ctx context.Context, g identity.Group) (identity.Group, error) {
	if err := identity.ValidateGroupName(g.Name); err != nil {
		return identity.Group{}, fmt.Errorf("create group: %w", err)
	}
	now := s.now().UTC()
	g.ID = uuid.NewString()
	g.Created, g.Modified, g.Version = now, now, 1
	err := s.tx(ctx, func(tx *sql.Tx) ([]store.Change, error) {
		_, err := tx.ExecContext(ctx, `INSERT INTO groups (id, name, external_id, created, modified, version) VALUES (?, ?, ?, ?, ?, ?)`,
			g.ID, g.Name, g.ExternalID, nanos(now), nanos(now), g.Version)
		if isUnique(err) {
			return nil, fmt.Errorf("group %q: %w", g.Name, store.ErrAlreadyExists)
		}
		return []store.Change{{Kind: store.GroupChanged, Group: g.Name}}, err
	})
	if err != nil {
		return identity.Group{}, fmt.Errorf("create group %q: %w", g.Name, err)
	}
	return g, nil
}

// GetGroup implements store.Store.
func (s *Store) GetGroup(ctx context.Context, id string) (identity.Group, error) {
	g, err := scanGroup(s.state.queryRow(ctx, `SELECT `+groupColumns+` FROM groups g WHERE g.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return identity.Group{}, fmt.Errorf("group %s: %w", id, store.ErrNotFound)
	}
	return g, err
}

// GetGroupByName implements store.Store.
func (s *Store) GetGroupByName(ctx context.Context, name string) (identity.Group, error) {
	g, err := scanGroup(s.state.queryRow(ctx, `SELECT `+groupColumns+` FROM groups g WHERE g.name = ? COLLATE NOCASE`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return identity.Group{}, fmt.Errorf("group %q: %w", name, store.ErrNotFound)
	}
	return g, err
}

// ListGroups implements store.Store.
func (s *Store) ListGroups(ctx context.Context) ([]identity.Group, error) {
	rows, err := s.state.query(ctx, `SELECT `+groupColumns+` FROM groups g ORDER BY g.created, g.id`)
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	return collect(rows, scanGroup)
}

// UpdateGroup implements store.Store.
func (s *Store) UpdateGroup(ctx context.Context, id, source string, fn func(identity.Group) (identity.Group, store.MemberChange, error)) (identity.Group, error) {
	var out identity.Group
	err := s.tx(ctx, func(tx *sql.Tx) ([]store.Change, error) {
		old, err := groupInTx(ctx, tx, id)
		if err != nil {
			return nil, err
		}
		g, mc, err := fn(old)
		if err != nil {
			return nil, err
		}
		if err := identity.ValidateGroupName(g.Name); err != nil {
			return nil, err
		}
		g.ID, g.Created, g.Modified, g.Version = old.ID, old.Created, s.now().UTC(), old.Version+1
		_, err = tx.ExecContext(ctx, `UPDATE groups SET name = ?, external_id = ?, modified = ?, version = ? WHERE id = ?`,
			g.Name, g.ExternalID, nanos(g.Modified), g.Version, g.ID)
		if isUnique(err) {
			return nil, fmt.Errorf("group %q: %w", g.Name, store.ErrAlreadyExists)
		}
		if err != nil {
			return nil, err
		}
		changes := []store.Change{{Kind: store.GroupChanged, Group: old.Name}}
		if g.Name != old.Name {
			changes = append(changes, store.Change{Kind: store.GroupChanged, Group: g.Name})
		}
		memberChanges, err := s.changeMembers(ctx, tx, g, mc, source)
		if err != nil {
			return nil, err
		}
		out = g
		return append(changes, memberChanges...), nil
	})
	if err != nil {
		return identity.Group{}, fmt.Errorf("update group %s: %w", id, err)
	}
	return out, nil
}

// changeMembers applies mc to group g inside tx.
func (s *Store) changeMembers(ctx context.Context, tx *sql.Tx, g identity.Group, mc store.MemberChange, source string) ([]store.Change, error) {
	add, remove := mc.Add, mc.Remove
	if mc.Replace {
		current, err := memberIDs(ctx, tx, g.ID)
		if err != nil {
			return nil, err
		}
		add, remove = mc.Replacing(current)
	}
	var changes []store.Change
	for _, userID := range add {
		c, err := s.addMember(ctx, tx, g, userID, source)
		if err != nil {
			return nil, err
		}
		changes = append(changes, c...)
	}
	for _, userID := range remove {
		c, err := s.removeMember(ctx, tx, g, userID, source)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		changes = append(changes, c...)
	}
	return changes, nil
}

func memberIDs(ctx context.Context, tx *sql.Tx, groupID string) (map[string]bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT user_id FROM members WHERE group_id = ?`, groupID)
	if err != nil {
		return nil, err
	}
	ids, err := collect(rows, func(r scanner) (string, error) {
		var id string
		return id, r.Scan(&id)
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

// addMember makes a user a member of g inside tx; it changes nothing (and
// reports no change) when they already are.
func (s *Store) addMember(ctx context.Context, tx *sql.Tx, g identity.Group, userID, source string) ([]store.Change, error) {
	var userName string
	if err := tx.QueryRowContext(ctx, `SELECT user_name FROM users WHERE id = ?`, userID).Scan(&userName); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("user %s: %w", userID, store.ErrNotFound)
		}
		return nil, err
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO members (group_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING`, g.ID, userID)
	if err != nil {
		return nil, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO membership_history (group_id, group_name, user_id, user_name, joined, joined_by) VALUES (?, ?, ?, ?, ?, ?)`,
		g.ID, g.Name, userID, userName, nanos(s.now()), source); err != nil {
		return nil, err
	}
	return []store.Change{{Kind: store.MembershipChanged, User: userName, Group: g.Name}}, nil
}

// removeMember ends a membership inside tx; ErrNotFound if there was none.
func (s *Store) removeMember(ctx context.Context, tx *sql.Tx, g identity.Group, userID, source string) ([]store.Change, error) {
	var userName string
	err := tx.QueryRowContext(ctx, `SELECT u.user_name FROM members m JOIN users u ON u.id = m.user_id WHERE m.group_id = ? AND m.user_id = ?`,
		g.ID, userID).Scan(&userName)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("membership of %s in %s: %w", userID, g.ID, store.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM members WHERE group_id = ? AND user_id = ?`, g.ID, userID); err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE membership_history SET left_at = ?, left_by = ? WHERE group_id = ? AND user_id = ? AND left_at IS NULL`,
		nanos(s.now()), source, g.ID, userID); err != nil {
		return nil, err
	}
	return []store.Change{{Kind: store.MembershipChanged, User: userName, Group: g.Name}}, nil
}

// DeleteGroup implements store.Store.
func (s *Store) DeleteGroup(ctx context.Context, id string) error {
	err := s.tx(ctx, func(tx *sql.Tx) ([]store.Change, error) {
		var name string
		err := tx.QueryRowContext(ctx, `SELECT name FROM groups WHERE id = ?`, id).Scan(&name)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("group %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE membership_history SET left_at = ?, left_by = 'group deleted' WHERE group_id = ? AND left_at IS NULL`, nanos(s.now()), id); err != nil {
			return nil, err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM groups WHERE id = ?`, id); err != nil {
			return nil, err
		}
		return []store.Change{{Kind: store.GroupChanged, Group: name}}, nil
	})
	if err != nil {
		return fmt.Errorf("delete group %s: %w", id, err)
	}
	return nil
}

// ---- membership

// AddMember implements store.Store.
func (s *Store) AddMember(ctx context.Context, groupID, userID, source string) (bool, error) {
	var added bool
	err := s.tx(ctx, func(tx *sql.Tx) ([]store.Change, error) {
		g, err := groupInTx(ctx, tx, groupID)
		if err != nil {
			return nil, err
		}
		changes, err := s.addMember(ctx, tx, g, userID, source)
		added = len(changes) > 0
		return changes, err
	})
	if err != nil {
		return false, fmt.Errorf("add member %s to group %s: %w", userID, groupID, err)
	}
	return added, nil
}

// RemoveMember implements store.Store.
func (s *Store) RemoveMember(ctx context.Context, groupID, userID, source string) error {
	err := s.tx(ctx, func(tx *sql.Tx) ([]store.Change, error) {
		g, err := groupInTx(ctx, tx, groupID)
		if err != nil {
			return nil, err
		}
		return s.removeMember(ctx, tx, g, userID, source)
	})
	if err != nil {
		return fmt.Errorf("remove member %s from group %s: %w", userID, groupID, err)
	}
	return nil
}

func groupInTx(ctx context.Context, tx *sql.Tx, id string) (identity.Group, error) {
	g, err := scanGroup(tx.QueryRowContext(ctx, `SELECT `+groupColumns+` FROM groups g WHERE g.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return g, fmt.Errorf("group %s: %w", id, store.ErrNotFound)
	}
	return g, err
}

// ListMembers implements store.Store.
func (s *Store) ListMembers(ctx context.Context, groupID string) ([]identity.Member, error) {
	rows, err := s.state.query(ctx, `SELECT u.id, u.user_name FROM members m JOIN users u ON u.id = m.user_id WHERE m.group_id = ? ORDER BY u.user_name COLLATE NOCASE`, groupID)
	if err != nil {
		return nil, fmt.Errorf("list members of %s: %w", groupID, err)
	}
	return collect(rows, func(r scanner) (identity.Member, error) {
		var m identity.Member
		return m, r.Scan(&m.UserID, &m.UserName)
	})
}

// GroupsOf implements store.Store.
func (s *Store) GroupsOf(ctx context.Context, userID string) ([]identity.Group, error) {
	return through(s.cache, s.cache.groups, userID, cloneGroups, func() ([]identity.Group, error) {
		rows, err := s.state.query(ctx, `SELECT `+groupColumns+` FROM members mm JOIN groups g ON g.id = mm.group_id WHERE mm.user_id = ? ORDER BY g.name COLLATE NOCASE`, userID)
		if err != nil {
			return nil, fmt.Errorf("groups of %s: %w", userID, err)
		}
		return collect(rows, scanGroup)
	})
}

// scanMembership reads group name, user name, joined, joined_by and
// left_at.
func scanMembership(row scanner) (identity.Membership, error) {
	var m identity.Membership
	var joined int64
	var left sql.NullInt64
	if err := row.Scan(&m.Group, &m.User, &joined, &m.Source, &left); err != nil {
		return m, err
	}
	m.Joined, m.Left = fromNanos(joined), fromNullNanos(left)
	return m, nil
}

// MembershipHistory implements store.Store.
func (s *Store) MembershipHistory(ctx context.Context, groupName string) ([]identity.Membership, error) {
	rows, err := s.state.query(ctx, `SELECT group_name, user_name, joined, joined_by, left_at FROM membership_history
		WHERE group_name = ?1 COLLATE NOCASE OR group_id IN (SELECT id FROM groups WHERE name = ?1 COLLATE NOCASE)
		ORDER BY joined, id`, groupName)
	if err != nil {
		return nil, fmt.Errorf("membership history of %q: %w", groupName, err)
	}
	return collect(rows, scanMembership)
}

// MembershipsAt implements store.Store.
func (s *Store) MembershipsAt(ctx context.Context, at time.Time) ([]identity.Membership, error) {
	rows, err := s.state.query(ctx, `SELECT COALESCE(g.name, h.group_name), h.user_name, h.joined, h.joined_by, h.left_at
		FROM membership_history h LEFT JOIN groups g ON g.id = h.group_id
		WHERE h.joined <= ?1 AND (h.left_at IS NULL OR h.left_at > ?1)
		ORDER BY 1, 2`, nanos(at))
	if err != nil {
		return nil, fmt.Errorf("memberships at %s: %w", at, err)
	}
	return collect(rows, scanMembership)
}

// ---- sessions

const sessionColumns = `s.id, u.user_name, s.created, s.expires, s.revoked, s.source, s.mfa, s.tags, s.groups`

func scanSession(row scanner) (identity.Session, error) {
	var ss identity.Session
	var created, expires int64
	var revoked sql.NullInt64
	var tags, groups string
	if err := row.Scan(&ss.ID, &ss.User, &created, &expires, &revoked, &ss.Source, &ss.MFA, &tags, &groups); err != nil {
		return identity.Session{}, err
	}
	ss.Created, ss.Expires, ss.Revoked = fromNanos(created), fromNanos(expires), fromNullNanos(revoked)
	if err := json.Unmarshal([]byte(tags), &ss.Tags); err != nil {
		return identity.Session{}, fmt.Errorf("session %s tags: %w", ss.ID, err)
	}
	if err := json.Unmarshal([]byte(groups), &ss.Groups); err != nil {
		return identity.Session{}, fmt.Errorf("session %s groups: %w", ss.ID, err)
	}
	return ss, nil
}

// CreateSession implements store.Store.
func (s *Store) CreateSession(ctx context.Context, ss identity.Session, credentialHash []byte) (identity.Session, error) {
	ss.ID = uuid.NewString()
	if ss.Created.IsZero() {
		ss.Created = s.now().UTC()
	}
	err := s.tx(ctx, func(tx *sql.Tx) ([]store.Change, error) {
		var userID, userName string
		err := tx.QueryRowContext(ctx, `SELECT id, user_name FROM users WHERE user_name = ? COLLATE NOCASE`, ss.User).Scan(&userID, &userName)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("user %q: %w", ss.User, store.ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		ss.User = userName
		tags, err := attributesJSON(ss.Tags)
		if err != nil {
			return nil, err
		}
		groups, err := json.Marshal(ss.Groups)
		if err != nil {
			return nil, err
		}
		if ss.Groups == nil {
			groups = []byte("[]")
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO sessions (id, secret_hash, user_id, created, expires, source, mfa, tags, groups) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			ss.ID, credentialHash, userID, nanos(ss.Created), nanos(ss.Expires), ss.Source, ss.MFA, tags, string(groups))
		if isUnique(err) {
			return nil, fmt.Errorf("session credential: %w", store.ErrAlreadyExists)
		}
		return []store.Change{{Kind: store.SessionChanged, User: userName}}, err
	})
	if err != nil {
		return identity.Session{}, fmt.Errorf("create session for %q: %w", ss.User, err)
	}
	return ss, nil
}

// GetSessionByHash implements store.Store.
func (s *Store) GetSessionByHash(ctx context.Context, credentialHash []byte) (identity.Session, error) {
	ss, err := scanSession(s.state.queryRow(ctx, `SELECT `+sessionColumns+` FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.secret_hash = ?`, credentialHash))
	if errors.Is(err, sql.ErrNoRows) {
		return identity.Session{}, fmt.Errorf("session: %w", store.ErrNotFound)
	}
	return ss, err
}

// GetSession implements store.Store.
func (s *Store) GetSession(ctx context.Context, id string) (identity.Session, error) {
	return through(s.cache, s.cache.sessions, id, cloneSession, func() (identity.Session, error) {
		ss, err := scanSession(s.state.queryRow(ctx, `SELECT `+sessionColumns+` FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return identity.Session{}, fmt.Errorf("session %s: %w", id, store.ErrNotFound)
		}
		return ss, err
	})
}

// ListSessions implements store.Store.
func (s *Store) ListSessions(ctx context.Context, userName string) ([]identity.Session, error) {
	q := `SELECT ` + sessionColumns + ` FROM sessions s JOIN users u ON u.id = s.user_id`
	var args []any
	if userName != "" {
		q += ` WHERE u.user_name = ? COLLATE NOCASE`
		args = append(args, userName)
	}
	rows, err := s.state.query(ctx, q+` ORDER BY s.created`, args...)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return collect(rows, scanSession)
}

// RevokeSession implements store.Store.
func (s *Store) RevokeSession(ctx context.Context, id string, at time.Time) error {
	err := s.tx(ctx, func(tx *sql.Tx) ([]store.Change, error) {
		var userName string
		err := tx.QueryRowContext(ctx, `SELECT u.user_name FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?`, id).Scan(&userName)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("session %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE sessions SET revoked = ? WHERE id = ? AND revoked IS NULL`, nanos(at), id); err != nil {
			return nil, err
		}
		return []store.Change{{Kind: store.SessionChanged, User: userName}}, nil
	})
	if err != nil {
		return fmt.Errorf("revoke session %s: %w", id, err)
	}
	return nil
}

// ---- provisioning tokens

const tokenColumns = `id, name, created, expires, revoked, last_used`

func scanToken(row scanner) (identity.ProvisioningToken, error) {
	var t identity.ProvisioningToken
	var created int64
	var expires, revoked, lastUsed sql.NullInt64
	if err := row.Scan(&t.ID, &t.Name, &created, &expires, &revoked, &lastUsed); err != nil {
		return t, err
	}
	t.Created, t.Expires, t.Revoked, t.LastUsed = fromNanos(created), fromNullNanos(expires), fromNullNanos(revoked), fromNullNanos(lastUsed)
	return t, nil
}

func nullNanos(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: nanos(t), Valid: true}
}

// CreateProvisioningToken implements store.Store.
func (s *Store) CreateProvisioningToken(ctx context.Context, t identity.ProvisioningToken, secretHash []byte) (identity.ProvisioningToken, error) {
	t.ID = uuid.NewString()
	if t.Created.IsZero() {
		t.Created = s.now().UTC()
	}
	err := s.tx(ctx, func(tx *sql.Tx) ([]store.Change, error) {
		_, err := tx.ExecContext(ctx, `INSERT INTO provisioning_tokens (id, name, secret_hash, created, expires) VALUES (?, ?, ?, ?, ?)`,
			t.ID, t.Name, secretHash, nanos(t.Created), nullNanos(t.Expires))
		if isUnique(err) {
			return nil, fmt.Errorf("provisioning token %q: %w", t.Name, store.ErrAlreadyExists)
		}
		return nil, err
	})
	if err != nil {
		return identity.ProvisioningToken{}, fmt.Errorf("create provisioning token %q: %w", t.Name, err)
	}
	return t, nil
}

// GetProvisioningTokenByHash implements store.Store.
func (s *Store) GetProvisioningTokenByHash(ctx context.Context, secretHash []byte) (identity.ProvisioningToken, error) {
	t, err := scanToken(s.state.queryRow(ctx, `SELECT `+tokenColumns+` FROM provisioning_tokens WHERE secret_hash = ?`, secretHash))
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("provisioning token: %w", store.ErrNotFound)
	}
	return t, err
}

// ListProvisioningTokens implements store.Store.
func (s *Store) ListProvisioningTokens(ctx context.Context) ([]identity.ProvisioningToken, error) {
	rows, err := s.state.query(ctx, `SELECT `+tokenColumns+` FROM provisioning_tokens ORDER BY created, id`)
	if err != nil {
		return nil, fmt.Errorf("list provisioning tokens: %w", err)
	}
	return collect(rows, scanToken)
}

// RevokeProvisioningToken implements store.Store.
func (s *Store) RevokeProvisioningToken(ctx context.Context, name string, at time.Time) error {
	err := s.tx(ctx, func(tx *sql.Tx) ([]store.Change, error) {
		res, err := tx.ExecContext(ctx, `UPDATE provisioning_tokens SET revoked = ? WHERE name = ? AND revoked IS NULL`, nanos(at), name)
		if err != nil {
			return nil, err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil, fmt.Errorf("provisioning token %q: %w", name, store.ErrNotFound)
		}
		return nil, nil
	})
	if err != nil {
		return fmt.Errorf("revoke provisioning token %q: %w", name, err)
	}
	return nil
}

// TouchProvisioningToken implements store.Store.
func (s *Store) TouchProvisioningToken(ctx context.Context, id string, at time.Time) error {
	err := s.tx(ctx, func(tx *sql.Tx) ([]store.Change, error) {
		_, err := tx.ExecContext(ctx, `UPDATE provisioning_tokens SET last_used = ? WHERE id = ?`, nanos(at), id)
		return nil, err
	})
	if err != nil {
		return fmt.Errorf("touch provisioning token %s: %w", id, err)
	}
	return nil
}

// ---- audit

const auditColumns = `seq, time, type, actor, user_name, database, access, client, session_id, query, query_z, reason, detail, prev_hash, hash`

// compressQueryAbove is the statement length from which the audit file
// keeps the text deflated: SQL compresses several times over, and the
// padding an attacker adds to hide a statement compresses best of all.
const compressQueryAbove = 4 << 10

func scanAudit(row scanner) (store.AuditEvent, error) {
	var e store.AuditEvent
	var t int64
	var detail string
	var queryZ []byte
	if err := row.Scan(&e.Seq, &t, &e.Type, &e.Actor, &e.User, &e.Database, &e.Access, &e.Client, &e.SessionID, &e.Query, &queryZ, &e.Reason, &detail, &e.PrevHash, &e.Hash); err != nil {
		return e, err
	}
	e.ChainSeq = e.Seq
	if queryZ != nil {
		q, err := io.ReadAll(flate.NewReader(bytes.NewReader(queryZ)))
		if err != nil {
			return e, fmt.Errorf("audit event %d: stored statement: %w", e.Seq, err)
		}
		e.Query = string(q)
	}
	e.Time, e.Detail = fromNanos(t), []byte(detail)
	return e, nil
}

// storedQuery is how a statement is kept: as text, or deflated when long.
func storedQuery(q string) (string, []byte, error) {
	if len(q) < compressQueryAbove {
		return q, nil, nil
	}
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, flate.BestSpeed)
	if err != nil {
		return "", nil, err
	}
	if _, err := io.WriteString(w, q); err != nil {
		return "", nil, err
	}
	if err := w.Close(); err != nil {
		return "", nil, err
	}
	return "", b.Bytes(), nil
}

// auditRowsPerInsert is how many events one INSERT writes. Each
// statement execution costs far more than a row (binding, a context
// watch, the virtual machine's start), and the gateway records an event
// per statement, so a batch goes in as few statements as this allows.
const auditRowsPerInsert = 64

// ErrOneChain is returned by AppendAudit for an event of a named chain:
// a SQLite store serves one server, whose chain is "".
var ErrOneChain = errors.New("the SQLite store keeps one audit chain, the unnamed one")

// AppendAudit implements store.Store. The log has one chain, so an
// event's position is its place in the chain.
func (s *Store) AppendAudit(ctx context.Context, events []store.AuditEvent) error {
	for _, e := range events {
		if e.Chain != "" {
			return fmt.Errorf("append audit event %d of chain %q: %w", e.ChainSeq, e.Chain, ErrOneChain)
		}
	}
	// The statements are prepared before the transaction: the audit
	// file has one writing connection, which the transaction holds.
	full, err := s.audit.preparedWrite(ctx, auditRowsPerInsert, insertAudit)
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	rest, err := s.audit.preparedWrite(ctx, len(events)%auditRowsPerInsert, insertAudit)
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	args := make([]any, 0, min(len(events), auditRowsPerInsert)*auditFields)
	err = s.audit.tx(ctx, func(tx *sql.Tx) error {
		for chunk := range slices.Chunk(events, auditRowsPerInsert) {
			args = args[:0]
			for _, e := range chunk {
				query, queryZ, err := storedQuery(e.Query)
				if err != nil {
					return fmt.Errorf("event %d: %w", e.ChainSeq, err)
				}
				// Detail is stored byte for byte: it is covered by the hash.
				args = append(args, e.ChainSeq, nanos(e.Time), e.Type, e.Actor, e.User, e.Database, e.Access, e.Client, e.SessionID, query, queryZ, e.Reason, string(e.Detail), e.PrevHash, e.Hash)
			}
			stmt := full
			if len(chunk) < auditRowsPerInsert {
				stmt = rest
			}
			if _, err := tx.StmtContext(ctx, stmt).ExecContext(ctx, args...); err != nil {
				return fmt.Errorf("events %d to %d: %w", chunk[0].ChainSeq, chunk[len(chunk)-1].ChainSeq, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	return nil
}

// auditFields is the number of columns in auditColumns.
const auditFields = 15

// insertAudit is the statement that inserts n events; n = 0 stands for a
// batch that is a whole number of full inserts, which never runs it.
func insertAudit(n int) string {
	row := "(?" + strings.Repeat(", ?", auditFields-1) + ")"
	return `INSERT INTO audit_events (` + auditColumns + `) VALUES ` + row + strings.Repeat(", "+row, max(n, 1)-1)
}

// LastAudit implements store.Store.
func (s *Store) LastAudit(ctx context.Context) (store.AuditEvent, error) {
	e, err := scanAudit(s.audit.w.QueryRowContext(ctx, `SELECT `+auditColumns+` FROM audit_events ORDER BY seq DESC LIMIT 1`))
	if errors.Is(err, sql.ErrNoRows) {
		return store.AuditEvent{}, fmt.Errorf("audit log is empty: %w", store.ErrNotFound)
	}
	return e, err
}

// ChainHead implements store.Store.
func (s *Store) ChainHead(ctx context.Context, chain string) (store.AuditEvent, error) {
	if chain != "" {
		return store.AuditEvent{}, fmt.Errorf("audit chain %q: %w", chain, store.ErrNotFound)
	}
	return s.LastAudit(ctx)
}

// ListAudit implements store.Store.
func (s *Store) ListAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditEvent, error) {
	var where []string
	var args []any
	if q.User != "" {
		where, args = append(where, `user_name = ? COLLATE NOCASE`), append(args, q.User)
	}
	if q.Database != "" {
		where, args = append(where, `database = ?`), append(args, q.Database)
	}
	if q.Type != "" {
		where, args = append(where, `(type = ? OR substr(type, 1, ?) = ?)`), append(args, q.Type, len(q.Type)+1, q.Type+".")
	}
	if !q.Since.IsZero() {
		where, args = append(where, `time >= ?`), append(args, nanos(q.Since))
	}
	if !q.Until.IsZero() {
		where, args = append(where, `time < ?`), append(args, nanos(q.Until))
	}
	if q.AfterSeq > 0 {
		where, args = append(where, `seq > ?`), append(args, q.AfterSeq)
	}
	sqlText := `SELECT ` + auditColumns + ` FROM audit_events`
	if len(where) > 0 {
		sqlText += ` WHERE ` + strings.Join(where, ` AND `)
	}
	sqlText += ` ORDER BY seq`
	if q.Limit > 0 {
		sqlText += ` LIMIT ?`
		args = append(args, q.Limit)
	}
	rows, err := s.audit.query(ctx, sqlText, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return collect(rows, scanAudit)
}

// ---- helpers

func collect[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// ---- config history

// AddConfigVersion implements store.Store.
func (s *Store) AddConfigVersion(ctx context.Context, v store.ConfigVersion) (bool, error) {
	added := false
	err := s.tx(ctx, func(tx *sql.Tx) ([]store.Change, error) {
		var last string
		err := tx.QueryRowContext(ctx, `SELECT digest FROM config_history ORDER BY loaded DESC, id DESC LIMIT 1`).Scan(&last)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
		if last == v.Digest {
			return nil, nil
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO config_history (loaded, digest, rules, permission_sets, assignments, people) VALUES (?, ?, ?, ?, ?, ?)`,
			nanos(v.Loaded), v.Digest, v.Rules, v.PermissionSets, v.Assignments, v.People)
		added = err == nil
		return nil, err
	})
	if err != nil {
		return false, fmt.Errorf("record config version: %w", err)
	}
	return added, nil
}

// ConfigVersionAt implements store.Store.
func (s *Store) ConfigVersionAt(ctx context.Context, at time.Time) (store.ConfigVersion, error) {
	var v store.ConfigVersion
	var loaded int64
	err := s.state.queryRow(ctx, `SELECT id, loaded, digest, rules, permission_sets, assignments, people FROM config_history
		WHERE loaded <= ? ORDER BY loaded DESC, id DESC LIMIT 1`, nanos(at)).
		Scan(&v.ID, &loaded, &v.Digest, &v.Rules, &v.PermissionSets, &v.Assignments, &v.People)
	if errors.Is(err, sql.ErrNoRows) {
		return v, fmt.Errorf("config version at %s: %w", at, store.ErrNotFound)
	}
	if err != nil {
		return v, fmt.Errorf("config version at %s: %w", at, err)
	}
	v.Loaded = fromNanos(loaded)
	return v, nil
}
