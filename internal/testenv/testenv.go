// Package testenv starts real servers for tests: a throwaway PostgreSQL with
// the admin role and database that keygate expects, and a throwaway MariaDB
// with its admin user, each shared by every test in a package.
package testenv

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/localpg"
)

// Postgres is a running PostgreSQL with a keygate admin role.
type Postgres struct {
	*localpg.Server
	AdminUser     string
	AdminPassword string
}

var (
	pgOnce   sync.Once
	pgShared *Postgres
	pgErr    error
)

// StartPostgres returns the package's shared PostgreSQL, starting it on
// first use. Call Main from TestMain so it is stopped at the end.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	pgOnce.Do(func() {
		ctx := context.Background()
		s, err := localpg.Start(ctx, localpg.Options{})
		if err != nil {
			pgErr = err
			return
		}
		p := &Postgres{Server: s, AdminUser: "keygate_admin", AdminPassword: "admin-" + s.SuperPassword}
		// The privileges keygate's admin role needs: CREATEROLE to manage
		// person roles, pg_signal_backend and pg_read_all_stats to end
		// backends and see where they came from.
		if err := s.Exec(ctx, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN CREATEROLE PASSWORD '%s'; GRANT pg_signal_backend, pg_read_all_stats TO %[1]s", p.AdminUser, p.AdminPassword)); err != nil {
			s.Stop()
			pgErr = err
			return
		}
		pgShared = p
	})
	if pgErr != nil {
		t.Fatalf("start PostgreSQL: %v", pgErr)
	}
	return pgShared
}

// Main runs the package's tests, then runs cleanups and stops the shared
// servers.
func Main(m *testing.M, cleanups ...func()) {
	code := m.Run()
	for _, c := range cleanups {
		c()
	}
	if pgShared != nil {
		pgShared.Stop()
	}
	if myShared != nil {
		myShared.Stop()
	}
	os.Exit(code)
}

// CreateDatabase creates a database owned by the admin role, runs setup in
// it as the admin role (so its objects belong to that role), and drops it
// when the test ends.
func (p *Postgres) CreateDatabase(t testing.TB, name, setup string) {
	t.Helper()
	ctx := context.Background()
	if err := p.Exec(ctx, "postgres", fmt.Sprintf("CREATE DATABASE %q OWNER %s", name, p.AdminUser)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Exec(context.Background(), "postgres", fmt.Sprintf("DROP DATABASE IF EXISTS %q WITH (FORCE)", name))
	})
	if setup != "" {
		if err := p.Exec(ctx, name, "SET ROLE "+p.AdminUser+";\n"+setup); err != nil {
			t.Fatal(err)
		}
	}
}

// Connect opens a connection as the superuser to db.
func (p *Postgres) Connect(t testing.TB, db string) *pgconn.PgConn {
	t.Helper()
	c, err := pgconn.Connect(context.Background(), p.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// Query runs sql as the superuser on db and returns the rows as text.
func (p *Postgres) Query(t testing.TB, db, sql string) [][]string {
	t.Helper()
	c := p.Connect(t, db)
	res := c.ExecParams(context.Background(), sql, nil, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatalf("%s: %v", sql, res.Err)
	}
	var rows [][]string
	for _, r := range res.Rows {
		var row []string
		for _, v := range r {
			row = append(row, string(v))
		}
		rows = append(rows, row)
	}
	return rows
}
