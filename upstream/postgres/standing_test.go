package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/upstream"
)

// The scan lists a stray LOGIN role with a password and a superuser, not
// keygate's admin role, its person roles at rest or PostgreSQL's pg_
// roles; a person role made LOGIN behind keygate's back is listed as
// keygate's own.
func TestStandingCredentials(t *testing.T) {
	p, u := newDatabase(t, "up_standing")
	ctx := context.Background()
	s := connect(t, u, "stan", access.ReadOnly)
	s.conn.Close()
	if err := p.Exec(ctx, "postgres", `DROP ROLE IF EXISTS legacy; CREATE ROLE legacy LOGIN PASSWORD 'x'`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Exec(context.Background(), "postgres", "DROP ROLE IF EXISTS legacy; ALTER ROLE \"stan.ro\" NOLOGIN")
	})
	found := func() map[string]upstream.Standing {
		t.Helper()
		list, err := u.Standing(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]upstream.Standing{}
		for _, s := range list {
			m[s.Name] = s
		}
		return m
	}
	got := found()
	if l, ok := got["legacy"]; !ok || l.Managed || !strings.Contains(l.Why, "can log in") {
		t.Errorf("legacy: %+v (listed %v), want a LOGIN role that is not keygate's", l, ok)
	}
	if _, ok := got[p.AdminUser]; ok {
		t.Error("keygate's admin role is listed")
	}
	if _, ok := got["stan.ro"]; ok {
		t.Error("a person role at rest is listed")
	}
	for name := range got {
		if strings.HasPrefix(name, "pg_") {
			t.Errorf("PostgreSQL's own role %s is listed", name)
		}
	}
	super := false
	for _, st := range got {
		super = super || strings.Contains(st.Why, "superuser")
	}
	if !super {
		t.Error("no superuser listed; the test server's bootstrap superuser is one")
	}

	if err := p.Exec(ctx, "postgres", `ALTER ROLE "stan.ro" LOGIN`); err != nil {
		t.Fatal(err)
	}
	if st, ok := found()["stan.ro"]; !ok || !st.Managed {
		t.Errorf("stan.ro made LOGIN at rest: %+v (listed %v), want it listed as keygate's own", st, ok)
	}
}
