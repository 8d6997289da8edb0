package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/api"
)

// kgJSON runs keygate, wants exit 0, and decodes its one JSON document.
func kgJSON[T any](t *testing.T, s *kgServer, args ...string) T {
	t.Helper()
	out := s.kg(t, 0, args...)
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("keygate %s printed no single JSON document: %v\n%s", strings.Join(args, " "), err, out)
	}
	return v
}

// TestAdminPeopleAndGroups drives the whole administration of people and
// groups from the CLI, against a live gateway.
func TestAdminPeopleAndGroups(t *testing.T) {
	s := startServer(t, "adminppl", "", true)
	s.addUser(t, "alice", "analysts")
	s.addUser(t, "bob", "engineers")
	s.addUser(t, "carol", "analysts")

	t.Run("list and show", func(t *testing.T) {
		out := s.kg(t, 0, "admin", "user", "list")
		mustContain(t, "user list", out, "NAME")
		for _, want := range []string{"alice", "alice@example.com", "analysts", "admin"} {
			mustContain(t, "user list", out, want)
		}
		people := kgJSON[[]api.Person](t, s, "admin", "user", "list", "--json")
		var names []string
		for _, p := range people {
			names = append(names, p.Name)
		}
		if !slices.Equal(names, []string{"alice", "bob", "carol"}) {
			t.Fatalf("user list --json names = %v", names)
		}
		s.session(t, "alice")
		p := kgJSON[api.Person](t, s, "admin", "user", "show", "alice", "--json")
		if p.Name != "alice" || !p.Active || !slices.Equal(p.Groups, []string{"analysts"}) || p.SignInSessions == nil || *p.SignInSessions != 1 ||
			p.LiveSessions == nil || *p.LiveSessions != 0 {
			t.Fatalf("user show --json = %+v", p)
		}
		out = s.kg(t, 0, "admin", "user", "show", "alice")
		mustContain(t, "user show", out, "sign-in sessions:")
		mustContain(t, "user show", out, "1 active")
		groups := kgJSON[[]api.GroupInfo](t, s, "admin", "group", "list", "--json")
		if len(groups) != 2 || groups[0].Name != "analysts" || !slices.Equal(groups[0].Members, []string{"alice", "carol"}) {
			t.Fatalf("group list --json = %+v", groups)
		}
		mustContain(t, "group members", s.kg(t, 0, "admin", "group", "members", "analysts"), "alice\ncarol\n")
		g := kgJSON[api.GroupInfo](t, s, "admin", "group", "show", "engineers", "--json")
		if !slices.Equal(g.Members, []string{"bob"}) {
			t.Fatalf("group show --json = %+v", g)
		}
		mustContain(t, "group show", s.kg(t, 0, "admin", "group", "show", "engineers"), "1 member: bob")
		r := s.run(t, nil, "admin", "user", "show", "bobb")
		if r.code != 1 || !strings.Contains(r.stderr, "no person named bobb (keygate admin user list shows everyone") {
			t.Fatalf("show an unknown person: exit %d: %s", r.code, r.stderr)
		}
	})

	t.Run("db list", func(t *testing.T) {
		env := []string{"KEYGATE_SESSION=" + s.session(t, "alice")}
		r := s.run(t, env, "db", "list")
		if r.code != 0 {
			t.Fatalf("db list: exit %d: %s", r.code, r.stderr)
		}
		mustContain(t, "db list", r.stdout, "DATABASE")
		mustContain(t, "db list", r.stdout, "db-readonly")
		r = s.run(t, env, "db", "list", "--json")
		var dbs []api.DatabaseAccess
		if err := json.Unmarshal([]byte(r.stdout), &dbs); err != nil || r.code != 0 {
			t.Fatalf("db list --json: exit %d %v: %s", r.code, err, r.stdout)
		}
		if len(dbs) != 1 || dbs[0].Database != "orders" || dbs[0].Access != "ro" || dbs[0].PermissionSet != "db-readonly" || dbs[0].Group != "analysts" {
			t.Fatalf("alice's databases = %+v", dbs)
		}
		r = s.run(t, []string{"KEYGATE_SESSION=" + s.session(t, "bob")}, "db", "list", "--json")
		if err := json.Unmarshal([]byte(r.stdout), &dbs); err != nil || len(dbs) == 0 ||
			!slices.ContainsFunc(dbs, func(d api.DatabaseAccess) bool { return d.Access == "rw" && d.PermissionSet == "db-readwrite" }) {
			t.Fatalf("bob's databases = %+v (%v)", dbs, err)
		}
	})

	t.Run("disable and enable", func(t *testing.T) {
		tok := s.token(t, "alice", "orders")
		sl := s.startSleeper(t, "alice", "orders", tok, "admin-disable")
		if p := kgJSON[api.Person](t, s, "admin", "user", "show", "alice", "--json"); p.LiveSessions == nil || *p.LiveSessions != 1 {
			t.Fatalf("live sessions of alice with psql connected: %+v", p.LiveSessions)
		}
		out := s.kg(t, 0, "admin", "user", "disable", "alice")
		sl.endedWithin(t, "keygate admin user disable returned", time.Now(), time.Second, "access revoked")
		mustContain(t, "disable", out, "disabled alice; revoked 1 sign-in session\n")
		if active := s.kg(t, 0, "admin", "session", "list", "--user", "alice"); strings.Count(active, "\n") != 1 {
			t.Fatalf("active sign-in sessions after disable:\n%s", active)
		}
		if r := s.tokenResult(t, "alice", "orders"); r.code == 0 || !strings.Contains(r.stderr, "disabled") && !strings.Contains(r.stderr, "revoked") {
			t.Fatalf("token after disable: exit %d: %s", r.code, r.stderr)
		}
		if r := s.psql(t, s.connString("alice", "orders"), tok, "SELECT 1"); r.code == 0 {
			t.Fatal("a token from before the disable still connects")
		}
		mustContain(t, "enable", s.kg(t, 0, "admin", "user", "enable", "alice"), "enabled alice")
		// The old sign-in session stays revoked; a new one works.
		if r := s.tokenResult(t, "alice", "orders"); r.code == 0 {
			t.Fatal("a sign-in session from before the disable works after enable")
		}
		s.forgetSession("alice")
		tok = s.token(t, "alice", "orders")
		if r := s.psql(t, s.connString("alice", "orders"), tok, "SELECT count(*) FROM customers"); r.code != 0 || strings.TrimSpace(r.stdout) != "2" {
			t.Fatalf("psql after enable: exit %d: %s %s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("rename user", func(t *testing.T) {
		// A token issued to bob before the rename names "bob": it must not
		// let in whoever holds that name afterwards.
		bobs := s.token(t, "bob", "orders")
		mustContain(t, "rename", s.kg(t, 0, "admin", "user", "rename", "bob", "robert"), "renamed bob to robert")
		s.addUser(t, "bob", "engineers")
		if r := s.psql(t, s.connString("bob", "orders"), bobs, "SELECT 1"); r.code == 0 {
			t.Fatal("a token issued before a rename let in the new holder of the name")
		}
		s.kg(t, 0, "admin", "user", "delete", "bob")
		if p := kgJSON[api.Person](t, s, "admin", "user", "show", "robert", "--json"); !slices.Equal(p.Groups, []string{"engineers"}) {
			t.Fatalf("robert = %+v", p)
		}
		if r := s.run(t, nil, "admin", "user", "show", "bob"); r.code != 1 || !strings.Contains(r.stderr, "no person named bob") {
			t.Fatalf("show the old name: exit %d: %s", r.code, r.stderr)
		}
		if r := s.run(t, nil, "admin", "user", "rename", "robert", "ALICE"); r.code != 1 || !strings.Contains(r.stderr, "choose another name") {
			t.Fatalf("rename onto alice: exit %d: %s", r.code, r.stderr)
		}
	})

	t.Run("group delete, history and rename", func(t *testing.T) {
		s.kg(t, 0, "admin", "group", "add", "ops")
		mustContain(t, "add-member", s.kg(t, 0, "admin", "group", "add-member", "ops", "alice"), "(1 member)")
		mustContain(t, "add-member", s.kg(t, 0, "admin", "group", "add-member", "ops", "robert"), "(2 members)")
		r := s.run(t, nil, "admin", "group", "delete", "ops")
		if r.code != 1 || !strings.Contains(r.stderr, "keygate admin group delete ops --force") {
			t.Fatalf("delete a group with members: exit %d: %s", r.code, r.stderr)
		}
		out := s.kg(t, 0, "admin", "group", "delete", "ops", "--force")
		mustContain(t, "delete --force", out, "after removing 2 members: alice, robert")
		h := s.kg(t, 0, "admin", "group", "history", "ops")
		for _, line := range strings.Split(strings.TrimSpace(h), "\n")[1:] {
			if f := strings.Fields(line); len(f) < 6 || f[len(f)-2] == "-" {
				t.Fatalf("a membership without its end in the history:\n%s", h)
			}
		}
		if n := strings.Count(h, "\n"); n != 3 {
			t.Fatalf("history of ops has %d lines, want a header and 2:\n%s", n, h)
		}
		mustContain(t, "add again", s.kg(t, 0, "admin", "group", "add", "ops"), "created group ops")

		mustContain(t, "rename group", s.kg(t, 0, "admin", "group", "rename", "engineers", "platform"), "renamed group engineers to platform")
		mustContain(t, "history after rename", s.kg(t, 0, "admin", "group", "history", "platform"), "robert")
		if g := kgJSON[api.GroupInfo](t, s, "admin", "group", "show", "platform", "--json"); !slices.Equal(g.Members, []string{"robert"}) {
			t.Fatalf("platform = %+v", g)
		}
	})

	t.Run("delete user ends the live session", func(t *testing.T) {
		tok := s.token(t, "carol", "orders")
		sl := s.startSleeper(t, "carol", "orders", tok, "admin-delete")
		mustContain(t, "delete", s.kg(t, 0, "admin", "user", "delete", "carol"), "deleted carol (was in 1 group)")
		sl.endedWithin(t, "keygate admin user delete returned", time.Now(), time.Second, "access revoked")
		h := s.kg(t, 0, "admin", "group", "history", "analysts")
		for _, line := range strings.Split(h, "\n") {
			if strings.HasPrefix(line, "carol ") && strings.Contains(line, " - ") {
				t.Fatalf("carol's membership did not end:\n%s", h)
			}
		}
		if r := s.run(t, nil, "admin", "user", "show", "carol"); r.code != 1 {
			t.Fatalf("show a deleted person: exit %d", r.code)
		}
	})

	t.Run("unknown commands", func(t *testing.T) {
		r := s.run(t, nil, "admin", "user", "lst")
		if r.code != 2 || !strings.Contains(r.stderr, `keygate: unknown command "lst" for "keygate admin user"; did you mean "list"? (see keygate admin user --help)`) {
			t.Fatalf("admin user lst: exit %d: %s", r.code, r.stderr)
		}
		if r := s.run(t, nil, "admin", "foo"); r.code != 2 || !strings.Contains(r.stderr, `unknown command "foo" for "keygate admin"`) {
			t.Fatalf("admin foo: exit %d: %s", r.code, r.stderr)
		}
		if r := s.run(t, nil, "admin", "user"); r.code != 0 || !strings.Contains(r.stdout, "Available Commands:") {
			t.Fatalf("admin user, bare: exit %d: %s", r.code, r.stderr)
		}
	})

	t.Run("every change is audited", func(t *testing.T) {
		var types []string
		for _, e := range s.audit(t, "--type", "admin") {
			types = append(types, e.Type)
		}
		for _, want := range []string{"admin.user.disable", "admin.user.enable", "admin.user.rename", "admin.user.delete",
			"admin.group.remove-member", "admin.group.delete", "admin.group.rename"} {
			if !slices.Contains(types, want) {
				t.Errorf("no %s in keygate audit --type admin: %v", want, types)
			}
		}
		dis := s.audit(t, "--type", "admin.user.disable", "--user", "alice")
		if len(dis) != 1 || len(dis[0].Detail["revoked_sessions"].([]any)) != 1 {
			t.Errorf("disable events = %+v", dis)
		}
	})
}
