package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/store"
)

// session.start records the token's age (credential age at use), and the
// end of a session that a change revoked records how long its backend
// outlived the change (time-to-revoke): the audit answers both for any
// window, and the metrics are read from these events.
func TestAuditCarriesTheMeasures(t *testing.T) {
	f := newFixture(t)
	killed := make(chan string, 1)
	s := &Session{Engine: "test", User: "alice", Database: "orders", Client: "c", TokenIssued: f.now.Add(-5 * time.Minute),
		Control: &control{kill: func(r string) { killed <- r }}}
	if err := f.gw.Register(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	start := f.audit.OfType(audit.SessionStart)
	if len(start) != 1 || start[0].Detail["token_age_ms"] != int64(300000) {
		t.Fatalf("session.start = %+v, want token_age_ms 300000", start)
	}

	changes := make(chan store.Change, 1)
	done := make(chan struct{})
	go func() { f.gw.Watch(context.Background(), changes); close(done) }()
	f.authz.set("alice", false)
	changes <- store.Change{Kind: store.MembershipChanged, User: "alice", Group: "analysts", At: f.now.Add(-2 * time.Second)}
	select {
	case <-killed:
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked session was not ended")
	}
	close(changes)
	<-done
	f.gw.Unregister(s, "access revoked", BackendEnd{At: f.now.Add(250 * time.Millisecond), How: BackendTerminated})
	end := f.audit.OfType(audit.SessionEnd)
	if len(end) != 1 || end[0].Detail["revoked_after_ms"] != int64(2250) {
		t.Fatalf("session.end = %+v, want revoked_after_ms 2250", end)
	}

	// A session that ends for another reason says nothing of revocation.
	other := &Session{Engine: "test", User: "bob", Database: "orders", Client: "c", Control: &control{kill: func(string) {}}}
	if err := f.gw.Register(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	f.gw.Unregister(other, "client closed the session", BackendEnd{At: f.now, How: BackendClosed})
	for _, e := range f.audit.OfType(audit.SessionEnd) {
		if _, ok := e.Detail["revoked_after_ms"]; ok && e.User == "bob" {
			t.Errorf("a session the client ended records revoked_after_ms: %+v", e)
		}
	}
}
