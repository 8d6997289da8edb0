// Package postgres keeps keygate's per-person roles in a PostgreSQL database
// in shape and opens connections as them.
//
// For every configured database there are three group roles,
// keygate_<db>_ro, keygate_<db>_rw and keygate_<db>_admin, holding exactly
// that level's grants on the configured schemas (default privileges included,
// so new tables are covered). A person reaches the database as a role named
// <user>.<level> ("alice.ro"), a member of one group role and of nothing else,
// NOLOGIN at rest.
//
// Login is just in time: for each connection keygate sets a random password
// (as a SCRAM verifier, so the password never reaches the server), marks the
// role LOGIN for a minute at most, connects, and sets it back to NOLOGIN
// with no password before the person sees the session. Nobody ever holds a
// credential for these roles.
//
// A person can still race keygate: PostgreSQL lets a role change its own
// password, so from inside a session someone can set one they know while a
// login window is open and log in directly. A watcher ends every backend of
// a keygate-managed role that keygate did not open within a second or so
// and reports it; a pg_hba.conf rule that lets those roles in only from
// keygate's address stops it outright. Ending a session ends its backend
// too: Terminate returns once the backend is gone.
package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/upstream"
	"github.com/keygate/keygate/upstream/pool"
)

// Config describes one upstream database.
type Config = upstream.Config

// ErrUnavailable wraps failures to reach the upstream server at all.
var ErrUnavailable = errors.New("upstream database unavailable")

// ErrAdminLogin wraps the upstream's refusal of keygate's admin role: a
// wrong password (admin.password_env) or a pg_hba.conf line.
var ErrAdminLogin = errors.New("the upstream refused keygate's admin role: check admin.user, the password in admin.password_env and pg_hba.conf")

// The comments on the roles keygate creates. A role of the same name
// without its comment belongs to someone else and is never taken over, and
// a person role keeps only memberships in roles that carry groupMarker.
const (
	roleMarker   = "managed by keygate: person role"
	groupMarker  = "managed by keygate: group role"
	peopleMarker = "managed by keygate: every person role"
)

// Upstream manages one upstream database.
type Upstream struct {
	cfg    Config
	base   *pgconn.Config
	admin  *pgxpool.Pool
	server *server
	log    *slog.Logger

	groupsMu    sync.Mutex
	groupsReady bool

	// ready holds the person roles set up for this database since start.
	readyMu sync.Mutex
	ready   map[string]bool

	// checkMu guards the outcome of the last Check: connections wait for
	// a passing one.
	checkMu   sync.Mutex
	checkedAt time.Time
	checkErr  error
	checkOK   atomic.Bool
	offset    atomic.Int64 // clockOffset, in nanoseconds
	hba       atomic.Int32 // HBA

	// gone are the backends keygate is ending and the waits for them.
	gone goneWaits

	// pool keeps people's connections between sessions, within the
	// database's connection budget.
	pool *pool.Pool[*Conn]

	// noted holds what was last logged about the upstream per subject;
	// hbaReport says what Check found of pg_hba.conf.
	notedMu   sync.Mutex
	noted     map[string]string
	hbaReport string
}

// New prepares an upstream. It does not connect: a database that is down at
// start only refuses connections to itself. Every Upstream of a process
// shares servers.
func New(cfg Config, servers *Servers, log *slog.Logger) (*Upstream, error) {
	host, port, err := net.SplitHostPort(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: address %q: %w", cfg.Name, cfg.Address, err)
	}
	conn := []string{kv("host", host), kv("port", port), kv("dbname", cfg.Database), kv("sslmode", cfg.TLS), "connect_timeout=10"}
	if cfg.TLSCAFile != "" {
		conn = append(conn, kv("sslrootcert", cfg.TLSCAFile))
	}
	base, err := pgconn.ParseConfig(strings.Join(conn, " "))
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cfg.Name, err)
	}
	base.RuntimeParams = map[string]string{}
	// Never hand a password to a server (or a man in the middle) that asks
	// for it in cleartext.
	base.RequireAuth = "!password"
	u := &Upstream{cfg: cfg, base: base, server: servers.server(cfg.Address), log: log.With("database", cfg.Name), ready: map[string]bool{}, noted: map[string]string{}}

	pc, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cfg.Name, err)
	}
	pc.ConnConfig.Config = *base.Copy()
	pc.ConnConfig.User = cfg.AdminUser
	pc.ConnConfig.Password = cfg.AdminPassword
	// keygate's admin role runs queries in databases where people may create
	// objects (admin sessions own objects in the configured schemas): with
	// the default search_path, a function planted in public would shadow a
	// built-in and run with the admin role's CREATEROLE. Only pg_catalog is
	// searched, and pg_temp last.
	pc.ConnConfig.RuntimeParams = map[string]string{"application_name": "keygate", "search_path": "pg_catalog, pg_temp"}
	pc.ConnConfig.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		level := slog.LevelDebug
		// pg_terminate_backend warns of a backend that exited between
		// keygate listing it and signalling it: the end it asked for.
		if n.Severity == "WARNING" && !strings.Contains(n.Message, "is not a PostgreSQL backend process") {
			level = slog.LevelWarn
		}
		u.log.Log(context.Background(), level, "upstream notice", "severity", n.Severity, "message", n.Message, "hint", hintFor(n.Message, cfg.AdminUser))
	}
	// Logins, ends of sessions and the watcher share the pool; ends of
	// sessions come in bursts when a person with many sessions is revoked.
	pc.MaxConns = 8
	pc.MaxConnIdleTime = time.Minute
	u.admin, err = pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cfg.Name, err)
	}
	u.pool = pool.New(pool.Configured(cfg), u.closeIdle)
	u.server.add(u)
	return u, nil
}

// hintFor turns PostgreSQL's "no privileges were granted" warning into the
// step that fixes it.
func hintFor(msg, admin string) string {
	if strings.Contains(msg, "no privileges were granted") || strings.Contains(msg, "not all privileges were granted") {
		return fmt.Sprintf("%s can only grant on objects it owns or holds with grant option; make %s a member of the objects' owner role", admin, admin)
	}
	return ""
}

func kv(k, v string) string {
	return k + "='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// Close releases the admin connections.
func (u *Upstream) Close() {
	u.pool.Shutdown()
	u.server.remove(u)
	u.admin.Close()
}

// RoleName is the upstream role a person uses at a level: "alice.ro".
func RoleName(person string, level access.Level) string {
	return person + "." + string(level)
}

// GroupRole is the role that holds a level's grants on database db.
func GroupRole(db string, level access.Level) string {
	return "keygate_" + db + "_" + string(level)
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Conn is an authenticated upstream connection, handed over raw: the
// gateway relays bytes on it from here on. When the session is over, the
// gateway makes sure the backend is gone (Terminate, unless it saw the
// backend close the connection after a Terminate message) and then hands
// the connection back with Release.
type Conn struct {
	net.Conn
	Role      string
	PID       uint32
	SecretKey []byte
	// Params are the ParameterStatus values the server reported at start.
	Params   map[string]string
	TxStatus byte
	// Reused says the connection served an earlier session of the same
	// person, level and start-up parameters, and was reset since.
	Reused bool

	lease   *pool.Lease
	release sync.Once
}

// Terminate ends c's backend from keygate's admin connection and returns
// when keygate saw it gone: nothing it runs, not even a loop that catches
// query_canceled, commits after that.
func (u *Upstream) Terminate(ctx context.Context, c *Conn) (time.Time, error) {
	return u.terminate(ctx, c.PID)
}

// Release hands c back once its session is over.
//
// With reuse, the session ended idle and c could serve again: Release
// resets it and keeps it for its owner's next session, reporting true. It
// reports false, and leaves c to the caller, when it cannot: pooling is
// off, too many resets are under way (see pool.Resetting), the reset
// failed, or its owner lost access meanwhile. The caller then ends the
// backend and calls Release(c, false).
//
// Without reuse, Release closes c. When it held the last of keygate's
// backends of its role, the role is put at rest again, so that a password
// the person set from inside the session goes too. A backend that is not
// gone within a few seconds is ended by the watcher.
func (u *Upstream) Release(c *Conn, reuse bool) bool {
	if reuse {
		return u.keep(c)
	}
	c.release.Do(func() { u.close(c, false) })
	return false
}

// keep resets c and pools it; see Release.
func (u *Upstream) keep(c *Conn) bool {
	if !u.cfg.Pool || c.lease == nil {
		return false
	}
	done, ok := u.pool.Resetting()
	if !ok {
		return false
	}
	err := c.reset()
	done()
	if err != nil {
		u.log.Warn("could not reset a connection for reuse; ending it", "role", c.Role, "pid", c.PID, "err", err)
		return false
	}
	kept := false
	c.release.Do(func() {
		// Once pooled, c is another lease's: this one's Release does
		// nothing more. One the pool refused is reset and idle, and
		// ends at a Terminate.
		if kept = u.pool.Put(c.lease, c.again()); !kept {
			u.close(c, true)
		}
	})
	return kept
}

// close closes c, sending Terminate first when polite (an idle backend
// then exits without a word in the server log), and frees its place.
func (u *Upstream) close(c *Conn, polite bool) {
	if polite {
		c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		c.Conn.Write([]byte{'X', 0, 0, 0, 4})
	}
	c.Conn.Close()
	if c.lease != nil {
		u.pool.Close(c.lease)
	}
	if role, left := u.server.release(c.PID, time.Now()); role != "" && left == 0 {
		u.released(role)
	}
}

// droppedParams are startup parameters a client may not pass upstream:
// identity is keygate's to decide, and a replication connection is not a
// session.
var droppedParams = map[string]bool{"user": true, "database": true, "replication": true}

// Acquire leases a connection to the database as person's role at level:
// an idle one of the same person, level and params from the pool if there
// is one, else a new login, within the database's connection budget
// (waiting for a slot up to its queue_timeout). The role is provisioned
// first if needed. Release hands the connection back. params are the
// client's startup parameters (application_name, client_encoding, ...).
func (u *Upstream) Acquire(ctx context.Context, person string, level access.Level, params map[string]string) (*Conn, error) {
	if err := u.checked(ctx); err != nil {
		return nil, err
	}
	if err := u.ensureGroups(ctx); err != nil {
		return nil, err
	}
	key := pool.Key{Person: person, Level: string(level), Params: paramsKey(params)}
	c, lease, reused, err := u.pool.Take(ctx, key, func(ctx context.Context) (*Conn, error) { return u.login(ctx, person, level, params) },
		(*Conn).alive, func(c *Conn, err error) {
			u.log.Info("a pooled connection was closed upstream; opening another", "role", c.Role, "pid", c.PID, "err", err)
			u.close(c, false)
		})
	var budget *pool.BudgetError
	if errors.As(err, &budget) {
		return nil, fmt.Errorf("connect %s as %s: %w", u.cfg.Name, RoleName(person, level), err)
	}
	if err != nil {
		return nil, err
	}
	c.lease, c.Reused = lease, reused
	return c, nil
}

// login opens a new connection through a just-in-time login window.
func (u *Upstream) login(ctx context.Context, person string, level access.Level, params map[string]string) (*Conn, error) {
	role := RoleName(person, level)
	w := u.server.window(role)
	for attempt := 1; ; attempt++ {
		password, gen, err := u.openLogin(ctx, w, role, level)
		if err != nil {
			return nil, err
		}
		conn, err := u.dial(ctx, role, password, params)
		u.closeLogin(w, gen, role, err)
		if err == nil || attempt == 2 || !loginDisturbed(err) {
			return conn, err
		}
		// Someone outside this process changed the role's password or
		// LOGIN (another keygate, an administrator): try once more with a
		// fresh window.
		u.log.Warn("login window was disturbed from outside keygate; retrying", "role", role, "err", err)
	}
}

// loginDisturbed reports whether a login failed because the password or
// LOGIN attribute keygate set had been changed under it.
func loginDisturbed(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000")
}

// dial logs in as role and hands over the raw connection. The login is
// registered with the watcher while it runs, and the backend it opens from
// the moment it exists, so that the watcher never takes it for someone
// else's.
func (u *Upstream) dial(ctx context.Context, role, password string, params map[string]string) (_ *Conn, err error) {
	d := u.server.startDial()
	var pid uint32
	defer func() {
		u.server.endDial(d, pid, role)
		if err != nil && pid != 0 {
			// Logged in, then given up: the backend is on its way out.
			u.server.release(pid, time.Now())
		}
	}()
	cfg := u.base.Copy()
	cfg.User, cfg.Password = role, password
	cfg.RuntimeParams = map[string]string{}
	for k, v := range params {
		if !droppedParams[k] && !strings.HasPrefix(k, "_pq_.") {
			cfg.RuntimeParams[k] = v
		}
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			return nil, fmt.Errorf("login %q: %w", role, pgErr)
		}
		return nil, fmt.Errorf("login %q: %w: %w", role, ErrUnavailable, err)
	}
	pid = pc.PID()
	if pc.ParameterStatus("is_superuser") != "off" {
		pc.Close(ctx)
		return nil, fmt.Errorf("login %q: the role is a superuser; keygate refuses to hand it out", role)
	}
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(ctx)
		return nil, fmt.Errorf("login %q: %w: %w", role, ErrUnavailable, err)
	}
	h, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return nil, fmt.Errorf("login %q: %w", role, err)
	}
	return &Conn{Conn: h.Conn, Role: role, PID: h.PID, SecretKey: h.SecretKey, Params: h.ParameterStatuses, TxStatus: h.TxStatus}, nil
}

// adminErr classifies an error from the admin pool.
func (u *Upstream) adminErr(what string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if strings.HasPrefix(pgErr.Code, "28") {
			return fmt.Errorf("%s as %s: %w: %w", what, u.cfg.AdminUser, ErrAdminLogin, err)
		}
		return fmt.Errorf("%s as %s: %w", what, u.cfg.AdminUser, err)
	}
	return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
}

// Levels' grants. Each level holds exactly these privileges; anything else
// found on the group role is revoked.
type levelGrants struct {
	tables, sequences       string // granted
	revokeTables, revokeSeq string // taken away if present
	schemaCreate            bool
}

var grants = map[access.Level]levelGrants{
	access.ReadOnly: {
		tables: "SELECT", sequences: "SELECT",
		revokeTables: "INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER", revokeSeq: "USAGE, UPDATE",
	},
	access.ReadWrite: {
		tables: "SELECT, INSERT, UPDATE, DELETE", sequences: "USAGE, SELECT",
		revokeTables: "TRUNCATE, REFERENCES, TRIGGER", revokeSeq: "UPDATE",
	},
	access.Admin: {tables: "ALL", sequences: "ALL", schemaCreate: true},
}

// ensureGroups creates the group roles and brings their grants into shape,
// once per process (again after a failure).
func (u *Upstream) ensureGroups(ctx context.Context) error {
	u.groupsMu.Lock()
	defer u.groupsMu.Unlock()
	if u.groupsReady {
		return nil
	}
	for _, l := range access.Levels {
		if err := u.createRole(ctx, GroupRole(u.cfg.Name, l), groupMarker); err != nil {
			return err
		}
	}
	if err := u.createRole(ctx, PeopleRole, peopleMarker); err != nil {
		return err
	}
	adminGroup := GroupRole(u.cfg.Name, access.Admin)
	var groupList []string
	for _, l := range access.Levels {
		groupList = append(groupList, ident(GroupRole(u.cfg.Name, l)))
	}
	all := strings.Join(groupList, ", ")
	// Membership of the admin group lets keygate set default privileges for
	// objects that admin sessions create.
	setup := fmt.Sprintf("GRANT %s TO CURRENT_USER; GRANT CONNECT ON DATABASE %s TO %s", ident(adminGroup), ident(u.cfg.Database), all)
	if _, err := u.admin.Exec(ctx, setup); err != nil {
		return u.adminErr("set up group roles", err)
	}
	if err := u.grantOwner(ctx, adminGroup); err != nil {
		return err
	}
	for _, schema := range u.cfg.Schemas {
		if err := u.grantSchema(ctx, schema); err != nil {
			return err
		}
	}
	u.groupsReady = true
	return nil
}

// grantOwner makes the admin group role a member of the configured owner
// role, so that admin sessions can alter and drop the tables it owns. An
// owner role with attributes keygate never hands to people is refused: its
// members would inherit nothing from them, but SET ROLE would reach them.
func (u *Upstream) grantOwner(ctx context.Context, adminGroup string) error {
	if u.cfg.OwnerRole == "" {
		return nil
	}
	var exists, privileged bool
	err := u.admin.QueryRow(ctx, `
		SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = $1),
			EXISTS (SELECT FROM pg_catalog.pg_roles r
				WHERE pg_catalog.pg_has_role($1, r.oid, 'MEMBER')
				AND (r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls OR r.rolname LIKE 'pg\_%'))`,
		u.cfg.OwnerRole).Scan(&exists, &privileged)
	if err != nil {
		return u.adminErr(fmt.Sprintf("inspect owner_role %q", u.cfg.OwnerRole), err)
	}
	switch {
	case !exists:
		return fmt.Errorf("owner_role %q of database %s does not exist upstream: create it or correct owner_role", u.cfg.OwnerRole, u.cfg.Name)
	case privileged:
		return fmt.Errorf("owner_role %q of database %s has, or is a member of a role with, SUPERUSER, CREATEROLE, CREATEDB, REPLICATION, BYPASSRLS or a pg_ role, which admin-level people must not reach: use a role that only owns the tables", u.cfg.OwnerRole, u.cfg.Name)
	}
	if _, err := u.admin.Exec(ctx, fmt.Sprintf("GRANT %s TO %s", ident(u.cfg.OwnerRole), ident(adminGroup))); err != nil {
		return u.adminErr(fmt.Sprintf("grant owner_role %q to %s", u.cfg.OwnerRole, adminGroup), err)
	}
	return nil
}

func (u *Upstream) grantSchema(ctx context.Context, schema string) error {
	creators, err := u.creators(ctx, schema)
	if err != nil {
		return err
	}
	s := ident(schema)
	var stmts []string
	add := func(format string, args ...any) { stmts = append(stmts, fmt.Sprintf(format, args...)) }
	for _, l := range access.Levels {
		g, gr := ident(GroupRole(u.cfg.Name, l)), grants[l]
		add("GRANT USAGE ON SCHEMA %s TO %s", s, g)
		if gr.schemaCreate {
			add("GRANT CREATE ON SCHEMA %s TO %s", s, g)
		} else {
			add("REVOKE CREATE ON SCHEMA %s FROM %s", s, g)
		}
		add("GRANT %s ON ALL TABLES IN SCHEMA %s TO %s", gr.tables, s, g)
		add("GRANT %s ON ALL SEQUENCES IN SCHEMA %s TO %s", gr.sequences, s, g)
		if gr.revokeTables != "" {
			add("REVOKE %s ON ALL TABLES IN SCHEMA %s FROM %s", gr.revokeTables, s, g)
		}
		if gr.revokeSeq != "" {
			add("REVOKE %s ON ALL SEQUENCES IN SCHEMA %s FROM %s", gr.revokeSeq, s, g)
		}
		for _, c := range creators {
			add("ALTER DEFAULT PRIVILEGES FOR ROLE %s IN SCHEMA %s GRANT %s ON TABLES TO %s", ident(c), s, gr.tables, g)
			add("ALTER DEFAULT PRIVILEGES FOR ROLE %s IN SCHEMA %s GRANT %s ON SEQUENCES TO %s", ident(c), s, gr.sequences, g)
		}
	}
	if _, err := u.admin.Exec(ctx, strings.Join(stmts, ";\n")); err != nil {
		return u.adminErr(fmt.Sprintf("grant on schema %q", schema), err)
	}
	return nil
}

// creators lists the roles whose new objects in schema must be covered by
// default privileges: keygate's admin role, the admin group role, and the
// owners of the schema and its objects that the admin role can act for.
func (u *Upstream) creators(ctx context.Context, schema string) ([]string, error) {
	rows, err := u.admin.Query(ctx, `
		SELECT r.rolname FROM pg_catalog.pg_roles r
		WHERE r.rolname NOT LIKE 'pg\_%' AND (
			r.rolname = current_user OR r.rolname = $2
			OR (pg_catalog.pg_has_role(current_user, r.oid, 'USAGE') AND r.oid IN (
				SELECT nspowner FROM pg_catalog.pg_namespace WHERE nspname = $1
				UNION SELECT c.relowner FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
				WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S'))))
		ORDER BY 1`, schema, GroupRole(u.cfg.Name, access.Admin))
	if err != nil {
		return nil, u.adminErr(fmt.Sprintf("inspect schema %q", schema), err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, u.adminErr(fmt.Sprintf("inspect schema %q", schema), err)
	}
	var exists bool
	if err := u.admin.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); err != nil {
		return nil, u.adminErr(fmt.Sprintf("inspect schema %q", schema), err)
	}
	if !exists {
		return nil, fmt.Errorf("schema %q does not exist in database %q: create it or fix schemas in the config", schema, u.cfg.Database)
	}
	return names, nil
}

// createRole creates a NOLOGIN role marked with comment if it does not
// exist, and refuses a role of that name that keygate did not create.
func (u *Upstream) createRole(ctx context.Context, role, comment string) error {
	var have string
	err := u.admin.QueryRow(ctx, `SELECT coalesce(pg_catalog.shobj_description(oid, 'pg_authid'), '') FROM pg_catalog.pg_roles WHERE rolname = $1`, role).Scan(&have)
	switch {
	case err == nil && have == comment:
		return nil
	case err == nil:
		return fmt.Errorf("role %q exists in the upstream database but was not created by keygate; rename or drop it", role)
	case !errors.Is(err, pgx.ErrNoRows):
		return u.adminErr(fmt.Sprintf("look up role %q", role), err)
	}
	_, err = u.admin.Exec(ctx, fmt.Sprintf("CREATE ROLE %s NOLOGIN INHERIT; COMMENT ON ROLE %s IS %s", ident(role), ident(role), literal(comment)))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42710" {
		return nil // created concurrently
	}
	if err != nil {
		return u.adminErr(fmt.Sprintf("create role %q", role), err)
	}
	return nil
}

// personState is a person role as the upstream has it.
type personState struct {
	exists   bool
	comment  string
	badAttrs bool     // SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS
	inGroup  bool     // a member of this database's group role for its level
	inPeople bool     // a member of PeopleRole
	foreign  []string // memberships keygate did not grant
	// groupForeign and peopleForeign are roles the level's group role and
	// PeopleRole were made members of: those roles are members of nothing,
	// or their people inherit more.
	groupForeign, peopleForeign []string
}

// inspectPerson reads role's attributes and memberships in one round trip.
// A membership is keygate's when the role it grants is a NOLOGIN,
// unprivileged keygate group role of the same level.
func (u *Upstream) inspectPerson(ctx context.Context, role string, level access.Level) (personState, error) {
	var st personState
	err := u.admin.QueryRow(ctx, `
		SELECT r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls,
			coalesce(pg_catalog.shobj_description(r.oid, 'pg_authid'), ''),
			coalesce(pg_catalog.bool_or(g.rolname = $2), false),
			coalesce(pg_catalog.bool_or(g.rolname = $5), false),
			coalesce(pg_catalog.array_agg(g.rolname ORDER BY g.rolname) FILTER (WHERE g.oid IS NOT NULL AND NOT (
				NOT g.rolcanlogin AND NOT g.rolsuper AND NOT g.rolcreaterole AND (
					(g.rolname LIKE $3 AND coalesce(pg_catalog.shobj_description(g.oid, 'pg_authid'), '') = $4)
					OR (g.rolname = $5 AND coalesce(pg_catalog.shobj_description(g.oid, 'pg_authid'), '') = $6)))), '{}'),
			coalesce((SELECT pg_catalog.array_agg(o.rolname ORDER BY o.rolname) FROM pg_catalog.pg_auth_members gm
				JOIN pg_catalog.pg_roles gr ON gr.oid = gm.member JOIN pg_catalog.pg_roles o ON o.oid = gm.roleid
				WHERE gr.rolname = $2), '{}'),
			coalesce((SELECT pg_catalog.array_agg(o.rolname ORDER BY o.rolname) FROM pg_catalog.pg_auth_members gm
				JOIN pg_catalog.pg_roles gr ON gr.oid = gm.member JOIN pg_catalog.pg_roles o ON o.oid = gm.roleid
				WHERE gr.rolname = $5), '{}')
		FROM pg_catalog.pg_roles r
		LEFT JOIN pg_catalog.pg_auth_members m ON m.member = r.oid
		LEFT JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
		WHERE r.rolname = $1
		GROUP BY r.oid, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls`,
		role, GroupRole(u.cfg.Name, level), `keygate\_%\_`+string(level), groupMarker, PeopleRole, peopleMarker).
		Scan(&st.badAttrs, &st.comment, &st.inGroup, &st.inPeople, &st.foreign, &st.groupForeign, &st.peopleForeign)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return st, u.adminErr(fmt.Sprintf("inspect role %q", role), err)
	}
	st.exists = true
	if level == access.Admin && u.cfg.OwnerRole != "" {
		st.groupForeign = slices.DeleteFunc(st.groupForeign, func(r string) bool { return r == u.cfg.OwnerRole })
	}
	return st, nil
}

// ensurePerson makes role exist and be a member of exactly keygate's group
// roles of its level, refusing roles keygate did not create or that carry
// attributes keygate never grants. It costs one query when the role is
// already in shape.
func (u *Upstream) ensurePerson(ctx context.Context, role string, level access.Level) error {
	st, err := u.inspectPerson(ctx, role, level)
	if err != nil {
		return err
	}
	if !st.exists {
		if err := u.createRole(ctx, role, roleMarker); err != nil {
			return err
		}
		st = personState{exists: true, comment: roleMarker}
	}
	if st.comment != roleMarker {
		return fmt.Errorf("role %q exists in the upstream database but was not created by keygate; rename or drop it", role)
	}
	if st.badAttrs {
		u.log.Error("a person role was given privileges keygate never grants; refusing to log in as it", "role", role)
		return fmt.Errorf("role %q has SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS, which keygate never grants; remove them", role)
	}
	if u.isReady(role) && st.inGroup && st.inPeople && len(st.foreign) == 0 && len(st.groupForeign) == 0 && len(st.peopleForeign) == 0 {
		return nil
	}
	stmts := []string{fmt.Sprintf("GRANT %s TO %s", ident(GroupRole(u.cfg.Name, level)), ident(role)),
		fmt.Sprintf("GRANT %s TO %s", ident(PeopleRole), ident(role))}
	for _, g := range st.foreign {
		u.log.Warn("revoking a membership keygate did not grant", "role", role, "member_of", g)
		stmts = append(stmts, fmt.Sprintf("REVOKE %s FROM %s", ident(g), ident(role)))
	}
	group := GroupRole(u.cfg.Name, level)
	for _, g := range st.groupForeign {
		u.log.Warn("revoking a membership keygate did not grant", "role", group, "member_of", g)
		stmts = append(stmts, fmt.Sprintf("REVOKE %s FROM %s", ident(g), ident(group)))
	}
	for _, g := range st.peopleForeign {
		u.log.Warn("revoking a membership keygate did not grant", "role", PeopleRole, "member_of", g)
		stmts = append(stmts, fmt.Sprintf("REVOKE %s FROM %s", ident(g), ident(PeopleRole)))
	}
	if level == access.Admin {
		// Objects admin sessions create belong to the admin group role, so
		// they outlive the person and stay covered by default privileges.
		stmts = append(stmts, fmt.Sprintf("ALTER ROLE %s IN DATABASE %s SET role = %s", ident(role), ident(u.cfg.Database), literal(GroupRole(u.cfg.Name, access.Admin))))
	}
	if _, err := u.admin.Exec(ctx, strings.Join(stmts, "; ")); err != nil {
		return u.adminErr(fmt.Sprintf("set up role %q", role), err)
	}
	u.readyMu.Lock()
	u.ready[role] = true
	u.readyMu.Unlock()
	return nil
}

func (u *Upstream) isReady(role string) bool {
	u.readyMu.Lock()
	defer u.readyMu.Unlock()
	return u.ready[role]
}

// Cancel asks the upstream server to cancel the statement running on c.
// It needs no privilege: the backend's secret key is the credential, which
// only keygate holds.
func (u *Upstream) Cancel(ctx context.Context, c *Conn) error {
	return u.cancel(ctx, c.PID, c.SecretKey)
}

func (u *Upstream) cancel(ctx context.Context, pid uint32, secret []byte) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", u.cfg.Address)
	if err != nil {
		return fmt.Errorf("cancel backend %d: %w: %w", pid, ErrUnavailable, err)
	}
	defer c.Close()
	msg := make([]byte, 12, 12+len(secret))
	binary.BigEndian.PutUint32(msg[0:], uint32(12+len(secret)))
	binary.BigEndian.PutUint32(msg[4:], cancelRequestCode)
	binary.BigEndian.PutUint32(msg[8:], pid)
	msg = append(msg, secret...)
	if deadline, ok := ctx.Deadline(); ok {
		c.SetDeadline(deadline)
	}
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("cancel backend %d: %w", pid, err)
	}
	// The server closes the connection once it has acted on the request.
	var b [1]byte
	c.Read(b[:])
	return nil
}

const cancelRequestCode = 80877102

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
