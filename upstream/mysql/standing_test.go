package mysql

import (
	"context"
	"strings"
	"testing"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/upstream"
)

// The scan lists a stray user with a password and the superuser, not
// keygate's admin user or its person users while locked; a person user
// unlocked behind keygate's back is listed as keygate's own.
func TestStandingCredentials(t *testing.T) {
	m, u := newDatabase(t, nil)
	ctx := context.Background()
	login(t, u, "stan", access.ReadOnly)
	admin := m.Connect(t, "")
	for _, stmt := range []string{"DROP USER IF EXISTS 'legacy'@'%'", "CREATE USER 'legacy'@'%' IDENTIFIED BY 'x'"} {
		if _, err := admin.ExecContext(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { admin.ExecContext(context.Background(), "DROP USER IF EXISTS 'legacy'@'%'") })
	found := func() map[string]upstream.Standing {
		t.Helper()
		list, err := u.Standing(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]upstream.Standing{}
		for _, st := range list {
			out[st.Name] = st
		}
		return out
	}
	got := found()
	if l, ok := got["'legacy'@'%'"]; !ok || l.Managed || !strings.Contains(l.Why, "password") {
		t.Errorf("legacy: %+v (listed %v), want a user with a password that is not keygate's", l, ok)
	}
	if _, ok := got[account(m.AdminUser)]; ok {
		t.Error("keygate's admin user is listed")
	}
	user := UserName("stan", access.ReadOnly)
	if _, ok := got[account(user)]; ok {
		t.Errorf("a person user at rest (locked) is listed: %+v", got[account(user)])
	}
	if _, err := admin.ExecContext(ctx, "ALTER USER "+account(user)+" ACCOUNT UNLOCK"); err != nil {
		t.Fatal(err)
	}
	if st, ok := found()[account(user)]; !ok || !st.Managed {
		t.Errorf("%s unlocked at rest: %+v (listed %v), want it listed as keygate's own", user, st, ok)
	}
}
