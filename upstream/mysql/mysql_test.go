package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	driver "github.com/go-sql-driver/mysql"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/internal/testenv"
	"github.com/keygate/keygate/upstream"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var dbSeq atomic.Int64

// newDatabase creates a schema with a table t(id, v) holding one row, and
// an Upstream for it managed by cfg's admin user (the shared admin unless
// changed by adjust).
func newDatabase(t *testing.T, adjust func(*upstream.Config)) (*testenv.MariaDB, *Upstream) {
	t.Helper()
	m := testenv.StartMariaDB(t)
	name := fmt.Sprintf("db%d", dbSeq.Add(1))
	m.CreateDatabase(t, name, "CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'one')")
	cfg := upstream.Config{Name: name, Address: m.Address(), Database: name, AdminUser: m.AdminUser, AdminPassword: m.AdminPassword, TLS: "disable"}
	if adjust != nil {
		adjust(&cfg)
	}
	return m, open(t, cfg, upstream.Options{})
}

// open makes an Upstream through the registered provisioner.
func open(t *testing.T, cfg upstream.Config, o upstream.Options) *Upstream {
	t.Helper()
	p, err := upstream.NewProvisioner(EngineName, o)
	if err != nil {
		t.Fatal(err)
	}
	d, err := p.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d.(*Upstream)
}

// session is a person's connection, made inside a login window the way the
// gateway makes it: logged in, recorded with Opened, role set.
type session struct {
	db       *sql.Conn
	pool     *sql.DB
	user     string
	password string
	thread   uint64
}

func login(t *testing.T, u *Upstream, person string, level access.Level) *session {
	t.Helper()
	ctx := context.Background()
	s := &session{}
	err := u.WithLogin(ctx, person, level, func(user, password string) error {
		s.user, s.password = user, password
		pool, conn, err := connect(ctx, u.PersonConfig(user, password))
		if err != nil {
			return err
		}
		if err := conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&s.thread); err != nil {
			pool.Close()
			return err
		}
		u.Opened(s.thread)
		s.pool, s.db = pool, conn
		return nil
	})
	if err != nil {
		t.Fatalf("login %s at %s: %v", person, level, err)
	}
	t.Cleanup(func() {
		s.db.Close()
		s.pool.Close()
		u.Closed(s.thread)
	})
	for _, stmt := range u.SessionStart(level) {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	return s
}

// connect opens one connection with cfg.
func connect(ctx context.Context, cfg *driver.Config) (*sql.DB, *sql.Conn, error) {
	c, err := driver.NewConnector(cfg)
	if err != nil {
		return nil, nil, err
	}
	pool := sql.OpenDB(c)
	conn, err := pool.Conn(ctx)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return pool, conn, nil
}

// denied reports whether err is the server refusing a privilege.
func denied(err error) bool {
	var myErr *driver.MySQLError
	if !errors.As(err, &myErr) {
		return false
	}
	switch myErr.Number {
	case 1044, 1045, 1142, 1143, 1227, 1370, 1410, 1419, 1959:
		return true
	}
	return false
}

func (s *session) mustExec(t *testing.T, stmt string) {
	t.Helper()
	if _, err := s.db.ExecContext(context.Background(), stmt); err != nil {
		t.Fatalf("%s as %s: %v", stmt, s.user, err)
	}
}

func (s *session) mustRefuse(t *testing.T, stmt string) {
	t.Helper()
	_, err := s.db.ExecContext(context.Background(), stmt)
	if !denied(err) {
		t.Fatalf("%s as %s: got %v, want a privilege error", stmt, s.user, err)
	}
	t.Logf("%s as %s: refused: %v", stmt, s.user, err)
}

func locked(t *testing.T, m *testenv.MariaDB, user string) bool {
	t.Helper()
	rows, err := m.Query(context.Background(), "", "SHOW CREATE USER "+account(user))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(rows[0][0], "ACCOUNT LOCK")
}

func TestRegistered(t *testing.T) {
	if _, err := upstream.NewProvisioner("mysql", upstream.Options{}); err != nil {
		t.Fatal(err)
	}
}

func TestRestrictionUnknown(t *testing.T) {
	u := open(t, upstream.Config{Name: "x", Address: "127.0.0.1:1", Database: "x"}, upstream.Options{})
	r, why := u.Restriction()
	if r != upstream.RestrictionUnknown || !strings.Contains(why, "'@'%'") || !strings.Contains(why, "ACCOUNT LOCK") {
		t.Fatalf("Restriction = %v, %q", r, why)
	}
}

func TestBadTLSSetting(t *testing.T) {
	p, _ := upstream.NewProvisioner(EngineName, upstream.Options{})
	_, err := p.Open(upstream.Config{Name: "x", Address: "127.0.0.1:1", Database: "x", TLS: "always"})
	if err == nil || !strings.Contains(err.Error(), "verify-full") {
		t.Fatalf("Open with tls: always = %v, want an error naming the valid settings", err)
	}
}

func TestNativeHashMatchesServer(t *testing.T) {
	m := testenv.StartMariaDB(t)
	rows, err := m.Query(context.Background(), "", "SELECT PASSWORD(?)", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if got := nativeHash("s3cret"); got != rows[0][0] {
		t.Fatalf("nativeHash = %s, server's PASSWORD() = %s", got, rows[0][0])
	}
}
