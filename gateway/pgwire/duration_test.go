package pgwire

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/audit"
)

// A session that reaches its grant's session_duration ends with a FATAL
// error that names the permission set and its limit, and the audit log
// records its end with the same reason.
func TestSessionDurationEndsSession(t *testing.T) {
	const limit = 300 * time.Millisecond
	const reason = "session_duration of prod-readonly (300ms) reached: reconnect with a fresh token"
	set := access.PermissionSet{Name: "prod-readonly", Level: access.ReadOnly, SessionDuration: limit}
	p := newPKI(t)
	g := newGateway(t, p, authorizer{allow: true, grant: access.Grant{Group: "engineers", PermissionSet: set}}, nil)
	up := &fakeUpstream{}
	g.srv.Upstreams = map[string]Upstream{"orders": up}

	be := g.login(t, startup(map[string]string{"user": "alice", "database": "orders"}))
	if m := be.next(); !isType[*pgproto3.AuthenticationCleartextPassword](m) {
		t.Fatalf("got %T, want AuthenticationCleartextPassword", m)
	}
	sent := time.Now()
	be.send(&pgproto3.PasswordMessage{Password: p.mint(t, "alice")})
	for ready := false; !ready; {
		switch m := be.next().(type) {
		case *pgproto3.ErrorResponse:
			t.Fatalf("login refused: %s", m.Message)
		case *pgproto3.ReadyForQuery:
			ready = true
		}
	}
	be.fatal("57P01", "keygate: "+reason)
	if took := time.Since(sent); took < limit {
		t.Fatalf("session ended %s after it started, before its session_duration of %s", took, limit)
	}

	starts := g.audit.OfType(audit.SessionStart)
	if len(starts) != 1 || starts[0].Detail["permission_set"] != "prod-readonly" || starts[0].Detail["session_duration_ms"] != int64(300) {
		t.Fatalf("session.start = %+v", starts)
	}
	ends := g.audit.OfType(audit.SessionEnd)
	if len(ends) != 1 || ends[0].Reason != reason || ends[0].SessionID != starts[0].SessionID {
		t.Fatalf("session.end = %+v, want reason %q", ends, reason)
	}
	if n := g.srv.Gateway.SessionCount(); n != 0 {
		t.Fatalf("%d live sessions after the session ended", n)
	}
}
