package mysql

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/upstream"
)

func TestCheckCreatesRolesWithGrants(t *testing.T) {
	m, u := newDatabase(t, nil)
	ctx := context.Background()
	if u.Ready() {
		t.Fatal("Ready before any Check")
	}
	for range 2 { // idempotent
		if err := u.Check(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if !u.Ready() {
		t.Fatal("not Ready after a passing Check")
	}
	for _, l := range access.Levels {
		role := u.RoleName(l)
		rows, err := m.Query(ctx, "", "SELECT is_role FROM mysql.user WHERE User = ?", role)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || rows[0][0] != "Y" {
			t.Fatalf("role %s: mysql.user rows %v, want one role", role, rows)
		}
		grants, err := m.Query(ctx, "", "SHOW GRANTS FOR "+quoteIdent(role))
		if err != nil {
			t.Fatal(err)
		}
		if got := schemaGrant(grants, u.cfg.Database); !slices.Equal(got, sorted(privilegesOf(l))) {
			t.Fatalf("grants of %s on %s: %v, want %v (all grants: %v)", role, u.cfg.Database, got, sorted(privilegesOf(l)), grants)
		}
		for _, never := range []string{"FILE", "SUPER", "GRANT OPTION", "CREATE USER"} {
			if strings.Contains(fmt.Sprint(grants), never) {
				t.Fatalf("role %s holds %s: %v", role, never, grants)
			}
		}
	}
}

// A weaker admin user is told exactly which GRANT statements to run, and
// passes once they are run.
func TestCheckReportsMissingPrivileges(t *testing.T) {
	m, _ := newDatabase(t, nil)
	ctx := context.Background()
	weak := fmt.Sprintf("weak%d", dbSeq.Add(1))
	db := fmt.Sprintf("db%d", dbSeq.Load()-1)
	if err := m.Exec(ctx, "", fmt.Sprintf("CREATE USER '%[1]s'@'%%' IDENTIFIED BY 'pw'; GRANT PROCESS ON *.* TO '%[1]s'@'%%'; GRANT SELECT, INSERT ON `%[2]s`.* TO '%[1]s'@'%%' WITH GRANT OPTION", weak, db)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Exec(context.Background(), "", fmt.Sprintf("DROP USER '%s'@'%%'", weak)) })
	u := open(t, upstream.Config{Name: db, Address: m.Address(), Database: db, AdminUser: weak, AdminPassword: "pw", TLS: "disable"}, upstream.Options{})
	err := u.Check(ctx)
	if !errors.Is(err, ErrPrivileges) {
		t.Fatalf("Check = %v, want ErrPrivileges", err)
	}
	who := fmt.Sprintf("'%s'@'%%'", weak)
	fixes := []string{
		"GRANT CREATE USER, CONNECTION ADMIN ON *.* TO " + who + ";",
		"GRANT SELECT ON mysql.* TO " + who + ";",
		"GRANT SHOW VIEW, UPDATE, DELETE, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, CREATE, ALTER, DROP, INDEX, REFERENCES, CREATE VIEW, TRIGGER ON `" + db + "`.* TO " + who + " WITH GRANT OPTION;",
	}
	for _, f := range fixes {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("Check's error does not contain %q:\n%v", f, err)
		}
	}
	if u.Ready() {
		t.Fatal("Ready after a failing Check")
	}
	if err := u.WithLogin(ctx, "alice", access.ReadOnly, func(string, string) error { return nil }); !errors.Is(err, ErrPrivileges) {
		t.Fatalf("WithLogin before the fix = %v, want ErrPrivileges", err)
	}
	if err := m.Exec(ctx, "", strings.Join(fixes, " ")); err != nil {
		t.Fatal(err)
	}
	if err := u.Check(ctx); err != nil {
		t.Fatalf("Check after running the reported statements: %v", err)
	}
}

func TestCheckWrongAdminPassword(t *testing.T) {
	_, u := newDatabase(t, func(c *upstream.Config) { c.AdminPassword = "wrong" })
	if err := u.Check(context.Background()); !errors.Is(err, ErrAdminLogin) {
		t.Fatalf("Check = %v, want ErrAdminLogin", err)
	}
}

// schemaGrant is the sorted privileges of SHOW GRANTS' line for schema.
func schemaGrant(grants [][]string, schema string) []string {
	for _, g := range grants {
		line := g[0]
		on := strings.Index(line, " ON `"+schema+"`.* TO ")
		if on < 0 {
			continue
		}
		return sorted(strings.Split(strings.TrimPrefix(line[:on], "GRANT "), ", "))
	}
	return nil
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
