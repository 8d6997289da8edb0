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
// role LOGIN for five minutes at most, connects, and sets it back to NOLOGIN
// with no password before the person sees the session. Nobody ever holds a
// credential for these roles.
package postgres

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/access"
)

// Config describes one upstream database.
type Config struct {
	Name          string // keygate's name for the database
	Address       string // host:port
	Database      string // upstream database name
	Schemas       []string
	AdminUser     string
	AdminPassword string
	TLS           string // disable, prefer, require, verify-full
	TLSCAFile     string
}

// ErrUnavailable wraps failures to reach the upstream server at all.
var ErrUnavailable = errors.New("upstream database unavailable")

// roleMarker is the comment on every person role keygate creates. A role of
// the same name without it belongs to someone else and is never taken over.
const roleMarker = "managed by keygate"

// loginWindow bounds how long a role stays LOGIN should keygate die between
// setting the password and resetting it. It is generous to tolerate clock
// differences; in the normal path the role is NOLOGIN again milliseconds
// later.
const loginWindow = 5 * time.Minute

// Upstream manages one upstream database.
type Upstream struct {
	cfg   Config
	base  *pgconn.Config
	admin *pgxpool.Pool
	log   *slog.Logger

	groupsMu    sync.Mutex
	groupsReady bool

	rolesMu sync.Mutex
	roles   map[string]*personRole
}

// personRole is the login state of one person role. Logins that overlap in
// time share one password: the first opens the role (LOGIN, a fresh random
// password), the last one out closes it again (NOLOGIN, no password). Two
// logins never overwrite each other's password, and concurrent connections
// of one person do not wait for each other's handshake.
type personRole struct {
	mu       sync.Mutex
	ready    bool   // the role exists and is in shape
	password string // while inflight > 0
	inflight int
}

// New prepares an upstream. It does not connect: a database that is down at
// start only refuses connections to itself.
func New(cfg Config, log *slog.Logger) (*Upstream, error) {
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
	u := &Upstream{cfg: cfg, base: base, log: log.With("database", cfg.Name), roles: map[string]*personRole{}}

	pc, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cfg.Name, err)
	}
	pc.ConnConfig.Config = *base.Copy()
	pc.ConnConfig.User = cfg.AdminUser
	pc.ConnConfig.Password = cfg.AdminPassword
	pc.ConnConfig.RuntimeParams = map[string]string{"application_name": "keygate"}
	pc.ConnConfig.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		level := slog.LevelDebug
		if n.Severity == "WARNING" {
			level = slog.LevelWarn
		}
		u.log.Log(context.Background(), level, "upstream notice", "severity", n.Severity, "message", n.Message, "hint", hintFor(n.Message, cfg.AdminUser))
	}
	pc.MaxConns = 4
	pc.MaxConnIdleTime = time.Minute
	u.admin, err = pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cfg.Name, err)
	}
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
func (u *Upstream) Close() { u.admin.Close() }

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
// gateway relays bytes on it from here on.
type Conn struct {
	net.Conn
	Role      string
	PID       uint32
	SecretKey []byte
	// Params are the ParameterStatus values the server reported at start.
	Params   map[string]string
	TxStatus byte
}

// droppedParams are startup parameters a client may not pass upstream:
// identity is keygate's to decide, and a replication connection is not a
// session.
var droppedParams = map[string]bool{"user": true, "database": true, "replication": true}

// Connect opens a connection to the database as person's role at level,
// provisioning the role first if needed. params are the client's startup
// parameters (application_name, client_encoding, ...).
func (u *Upstream) Connect(ctx context.Context, person string, level access.Level, params map[string]string) (*Conn, error) {
	if err := u.ensureGroups(ctx); err != nil {
		return nil, err
	}
	role := RoleName(person, level)
	pr := u.personRole(role)
	password, err := u.openLogin(ctx, pr, role, level)
	if err != nil {
		return nil, err
	}
	conn, err := u.dial(ctx, role, password, params)
	u.closeLogin(pr, role, err)
	return conn, err
}

// openLogin makes role loginable with a password only keygate knows, or
// joins a login window that is already open.
func (u *Upstream) openLogin(ctx context.Context, pr *personRole, role string, level access.Level) (string, error) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if !pr.ready {
		if err := u.ensurePerson(ctx, role, level); err != nil {
			return "", err
		}
		pr.ready = true
	}
	if pr.inflight == 0 {
		secret := make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return "", fmt.Errorf("login %q: %w", role, err)
		}
		password := base64.RawURLEncoding.EncodeToString(secret)
		verifier, err := scramVerifier(password)
		if err != nil {
			return "", fmt.Errorf("login %q: %w", role, err)
		}
		until := time.Now().Add(loginWindow).UTC().Format("2006-01-02 15:04:05Z07:00")
		open := fmt.Sprintf("ALTER ROLE %s WITH LOGIN PASSWORD %s VALID UNTIL %s", ident(role), literal(verifier), literal(until))
		if _, err := u.admin.Exec(ctx, open); err != nil {
			// Re-check the role's shape next time: it may have been
			// dropped or altered.
			pr.ready = false
			return "", u.adminErr(fmt.Sprintf("enable login for %q", role), err)
		}
		pr.password = password
	}
	pr.inflight++
	return pr.password, nil
}

// closeLogin leaves the login window; the last one out sets the role back
// to NOLOGIN with no password, whatever happened.
func (u *Upstream) closeLogin(pr *personRole, role string, dialErr error) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if dialErr != nil {
		pr.ready = false
	}
	pr.inflight--
	if pr.inflight > 0 {
		return
	}
	pr.password = ""
	// A fresh context: the caller's may be done, and the role must not
	// stay open.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := u.admin.Exec(ctx, fmt.Sprintf("ALTER ROLE %s WITH NOLOGIN PASSWORD NULL", ident(role))); err != nil {
		u.log.Error("could not reset role to NOLOGIN; it stays loginable until its VALID UNTIL", "role", role, "err", err)
	}
}

func (u *Upstream) personRole(role string) *personRole {
	u.rolesMu.Lock()
	defer u.rolesMu.Unlock()
	pr, ok := u.roles[role]
	if !ok {
		pr = &personRole{}
		u.roles[role] = pr
	}
	return pr
}

// dial logs in as role and hands over the raw connection.
func (u *Upstream) dial(ctx context.Context, role, password string, params map[string]string) (*Conn, error) {
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
		if err := u.createRole(ctx, GroupRole(u.cfg.Name, l), false); err != nil {
			return err
		}
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
	for _, schema := range u.cfg.Schemas {
		if err := u.grantSchema(ctx, schema); err != nil {
			return err
		}
	}
	u.groupsReady = true
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

// createRole creates a NOLOGIN role if it does not exist. Person roles are
// marked so keygate can tell its own roles from someone else's.
func (u *Upstream) createRole(ctx context.Context, role string, person bool) error {
	var exists bool
	if err := u.admin.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = $1)`, role).Scan(&exists); err != nil {
		return u.adminErr(fmt.Sprintf("look up role %q", role), err)
	}
	if exists {
		return nil
	}
	stmt := fmt.Sprintf("CREATE ROLE %s NOLOGIN INHERIT", ident(role))
	if person {
		stmt += fmt.Sprintf("; COMMENT ON ROLE %s IS %s", ident(role), literal(roleMarker))
	}
	_, err := u.admin.Exec(ctx, stmt)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42710" {
		return nil // created concurrently
	}
	if err != nil {
		return u.adminErr(fmt.Sprintf("create role %q", role), err)
	}
	return nil
}

// ensurePerson creates role if needed and makes it a member of exactly the
// group roles of its level, refusing roles keygate did not create or that
// carry attributes keygate never grants.
func (u *Upstream) ensurePerson(ctx context.Context, role string, level access.Level) error {
	if err := u.createRole(ctx, role, true); err != nil {
		return err
	}
	var super, createRole, createDB, replication, bypassRLS bool
	var comment string
	err := u.admin.QueryRow(ctx, `SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, coalesce(pg_catalog.shobj_description(oid, 'pg_authid'), '')
		FROM pg_catalog.pg_roles WHERE rolname = $1`, role).Scan(&super, &createRole, &createDB, &replication, &bypassRLS, &comment)
	if err != nil {
		return u.adminErr(fmt.Sprintf("inspect role %q", role), err)
	}
	if comment != roleMarker {
		return fmt.Errorf("role %q exists in the upstream database but was not created by keygate; rename or drop it", role)
	}
	if super || createRole || createDB || replication || bypassRLS {
		return fmt.Errorf("role %q has SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS, which keygate never grants; remove them", role)
	}
	rows, err := u.admin.Query(ctx, `SELECT g.rolname FROM pg_catalog.pg_auth_members m
		JOIN pg_catalog.pg_roles g ON g.oid = m.roleid JOIN pg_catalog.pg_roles p ON p.oid = m.member
		WHERE p.rolname = $1`, role)
	if err != nil {
		return u.adminErr(fmt.Sprintf("inspect memberships of %q", role), err)
	}
	memberOf, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return u.adminErr(fmt.Sprintf("inspect memberships of %q", role), err)
	}
	stmts := []string{fmt.Sprintf("GRANT %s TO %s", ident(GroupRole(u.cfg.Name, level)), ident(role))}
	for _, g := range memberOf {
		if !strings.HasPrefix(g, "keygate_") || !strings.HasSuffix(g, "_"+string(level)) {
			u.log.Warn("revoking a membership keygate did not grant", "role", role, "member_of", g)
			stmts = append(stmts, fmt.Sprintf("REVOKE %s FROM %s", ident(g), ident(role)))
		}
	}
	if level == access.Admin {
		// Objects admin sessions create belong to the admin group role, so
		// they outlive the person and stay covered by default privileges.
		stmts = append(stmts, fmt.Sprintf("ALTER ROLE %s IN DATABASE %s SET role = %s", ident(role), ident(u.cfg.Database), literal(GroupRole(u.cfg.Name, access.Admin))))
	}
	if _, err := u.admin.Exec(ctx, strings.Join(stmts, "; ")); err != nil {
		return u.adminErr(fmt.Sprintf("set up role %q", role), err)
	}
	return nil
}

// Cancel asks the upstream server to cancel the statement running on the
// backend pid. It needs no privilege: the backend's secret key is the
// credential, which only keygate holds.
func (u *Upstream) Cancel(ctx context.Context, pid uint32, secret []byte) error {
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

// Check connects as the admin role and reports what would stop keygate from
// managing the database, for `keygate server` start-up and diagnostics.
func (u *Upstream) Check(ctx context.Context) error {
	var createRole, super bool
	var version string
	err := u.admin.QueryRow(ctx, `SELECT rolcreaterole, rolsuper, current_setting('server_version') FROM pg_catalog.pg_roles WHERE rolname = current_user`).Scan(&createRole, &super, &version)
	if err != nil {
		return u.adminErr("connect as admin", err)
	}
	if !createRole && !super {
		return fmt.Errorf("admin role %q lacks CREATEROLE: run ALTER ROLE %s CREATEROLE", u.cfg.AdminUser, ident(u.cfg.AdminUser))
	}
	if major, _ := strconv.Atoi(strings.SplitN(version, ".", 2)[0]); major > 0 && major < 13 {
		u.log.Warn("PostgreSQL older than 13 is not supported", "version", version)
	}
	return nil
}
