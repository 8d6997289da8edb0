package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/keygate/keygate/localmysql"
)

// MariaDB is a running MariaDB with a keygate admin user.
type MariaDB struct {
	*localmysql.Server
	AdminUser     string
	AdminPassword string
}

var (
	myOnce   sync.Once
	myShared *MariaDB
	myErr    error
)

// adminGrants are the global privileges keygate's admin user needs on
// MariaDB: CREATE USER to create, lock and re-password person users and
// create roles; PROCESS to see every user's connections in
// information_schema.PROCESSLIST; CONNECTION ADMIN to KILL them; SELECT on
// the mysql schema for SHOW GRANTS FOR and reading accounts back. On each
// database it serves, the admin also holds ALL PRIVILEGES WITH GRANT
// OPTION (CreateDatabase grants it) so it can grant ro/rw/admin roles.
// Not included: writing the mysql schema (it would make the admin root),
// which MariaDB requires for SET DEFAULT ROLE FOR another user, so person
// sessions enable their role with SET ROLE.
const adminGrants = "GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO %[1]s; GRANT SELECT ON mysql.* TO %[1]s"

// StartMariaDB returns the package's shared MariaDB, starting it on first
// use. Call Main from TestMain so it is stopped at the end.
func StartMariaDB(t testing.TB) *MariaDB {
	t.Helper()
	myOnce.Do(func() {
		ctx := context.Background()
		// TLS, so that keygate's upstream TLS is exercised; packets of
		// 64 MiB, so that values over the protocol's 16 MiB frame fit.
		s, err := localmysql.Start(ctx, localmysql.Options{TLS: true, Settings: map[string]string{"max_allowed_packet": "64M"}})
		if err != nil {
			myErr = err
			return
		}
		m := &MariaDB{Server: s, AdminUser: "keygate_admin", AdminPassword: "admin-" + s.SuperPassword}
		create := fmt.Sprintf("CREATE USER %s IDENTIFIED BY '%s'; "+adminGrants, m.admin(), m.AdminPassword)
		if err := s.Exec(ctx, "", create); err != nil {
			s.Stop()
			myErr = err
			return
		}
		myShared = m
	})
	if myErr != nil {
		t.Fatalf("start MariaDB: %v", myErr)
	}
	return myShared
}

// admin is the admin user's account name, quoted for SQL.
func (m *MariaDB) admin() string { return "'" + m.AdminUser + "'@'%'" }

// CreateDatabase creates a database the admin user holds every privilege
// on, with the right to grant them, runs setup in it as the admin user (so
// it sees what keygate will see), and drops it when the test ends.
func (m *MariaDB) CreateDatabase(t testing.TB, name, setup string) {
	t.Helper()
	ctx := context.Background()
	if err := m.Exec(ctx, "", fmt.Sprintf("CREATE DATABASE `%s`; GRANT ALL PRIVILEGES ON `%[1]s`.* TO %s WITH GRANT OPTION", name, m.admin())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Exec(context.Background(), "", fmt.Sprintf("DROP DATABASE IF EXISTS `%s`", name))
	})
	if setup != "" {
		cfg := m.AdminConfig(name)
		cfg.MultiStatements = true
		if _, err := m.open(t, cfg).ExecContext(ctx, setup); err != nil {
			t.Fatalf("setup of %s: %v", name, err)
		}
	}
}

// AdminConfig is a go-sql-driver configuration for the admin user on db.
func (m *MariaDB) AdminConfig(db string) *mysql.Config {
	cfg := m.Config(db)
	cfg.User, cfg.Passwd = m.AdminUser, m.AdminPassword
	return cfg
}

// Connect opens a pool as root on db, closed when the test ends.
func (m *MariaDB) Connect(t testing.TB, db string) *sql.DB {
	t.Helper()
	return m.open(t, m.Config(db))
}

func (m *MariaDB) open(t testing.TB, cfg *mysql.Config) *sql.DB {
	t.Helper()
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { db.Close() })
	return db
}
