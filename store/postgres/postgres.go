// Package postgres is keygate's shared store: the state of several keygate
// servers in one PostgreSQL database, reached through pgx's pool and
// migrated with goose at open. It keeps the SQLite store's semantics, and
// its change feed crosses processes: every write transaction records its
// changes under a revision, a NOTIFY wakes the other servers, and a
// revision poll catches what a lost notification would miss.
//
// The database needs only a login role that owns it: no superuser, no
// extension.
package postgres

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the PostgreSQL backend.
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time
	feed *feed
	// locks holds this server's session locks: its node name and its
	// open login windows.
	locks *locker
}

var _ store.Store = (*Store)(nil)

// Option tunes Open.
type Option func(*options)

type options struct {
	now       func() time.Time
	poll      time.Duration
	retention time.Duration
}

// WithClock sets the clock the store stamps times with; the default is
// time.Now.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithPollInterval sets how often the change feed reads the revision when
// no notification woke it (default one second): the bound on how late a
// change reaches this server's watchers when a NOTIFY is lost.
func WithPollInterval(d time.Duration) Option { return func(o *options) { o.poll = d } }

// WithFeedRetention sets how long recorded changes are kept for servers
// that fell behind (default an hour). A server further behind than that
// sends its watchers a Resync instead of the changes it missed.
func WithFeedRetention(d time.Duration) Option { return func(o *options) { o.retention = d } }

// NewerSchemaError is returned by Open for a database that a newer keygate
// has migrated further than this one knows.
type NewerSchemaError struct {
	Schema, Known int64
}

func (e *NewerSchemaError) Error() string {
	return fmt.Sprintf("the state database has schema version %d, newer than this keygate knows (%d): upgrade keygate", e.Schema, e.Known)
}

// Open connects to the database at url (a PostgreSQL URL or key=value
// string; pool settings such as pool_max_conns go in it too), applies
// pending migrations and starts the change feed. Close releases it.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	o := options{now: time.Now, poll: time.Second, retention: time.Hour}
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parse error may quote the URL, password and all.
		return nil, errors.New("open state database: the URL does not parse")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open state database: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open state database: %w", err)
	}
	s := &Store{pool: pool, now: o.now, locks: &locker{pool: pool}}
	s.feed, err = startFeed(ctx, pool, o.poll, o.retention)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open state database: %w", err)
	}
	return s, nil
}

// migrationLockID is the advisory lock that keeps two servers starting at
// once from migrating at once.
const migrationLockID = 0x6b657967617465 // "keygate"

func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	// The others wait, checking every second for up to ten minutes: a
	// migration of a large state can take a while.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrationLockID), lock.WithLockTimeout(1, 600))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	have, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	var known int64
	for _, src := range p.ListSources() {
		known = max(known, src.Version)
	}
	if have > known {
		return &NewerSchemaError{Schema: have, Known: known}
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// Close stops the change feed and closes the pool.
func (s *Store) Close() error {
	s.feed.stop()
	s.locks.close()
	s.pool.Close()
	return nil
}

// Watch implements store.Store.
func (s *Store) Watch(ctx context.Context) <-chan store.Change { return s.feed.local.Watch(ctx) }

// FeedLag is how long ago the change feed last caught up with every
// change committed: about the poll interval at most while the database
// answers, and growing while it does not. A server whose feed lags may
// not have seen a revocation, so it admits no one new.
func (s *Store) FeedLag() time.Duration {
	return time.Since(time.Unix(0, s.feed.synced.Load()))
}

// querier is what both the pool and a transaction offer.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// maxAttempts bounds how often a write transaction is tried when
// PostgreSQL aborts it to break a deadlock.
const maxAttempts = 5

// tx runs fn in a write transaction, records the changes it reports in the
// feed inside the same transaction, and after the commit delivers them to
// this server's watchers before returning, as the SQLite store does. A
// transaction PostgreSQL aborts for a deadlock or a serialization failure
// is run again from the start, fn included, so fn must not keep what it
// saw.
func (s *Store) tx(ctx context.Context, fn func(tx pgx.Tx) ([]store.Change, error)) error {
	for attempt := 1; ; attempt++ {
		var changes []store.Change
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			var err error
			if changes, err = fn(tx); err != nil {
				return err
			}
			if len(changes) == 0 {
				return nil
			}
			return record(ctx, tx, changes, s.now())
		})
		if err != nil && retryable(err) && attempt < maxAttempts {
			continue
		}
		if err != nil {
			return err
		}
		if len(changes) > 0 {
			s.feed.catchUp(ctx)
		}
		return nil
	}
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

func isForeignKey(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23503"
}

func nanos(t time.Time) int64 { return t.UnixNano() }

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

func fromNullNanos(n *int64) time.Time {
	if n == nil {
		return time.Time{}
	}
	return fromNanos(*n)
}

func nullNanos(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	n := nanos(t)
	return &n
}

// fold is how a name is compared ignoring case: A-Z folded and nothing
// else, as SQLite's NOCASE does, whatever the database's collation.
func fold(expr string) string { return `lower(` + expr + ` COLLATE "C")` }

// ---- users

const userColumns = `id, user_name, email, display_name, external_id, active, attributes, profile, created, modified, version`

func scanUser(row pgx.Row) (identity.User, error) {
	var u identity.User
	var attrs string
	var created, modified int64
	if err := row.Scan(&u.ID, &u.UserName, &u.Email, &u.DisplayName, &u.ExternalID, &u.Active, &attrs, &u.Profile, &created, &modified, &u.Version); err != nil {
		return identity.User{}, err
	}
	if len(u.Profile) == 0 {
		u.Profile = nil
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

// profileBytes stores an empty profile as NULL, so that it reads back as
// none, as it does from SQLite.
func profileBytes(p []byte) []byte {
	if len(p) == 0 {
		return nil
	}
	return p
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
	err = s.tx(ctx, func(tx pgx.Tx) ([]store.Change, error) {
		_, err := tx.Exec(ctx, `INSERT INTO users (`+userColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			u.ID, u.UserName, u.Email, u.DisplayName, u.ExternalID, u.Active, attrs, profileBytes(u.Profile), nanos(now), nanos(now), u.Version)
		if isUnique(err) {
			return nil, fmt.Errorf("user %q: %w", u.UserName, store.ErrAlreadyExists)
		}
		if err != nil {
			return nil, err
		}
		return []store.Change{{Kind: store.UserChanged, User: u.UserName}}, nil
	})
	if err != nil {
		return identity.User{}, fmt.Errorf("create user %q: %w", u.UserName, err)
	}
	return u, nil
}

// GetUser implements store.Store.
func (s *Store) GetUser(ctx context.Context, id string) (identity.User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return identity.User{}, fmt.Errorf("user %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return identity.User{}, fmt.Errorf("get user %s: %w", id, err)
	}
	return u, nil
}

// GetUserByName implements store.Store.
func (s *Store) GetUserByName(ctx context.Context, name string) (identity.User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE `+fold("user_name")+` = `+fold("$1::text"), name))
	if errors.Is(err, pgx.ErrNoRows) {
		return identity.User{}, fmt.Errorf("user %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return identity.User{}, fmt.Errorf("get user %q: %w", name, err)
	}
	return u, nil
}

// ListUsers implements store.Store.
func (s *Store) ListUsers(ctx context.Context, q store.UserQuery) ([]identity.User, error) {
	var where []string
	var args []any
	if q.ExternalID != "" {
		args = append(args, q.ExternalID)
		where = append(where, fmt.Sprintf(`external_id = $%d`, len(args)))
	}
	if q.Email != "" {
		args = append(args, q.Email)
		where = append(where, fold("email")+` = `+fold(fmt.Sprintf("$%d::text", len(args))))
	}
	sql := `SELECT ` + userColumns + ` FROM users`
	if len(where) > 0 {
		sql += ` WHERE ` + strings.Join(where, ` AND `)
	}
	users, err := collect(ctx, s.pool, sql+` ORDER BY created, id`, args, scanUser)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return users, nil
}

// UpdateUser implements store.Store. fn may run more than once (see tx).
func (s *Store) UpdateUser(ctx context.Context, id string, fn func(identity.User) (identity.User, error)) (identity.User, error) {
	var out identity.User
	err := s.tx(ctx, func(tx pgx.Tx) ([]store.Change, error) {
		old, err := scanUser(tx.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
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
		_, err = tx.Exec(ctx, `UPDATE users SET user_name = $1, email = $2, display_name = $3, external_id = $4, active = $5, attributes = $6, profile = $7, modified = $8, version = $9 WHERE id = $10`,
			u.UserName, u.Email, u.DisplayName, u.ExternalID, u.Active, attrs, profileBytes(u.Profile), nanos(u.Modified), u.Version, u.ID)
		if isUnique(err) {
			return nil, fmt.Errorf("user %q: %w", u.UserName, store.ErrAlreadyExists)
		}
		if err != nil {
			return nil, err
		}
		if u.UserName != old.UserName {
			if _, err := tx.Exec(ctx, `UPDATE membership_history SET user_name = $1 WHERE user_id = $2 AND left_at IS NULL`, u.UserName, u.ID); err != nil {
				return nil, err
			}
		}
		// A disabled person loses their sign-in sessions for good: enabling
		// them again does not bring back a session signed in before.
		if old.Active && !u.Active {
			if _, err := tx.Exec(ctx, `UPDATE sessions SET revoked = $1 WHERE user_id = $2 AND revoked IS NULL`, nanos(u.Modified), u.ID); err != nil {
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
	err := s.tx(ctx, func(tx pgx.Tx) ([]store.Change, error) {
		var name string
		err := tx.QueryRow(ctx, `SELECT user_name FROM users WHERE id = $1 FOR UPDATE`, id).Scan(&name)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("user %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `UPDATE membership_history SET left_at = $1, left_by = 'user deleted' WHERE user_id = $2 AND left_at IS NULL`, nanos(s.now()), id); err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM users WHERE id = $1`, id); err != nil {
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

func scanGroup(row pgx.Row) (identity.Group, error) {
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
	err := s.tx(ctx, func(tx pgx.Tx) ([]store.Change, error) {
		_, err := tx.Exec(ctx, `INSERT INTO groups (id, name, external_id, created, modified, version) VALUES ($1, $2, $3, $4, $5, $6)`,
			g.ID, g.Name, g.ExternalID, nanos(now), nanos(now), g.Version)
		if isUnique(err) {
			return nil, fmt.Errorf("group %q: %w", g.Name, store.ErrAlreadyExists)
		}
		if err != nil {
			return nil, err
		}
		return []store.Change{{Kind: store.GroupChanged, Group: g.Name}}, nil
	})
	if err != nil {
		return identity.Group{}, fmt.Errorf("create group %q: %w", g.Name, err)
	}
	return g, nil
}

// GetGroup implements store.Store.
func (s *Store) GetGroup(ctx context.Context, id string) (identity.Group, error) {
	g, err := scanGroup(s.pool.QueryRow(ctx, `SELECT `+groupColumns+` FROM groups g WHERE g.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return identity.Group{}, fmt.Errorf("group %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return identity.Group{}, fmt.Errorf("get group %s: %w", id, err)
	}
	return g, nil
}

// GetGroupByName implements store.Store.
func (s *Store) GetGroupByName(ctx context.Context, name string) (identity.Group, error) {
	g, err := scanGroup(s.pool.QueryRow(ctx, `SELECT `+groupColumns+` FROM groups g WHERE `+fold("g.name")+` = `+fold("$1::text"), name))
	if errors.Is(err, pgx.ErrNoRows) {
		return identity.Group{}, fmt.Errorf("group %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return identity.Group{}, fmt.Errorf("get group %q: %w", name, err)
	}
	return g, nil
}

// ListGroups implements store.Store.
func (s *Store) ListGroups(ctx context.Context) ([]identity.Group, error) {
	groups, err := collect(ctx, s.pool, `SELECT `+groupColumns+` FROM groups g ORDER BY g.created, g.id`, nil, scanGroup)
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	return groups, nil
}

// groupForUpdate reads a group inside tx and locks it until the commit:
// every change to a group's members goes through its row, so that a
// replacing update and an addition at once are applied one after the
// other.
func groupForUpdate(ctx context.Context, tx pgx.Tx, id string) (identity.Group, error) {
	g, err := scanGroup(tx.QueryRow(ctx, `SELECT `+groupColumns+` FROM groups g WHERE g.id = $1 FOR UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return g, fmt.Errorf("group %s: %w", id, store.ErrNotFound)
	}
	return g, err
}

// UpdateGroup implements store.Store. fn may run more than once (see tx).
func (s *Store) UpdateGroup(ctx context.Context, id, source string, fn func(identity.Group) (identity.Group, store.MemberChange, error)) (identity.Group, error) {
	var out identity.Group
	err := s.tx(ctx, func(tx pgx.Tx) ([]store.Change, error) {
		old, err := groupForUpdate(ctx, tx, id)
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
		_, err = tx.Exec(ctx, `UPDATE groups SET name = $1, external_id = $2, modified = $3, version = $4 WHERE id = $5`,
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
func (s *Store) changeMembers(ctx context.Context, tx pgx.Tx, g identity.Group, mc store.MemberChange, source string) ([]store.Change, error) {
	add, remove := mc.Add, mc.Remove
	if mc.Replace {
		ids, err := collect(ctx, tx, `SELECT user_id FROM members WHERE group_id = $1`, []any{g.ID}, func(r pgx.Row) (string, error) {
			var id string
			return id, r.Scan(&id)
		})
		if err != nil {
			return nil, err
		}
		current := make(map[string]bool, len(ids))
		for _, id := range ids {
			current[id] = true
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

// addMember makes a user a member of g inside tx; it changes nothing (and
// reports no change) when they already are. The caller holds g's row.
func (s *Store) addMember(ctx context.Context, tx pgx.Tx, g identity.Group, userID, source string) ([]store.Change, error) {
	var userName string
	// KEY SHARE keeps the user from being deleted until the commit without
	// waiting for updates of their other fields.
	if err := tx.QueryRow(ctx, `SELECT user_name FROM users WHERE id = $1 FOR KEY SHARE`, userID).Scan(&userName); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("user %s: %w", userID, store.ErrNotFound)
		}
		return nil, err
	}
	tag, err := tx.Exec(ctx, `INSERT INTO members (group_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, g.ID, userID)
	if isForeignKey(err) {
		return nil, fmt.Errorf("user %s: %w", userID, store.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if tag.RowsAffected() == 0 {
		return nil, nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO membership_history (group_id, group_name, user_id, user_name, joined, joined_by) VALUES ($1, $2, $3, $4, $5, $6)`,
		g.ID, g.Name, userID, userName, nanos(s.now()), source); err != nil {
		return nil, err
	}
	return []store.Change{{Kind: store.MembershipChanged, User: userName, Group: g.Name}}, nil
}

// removeMember ends a membership inside tx; ErrNotFound if there was none.
// The caller holds g's row.
func (s *Store) removeMember(ctx context.Context, tx pgx.Tx, g identity.Group, userID, source string) ([]store.Change, error) {
	var userName string
	err := tx.QueryRow(ctx, `DELETE FROM members m USING users u WHERE u.id = m.user_id AND m.group_id = $1 AND m.user_id = $2 RETURNING u.user_name`,
		g.ID, userID).Scan(&userName)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("membership of %s in %s: %w", userID, g.ID, store.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `UPDATE membership_history SET left_at = $1, left_by = $2 WHERE group_id = $3 AND user_id = $4 AND left_at IS NULL`,
		nanos(s.now()), source, g.ID, userID); err != nil {
		return nil, err
	}
	return []store.Change{{Kind: store.MembershipChanged, User: userName, Group: g.Name}}, nil
}

// DeleteGroup implements store.Store.
func (s *Store) DeleteGroup(ctx context.Context, id string) error {
	err := s.tx(ctx, func(tx pgx.Tx) ([]store.Change, error) {
		g, err := groupForUpdate(ctx, tx, id)
		if err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `UPDATE membership_history SET left_at = $1, left_by = 'group deleted' WHERE group_id = $2 AND left_at IS NULL`, nanos(s.now()), id); err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM groups WHERE id = $1`, id); err != nil {
			return nil, err
		}
		return []store.Change{{Kind: store.GroupChanged, Group: g.Name}}, nil
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
	err := s.tx(ctx, func(tx pgx.Tx) ([]store.Change, error) {
		g, err := groupForUpdate(ctx, tx, groupID)
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
	err := s.tx(ctx, func(tx pgx.Tx) ([]store.Change, error) {
		g, err := groupForUpdate(ctx, tx, groupID)
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

// ListMembers implements store.Store.
func (s *Store) ListMembers(ctx context.Context, groupID string) ([]identity.Member, error) {
	members, err := collect(ctx, s.pool, `SELECT u.id, u.user_name FROM members m JOIN users u ON u.id = m.user_id WHERE m.group_id = $1 ORDER BY `+fold("u.user_name"),
		[]any{groupID}, func(r pgx.Row) (identity.Member, error) {
			var m identity.Member
			return m, r.Scan(&m.UserID, &m.UserName)
		})
	if err != nil {
		return nil, fmt.Errorf("list members of %s: %w", groupID, err)
	}
	return members, nil
}

// GroupsOf implements store.Store.
func (s *Store) GroupsOf(ctx context.Context, userID string) ([]identity.Group, error) {
	groups, err := collect(ctx, s.pool, `SELECT `+groupColumns+` FROM members mm JOIN groups g ON g.id = mm.group_id WHERE mm.user_id = $1 ORDER BY `+fold("g.name"),
		[]any{userID}, scanGroup)
	if err != nil {
		return nil, fmt.Errorf("groups of %s: %w", userID, err)
	}
	return groups, nil
}

// scanMembership reads group name, user name, joined, joined_by and
// left_at.
func scanMembership(row pgx.Row) (identity.Membership, error) {
	var m identity.Membership
	var joined int64
	var left *int64
	if err := row.Scan(&m.Group, &m.User, &joined, &m.Source, &left); err != nil {
		return m, err
	}
	m.Joined, m.Left = fromNanos(joined), fromNullNanos(left)
	return m, nil
}

// MembershipHistory implements store.Store.
func (s *Store) MembershipHistory(ctx context.Context, groupName string) ([]identity.Membership, error) {
	h, err := collect(ctx, s.pool, `SELECT group_name, user_name, joined, joined_by, left_at FROM membership_history
		WHERE `+fold("group_name")+` = `+fold("$1::text")+` OR group_id IN (SELECT id FROM groups WHERE `+fold("name")+` = `+fold("$1::text")+`)
		ORDER BY joined, id`, []any{groupName}, scanMembership)
	if err != nil {
		return nil, fmt.Errorf("membership history of %q: %w", groupName, err)
	}
	return h, nil
}

// MembershipsAt implements store.Store.
func (s *Store) MembershipsAt(ctx context.Context, at time.Time) ([]identity.Membership, error) {
	ms, err := collect(ctx, s.pool, `SELECT COALESCE(g.name, h.group_name), h.user_name, h.joined, h.joined_by, h.left_at
		FROM membership_history h LEFT JOIN groups g ON g.id = h.group_id
		WHERE h.joined <= $1 AND (h.left_at IS NULL OR h.left_at > $1)
		ORDER BY COALESCE(g.name, h.group_name) COLLATE "C", h.user_name COLLATE "C"`, []any{nanos(at)}, scanMembership)
	if err != nil {
		return nil, fmt.Errorf("memberships at %s: %w", at, err)
	}
	return ms, nil
}

// ---- sessions

const sessionColumns = `s.id, u.user_name, s.created, s.expires, s.revoked, s.source, s.mfa, s.tags, s.groups`

func scanSession(row pgx.Row) (identity.Session, error) {
	var ss identity.Session
	var created, expires int64
	var revoked *int64
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
	tags, err := attributesJSON(ss.Tags)
	if err != nil {
		return identity.Session{}, fmt.Errorf("create session for %q: %w", ss.User, err)
	}
	groups := []byte("[]")
	if ss.Groups != nil {
		if groups, err = json.Marshal(ss.Groups); err != nil {
			return identity.Session{}, fmt.Errorf("create session for %q: %w", ss.User, err)
		}
	}
	err = s.tx(ctx, func(tx pgx.Tx) ([]store.Change, error) {
		var userID, userName string
		err := tx.QueryRow(ctx, `SELECT id, user_name FROM users WHERE `+fold("user_name")+` = `+fold("$1::text")+` FOR KEY SHARE`, ss.User).Scan(&userID, &userName)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("user %q: %w", ss.User, store.ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		_, err = tx.Exec(ctx, `INSERT INTO sessions (id, secret_hash, user_id, created, expires, source, mfa, tags, groups) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			ss.ID, credentialHash, userID, nanos(ss.Created), nanos(ss.Expires), ss.Source, ss.MFA, tags, string(groups))
		if isUnique(err) {
			return nil, fmt.Errorf("session credential: %w", store.ErrAlreadyExists)
		}
		if err != nil {
			return nil, err
		}
		ss.User = userName
		return []store.Change{{Kind: store.SessionChanged, User: userName}}, nil
	})
	if err != nil {
		return identity.Session{}, fmt.Errorf("create session for %q: %w", ss.User, err)
	}
	return ss, nil
}

// GetSessionByHash implements store.Store.
func (s *Store) GetSessionByHash(ctx context.Context, credentialHash []byte) (identity.Session, error) {
	ss, err := scanSession(s.pool.QueryRow(ctx, `SELECT `+sessionColumns+` FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.secret_hash = $1`, credentialHash))
	if errors.Is(err, pgx.ErrNoRows) {
		return identity.Session{}, fmt.Errorf("session: %w", store.ErrNotFound)
	}
	if err != nil {
		return identity.Session{}, fmt.Errorf("get session: %w", err)
	}
	return ss, nil
}

// GetSession implements store.Store.
func (s *Store) GetSession(ctx context.Context, id string) (identity.Session, error) {
	ss, err := scanSession(s.pool.QueryRow(ctx, `SELECT `+sessionColumns+` FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return identity.Session{}, fmt.Errorf("session %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return identity.Session{}, fmt.Errorf("get session %s: %w", id, err)
	}
	return ss, nil
}

// ListSessions implements store.Store.
func (s *Store) ListSessions(ctx context.Context, userName string) ([]identity.Session, error) {
	q := `SELECT ` + sessionColumns + ` FROM sessions s JOIN users u ON u.id = s.user_id`
	var args []any
	if userName != "" {
		q += ` WHERE ` + fold("u.user_name") + ` = ` + fold("$1::text")
		args = append(args, userName)
	}
	sessions, err := collect(ctx, s.pool, q+` ORDER BY s.created, s.id`, args, scanSession)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return sessions, nil
}

// RevokeSession implements store.Store.
func (s *Store) RevokeSession(ctx context.Context, id string, at time.Time) error {
	err := s.tx(ctx, func(tx pgx.Tx) ([]store.Change, error) {
		var userName string
		err := tx.QueryRow(ctx, `SELECT u.user_name FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1 FOR UPDATE OF s`, id).Scan(&userName)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("session %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `UPDATE sessions SET revoked = $1 WHERE id = $2 AND revoked IS NULL`, nanos(at), id); err != nil {
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

func scanToken(row pgx.Row) (identity.ProvisioningToken, error) {
	var t identity.ProvisioningToken
	var created int64
	var expires, revoked, lastUsed *int64
	if err := row.Scan(&t.ID, &t.Name, &created, &expires, &revoked, &lastUsed); err != nil {
		return t, err
	}
	t.Created, t.Expires, t.Revoked, t.LastUsed = fromNanos(created), fromNullNanos(expires), fromNullNanos(revoked), fromNullNanos(lastUsed)
	return t, nil
}

// CreateProvisioningToken implements store.Store.
func (s *Store) CreateProvisioningToken(ctx context.Context, t identity.ProvisioningToken, secretHash []byte) (identity.ProvisioningToken, error) {
	t.ID = uuid.NewString()
	if t.Created.IsZero() {
		t.Created = s.now().UTC()
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO provisioning_tokens (id, name, secret_hash, created, expires) VALUES ($1, $2, $3, $4, $5)`,
		t.ID, t.Name, secretHash, nanos(t.Created), nullNanos(t.Expires))
	if isUnique(err) {
		return identity.ProvisioningToken{}, fmt.Errorf("create provisioning token %q: %w", t.Name, store.ErrAlreadyExists)
	}
	if err != nil {
		return identity.ProvisioningToken{}, fmt.Errorf("create provisioning token %q: %w", t.Name, err)
	}
	return t, nil
}

// GetProvisioningTokenByHash implements store.Store.
func (s *Store) GetProvisioningTokenByHash(ctx context.Context, secretHash []byte) (identity.ProvisioningToken, error) {
	t, err := scanToken(s.pool.QueryRow(ctx, `SELECT `+tokenColumns+` FROM provisioning_tokens WHERE secret_hash = $1`, secretHash))
	if errors.Is(err, pgx.ErrNoRows) {
		return t, fmt.Errorf("provisioning token: %w", store.ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("get provisioning token: %w", err)
	}
	return t, nil
}

// ListProvisioningTokens implements store.Store.
func (s *Store) ListProvisioningTokens(ctx context.Context) ([]identity.ProvisioningToken, error) {
	tokens, err := collect(ctx, s.pool, `SELECT `+tokenColumns+` FROM provisioning_tokens ORDER BY created, id`, nil, scanToken)
	if err != nil {
		return nil, fmt.Errorf("list provisioning tokens: %w", err)
	}
	return tokens, nil
}

// RevokeProvisioningToken implements store.Store.
func (s *Store) RevokeProvisioningToken(ctx context.Context, name string, at time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE provisioning_tokens SET revoked = $1 WHERE name = $2 AND revoked IS NULL`, nanos(at), name)
	if err != nil {
		return fmt.Errorf("revoke provisioning token %q: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("revoke provisioning token %q: %w", name, store.ErrNotFound)
	}
	return nil
}

// TouchProvisioningToken implements store.Store.
func (s *Store) TouchProvisioningToken(ctx context.Context, id string, at time.Time) error {
	if _, err := s.pool.Exec(ctx, `UPDATE provisioning_tokens SET last_used = $1 WHERE id = $2`, nanos(at), id); err != nil {
		return fmt.Errorf("touch provisioning token %s: %w", id, err)
	}
	return nil
}

// ---- config history

// configLockID is the advisory lock under which a config version is
// compared with the newest and added, so that two servers loading the
// same rules at once record them once.
const configLockID = 0x6b67636f6e666967 // "kgconfig"

// AddConfigVersion implements store.Store.
func (s *Store) AddConfigVersion(ctx context.Context, v store.ConfigVersion) (bool, error) {
	added := false
	err := s.tx(ctx, func(tx pgx.Tx) ([]store.Change, error) {
		added = false
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(configLockID)); err != nil {
			return nil, err
		}
		var last string
		err := tx.QueryRow(ctx, `SELECT digest FROM config_history ORDER BY loaded DESC, id DESC LIMIT 1`).Scan(&last)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, err
		}
		if last == v.Digest {
			return nil, nil
		}
		rules := v.Rules
		if rules == nil {
			rules = []byte{}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO config_history (loaded, digest, rules, permission_sets, assignments, people) VALUES ($1, $2, $3, $4, $5, $6)`,
			nanos(v.Loaded), v.Digest, rules, v.PermissionSets, v.Assignments, v.People); err != nil {
			return nil, err
		}
		added = true
		return nil, nil
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
	err := s.pool.QueryRow(ctx, `SELECT id, loaded, digest, rules, permission_sets, assignments, people FROM config_history
		WHERE loaded <= $1 ORDER BY loaded DESC, id DESC LIMIT 1`, nanos(at)).
		Scan(&v.ID, &loaded, &v.Digest, &v.Rules, &v.PermissionSets, &v.Assignments, &v.People)
	if errors.Is(err, pgx.ErrNoRows) {
		return v, fmt.Errorf("config version at %s: %w", at, store.ErrNotFound)
	}
	if err != nil {
		return v, fmt.Errorf("config version at %s: %w", at, err)
	}
	v.Loaded = fromNanos(loaded)
	return v, nil
}

// ---- helpers

func collect[T any](ctx context.Context, q querier, sql string, args []any, scan func(pgx.Row) (T, error)) ([]T, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
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
