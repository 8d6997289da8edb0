package e2e

import (
	"strings"
	"testing"

	"github.com/keygate/keygate/api"
)

// A permission set's session_duration reaches the gateway from the config:
// a session opened under it starts with its limit on record, and one under
// a set without it has none. The limit ending a session is tested in
// gateway and gateway/pgwire, with limits of milliseconds: the config's
// minimum of a minute is too long to wait for here.
func TestSessionDurationIsArmed(t *testing.T) {
	s := startServerWith(t, "sessdur", serverOptions{
		permissionSets: "  - name: prod-hourly\n    access: ro\n    session_duration: 1h\n",
		assignments:    "  - group: oncall\n    permission_set: prod-hourly\n    databases: [orders]\n",
		stopWithTest:   true,
	})
	s.addUser(t, "olga", "oncall")
	s.addUser(t, "abe", "analysts")
	for _, user := range []string{"olga", "abe"} {
		if r := s.psql(t, s.connString(user, "orders"), s.token(t, user, "orders"), "SELECT count(*) FROM orders"); r.code != 0 || strings.TrimSpace(r.stdout) != "2" {
			t.Fatalf("%s's query: exit %d: %s%s", user, r.code, r.stdout, r.stderr)
		}
	}
	start := func(user string) api.AuditEvent {
		t.Helper()
		e, ok := findEvent(s.audit(t, "--user", user, "--type", "session.start"), func(api.AuditEvent) bool { return true })
		if !ok {
			t.Fatalf("no session.start for %s", user)
		}
		return e
	}
	if e := start("olga"); e.Detail["permission_set"] != "prod-hourly" || e.Detail["session_duration_ms"] != float64(3_600_000) {
		t.Fatalf("olga's session.start detail = %v, want prod-hourly's session_duration of 1h", e.Detail)
	}
	if e := start("abe"); e.Detail["permission_set"] != nil || e.Detail["session_duration_ms"] != nil {
		t.Fatalf("abe's session.start detail = %v, want no session_duration", e.Detail)
	}
	for _, e := range s.audit(t, "--type", "session.end") {
		if e.Reason != "client closed the session" {
			t.Fatalf("session.end for %s: %q", e.User, e.Reason)
		}
	}
}
