package gateway

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/audit"
)

var (
	prodReadonly = access.PermissionSet{Name: "prod-readonly", Level: access.ReadOnly, TokenTTL: 15 * time.Minute, SessionDuration: time.Hour}
	oncall       = access.PermissionSet{Name: "oncall", Level: access.ReadOnly, TokenTTL: 15 * time.Minute, SessionDuration: 30 * time.Minute}
	weekly       = access.PermissionSet{Name: "weekly", Level: access.ReadOnly, TokenTTL: 15 * time.Minute, SessionDuration: 2 * time.Hour}
	unlimited    = access.PermissionSet{Name: "db-readonly", Level: access.ReadOnly, TokenTTL: 15 * time.Minute}
)

func durationReason(set string) string {
	return map[string]string{
		"prod-readonly": "session_duration of prod-readonly (1h) reached: reconnect with a fresh token",
		"oncall":        "session_duration of oncall (30m) reached: reconnect with a fresh token",
	}[set]
}

// sessionUnder registers user's session as allowed by a grant of set, which
// the authorizer also answers with until told otherwise.
func (f *fixture) sessionUnder(t *testing.T, user string, set access.PermissionSet) (*Session, chan string) {
	t.Helper()
	f.authz.setSet(user, set)
	killed := make(chan string, 2)
	s := &Session{User: user, Database: "orders", Level: access.ReadOnly, Client: "c", Control: &control{kill: func(r string) { killed <- r }},
		Grant: access.Grant{Group: "engineers", PermissionSet: set}}
	if err := f.gw.Register(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return s, killed
}

// notKilled fails if the session has been ended.
func notKilled(t *testing.T, killed chan string, when string) {
	t.Helper()
	select {
	case r := <-killed:
		t.Fatalf("session ended %s: %s", when, r)
	default:
	}
}

// killedWith fails unless the session has been ended once, with reason.
func killedWith(t *testing.T, killed chan string, reason string) {
	t.Helper()
	select {
	case r := <-killed:
		if r != reason {
			t.Fatalf("kill reason %q, want %q", r, reason)
		}
	default:
		t.Fatalf("session not ended, want %q", reason)
	}
	notKilled(t, killed, "a second time")
}

// A session ends when it is as old as its grant's session_duration, with a
// reason the client and the audit log show; one without a limit runs on.
func TestSessionDurationEndsSession(t *testing.T) {
	f := newFixture(t)
	s, killed := f.sessionUnder(t, "alice", prodReadonly)
	_, bobKilled := f.sessionUnder(t, "bob", unlimited)
	if n := f.pendingTimers(); n != 1 {
		t.Fatalf("%d timers armed, want 1 (for alice only)", n)
	}
	for _, e := range f.audit.OfType(audit.SessionStart) {
		want := map[string]any{"upstream_role": "", "token_id": ""}
		if e.User == "alice" {
			want["permission_set"], want["session_duration_ms"] = "prod-readonly", int64(3_600_000)
		}
		if len(e.Detail) != len(want) {
			t.Fatalf("session.start detail for %s = %v, want %v", e.User, e.Detail, want)
		}
		for k, v := range want {
			if e.Detail[k] != v {
				t.Fatalf("session.start detail for %s = %v, want %v", e.User, e.Detail, want)
			}
		}
	}

	f.advance(time.Hour - time.Second)
	notKilled(t, killed, "before its session_duration")
	f.advance(time.Second)
	killedWith(t, killed, durationReason("prod-readonly"))

	// The engine unregisters the killed session with the kill reason.
	f.gw.Unregister(s, durationReason("prod-readonly"), BackendEnd{How: BackendClosed})
	ends := f.audit.OfType(audit.SessionEnd)
	if len(ends) != 1 || ends[0].Reason != durationReason("prod-readonly") || ends[0].Detail["duration_ms"] != int64(3_600_000) {
		t.Fatalf("session.end = %+v", ends)
	}
	if n := f.gw.SessionCount(); n != 1 {
		t.Fatalf("SessionCount = %d, want bob's only", n)
	}
	f.advance(48 * time.Hour)
	notKilled(t, bobKilled, "without a session_duration")
	if n := f.pendingTimers(); n != 0 {
		t.Fatalf("%d timers still armed", n)
	}
}

// A session that ends before its session_duration stops its timer, however
// it ends, and nothing arms one for it afterwards.
func TestSessionEndedEarlyStopsItsTimer(t *testing.T) {
	f := newFixture(t)
	closed, closedKilled := f.sessionUnder(t, "alice", prodReadonly)
	revoked, revokedKilled := f.sessionUnder(t, "bob", prodReadonly)
	if n := f.pendingTimers(); n != 2 {
		t.Fatalf("%d timers armed, want 2", n)
	}
	f.advance(10 * time.Minute)
	f.gw.Unregister(closed, "client closed the session", BackendEnd{How: BackendClosed})
	if n := f.pendingTimers(); n != 1 {
		t.Fatalf("%d timers armed after one session closed, want 1", n)
	}

	f.authz.set("bob", false)
	if ended := f.gw.Recheck(context.Background()); ended != 1 {
		t.Fatalf("Recheck ended %d sessions, want 1", ended)
	}
	killedWith(t, revokedKilled, "access revoked: bob is in no group")
	f.gw.Unregister(revoked, "access revoked: bob is in no group", BackendEnd{How: BackendClosed})
	if n := f.pendingTimers(); n != 0 {
		t.Fatalf("%d timers armed after both sessions ended", n)
	}

	// A re-check that was deciding while the session ended arms nothing.
	if err := f.gw.limit(closed, oncall); err != nil {
		t.Fatal(err)
	}
	if n := f.pendingTimers(); n != 0 {
		t.Fatalf("a timer was armed for a session already ended")
	}
	f.advance(48 * time.Hour)
	notKilled(t, closedKilled, "after it was unregistered")
	notKilled(t, revokedKilled, "a second time")
	if n := f.gw.SessionCount(); n != 0 {
		t.Fatalf("SessionCount = %d", n)
	}
}

// A re-check that moves a session to a grant with a shorter session_duration
// applies it from the session's start; none or a longer one keeps the limit.
func TestRecheckAppliesShorterSessionDuration(t *testing.T) {
	tests := []struct {
		name    string
		start   access.PermissionSet
		recheck time.Duration // the session's age at the re-check
		moveTo  access.PermissionSet
		endsAt  time.Duration // the session's age when it ends; 0: at the re-check
		reason  string
	}{
		{"shorter, still within it", prodReadonly, 10 * time.Minute, oncall, 30 * time.Minute, durationReason("oncall")},
		{"shorter, already past it", prodReadonly, 40 * time.Minute, oncall, 0, durationReason("oncall")},
		{"shorter, exactly reached", prodReadonly, 30 * time.Minute, oncall, 0, durationReason("oncall")},
		{"none keeps the limit", prodReadonly, 10 * time.Minute, unlimited, time.Hour, durationReason("prod-readonly")},
		{"longer keeps the limit", prodReadonly, 10 * time.Minute, weekly, time.Hour, durationReason("prod-readonly")},
		{"first limit counts from the start", unlimited, 10 * time.Minute, oncall, 30 * time.Minute, durationReason("oncall")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			s, killed := f.sessionUnder(t, "alice", tt.start)
			f.advance(tt.recheck)
			f.authz.setSet("alice", tt.moveTo)
			ended := f.gw.Recheck(context.Background())
			if tt.endsAt == 0 {
				if ended != 1 {
					t.Fatalf("Recheck ended %d sessions, want 1", ended)
				}
				killedWith(t, killed, tt.reason)
			} else {
				if ended != 0 {
					t.Fatalf("Recheck ended %d sessions, want 0", ended)
				}
				if n := f.pendingTimers(); n != 1 {
					t.Fatalf("%d timers armed after the re-check, want 1", n)
				}
				f.advance(tt.endsAt - tt.recheck - time.Second)
				notKilled(t, killed, "before its limit")
				f.advance(time.Second)
				killedWith(t, killed, tt.reason)
			}
			f.gw.Unregister(s, tt.reason, BackendEnd{How: BackendClosed})
			if n := f.pendingTimers(); n != 0 {
				t.Fatalf("%d timers armed after the session ended", n)
			}
		})
	}
}

// Register applies the session_duration of the grant the connection was
// allowed under even when its own re-check cannot reach the authorizer.
func TestRegisterArmsLimitWithoutAuthorizer(t *testing.T) {
	f := newFixture(t)
	f.authz.err = errors.New("store unavailable")
	killed := make(chan string, 1)
	s := &Session{User: "alice", Database: "orders", Level: access.ReadOnly, Control: &control{kill: func(r string) { killed <- r }},
		Grant: access.Grant{PermissionSet: oncall}}
	if err := f.gw.Register(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	f.advance(30 * time.Minute)
	killedWith(t, killed, durationReason("oncall"))
}

// The real clock ends a session too: the seam the other tests replace is
// wired to time.AfterFunc.
func TestSessionDurationRealTimer(t *testing.T) {
	f := newFixture(t)
	f.gw.afterFunc = afterFunc
	set := access.PermissionSet{Name: "blink", Level: access.ReadOnly, SessionDuration: 20 * time.Millisecond}
	s, killed := f.sessionUnder(t, "alice", set)
	select {
	case r := <-killed:
		if want := "session_duration of blink (20ms) reached: reconnect with a fresh token"; r != want {
			t.Fatalf("kill reason %q, want %q", r, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("session not ended by its session_duration")
	}
	f.gw.Unregister(s, "done", BackendEnd{How: BackendClosed})
}
