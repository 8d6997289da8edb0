package authz

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/store/sqlite"
)

var t0 = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

// testClock is a settable clock shared by the store and Authz.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

type fixture struct {
	st    *sqlite.Store
	clock *testClock
	az    *Authz
	users map[string]identity.User
	group map[string]identity.Group
	// sessions by user name: a sign-in session valid for an hour from t0.
	session map[string]string
}

var (
	orders    = access.Database{Name: "orders", Tags: map[string]string{"environment": "production"}}
	analytics = access.Database{Name: "analytics"}
)

func policy(t *testing.T, as ...access.Assignment) *access.Policy {
	t.Helper()
	p, err := access.NewPolicy([]access.PermissionSet{
		{Name: "db-readonly", Level: access.ReadOnly, TokenTTL: 15 * time.Minute},
		{Name: "db-readwrite", Level: access.ReadWrite},
		{Name: "db-admin", Level: access.Admin},
	}, as)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var analystsRead = access.Assignment{Group: "analysts", PermissionSet: "db-readonly", Databases: []string{"orders"}}

// newFixture: alice is an active analyst, bob is active and in no group,
// dave is a disabled analyst. Analysts read orders.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	clock := &testClock{t: t0}
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keygate.db"), clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st, clock: clock, users: map[string]identity.User{}, group: map[string]identity.Group{}, session: map[string]string{}}
	for _, u := range []identity.User{
		{UserName: "alice", Active: true, Attributes: map[string]string{"department": "finance"}},
		{UserName: "bob", Active: true},
		{UserName: "dave", Active: false},
	} {
		created, err := st.CreateUser(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		f.users[u.UserName] = created
	}
	for _, name := range []string{"analysts", "engineers"} {
		g, err := st.CreateGroup(ctx, identity.Group{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		f.group[name] = g
	}
	for _, u := range []string{"alice", "dave"} {
		if _, err := st.AddMember(ctx, f.group["analysts"].ID, f.users[u].ID, "test"); err != nil {
			t.Fatal(err)
		}
	}
	for i, u := range []string{"alice", "bob", "dave"} {
		s, err := st.CreateSession(ctx, identity.Session{User: u, Expires: t0.Add(time.Hour), Source: "test"}, []byte{byte(i), 1, 2, 3})
		if err != nil {
			t.Fatal(err)
		}
		f.session[u] = s.ID
	}
	f.az = New(st, policy(t, analystsRead), []access.Database{orders, analytics}, clock.Now)
	return f
}

func (f *fixture) authorize(t *testing.T, r Request) access.Decision {
	t.Helper()
	d, err := f.az.Authorize(context.Background(), r)
	if err != nil {
		t.Fatalf("Authorize(%+v): %v", r, err)
	}
	if d.User == "" || d.Database != r.Database || d.Level != r.Level {
		t.Errorf("Decision names %q/%q/%q for request %+v", d.User, d.Database, d.Level, r)
	}
	if d.Reason == "" {
		t.Errorf("Decision without a reason: %+v", d)
	}
	if !d.Allowed && d.Grant != (access.Grant{}) {
		t.Errorf("refusal carries a grant: %+v", d)
	}
	return d
}

func TestAuthorize(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		req    Request
		allow  bool
		reason string
	}{
		{
			name:   "member",
			req:    Request{User: "alice", Database: "orders", Level: access.ReadOnly, SignIn: f.session["alice"]},
			allow:  true,
			reason: "alice is in analysts → db-readonly (ro) on orders",
		},
		{
			name:   "member, user name in another case",
			req:    Request{User: "ALICE", Database: "orders", Level: access.ReadOnly, SignIn: f.session["alice"]},
			allow:  true,
			reason: "alice is in analysts → db-readonly (ro) on orders",
		},
		{
			name:   "member without session check",
			req:    Request{User: "alice", Database: "orders", Level: access.ReadOnly},
			allow:  true,
			reason: "alice is in analysts → db-readonly (ro) on orders",
		},
		{
			name:   "member asks for more than held",
			req:    Request{User: "alice", Database: "orders", Level: access.ReadWrite, SignIn: f.session["alice"]},
			reason: "alice is in analysts → db-readonly (ro); no assignment grants rw on orders",
		},
		{
			name:   "member on a database the group is not assigned",
			req:    Request{User: "alice", Database: "analytics", Level: access.ReadOnly, SignIn: f.session["alice"]},
			reason: "alice is in analysts; no assignment grants ro on analytics to those groups",
		},
		{
			name:   "non-member",
			req:    Request{User: "bob", Database: "orders", Level: access.ReadOnly, SignIn: f.session["bob"]},
			reason: "bob is in no group; no assignment grants ro on orders",
		},
		{
			name:   "disabled member",
			req:    Request{User: "dave", Database: "orders", Level: access.ReadOnly, SignIn: f.session["dave"]},
			reason: "dave was disabled",
		},
		{
			name:   "unknown user",
			req:    Request{User: "mallory", Database: "orders", Level: access.ReadOnly},
			reason: "mallory is not a keygate user",
		},
		{
			name:   "unknown database",
			req:    Request{User: "alice", Database: "billing", Level: access.ReadOnly, SignIn: f.session["alice"]},
			reason: "database billing is not configured in keygate; configured: analytics, orders (keygate db list shows those you can reach)",
		},
		{
			name:   "unknown sign-in session",
			req:    Request{User: "alice", Database: "orders", Level: access.ReadOnly, SignIn: "00000000-0000-0000-0000-000000000000"},
			reason: "the sign-in session this token came from no longer exists: sign in again",
		},
		{
			name:   "unknown level",
			req:    Request{User: "alice", Database: "orders", Level: access.Level("owner")},
			reason: `unknown access level "owner": use ro, rw or admin`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := f.authorize(t, tt.req)
			if d.Allowed != tt.allow {
				t.Errorf("Allowed = %v, want %v (%s)", d.Allowed, tt.allow, d.Reason)
			}
			if d.Reason != tt.reason {
				t.Errorf("Reason = %q\n          want %q", d.Reason, tt.reason)
			}
			if tt.allow && d.TokenTTL() != 15*time.Minute {
				t.Errorf("TokenTTL = %s, want the permission set's 15m", d.TokenTTL())
			}
		})
	}
}

const (
	sessionRevoked = "the sign-in session this token came from was revoked"
	sessionExpired = "the sign-in session this token came from has expired: sign in again"
)

func TestRevokedSession(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	req := Request{User: "alice", Database: "orders", Level: access.ReadOnly, SignIn: f.session["alice"]}
	if d := f.authorize(t, req); !d.Allowed {
		t.Fatalf("before revocation: %s", d.Reason)
	}
	if err := f.st.RevokeSession(ctx, f.session["alice"], t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	f.clock.Set(t0.Add(2 * time.Minute))
	d := f.authorize(t, req)
	if d.Allowed || d.Reason != sessionRevoked {
		t.Errorf("after revocation: Allowed %v, reason %q", d.Allowed, d.Reason)
	}
	// Revocation ends live sessions too.
	live := req
	live.Live = true
	if d := f.authorize(t, live); d.Allowed || d.Reason != sessionRevoked {
		t.Errorf("live after revocation: Allowed %v, reason %q", d.Allowed, d.Reason)
	}
	// Revoking one session leaves others alone, and the session check can be
	// skipped (the gateway's connect-time re-check of an already-minted token).
	if d := f.authorize(t, Request{User: "alice", Database: "orders", Level: access.ReadOnly}); !d.Allowed {
		t.Errorf("SignIn skipped: %s", d.Reason)
	}
}

func TestExpiredSession(t *testing.T) {
	f := newFixture(t)
	req := Request{User: "alice", Database: "orders", Level: access.ReadOnly, SignIn: f.session["alice"]}
	for _, tt := range []struct {
		at    time.Time
		allow bool
	}{
		{t0.Add(59 * time.Minute), true},
		{t0.Add(time.Hour - time.Nanosecond), true},
		{t0.Add(time.Hour), false},
		{t0.Add(48 * time.Hour), false},
	} {
		f.clock.Set(tt.at)
		d := f.authorize(t, req)
		if d.Allowed != tt.allow {
			t.Errorf("at +%v: Allowed = %v, want %v (%s)", tt.at.Sub(t0), d.Allowed, tt.allow, d.Reason)
		}
		if !tt.allow && d.Reason != sessionExpired {
			t.Errorf("at +%v: reason %q", tt.at.Sub(t0), d.Reason)
		}
		// A live session outlasts its sign-in session's expiry, as it
		// outlasts its token's.
		live := req
		live.Live = true
		if d := f.authorize(t, live); !d.Allowed {
			t.Errorf("at +%v: live re-check refused: %s", tt.at.Sub(t0), d.Reason)
		}
	}
}

// TestSessionCheckedBeforeUser: a revoked session is refused for what it is
// even when the person would otherwise have no access; nothing about the
// person leaks through a dead session.
func TestSessionCheckedBeforeUser(t *testing.T) {
	f := newFixture(t)
	if err := f.st.RevokeSession(context.Background(), f.session["bob"], t0); err != nil {
		t.Fatal(err)
	}
	d := f.authorize(t, Request{User: "bob", Database: "orders", Level: access.ReadOnly, SignIn: f.session["bob"]})
	if d.Allowed || d.Reason != sessionRevoked {
		t.Errorf("Allowed %v, reason %q; want the session refusal", d.Allowed, d.Reason)
	}
}

// TestDisabledBeatsRevokedSession: disabling or deleting a person revokes
// their sign-in sessions too; the refusal names the person's state, the
// true reason, not the session (signing in again would not help).
func TestDisabledBeatsRevokedSession(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, u := range []string{"dave", "bob"} {
		if err := f.st.RevokeSession(ctx, f.session[u], t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.st.DeleteUser(ctx, f.users["bob"].ID); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ user, reason string }{
		{"dave", "dave was disabled"},
		{"bob", "bob is no longer a keygate user"},
	} {
		for _, live := range []bool{false, true} {
			d := f.authorize(t, Request{User: tt.user, Database: "orders", Level: access.ReadOnly, SignIn: f.session[tt.user], Live: live})
			if d.Allowed || d.Reason != tt.reason {
				t.Errorf("%s (live %v): Allowed %v, reason %q; want %q", tt.user, live, d.Allowed, d.Reason, tt.reason)
			}
		}
	}
}

func TestLiveMembershipChanges(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	req := Request{User: "alice", Database: "orders", Level: access.ReadOnly}
	if d := f.authorize(t, req); !d.Allowed {
		t.Fatalf("before: %s", d.Reason)
	}
	if err := f.st.RemoveMember(ctx, f.group["analysts"].ID, f.users["alice"].ID, "test"); err != nil {
		t.Fatal(err)
	}
	if d := f.authorize(t, req); d.Allowed {
		t.Fatal("still allowed after leaving the group")
	} else if d.Reason != "alice is in no group; no assignment grants ro on orders" {
		t.Errorf("reason %q", d.Reason)
	}
	// Joining bob to analysts gives him access at once.
	if _, err := f.st.AddMember(ctx, f.group["analysts"].ID, f.users["bob"].ID, "test"); err != nil {
		t.Fatal(err)
	}
	if d := f.authorize(t, Request{User: "bob", Database: "orders", Level: access.ReadOnly}); !d.Allowed {
		t.Errorf("bob after joining: %s", d.Reason)
	}
	// Disabling bob takes it away.
	if _, err := f.st.UpdateUser(ctx, f.users["bob"].ID, func(u identity.User) (identity.User, error) {
		u.Active = false
		return u, nil
	}); err != nil {
		t.Fatal(err)
	}
	if d := f.authorize(t, Request{User: "bob", Database: "orders", Level: access.ReadOnly}); d.Allowed || d.Reason != "bob was disabled" {
		t.Errorf("bob after disabling: Allowed %v, %q", d.Allowed, d.Reason)
	}
	// Deleting a user makes them unknown.
	if err := f.st.DeleteUser(ctx, f.users["bob"].ID); err != nil {
		t.Fatal(err)
	}
	if d := f.authorize(t, Request{User: "bob", Database: "orders", Level: access.ReadOnly}); d.Allowed || d.Reason != "bob is not a keygate user" {
		t.Errorf("bob after deletion: Allowed %v, %q", d.Allowed, d.Reason)
	}
}

func TestSetPolicy(t *testing.T) {
	f := newFixture(t)
	rw := Request{User: "alice", Database: "orders", Level: access.ReadWrite}
	if d := f.authorize(t, rw); d.Allowed {
		t.Fatal("rw allowed under the initial policy")
	}
	f.az.SetPolicy(policy(t, access.Assignment{Group: "analysts", PermissionSet: "db-readwrite", Databases: []string{"*"}}), []access.Database{orders, analytics})
	if d := f.authorize(t, rw); !d.Allowed || d.Reason != "alice is in analysts → db-readwrite (rw) on orders" {
		t.Errorf("after SetPolicy: Allowed %v, %q", d.Allowed, d.Reason)
	}
	if d := f.authorize(t, Request{User: "alice", Database: "analytics", Level: access.ReadOnly}); !d.Allowed {
		t.Errorf("wildcard after SetPolicy: %s", d.Reason)
	}
	// A new database list: analytics is gone.
	f.az.SetPolicy(policy(t, access.Assignment{Group: "analysts", PermissionSet: "db-readwrite", Databases: []string{"*"}}), []access.Database{orders})
	if d := f.authorize(t, Request{User: "alice", Database: "analytics", Level: access.ReadOnly}); d.Allowed || d.Reason != "database analytics is not configured in keygate; configured: orders (keygate db list shows those you can reach)" {
		t.Errorf("removed database: Allowed %v, %q", d.Allowed, d.Reason)
	}
	// An empty policy refuses everyone.
	f.az.SetPolicy(policy(t), []access.Database{orders, analytics})
	if d := f.authorize(t, Request{User: "alice", Database: "orders", Level: access.ReadOnly}); d.Allowed {
		t.Error("allowed under an empty policy")
	}
}

func TestLeastLevel(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.az.SetPolicy(policy(t,
		analystsRead,
		access.Assignment{Group: "analysts", PermissionSet: "db-admin", Databases: []string{"analytics"}},
		access.Assignment{Group: "analysts", PermissionSet: "db-readwrite", Databases: []string{"analytics"}},
	), []access.Database{orders, analytics})
	tests := []struct {
		user, db string
		want     access.Level
		ok       bool
	}{
		{"alice", "orders", access.ReadOnly, true},
		{"alice", "analytics", access.ReadOnly, true}, // rw and admin grants cover ro
		{"Alice", "orders", access.ReadOnly, true},
		{"bob", "orders", "", false},
		{"dave", "orders", "", false}, // disabled
		{"mallory", "orders", "", false},
		{"alice", "billing", "", false},
	}
	for _, tt := range tests {
		got, ok, err := f.az.LeastLevel(ctx, tt.user, tt.db, "")
		if err != nil {
			t.Errorf("LeastLevel(%s, %s): %v", tt.user, tt.db, err)
			continue
		}
		if got != tt.want || ok != tt.ok {
			t.Errorf("LeastLevel(%s, %s) = %q, %v; want %q, %v", tt.user, tt.db, got, ok, tt.want, tt.ok)
		}
	}
}

// TestStoreErrorsAreErrors: when the state cannot be read, Authorize and
// LeastLevel return an error rather than a decision either way.
func TestStoreErrorsAreErrors(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	sid := f.session["alice"]
	f.st.Close()
	for _, r := range []Request{
		{User: "alice", Database: "orders", Level: access.ReadOnly, SignIn: sid},
		{User: "alice", Database: "orders", Level: access.ReadOnly},
	} {
		d, err := f.az.Authorize(ctx, r)
		if err == nil {
			t.Errorf("Authorize(%+v) with a closed store = %+v, nil; want an error", r, d)
		}
		if d.Allowed {
			t.Errorf("Authorize(%+v) allowed with a closed store", r)
		}
	}
	if _, ok, err := f.az.LeastLevel(ctx, "alice", "orders", ""); err == nil || ok {
		t.Errorf("LeastLevel with a closed store = %v, %v; want an error", ok, err)
	}
	// An unknown database needs no state and is still refused.
	d, err := f.az.Authorize(ctx, Request{User: "alice", Database: "billing", Level: access.ReadOnly})
	if err != nil || d.Allowed || !strings.Contains(d.Reason, "not configured") {
		t.Errorf("unknown database with a closed store = %+v, %v", d, err)
	}
}

func TestNewDefaultsClock(t *testing.T) {
	f := newFixture(t)
	az := New(f.st, policy(t, analystsRead), []access.Database{orders}, nil)
	// The session expires an hour after t0 (2031), so it is valid by the
	// real clock; a nil clock must not panic.
	d, err := az.Authorize(context.Background(), Request{User: "alice", Database: "orders", Level: access.ReadOnly, SignIn: f.session["alice"]})
	if err != nil {
		t.Fatal(err)
	}
	if time.Now().Before(t0.Add(time.Hour)) && !d.Allowed {
		t.Errorf("with the real clock: %s", d.Reason)
	}
}

// TestConcurrentSetPolicy swaps policies while deciding; run with -race.
func TestConcurrentSetPolicy(t *testing.T) {
	f := newFixture(t)
	p1 := policy(t, analystsRead)
	p2 := policy(t, access.Assignment{Group: "analysts", PermissionSet: "db-readwrite", Databases: []string{"orders"}})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 200 {
			if i%2 == 0 {
				f.az.SetPolicy(p2, []access.Database{orders})
			} else {
				f.az.SetPolicy(p1, []access.Database{orders})
			}
		}
	}()
	for range 50 {
		d, err := f.az.Authorize(context.Background(), Request{User: "alice", Database: "orders", Level: access.ReadOnly})
		if err != nil {
			t.Fatal(err)
		}
		// Under both policies alice reads orders.
		if !d.Allowed {
			t.Fatalf("refused during policy swaps: %s", d.Reason)
		}
	}
	wg.Wait()
}

// What the sign-in asserted counts: its MFA satisfies require_mfa, its
// groups grant, and its tags override provisioned ones.
func TestSignInClaims(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p, err := access.NewPolicy([]access.PermissionSet{
		{Name: "db-readonly", Level: access.ReadOnly},
		{Name: "db-admin", Level: access.Admin, RequireMFA: true},
	}, []access.Assignment{
		analystsRead,
		{Group: "dba", PermissionSet: "db-admin", Databases: []string{"orders"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.az.SetPolicy(p, []access.Database{orders})
	session := func(mfa bool, hash byte) identity.Session {
		s, err := f.st.CreateSession(ctx, identity.Session{User: "bob", Expires: t0.Add(time.Hour), Source: "saml", MFA: mfa,
			Groups: []string{"dba"}, Tags: map[string]string{"department": "ops"}}, []byte{hash, 9})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	plain, strong := session(false, 1), session(true, 2)
	if d := f.authorize(t, Request{User: "bob", Database: "orders", Level: access.Admin, SignIn: plain.ID}); d.Allowed || !strings.Contains(d.Reason, "requires MFA") {
		t.Fatalf("admin through a sign-in without MFA: %+v", d)
	}
	if d := f.authorize(t, Request{User: "bob", Database: "orders", Level: access.Admin, SignIn: strong.ID}); !d.Allowed {
		t.Fatalf("admin through a sign-in with MFA: %+v", d)
	}
	if d := f.authorize(t, Request{User: "bob", Database: "orders", Level: access.Admin}); d.Allowed {
		t.Fatalf("groups asserted at sign-in counted without the session: %+v", d)
	}
	if l, ok, err := f.az.LeastLevel(ctx, "bob", "orders", strong.ID); err != nil || !ok || l != access.ReadOnly {
		t.Fatalf("LeastLevel through the session = %q, %v, %v", l, ok, err)
	}
	if l, ok, err := f.az.LeastLevel(ctx, "bob", "orders", ""); err != nil || ok {
		t.Fatalf("LeastLevel without the session = %q, %v, %v; want none", l, ok, err)
	}
	alice, err := f.st.CreateSession(ctx, identity.Session{User: "alice", Expires: t0.Add(time.Hour), Tags: map[string]string{"department": "audit", "project": "x"}}, []byte{3, 9})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := f.az.Principal(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Attributes["department"] != "audit" || pr.Attributes["project"] != "x" || len(pr.Groups) != 1 {
		t.Fatalf("principal = %+v", pr)
	}
	if u, _ := f.st.GetUserByName(ctx, "alice"); u.Attributes["department"] != "finance" {
		t.Fatalf("session tags leaked into the stored user: %+v", u.Attributes)
	}
}

// AssumeMFA decides without a sign-in session as if it had shown MFA, so
// that explain can show what a require_mfa permission set needs.
func TestAssumeMFA(t *testing.T) {
	f := newFixture(t)
	p, err := access.NewPolicy([]access.PermissionSet{{Name: "analyst-write", Level: access.ReadWrite, RequireMFA: true}},
		[]access.Assignment{{Group: "analysts", PermissionSet: "analyst-write", Databases: []string{"orders"}}})
	if err != nil {
		t.Fatal(err)
	}
	f.az.SetPolicy(p, []access.Database{orders})
	if d := f.authorize(t, Request{User: "alice", Database: "orders", Level: access.ReadWrite}); d.Allowed || !strings.Contains(d.Reason, "requires MFA") {
		t.Fatalf("without MFA: %+v", d)
	}
	if d := f.authorize(t, Request{User: "alice", Database: "orders", Level: access.ReadWrite, AssumeMFA: true}); !d.Allowed {
		t.Fatalf("assuming MFA: %+v", d)
	}
	if d := f.authorize(t, Request{User: "bob", Database: "orders", Level: access.ReadOnly, AssumeMFA: true}); d.Allowed {
		t.Fatalf("assuming MFA granted bob, in no group: %+v", d)
	}
}

// WhoCan answers from the memberships of the moment asked about, leaves
// out disabled people, and names people deleted since.
func TestWhoCan(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	early := f.clock.Now()
	f.clock.Set(f.clock.Now().Add(time.Minute))
	if _, err := f.st.AddMember(ctx, f.group["analysts"].ID, f.users["bob"].ID, "test"); err != nil {
		t.Fatal(err)
	}
	joined := f.clock.Now()
	f.clock.Set(f.clock.Now().Add(time.Minute))
	if err := f.st.DeleteUser(ctx, f.users["alice"].ID); err != nil {
		t.Fatal(err)
	}
	list := func(at time.Time) string {
		t.Helper()
		hs, err := f.az.WhoCan(ctx, "orders", at)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, h := range hs {
			s := fmt.Sprintf("%s:%s:%s:%s", h.User, h.Level, h.Group, h.PermissionSet)
			if h.Deleted {
				s += ":deleted"
			}
			out = append(out, s)
		}
		return strings.Join(out, " ")
	}
	if got, want := list(early), "alice:ro:analysts:db-readonly:deleted"; got != want {
		t.Errorf("before bob joined: %q, want %q", got, want)
	}
	if got, want := list(joined), "alice:ro:analysts:db-readonly:deleted bob:ro:analysts:db-readonly"; got != want {
		t.Errorf("after bob joined: %q, want %q", got, want)
	}
	if got, want := list(time.Time{}), "bob:ro:analysts:db-readonly"; got != want {
		t.Errorf("now: %q, want %q", got, want)
	}
	if _, err := f.az.WhoCan(ctx, "nope", time.Time{}); !errors.Is(err, ErrUnknownDatabase) {
		t.Errorf("unknown database: %v", err)
	}
}

// A policy built from the groups in the store is refreshed by the first
// decision for someone in a group it has not seen, so a new group grants
// at once; decisions for people in groups it has seen cost nothing extra.
func TestGroupPolicyRefreshesForNewGroups(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var groups []string
	refreshes := 0
	build := func(ctx context.Context) error {
		refreshes++
		gs, err := f.st.ListGroups(ctx)
		if err != nil {
			return err
		}
		groups = groups[:0]
		as := []access.Assignment{analystsRead}
		for _, g := range gs {
			groups = append(groups, g.Name)
			if strings.HasPrefix(g.Name, "kg-") {
				as = append(as, access.Assignment{Group: g.Name, PermissionSet: strings.TrimPrefix(g.Name, "kg-"), Databases: []string{"*"}})
			}
		}
		f.az.SetGroupPolicy(policy(t, as...), []access.Database{orders, analytics}, groups)
		return nil
	}
	if err := build(ctx); err != nil {
		t.Fatal(err)
	}
	f.az.Refresh = build
	ro := Request{User: "alice", Database: "orders", Level: access.ReadOnly}
	rw := Request{User: "alice", Database: "orders", Level: access.ReadWrite}
	f.authorize(t, ro)
	if refreshes != 1 {
		t.Fatalf("a decision in known groups refreshed the policy (%d builds)", refreshes)
	}
	g, err := f.st.CreateGroup(ctx, identity.Group{Name: "kg-db-readwrite"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.AddMember(ctx, g.ID, f.users["alice"].ID, "test"); err != nil {
		t.Fatal(err)
	}
	if d := f.authorize(t, rw); !d.Allowed || d.Grant.Group != "kg-db-readwrite" {
		t.Fatalf("rw through the new group: %+v", d)
	}
	if refreshes != 2 {
		t.Errorf("%d builds, want one more for the new group", refreshes)
	}
	if d := f.authorize(t, rw); !d.Allowed || refreshes != 2 {
		t.Errorf("second decision: allowed %v after %d builds", d.Allowed, refreshes)
	}
	if level, ok, err := f.az.LeastLevel(ctx, "alice", "analytics", ""); err != nil || !ok || level != access.ReadOnly {
		t.Errorf("LeastLevel on analytics = %q %v %v", level, ok, err)
	}

	// A refresh that fails leaves the policy in force, which grants nothing
	// through a group it has not seen.
	f.az.Refresh = func(context.Context) error { refreshes++; return errors.New("store unreachable") }
	g2, err := f.st.CreateGroup(ctx, identity.Group{Name: "kg-db-admin"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.AddMember(ctx, g2.ID, f.users["alice"].ID, "test"); err != nil {
		t.Fatal(err)
	}
	if d := f.authorize(t, Request{User: "alice", Database: "orders", Level: access.Admin}); d.Allowed || refreshes != 3 {
		t.Errorf("admin after a failed refresh: allowed %v after %d builds", d.Allowed, refreshes)
	}
	// A policy that does not depend on groups is never refreshed.
	f.az.SetPolicy(policy(t, analystsRead), []access.Database{orders})
	f.authorize(t, rw)
	if refreshes != 3 {
		t.Errorf("SetPolicy's policy was refreshed")
	}
}

// A mistyped database name is refused with the name meant and the names
// configured.
func TestUnknownDatabaseSuggests(t *testing.T) {
	dbs := map[string]access.Database{"orders": {Name: "orders"}, "billing": {Name: "billing"}}
	want := "database ordrs is not configured in keygate (did you mean orders?); configured: billing, orders (keygate db list shows those you can reach)"
	if got := notConfiguredReason("ordrs", dbs); got != want {
		t.Errorf("reason %q\nwant   %q", got, want)
	}
}
