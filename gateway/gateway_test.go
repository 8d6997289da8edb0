package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/audit/audittest"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/token"
)

// stubAuthz allows the users in allowed, each under the permission set in
// sets; err makes every call fail.
type stubAuthz struct {
	mu      sync.Mutex
	allowed map[string]bool
	sets    map[string]access.PermissionSet
	err     error
	calls   int
}

func (a *stubAuthz) Authorize(_ context.Context, r authz.Request) (access.Decision, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	if a.err != nil {
		return access.Decision{}, a.err
	}
	d := access.Decision{User: strings.ToLower(r.User), Database: r.Database, Level: r.Level, Allowed: a.allowed[strings.ToLower(r.User)]}
	if !d.Allowed {
		d.Reason = r.User + " is in no group"
	} else {
		d.Grant = access.Grant{Group: "engineers", PermissionSet: a.sets[strings.ToLower(r.User)]}
	}
	return d, nil
}

// setSet makes user's grant, from now on, one of set.
func (a *stubAuthz) setSet(user string, set access.PermissionSet) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sets[user] = set
}

func (a *stubAuthz) set(user string, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.allowed[user] = ok
}

type fixture struct {
	gw     *Gateway
	authz  *stubAuthz
	audit  *audittest.Recorder
	issuer *token.Issuer
	now    time.Time

	timersMu sync.Mutex
	timers   []*fakeTimer
}

// fakeTimer is a timer of the fixture's clock: it fires when advance moves
// the clock to its due time.
type fakeTimer struct {
	due  time.Time
	f    func()
	done bool // fired or stopped
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{authz: &stubAuthz{allowed: map[string]bool{"alice": true, "bob": true}, sets: map[string]access.PermissionSet{}}, audit: &audittest.Recorder{}, now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	keys := token.NewMemoryKeys()
	clock := func() time.Time { return f.now }
	f.issuer = &token.Issuer{Keys: keys, Now: clock}
	f.gw = New(&token.Verifier{Keys: keys, Now: clock}, f.authz, f.audit, slog.New(slog.NewTextHandler(io.Discard, nil)), clock)
	f.gw.afterFunc = f.afterFunc
	return f
}

// afterFunc is time.AfterFunc on the fixture's clock.
func (f *fixture) afterFunc(d time.Duration, fn func()) func() bool {
	f.timersMu.Lock()
	defer f.timersMu.Unlock()
	t := &fakeTimer{due: f.now.Add(d), f: fn}
	f.timers = append(f.timers, t)
	return func() bool {
		f.timersMu.Lock()
		defer f.timersMu.Unlock()
		pending := !t.done
		t.done = true
		return pending
	}
}

// advance moves the clock on by d and fires the timers that fall due.
func (f *fixture) advance(d time.Duration) {
	f.now = f.now.Add(d)
	f.timersMu.Lock()
	var due []*fakeTimer
	for _, t := range f.timers {
		if !t.done && !t.due.After(f.now) {
			t.done = true
			due = append(due, t)
		}
	}
	f.timersMu.Unlock()
	for _, t := range due {
		t.f()
	}
}

// pendingTimers counts the timers neither fired nor stopped: the ones a
// real clock would still hold.
func (f *fixture) pendingTimers() int {
	f.timersMu.Lock()
	defer f.timersMu.Unlock()
	n := 0
	for _, t := range f.timers {
		if !t.done {
			n++
		}
	}
	return n
}

func (f *fixture) token(t *testing.T, user, db string, ttl time.Duration) string {
	t.Helper()
	tok, _, err := f.issuer.Mint(token.Claims{User: user, Database: db, Access: access.ReadOnly, Session: "s-" + user, Expires: f.now.Add(ttl)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestAuthenticate(t *testing.T) {
	f := newFixture(t)
	alice := f.token(t, "alice", "orders", 15*time.Minute)
	expired := f.token(t, "alice", "orders", time.Minute)
	f.now = f.now.Add(2 * time.Minute)

	d, c, err := f.gw.Authenticate(context.Background(), Hello{User: "Alice", Database: "orders", Token: alice, Client: "10.0.0.1:5555"})
	if err != nil || !d.Allowed || c.User != "alice" || c.Access != access.ReadOnly {
		t.Fatalf("valid token: %+v %+v %v", d, c, err)
	}
	tests := []struct {
		name   string
		hello  Hello
		kind   RefusalKind
		reason string
	}{
		{"no token", Hello{User: "alice", Database: "orders"}, RefusedCredentials, "no token given"},
		{"a password", Hello{User: "alice", Database: "orders", Token: "hunter2"}, RefusedCredentials, "not a keygate token"},
		{"expired", Hello{User: "alice", Database: "orders", Token: expired}, RefusedCredentials, "token has expired: get a fresh one with `keygate db token orders`"},
		{"another user", Hello{User: "bob", Database: "orders", Token: alice}, RefusedCredentials, "issued to alice, not bob"},
		{"another database", Hello{User: "alice", Database: "billing", Token: alice}, RefusedCredentials, "for database orders, not billing"},
		{"token as user", Hello{User: alice, Database: "orders", Token: alice}, RefusedCredentials, "a token was given as the user or database name"},
		{"token as database", Hello{User: "alice", Database: alice, Token: alice}, RefusedCredentials, "a token was given as the user or database name"},
		{"token as application_name", Hello{User: "alice", Database: "orders", Token: alice, Params: map[string]string{"application_name": alice}},
			RefusedCredentials, "a token was given in the start-up parameter application_name"},
		{"token in options", Hello{User: "alice", Database: "orders", Token: alice, Params: map[string]string{"options": "-c app.x=" + alice}},
			RefusedCredentials, "a token was given in the start-up parameter options"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := f.gw.Authenticate(context.Background(), tt.hello)
			var r *Refusal
			if !errors.As(err, &r) || r.Kind != tt.kind || !strings.Contains(r.Reason, tt.reason) {
				t.Fatalf("error = %v, want %v containing %q", err, tt.kind, tt.reason)
			}
			if strings.Contains(r.Error(), alice) {
				t.Fatal("refusal text contains the token")
			}
		})
	}
	refused := f.audit.OfType(audit.ConnectRefused)
	if len(refused) != len(tests) {
		t.Fatalf("%d refusals audited, want %d", len(refused), len(tests))
	}
	for _, e := range refused {
		if strings.Contains(fmt.Sprint(e), "v4.public.") {
			t.Fatalf("audited refusal contains a token: %+v", e)
		}
	}

	f.authz.set("alice", false)
	_, _, err = f.gw.Authenticate(context.Background(), Hello{User: "alice", Database: "orders", Token: alice})
	var r *Refusal
	if !errors.As(err, &r) || r.Kind != RefusedAccess || r.Reason != "access denied: alice is in no group" {
		t.Fatalf("refused by policy: %v", err)
	}
	f.authz.err = errors.New("disk on fire")
	_, _, err = f.gw.Authenticate(context.Background(), Hello{User: "alice", Database: "orders", Token: alice})
	if !errors.As(err, &r) || r.Kind != RefusedUnavailable || strings.Contains(r.Reason, "disk") {
		t.Fatalf("authorizer failure: %v (the reason must not leak internal detail)", err)
	}
}

// session registers a session whose Kill records its reason.
func (f *fixture) session(t *testing.T, user string) (*Session, chan string) {
	t.Helper()
	killed := make(chan string, 2)
	s := &Session{Engine: "test", User: user, Database: "orders", Level: access.ReadOnly, Client: "c", Control: &control{kill: func(r string) { killed <- r }}}
	if err := f.gw.Register(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return s, killed
}

func TestWatchEndsOnlySessionsThatLostAccess(t *testing.T) {
	f := newFixture(t)
	_, aliceKilled := f.session(t, "alice")
	_, bobKilled := f.session(t, "bob")
	changes := make(chan store.Change)
	done := make(chan struct{})
	go func() { f.gw.Watch(context.Background(), changes); close(done) }()

	// A change about alice that leaves her access intact ends nothing.
	changes <- store.Change{Kind: store.UserChanged, User: "alice"}
	// Watch takes a change only when done with the one before, so once
	// this one is taken, alice's re-check has run.
	changes <- store.Change{Kind: store.UserChanged, User: "nobody"}
	f.authz.set("alice", false)
	// A change about bob does not re-check alice.
	changes <- store.Change{Kind: store.MembershipChanged, User: "bob", Group: "g"}
	select {
	case r := <-aliceKilled:
		t.Fatalf("alice killed on a change about bob: %s", r)
	case <-time.After(50 * time.Millisecond):
	}
	changes <- store.Change{Kind: store.MembershipChanged, User: "ALICE", Group: "analysts"}
	select {
	case r := <-aliceKilled:
		if r != "access revoked: alice is in no group" {
			t.Fatalf("kill reason %q", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("alice's session not ended")
	}
	// Group changes and resyncs re-check everyone.
	f.authz.set("bob", false)
	changes <- store.Change{Kind: store.GroupChanged, Group: "engineers"}
	select {
	case <-bobKilled:
	case <-time.After(5 * time.Second):
		t.Fatal("bob's session not ended on a group change")
	}
	// A session is ended once, however many changes follow.
	changes <- store.Change{Kind: store.Resync}
	close(changes)
	<-done
	if len(aliceKilled)+len(bobKilled) != 0 {
		t.Fatal("a session was killed twice")
	}
}

// A change that commits while a connection is being set up is caught when
// the session registers.
func TestRegisterRechecks(t *testing.T) {
	f := newFixture(t)
	f.authz.set("alice", false)
	killed := make(chan string, 1)
	s := &Session{User: "alice", Database: "orders", Level: access.ReadOnly, Control: &control{kill: func(r string) { killed <- r }}}
	err := f.gw.Register(context.Background(), s)
	var r *Refusal
	if !errors.As(err, &r) || r.Kind != RefusedAccess {
		t.Fatalf("Register = %v, want an access refusal", err)
	}
	if len(killed) != 1 {
		t.Fatal("session not ended")
	}
	// An authorizer failure is not a revocation.
	f.authz.err = errors.New("store unavailable")
	s2 := &Session{User: "bob", Database: "orders", Level: access.ReadOnly, Control: &control{kill: func(string) { t.Error("killed on an authorizer error") }}}
	if err := f.gw.Register(context.Background(), s2); err != nil {
		t.Fatal(err)
	}
}

// SessionCount follows the registry, which the metrics scrape reads.
func TestSessionCount(t *testing.T) {
	f := newFixture(t)
	if n := f.gw.SessionCount(); n != 0 {
		t.Fatalf("SessionCount = %d before any session", n)
	}
	alice, _ := f.session(t, "alice")
	f.session(t, "bob")
	if n := f.gw.SessionCount(); n != 2 {
		t.Fatalf("SessionCount = %d with two sessions", n)
	}
	f.gw.Unregister(alice, "client closed", BackendEnd{How: BackendClosed})
	if n := f.gw.SessionCount(); n != 1 || len(f.gw.Sessions()) != 1 {
		t.Fatalf("SessionCount = %d after one of two ended", n)
	}
}

func TestCancelMatchesKey(t *testing.T) {
	f := newFixture(t)
	s, _ := f.session(t, "alice")
	other, _ := f.session(t, "bob")
	var cancelled []string
	s.Control.(*control).cancel = func(context.Context) error { cancelled = append(cancelled, "alice"); return nil }
	other.Control.(*control).cancel = func(context.Context) error { cancelled = append(cancelled, "bob"); return nil }
	if s.CancelID == 0 || s.CancelID&0x80000000 != 0 || s.CancelID == other.CancelID {
		t.Fatalf("cancel keys: %d %d", s.CancelID, other.CancelID)
	}
	ctx := context.Background()
	f.gw.Cancel(ctx, "test", s.CancelID, s.CancelSecret^1, "x")
	f.gw.Cancel(ctx, "test", s.CancelID+1, s.CancelSecret, "x")
	f.gw.Cancel(ctx, "test", other.CancelID, s.CancelSecret, "x")
	// Another engine's key space: the same numbers name no session there.
	f.gw.Cancel(ctx, "mysql", s.CancelID, s.CancelSecret, "x")
	if len(cancelled) != 0 {
		t.Fatalf("forged cancel requests cancelled %v", cancelled)
	}
	f.gw.Cancel(ctx, "test", s.CancelID, s.CancelSecret, "x")
	if len(cancelled) != 1 || cancelled[0] != "alice" {
		t.Fatalf("cancelled %v, want alice", cancelled)
	}
	if len(f.audit.OfType(audit.QueryCancel)) != 1 {
		t.Fatal("cancel not audited")
	}
	f.gw.Unregister(s, "done", BackendEnd{How: BackendClosed})
	f.gw.Cancel(ctx, "test", s.CancelID, s.CancelSecret, "x")
	if len(cancelled) != 1 {
		t.Fatal("a cancel reached an ended session")
	}
	ends := f.audit.OfType(audit.SessionEnd)
	if len(ends) != 1 || ends[0].Reason != "done" || ends[0].Detail["duration_ms"] == nil {
		t.Fatalf("session.end = %+v", ends)
	}
}

// A token with something around it, typed as a name, is still kept out of
// messages and the audit; overlong names are cut.
func TestNamesAreMasked(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, "alice", "orders", time.Hour)
	for _, user := range []string{" " + tok, "x" + tok + "y", strings.Repeat("u", 10_000)} {
		_, _, err := f.gw.Authenticate(context.Background(), Hello{User: user, Database: "orders", Token: tok})
		if err == nil || strings.Contains(err.Error(), tok) {
			t.Fatalf("refusal for user %.20q...: %v", user, err)
		}
	}
	for _, e := range f.audit.OfType(audit.ConnectRefused) {
		if strings.Contains(fmt.Sprint(e), "v4.public.") || len(e.User) > maxNameInRefusal+len("…") || len(e.Reason) > 500 {
			t.Fatalf("audited refusal: %.200q", fmt.Sprint(e))
		}
	}
}

// Once draining has begun, a session that finishes connecting is ended
// rather than left running past the shutdown.
func TestRegisterWhileDraining(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f.gw.Drain(ctx)
	killed := make(chan string, 1)
	err := f.gw.Register(context.Background(), &Session{User: "alice", Database: "orders", Level: access.ReadOnly, Control: &control{kill: func(r string) { killed <- r }}})
	var r *Refusal
	if !errors.As(err, &r) || r.Reason != "keygate is shutting down" || len(killed) != 1 {
		t.Fatalf("Register while draining: %v (killed %d)", err, len(killed))
	}
}

// Watch decides every session again on its own, so a re-check that failed
// when the change arrived is not lost.
func TestWatchRechecksPeriodically(t *testing.T) {
	f := newFixture(t)
	f.gw.RecheckInterval = 20 * time.Millisecond
	_, killed := f.session(t, "alice")
	changes := make(chan store.Change)
	go f.gw.Watch(context.Background(), changes)
	defer close(changes)
	f.authz.set("alice", false) // no change is published
	select {
	case <-killed:
	case <-time.After(5 * time.Second):
		t.Fatal("session not ended by the periodic re-check")
	}
}

// One event keeps a bounded number of outcomes, with the last one and a
// count of those left out.
func TestOutcomesAreBounded(t *testing.T) {
	rec := &outcomeRecorder{}
	g := &Gateway{audit: rec, now: time.Now}
	st := g.StatementSent(&Session{User: "alice"}, strings.Repeat("SELECT 1;", 1500)+"SELECT 1/0", map[string]any{"protocol": "simple"})
	for range 1500 {
		st.Add(Outcome{Tag: "SELECT 1"})
	}
	st.Add(Outcome{SQLState: "22012"})
	st.Done()
	d := rec.e.Detail
	out := d["outcome"].([]Outcome)
	if len(out) != maxOutcomes || out[len(out)-1].SQLState != "22012" || d["outcomes_omitted"] != 1501-maxOutcomes {
		t.Fatalf("%d outcomes, last %+v, omitted %v", len(out), out[len(out)-1], d["outcomes_omitted"])
	}
}

type outcomeRecorder struct{ e audit.Event }

func (r *outcomeRecorder) Record(e audit.Event) { r.e = e }
func (r *outcomeRecorder) Err() error           { return nil }

func (r *outcomeRecorder) Flush(context.Context) error { return nil }

// control is a Control made of functions.
type control struct {
	kill   func(reason string)
	cancel func(ctx context.Context) error
}

func (c *control) Kill(reason string) {
	if c.kill != nil {
		c.kill(reason)
	}
}

func (c *control) Abort() BackendEnd { return BackendEnd{How: BackendClosed} }

func (c *control) CancelUpstream(ctx context.Context) error {
	if c.cancel == nil {
		return nil
	}
	return c.cancel(ctx)
}
