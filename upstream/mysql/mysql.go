// Package mysql keeps keygate's per-person users in a MySQL or MariaDB
// database in shape and opens login windows for them.
//
// For every configured database there are three roles, keygate_<db>_ro,
// keygate_<db>_rw and keygate_<db>_admin, holding that level's privileges
// on the configured schemas (databases, in MySQL's terms). A person reaches
// the database as a user named <person>.<level> ('alice.ro'@'%'), granted
// one role and nothing else, and locked (ACCOUNT LOCK) at rest.
//
// Login is just in time: for each connection keygate sets a random
// password, sent to the server already hashed so that the clear password
// never reaches its logs, unlocks the account, lets the caller log in, and
// locks the account again with another random password nobody knows.
// Sessions keep running after the lock; new logins are refused.
//
// A person can change their own user's password from inside a session
// (the server allows that to every user). It opens nothing while the
// account is locked; during another login window of the same user, the
// watcher ends within a second any connection keygate did not open and
// reports it. The watcher knows the users keygate set up since it
// started: the others are locked. Should keygate die inside a window, the
// account stays unlocked with a password only the dead process knew until
// the person's next login locks it again (the server has no expiry finer
// than a day to bound it).
//
// MariaDB lets a session enable only roles it was granted, and setting a
// default role for another user needs write access to the mysql schema,
// which would make keygate's admin user as powerful as root. So person
// users have no default role: the gateway runs SetRoleStatement first in
// every session.
package mysql

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/keygate/keygate/upstream"
	"github.com/keygate/keygate/upstream/pool"
)

// ErrUnavailable wraps failures to reach the upstream server at all.
var ErrUnavailable = errors.New("upstream database unavailable")

// ErrAdminLogin wraps the upstream's refusal of keygate's admin user.
var ErrAdminLogin = errors.New("the upstream refused keygate's admin user: check admin.user, the password in admin.password_env, and that the user exists for keygate's host")

// adminIdle is how many idle admin connections a database keeps.
const adminIdle = 2

// Upstream manages one MySQL or MariaDB database.
type Upstream struct {
	cfg     upstream.Config
	schemas []string
	base    *driver.Config // address and TLS, no user
	admin   *sql.DB
	server  *server
	log     *slog.Logger

	// greeting is what the server's last greeting said of it.
	greeting atomic.Pointer[Server]
	// greetFailed is when reading the greeting last failed (UnixNano).
	greetFailed atomic.Int64

	checkMu   sync.Mutex
	checkErr  error
	checkedAt time.Time
	checkOK   atomic.Bool

	// pool keeps people's connections between sessions, within the
	// database's connection budget.
	pool *pool.Pool[*Conn]
}

// newUpstream prepares an upstream. It does not connect: a database that is
// down at start only refuses connections to itself.
func newUpstream(cfg upstream.Config, s *server, log *slog.Logger) (*Upstream, error) {
	base, err := baseConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cfg.Name, err)
	}
	schemas := cfg.Schemas
	if len(schemas) == 0 {
		schemas = []string{cfg.Database}
	}
	ac := base.Clone()
	ac.User, ac.Passwd = cfg.AdminUser, cfg.AdminPassword
	ac.MultiStatements = false
	conn, err := driver.NewConnector(ac)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cfg.Name, err)
	}
	admin := sql.OpenDB(conn)
	// Logins, the watcher and checks share the pool.
	admin.SetMaxOpenConns(8)
	admin.SetMaxIdleConns(adminIdle)
	admin.SetConnMaxIdleTime(time.Minute)
	u := &Upstream{cfg: cfg, schemas: schemas, base: base, admin: admin, server: s, log: log.With("database", cfg.Name)}
	u.pool = pool.New(pool.Configured(cfg), u.close)
	s.add(u)
	return u, nil
}

// baseConfig is the driver configuration every connection to cfg's server
// starts from: address, first schema, timeouts and TLS as cfg.TLS says.
func baseConfig(cfg upstream.Config) (*driver.Config, error) {
	host, _, err := net.SplitHostPort(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", cfg.Address, err)
	}
	c := driver.NewConfig()
	c.Net, c.Addr, c.DBName = "tcp", cfg.Address, cfg.Database
	c.Timeout = 10 * time.Second
	// The driver logs refused logins on its own; keygate reports them.
	c.Logger = log.New(io.Discard, "", 0)
	switch cfg.TLS {
	case "", "disable":
	case "prefer":
		c.TLS = &tls.Config{InsecureSkipVerify: true}
		c.AllowFallbackToPlaintext = true
	case "require":
		c.TLS = &tls.Config{InsecureSkipVerify: true}
	case "verify-full":
		t := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if cfg.TLSCAFile != "" {
			pem, err := os.ReadFile(cfg.TLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("tls_ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("tls_ca_file %s holds no PEM certificate", cfg.TLSCAFile)
			}
			t.RootCAs = pool
		}
		c.TLS = t
	default:
		return nil, fmt.Errorf("tls %q: use disable, prefer, require or verify-full", cfg.TLS)
	}
	return c, nil
}

// PersonConfig is a driver configuration for user with password, reaching
// the same server with the same TLS as the admin user. It names no
// schema: a person user holds no privilege until its session sets its
// role, so the server would refuse the login; the session runs
// SessionStart instead. The gateway's own dialer reads the address and TLS
// settings from it.
func (u *Upstream) PersonConfig(user, password string) *driver.Config {
	c := u.base.Clone()
	c.User, c.Passwd, c.DBName = user, password, ""
	return c
}

// Close ends the pooled connections and releases the admin connections.
func (u *Upstream) Close() {
	u.pool.Shutdown()
	u.server.remove(u)
	u.admin.Close()
}

// adminErr classifies an error from the admin pool.
func (u *Upstream) adminErr(what string, err error) error {
	var myErr *driver.MySQLError
	if errors.As(err, &myErr) {
		// 1045: access denied (wrong password); 1130: host not allowed.
		if myErr.Number == 1045 || myErr.Number == 1130 {
			return fmt.Errorf("%s as %s: %w: %w", what, u.cfg.AdminUser, ErrAdminLogin, err)
		}
		return fmt.Errorf("%s as %s: %w", what, u.cfg.AdminUser, err)
	}
	return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
}

// exec runs one statement as the admin user.
func (u *Upstream) exec(ctx context.Context, what, stmt string) error {
	if _, err := u.admin.ExecContext(ctx, stmt); err != nil {
		return u.adminErr(what, err)
	}
	return nil
}

// quoteIdent quotes a schema or table name with backticks.
func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// quoteString quotes a string literal; backslashes are escaped too, since
// the server's default sql_mode treats them as escapes.
func quoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// account is user@'%', quoted: keygate's person users may log in from any
// host (see Restriction).
func account(user string) string { return quoteString(user) + "@'%'" }
