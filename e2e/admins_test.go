package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/api"
)

// administratorsConfig makes the members of keygate-admins administrators.
const administratorsConfig = "administrators:\n  groups: [keygate-admins]\n"

// notAdministrator is what a person outside keygate-admins is told.
const notAdministrator = " is not a keygate administrator: administrators are the members of keygate-admins (config administrators.groups)"

// asPerson runs keygate on a person's machine: no server config, no
// profile, the session credential in KEYGATE_SESSION and the server named
// by --server and --ca.
func (s *kgServer) asPerson(t testing.TB, session string, args ...string) result {
	t.Helper()
	cmd := exec.Command(keygateBin, append(args, "--server", s.apiURL, "--ca", s.caFile)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYGATE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "KEYGATE_CONFIG_DIR="+t.TempDir())
	if session != "" {
		cmd.Env = append(cmd.Env, "KEYGATE_SESSION="+session)
	}
	return runCmd(t, cmd)
}

// auditLines decodes the lines of keygate audit --json.
func auditLines(t testing.TB, out string) []api.AuditEvent {
	t.Helper()
	var events []api.AuditEvent
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e api.AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line is not JSON: %q", sc.Text())
		}
		events = append(events, e)
	}
	return events
}

// lastEvent is the last event of type typ about user, or fails the test.
func lastEvent(t testing.TB, events []api.AuditEvent, typ, user string) api.AuditEvent {
	t.Helper()
	for i := len(events) - 1; i >= 0; i-- {
		if events[i].Type == typ && events[i].User == user {
			return events[i]
		}
	}
	t.Fatalf("no %s event about %s in %+v", typ, user, events)
	return api.AuditEvent{}
}

// The acceptance: an administrator in keygate-admins (as the
// identity provider asserts at sign-in) signs in with keygate login,
// disables a person and ends a session from keygate admin with their own
// CLI session, and both are audited with their name; a person who is not
// an administrator gets 403 from every admin command.
func TestAdminSignsInAsThemselves(t *testing.T) {
	e := ssoServer(t)
	raw, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), administratorsConfig) {
		if err := os.WriteFile(e.cfgPath, append(raw, administratorsConfig...), 0o600); err != nil {
			t.Fatal(err)
		}
		e.kg(t, 0, "admin", "reload")
	}
	admin := e.addPerson(t, "kgadmin", person{groups: []string{"keygate-admins"}})
	victim := e.addPerson(t, "leaver", person{groups: []string{"analysts"}})
	other := e.addPerson(t, "other", person{groups: []string{"analysts"}})
	outsider := e.addPerson(t, "outsider", person{groups: []string{"analysts"}})
	e.mustSignInHTTP(t, signIn("saml", victim))
	ended := e.mustSignInHTTP(t, signIn("saml", other))

	c := e.newCLI(t)
	c.mustLogin(t, signIn("oidc", admin))
	r := c.run(t, nil, "admin", "user", "disable", victim)
	if r.code != 0 || !strings.Contains(r.stdout, "disabled "+victim+"; revoked 1 sign-in session") {
		t.Fatalf("admin user disable as %s: exit %d: %s %s", admin, r.code, r.stdout, r.stderr)
	}
	if r = c.run(t, nil, "admin", "session", "revoke", ended.Session.ID); r.code != 0 {
		t.Fatalf("admin session revoke as %s: exit %d: %s", admin, r.code, r.stderr)
	}
	if r = e.tokenWithSession(t, ended.AccessToken, "orders"); r.code == 0 {
		t.Fatal("a session the administrator ended still gets tokens")
	}

	r = c.run(t, nil, "audit", "--json", "--type", "admin", "--since", "1h")
	if r.code != 0 {
		t.Fatalf("audit as %s: exit %d: %s", admin, r.code, r.stderr)
	}
	events := auditLines(t, r.stdout)
	if ev := lastEvent(t, events, "admin.user.disable", victim); ev.Actor != admin {
		t.Errorf("disable audited with actor %q, want %s", ev.Actor, admin)
	}
	if ev := lastEvent(t, events, "admin.session.revoke", other); ev.Actor != admin || ev.Detail["session_id"] != ended.Session.ID {
		t.Errorf("session revoke audited as %+v, want actor %s", ev, admin)
	}
	r = c.run(t, nil, "audit", "--type", "admin.user.disable", "--user", victim, "--since", "1h")
	mustContain(t, "audit table", r.stdout, "by "+admin)

	o := e.newCLI(t)
	o.mustLogin(t, signIn("saml", outsider))
	for _, args := range [][]string{{"admin", "user", "list"}, {"admin", "user", "disable", admin}, {"admin", "session", "list"},
		{"admin", "session", "create", outsider}, {"admin", "group", "add-member", "keygate-admins", outsider}, {"admin", "reload"},
		{"audit", "--since", "1h"}, {"access", "who", "--db", "orders"}} {
		r := o.run(t, nil, args...)
		if r.code == 0 || !strings.Contains(r.stderr, outsider+notAdministrator) {
			t.Errorf("keygate %s as %s: exit %d: %s", strings.Join(args, " "), outsider, r.code, r.stderr)
		}
	}
}

// Bootstrap and break-glass: the data_dir credential makes the first
// administrator a session; that administrator works without the server's
// config; removing them from keygate-admins, disabling them and a reload
// that names other groups each take their rights away on the next
// command. Every use of the data_dir credential is audited as such and
// warned about in the log.
func TestAdminBootstrapAndBreakGlass(t *testing.T) {
	s := startServer(t, "admins", administratorsConfig, true)
	s.addUser(t, "ann", "keygate-admins")
	s.addUser(t, "bob", "analysts")
	s.addUser(t, "dave", "analysts")
	ann := s.session(t, "ann")

	if r := s.asPerson(t, "", "admin", "user", "list"); r.code == 0 || !strings.Contains(r.stderr, "pass --config") {
		t.Errorf("admin user list with no session: exit %d: %s", r.code, r.stderr)
	}
	r := s.asPerson(t, ann, "admin", "group", "add-member", "keygate-admins", "dave")
	if r.code != 0 {
		t.Fatalf("ann adds dave to keygate-admins: exit %d: %s", r.code, r.stderr)
	}
	r = s.asPerson(t, ann, "admin", "session", "create", "dave", "--ttl", "1h")
	if r.code != 0 {
		t.Fatalf("ann makes dave a session: exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	dave := lines[len(lines)-1]
	if r = s.asPerson(t, dave, "admin", "user", "list"); r.code != 0 || !strings.Contains(r.stdout, "bob") {
		t.Fatalf("dave lists people: exit %d: %s", r.code, r.stderr)
	}
	bob := s.session(t, "bob")
	if r = s.asPerson(t, bob, "admin", "user", "list"); r.code == 0 || !strings.Contains(r.stderr, "bob"+notAdministrator) {
		t.Errorf("bob lists people: exit %d: %s", r.code, r.stderr)
	}

	// Removed from keygate-admins: refused on the next command.
	s.kg(t, 0, "admin", "group", "remove-member", "keygate-admins", "dave")
	if r = s.asPerson(t, dave, "admin", "user", "list"); r.code == 0 || !strings.Contains(r.stderr, "dave"+notAdministrator) {
		t.Errorf("dave after leaving keygate-admins: exit %d: %s", r.code, r.stderr)
	}

	// A reload that names other groups, asked for by ann herself.
	raw, err := os.ReadFile(s.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.cfgPath, []byte(strings.Replace(string(raw), administratorsConfig, "administrators:\n  groups: [platform-admins]\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if r = s.asPerson(t, ann, "admin", "reload"); r.code != 0 {
		t.Fatalf("ann reloads: exit %d: %s", r.code, r.stderr)
	}
	if r = s.asPerson(t, ann, "admin", "user", "list"); r.code == 0 || !strings.Contains(r.stderr, "ann is not a keygate administrator: administrators are the members of platform-admins") {
		t.Errorf("ann after the reload: exit %d: %s", r.code, r.stderr)
	}
	s.kg(t, 0, "admin", "group", "add", "platform-admins")
	s.kg(t, 0, "admin", "group", "add-member", "platform-admins", "ann")
	if r = s.asPerson(t, ann, "admin", "user", "list"); r.code != 0 {
		t.Errorf("ann in platform-admins: exit %d: %s", r.code, r.stderr)
	}
	// Disabled: her session is gone.
	s.kg(t, 0, "admin", "user", "disable", "ann")
	if r = s.asPerson(t, ann, "admin", "user", "list"); r.code == 0 || !strings.Contains(r.stderr, "ann was disabled") {
		t.Errorf("ann after being disabled: exit %d: %s", r.code, r.stderr)
	}

	events := s.audit(t, "--since", "1h")
	if ev := lastEvent(t, events, "admin.session.create", "ann"); ev.Actor != api.BreakGlassActor || ev.Detail["administrator"] != true {
		t.Errorf("the bootstrap session: %+v", ev)
	}
	if ev := lastEvent(t, events, "admin.session.create", "dave"); ev.Actor != "ann" || ev.Detail["administrator"] != true {
		t.Errorf("the session ann made for dave: %+v", ev)
	}
	if ev := lastEvent(t, events, "admin.group.add-member", "dave"); ev.Actor != "ann" {
		t.Errorf("ann's add-member: %+v", ev)
	}
	if ev := lastEvent(t, events, "admin.user.disable", "ann"); ev.Actor != api.BreakGlassActor {
		t.Errorf("the break-glass disable: %+v", ev)
	}
	reload := lastEvent(t, events, "config.reload", "")
	if reload.Detail["requested_by"] != "ann" || !slices.Equal(anyStrings(reload.Detail["administrators"]), []string{"platform-admins"}) ||
		!slices.Equal(anyStrings(reload.Detail["administrators_before"]), []string{"keygate-admins"}) {
		t.Errorf("the reload event: %+v", reload)
	}
	log, err := os.ReadFile(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "server log", string(log), "the data_dir admin credential was used while administrators.groups names the administrators")
}

func anyStrings(v any) []string {
	list, _ := v.([]any)
	out := []string{}
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
