// Package storetest is the conformance suite every store backend must pass:
// the same table of subtests, run against a fresh store each.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/store"
)

// Clock is a settable clock the suite drives; backends under test must read
// time from it.
type Clock struct{ t time.Time }

// Now returns the clock's time.
func (c *Clock) Now() time.Time { return c.t }

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) { c.t = c.t.Add(d) }

// newClock starts a clock at a moment with every digit of its nanoseconds
// set, so that a backend which rounds times anywhere fails the equality
// checks of every test rather than only the ones that look for it.
func newClock() *Clock { return &Clock{t: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)} }

// Run runs the suite. open must return a fresh, empty store that reads time
// from clock.
func Run(t *testing.T, open func(t *testing.T, clock *Clock) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store, c *Clock)
	}{
		{"UserCRUD", testUserCRUD},
		{"UserNameUniqueIgnoringCase", testUserNameUnique},
		{"UserUpdateErrorChangesNothing", testUserUpdateError},
		{"GroupCRUD", testGroupCRUD},
		{"Membership", testMembership},
		{"MembershipHistory", testMembershipHistory},
		{"MembershipsAt", testMembershipsAt},
		{"ConfigHistory", testConfigHistory},
		{"DeleteUserEndsMemberships", testDeleteUserEndsMemberships},
		{"Sessions", testSessions},
		{"SessionClaims", testSessionClaims},
		{"DisableRevokesSessions", testDisableRevokesSessions},
		{"UsersByEmail", testUsersByEmail},
		{"Audit", testAudit},
		{"ChangeFeed", testChangeFeed},
		{"UserProfileAndQueries", testUserProfileAndQueries},
		{"GroupMemberChanges", testGroupMemberChanges},
		{"ProvisioningTokens", testProvisioningTokens},
		{"TimesKeepNanoseconds", testTimesKeepNanoseconds},
		{"ConcurrentUserUpdates", testConcurrentUserUpdates},
		{"ConcurrentGroupUpdates", testConcurrentGroupUpdates},
		{"ConcurrentAddSameMember", testConcurrentAddSameMember},
		{"ConcurrentCreateSameName", testConcurrentCreateSameName},
		{"Pending", testPending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			s := open(t, c)
			t.Cleanup(func() { s.Close() })
			tt.fn(t, s, c)
		})
	}
}

// must2 is must for two values.
func must2[A, B any](a A, b B, err error) func(t *testing.T) (A, B) {
	return func(t *testing.T) (A, B) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}
}

// must turns a (value, error) result into the value, failing the test on an
// error: must(s.GetUser(ctx, id))(t).
func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}

func testUserCRUD(t *testing.T, s store.Store, c *Clock) {
	ctx := context.Background()
	u := must(s.CreateUser(ctx, identity.User{UserName: "alice", Email: "alice@example.com", Active: true, Attributes: map[string]string{"department": "finance"}}))(t)
	if u.ID == "" || u.Version != 1 || !u.Created.Equal(c.Now()) {
		t.Fatalf("created user = %+v", u)
	}
	got := must(s.GetUser(ctx, u.ID))(t)
	if got.UserName != "alice" || got.Email != "alice@example.com" || !got.Active || got.Attributes["department"] != "finance" {
		t.Fatalf("GetUser = %+v", got)
	}
	byName := must(s.GetUserByName(ctx, "ALICE"))(t)
	if byName.ID != u.ID {
		t.Fatalf("GetUserByName(ALICE) = %+v", byName)
	}
	c.Advance(time.Minute)
	up := must(s.UpdateUser(ctx, u.ID, func(u identity.User) (identity.User, error) {
		u.Active = false
		u.ID = "hijacked"
		return u, nil
	}))(t)
	if up.Active || up.Version != 2 || up.ID != u.ID || !up.Modified.Equal(c.Now()) || !up.Created.Equal(u.Created) {
		t.Fatalf("updated user = %+v", up)
	}
	if got := must(s.GetUser(ctx, u.ID))(t); got.Active || got.Version != 2 {
		t.Fatalf("after update GetUser = %+v", got)
	}
	must(s.CreateUser(ctx, identity.User{UserName: "bob", Active: true}))(t)
	users := must(s.ListUsers(ctx, store.UserQuery{}))(t)
	if len(users) != 2 || users[0].UserName != "alice" || users[1].UserName != "bob" {
		t.Fatalf("ListUsers = %+v", users)
	}
	if err := s.DeleteUser(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	_, err := s.GetUser(ctx, u.ID)
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.DeleteUser(ctx, u.ID), store.ErrNotFound)
	_, err = s.UpdateUser(ctx, u.ID, func(u identity.User) (identity.User, error) { return u, nil })
	wantErr(t, err, store.ErrNotFound)
	_, err = s.CreateUser(ctx, identity.User{UserName: "has space"})
	if err == nil {
		t.Fatal("CreateUser accepted a name with a space")
	}
}

func testUserNameUnique(t *testing.T, s store.Store, _ *Clock) {
	ctx := context.Background()
	must(s.CreateUser(ctx, identity.User{UserName: "Carol", Active: true}))(t)
	_, err := s.CreateUser(ctx, identity.User{UserName: "carol", Active: true})
	wantErr(t, err, store.ErrAlreadyExists)
	d := must(s.CreateUser(ctx, identity.User{UserName: "dave", Active: true}))(t)
	_, err = s.UpdateUser(ctx, d.ID, func(u identity.User) (identity.User, error) {
		u.UserName = "CAROL"
		return u, nil
	})
	wantErr(t, err, store.ErrAlreadyExists)
}

func testUserUpdateError(t *testing.T, s store.Store, _ *Clock) {
	ctx := context.Background()
	u := must(s.CreateUser(ctx, identity.User{UserName: "erin", Active: true}))(t)
	boom := errors.New("boom")
	_, err := s.UpdateUser(ctx, u.ID, func(u identity.User) (identity.User, error) {
		u.Active = false
		return u, boom
	})
	wantErr(t, err, boom)
	if got := must(s.GetUser(ctx, u.ID))(t); !got.Active || got.Version != 1 {
		t.Fatalf("failed update changed the user: %+v", got)
	}
}

func testGroupCRUD(t *testing.T, s store.Store, c *Clock) {
	ctx := context.Background()
	g := must(s.CreateGroup(ctx, identity.Group{Name: "analysts"}))(t)
	c.Advance(time.Second)
	if g.ID == "" || g.Version != 1 {
		t.Fatalf("created group = %+v", g)
	}
	_, err := s.CreateGroup(ctx, identity.Group{Name: "Analysts"})
	wantErr(t, err, store.ErrAlreadyExists)
	if got := must(s.GetGroupByName(ctx, "ANALYSTS"))(t); got.ID != g.ID {
		t.Fatalf("GetGroupByName = %+v", got)
	}
	r := must(s.UpdateGroup(ctx, g.ID, "test", func(g identity.Group) (identity.Group, store.MemberChange, error) {
		g.Name = "data-analysts"
		return g, store.MemberChange{}, nil
	}))(t)
	if r.Name != "data-analysts" || r.Version != 2 {
		t.Fatalf("renamed group = %+v", r)
	}
	_, err = s.GetGroupByName(ctx, "analysts")
	wantErr(t, err, store.ErrNotFound)
	must(s.CreateGroup(ctx, identity.Group{Name: "engineers"}))(t)
	if gs := must(s.ListGroups(ctx))(t); len(gs) != 2 || gs[0].Name != "data-analysts" {
		t.Fatalf("ListGroups = %+v", gs)
	}
	if err := s.DeleteGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetGroup(ctx, g.ID)
	wantErr(t, err, store.ErrNotFound)
}

func testMembership(t *testing.T, s store.Store, _ *Clock) {
	ctx := context.Background()
	a := must(s.CreateUser(ctx, identity.User{UserName: "alice", Active: true}))(t)
	b := must(s.CreateUser(ctx, identity.User{UserName: "bob", Active: true}))(t)
	g := must(s.CreateGroup(ctx, identity.Group{Name: "analysts"}))(t)
	if added := must(s.AddMember(ctx, g.ID, a.ID, "test"))(t); !added {
		t.Fatal("first AddMember reported not added")
	}
	if added := must(s.AddMember(ctx, g.ID, a.ID, "test"))(t); added {
		t.Fatal("second AddMember reported added")
	}
	must(s.AddMember(ctx, g.ID, b.ID, "test"))(t)
	_, err := s.AddMember(ctx, g.ID, "no-such-user", "test")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.AddMember(ctx, "no-such-group", a.ID, "test")
	wantErr(t, err, store.ErrNotFound)

	members := must(s.ListMembers(ctx, g.ID))(t)
	if len(members) != 2 || members[0].UserName != "alice" || members[1].UserName != "bob" || members[0].UserID != a.ID {
		t.Fatalf("ListMembers = %+v", members)
	}
	groups := must(s.GroupsOf(ctx, a.ID))(t)
	if len(groups) != 1 || groups[0].Name != "analysts" {
		t.Fatalf("GroupsOf = %+v", groups)
	}
	if u := must(s.GetUserByName(ctx, "ALICE"))(t); u.ID != a.ID {
		t.Fatalf("GetUserByName(ALICE) = %+v", u)
	}
	if err := s.RemoveMember(ctx, g.ID, a.ID, "test"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.RemoveMember(ctx, g.ID, a.ID, "test"), store.ErrNotFound)
	if groups := must(s.GroupsOf(ctx, a.ID))(t); len(groups) != 0 {
		t.Fatalf("GroupsOf after removal = %+v", groups)
	}
	if err := s.DeleteGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if groups := must(s.GroupsOf(ctx, b.ID))(t); len(groups) != 0 {
		t.Fatalf("GroupsOf after group delete = %+v", groups)
	}
}

func testMembershipHistory(t *testing.T, s store.Store, c *Clock) {
	ctx := context.Background()
	a := must(s.CreateUser(ctx, identity.User{UserName: "alice", Active: true}))(t)
	g := must(s.CreateGroup(ctx, identity.Group{Name: "analysts"}))(t)
	t0 := c.Now()
	must(s.AddMember(ctx, g.ID, a.ID, "admin"))(t)
	c.Advance(time.Hour)
	if err := s.RemoveMember(ctx, g.ID, a.ID, "scim:azure-ad"); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Hour)
	must(s.AddMember(ctx, g.ID, a.ID, "admin"))(t)
	must(s.UpdateGroup(ctx, g.ID, "test", func(g identity.Group) (identity.Group, store.MemberChange, error) {
		g.Name = "renamed"
		return g, store.MemberChange{}, nil
	}))(t)
	h := must(s.MembershipHistory(ctx, "renamed"))(t)
	if len(h) != 2 {
		t.Fatalf("history = %+v", h)
	}
	if h[0].User != "alice" || !h[0].Joined.Equal(t0) || !h[0].Left.Equal(t0.Add(time.Hour)) || h[0].Source != "admin" {
		t.Fatalf("first membership = %+v", h[0])
	}
	if !h[1].Left.IsZero() || !h[1].Joined.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("second membership = %+v", h[1])
	}
	if err := s.DeleteGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	h = must(s.MembershipHistory(ctx, "analysts"))(t)
	if len(h) != 2 || h[1].Left.IsZero() {
		t.Fatalf("history after delete = %+v", h)
	}
}

func testMembershipsAt(t *testing.T, s store.Store, c *Clock) {
	ctx := context.Background()
	a := must(s.CreateUser(ctx, identity.User{UserName: "alice", Active: true}))(t)
	b := must(s.CreateUser(ctx, identity.User{UserName: "bob", Active: true}))(t)
	g := must(s.CreateGroup(ctx, identity.Group{Name: "analysts"}))(t)
	old := must(s.CreateGroup(ctx, identity.Group{Name: "old-team"}))(t)
	before := c.Now()
	c.Advance(time.Minute)
	joined := c.Now()
	must(s.AddMember(ctx, g.ID, a.ID, "admin"))(t)
	must(s.AddMember(ctx, old.ID, b.ID, "admin"))(t)
	c.Advance(time.Hour)
	left := c.Now()
	if err := s.RemoveMember(ctx, g.ID, a.ID, "scim:azure-ad"); err != nil {
		t.Fatal(err)
	}
	must(s.AddMember(ctx, g.ID, b.ID, "admin"))(t)
	must(s.UpdateGroup(ctx, g.ID, "test", func(g identity.Group) (identity.Group, store.MemberChange, error) {
		g.Name = "data-analysts"
		return g, store.MemberChange{}, nil
	}))(t)
	if err := s.DeleteGroup(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute)

	names := func(ms []identity.Membership) string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Group+":"+m.User)
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{before, ""},
		{joined, "data-analysts:alice old-team:bob"},
		{left.Add(-time.Nanosecond), "data-analysts:alice old-team:bob"},
		{left, "data-analysts:bob"},
		{c.Now(), "data-analysts:bob"},
	} {
		if got := names(must(s.MembershipsAt(ctx, tc.at))(t)); got != tc.want {
			t.Errorf("memberships at %s = %q, want %q", tc.at, got, tc.want)
		}
	}
}

func testConfigHistory(t *testing.T, s store.Store, c *Clock) {
	ctx := context.Background()
	_, err := s.ConfigVersionAt(ctx, c.Now())
	wantErr(t, err, store.ErrNotFound)
	first := store.ConfigVersion{Loaded: c.Now(), Digest: "d1", Rules: []byte(`{"v":1}`), PermissionSets: 2, Assignments: 3, People: 10}
	if added := must(s.AddConfigVersion(ctx, first))(t); !added {
		t.Fatal("the first version was not added")
	}
	c.Advance(time.Hour)
	if added := must(s.AddConfigVersion(ctx, store.ConfigVersion{Loaded: c.Now(), Digest: "d1", Rules: []byte(`{"v":1}`)}))(t); added {
		t.Fatal("a version with the newest digest was added again")
	}
	c.Advance(time.Hour)
	second := store.ConfigVersion{Loaded: c.Now(), Digest: "d2", Rules: []byte(`{"v":2}`), PermissionSets: 5, Assignments: 6, People: 11}
	if added := must(s.AddConfigVersion(ctx, second))(t); !added {
		t.Fatal("a changed version was not added")
	}
	_, err = s.ConfigVersionAt(ctx, first.Loaded.Add(-time.Nanosecond))
	wantErr(t, err, store.ErrNotFound)
	for at, want := range map[time.Time]store.ConfigVersion{
		first.Loaded:                        first,
		second.Loaded.Add(-time.Nanosecond): first,
		second.Loaded:                       second,
		second.Loaded.Add(24 * time.Hour):   second,
	} {
		got := must(s.ConfigVersionAt(ctx, at))(t)
		if got.Digest != want.Digest || string(got.Rules) != string(want.Rules) || !got.Loaded.Equal(want.Loaded) ||
			got.PermissionSets != want.PermissionSets || got.Assignments != want.Assignments || got.People != want.People || got.ID == 0 {
			t.Errorf("at %s: %+v, want %+v", at, got, want)
		}
	}
	// Going back to earlier rules is a new version.
	c.Advance(time.Hour)
	if added := must(s.AddConfigVersion(ctx, store.ConfigVersion{Loaded: c.Now(), Digest: "d1", Rules: []byte(`{"v":1}`)}))(t); !added {
		t.Fatal("returning to the first rules was not recorded")
	}
}

func testDeleteUserEndsMemberships(t *testing.T, s store.Store, c *Clock) {
	ctx := context.Background()
	a := must(s.CreateUser(ctx, identity.User{UserName: "alice", Active: true}))(t)
	g := must(s.CreateGroup(ctx, identity.Group{Name: "analysts"}))(t)
	must(s.AddMember(ctx, g.ID, a.ID, "admin"))(t)
	must(s.CreateSession(ctx, identity.Session{User: "alice", Expires: c.Now().Add(time.Hour)}, []byte("hash-a")))(t)
	c.Advance(time.Minute)
	if err := s.DeleteUser(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if m := must(s.ListMembers(ctx, g.ID))(t); len(m) != 0 {
		t.Fatalf("members after user delete = %+v", m)
	}
	h := must(s.MembershipHistory(ctx, "analysts"))(t)
	if len(h) != 1 || !h[0].Left.Equal(c.Now()) || h[0].User != "alice" {
		t.Fatalf("history after user delete = %+v", h)
	}
	_, err := s.GetSessionByHash(ctx, []byte("hash-a"))
	wantErr(t, err, store.ErrNotFound)
}

func testSessions(t *testing.T, s store.Store, c *Clock) {
	ctx := context.Background()
	must(s.CreateUser(ctx, identity.User{UserName: "alice", Active: true}))(t)
	exp := c.Now().Add(8 * time.Hour)
	ss := must(s.CreateSession(ctx, identity.Session{User: "Alice", Expires: exp, Source: "admin"}, []byte("hash-1")))(t)
	if ss.ID == "" || ss.User != "alice" {
		t.Fatalf("created session = %+v", ss)
	}
	_, err := s.CreateSession(ctx, identity.Session{User: "alice", Expires: exp}, []byte("hash-1"))
	wantErr(t, err, store.ErrAlreadyExists)
	_, err = s.CreateSession(ctx, identity.Session{User: "nobody", Expires: exp}, []byte("hash-2"))
	wantErr(t, err, store.ErrNotFound)
	got := must(s.GetSessionByHash(ctx, []byte("hash-1")))(t)
	if got.ID != ss.ID || !got.Expires.Equal(exp) || !got.ValidAt(c.Now()) {
		t.Fatalf("GetSessionByHash = %+v", got)
	}
	_, err = s.GetSessionByHash(ctx, []byte("hash-x"))
	wantErr(t, err, store.ErrNotFound)
	if err := s.RevokeSession(ctx, ss.ID, c.Now()); err != nil {
		t.Fatal(err)
	}
	if got := must(s.GetSession(ctx, ss.ID))(t); got.ValidAt(c.Now()) {
		t.Fatalf("revoked session still valid: %+v", got)
	}
	if l := must(s.ListSessions(ctx, "alice"))(t); len(l) != 1 {
		t.Fatalf("ListSessions = %+v", l)
	}
}

// testSessionClaims: what the identity provider asserted at sign-in is
// kept with the session.
func testSessionClaims(t *testing.T, s store.Store, c *Clock) {
	ctx := context.Background()
	must(s.CreateUser(ctx, identity.User{UserName: "alice", Active: true}))(t)
	ss := must(s.CreateSession(ctx, identity.Session{User: "alice", Expires: c.Now().Add(time.Hour), Source: "saml", MFA: true,
		Tags: map[string]string{"project": "ledger"}, Groups: []string{"analysts"}}, []byte("hash-1")))(t)
	got := must(s.GetSession(ctx, ss.ID))(t)
	if !got.MFA || got.Source != "saml" || got.Tags["project"] != "ledger" || len(got.Groups) != 1 || got.Groups[0] != "analysts" {
		t.Fatalf("GetSession = %+v", got)
	}
	bare := must(s.CreateSession(ctx, identity.Session{User: "alice", Expires: c.Now().Add(time.Hour)}, []byte("hash-2")))(t)
	if got := must(s.GetSession(ctx, bare.ID))(t); len(got.Tags) != 0 || len(got.Groups) != 0 || got.MFA {
		t.Fatalf("session without claims = %+v", got)
	}
}

// testDisableRevokesSessions: disabling a person revokes their sign-in
// sessions, and enabling them again does not bring the sessions back.
func testDisableRevokesSessions(t *testing.T, s store.Store, c *Clock) {
	ctx := context.Background()
	u := must(s.CreateUser(ctx, identity.User{UserName: "alice", Active: true}))(t)
	must(s.CreateUser(ctx, identity.User{UserName: "bob", Active: true}))(t)
	a := must(s.CreateSession(ctx, identity.Session{User: "alice", Expires: c.Now().Add(time.Hour)}, []byte("hash-a")))(t)
	b := must(s.CreateSession(ctx, identity.Session{User: "bob", Expires: c.Now().Add(time.Hour)}, []byte("hash-b")))(t)
	set := func(active bool) {
		must(s.UpdateUser(ctx, u.ID, func(old identity.User) (identity.User, error) { old.Active = active; return old, nil }))(t)
	}
	set(false)
	set(true)
	if got := must(s.GetSession(ctx, a.ID))(t); got.Revoked.IsZero() || got.ValidAt(c.Now()) {
		t.Fatalf("session of a disabled person: %+v", got)
	}
	if got := must(s.GetSession(ctx, b.ID))(t); !got.Revoked.IsZero() {
		t.Fatalf("another person's session was revoked: %+v", got)
	}
}

func testUsersByEmail(t *testing.T, s store.Store, c *Clock) {
	ctx := context.Background()
	must(s.CreateUser(ctx, identity.User{UserName: "alice", Email: "Alice@Example.com", Active: true}))(t)
	must(s.CreateUser(ctx, identity.User{UserName: "bob", Email: "bob@example.com", ExternalID: "b-1", Active: true}))(t)
	if got := must(s.ListUsers(ctx, store.UserQuery{Email: "alice@example.COM"}))(t); len(got) != 1 || got[0].UserName != "alice" {
		t.Fatalf("by email: %+v", got)
	}
	if got := must(s.ListUsers(ctx, store.UserQuery{Email: "bob@example.com", ExternalID: "x"}))(t); len(got) != 0 {
		t.Fatalf("by email and another external id: %+v", got)
	}
}

func testAudit(t *testing.T, s store.Store, c *Clock) {
	ctx := context.Background()
	_, err := s.LastAudit(ctx)
	wantErr(t, err, store.ErrNotFound)
	base := c.Now()
	events := []store.AuditEvent{
		{ChainSeq: 1, Time: base, Type: "session.start", User: "alice", Database: "orders", PrevHash: []byte{0}, Hash: []byte{1}},
		{ChainSeq: 2, Time: base.Add(time.Second), Type: "query", User: "alice", Database: "orders", Query: "SELECT 1", PrevHash: []byte{1}, Hash: []byte{2}},
		{ChainSeq: 3, Time: base.Add(2 * time.Second), Type: "session.end", User: "bob", Database: "billing", Detail: []byte(`{"bytes":3}`), PrevHash: []byte{2}, Hash: []byte{3}},
		// A statement of a megabyte, padded to hide what follows the
		// padding, comes back whole.
		{ChainSeq: 4, Time: base.Add(3 * time.Second), Type: "query", User: "bob", Database: "billing",
			Query: "select 1 /*" + strings.Repeat(" ", 1<<20) + "*/; update items set name = 'é🔑' where id = 1", PrevHash: []byte{3}, Hash: []byte{4}},
	}
	if err := s.AppendAudit(ctx, events); err != nil {
		t.Fatal(err)
	}
	last := must(s.LastAudit(ctx))(t)
	if last.Seq != 4 || last.Query != events[3].Query || !last.Time.Equal(base.Add(3*time.Second)) {
		t.Fatalf("LastAudit = seq %d, query of %d bytes", last.Seq, len(last.Query))
	}
	if head := must(s.ChainHead(ctx, ""))(t); head.Seq != 4 || head.ChainSeq != 4 || string(head.Hash) != string(events[3].Hash) {
		t.Fatalf("ChainHead = position %d, number %d", head.Seq, head.ChainSeq)
	}
	_, err = s.ChainHead(ctx, "elsewhere")
	wantErr(t, err, store.ErrNotFound)
	// Every field comes back byte for byte: the audit hash covers them all,
	// so an empty Detail must stay empty.
	for i, got := range must(s.ListAudit(ctx, store.AuditQuery{}))(t) {
		want := events[i]
		if string(got.Detail) != string(want.Detail) || got.Query != want.Query || got.Type != want.Type ||
			string(got.PrevHash) != string(want.PrevHash) || string(got.Hash) != string(want.Hash) || !got.Time.Equal(want.Time) {
			t.Fatalf("event %d came back changed (query of %d bytes, stored %d)", want.ChainSeq, len(got.Query), len(want.Query))
		}
	}
	check := func(q store.AuditQuery, want ...int64) {
		t.Helper()
		got := must(s.ListAudit(ctx, q))(t)
		var seqs []int64
		for _, e := range got {
			seqs = append(seqs, e.Seq)
		}
		if !slices.Equal(seqs, want) {
			t.Fatalf("ListAudit(%+v) = %v, want %v", q, seqs, want)
		}
	}
	check(store.AuditQuery{}, 1, 2, 3, 4)
	check(store.AuditQuery{User: "ALICE"}, 1, 2)
	check(store.AuditQuery{Database: "billing"}, 3, 4)
	check(store.AuditQuery{Type: "session"}, 1, 3)
	check(store.AuditQuery{Type: "sess"})
	check(store.AuditQuery{Type: "query"}, 2, 4)
	check(store.AuditQuery{Since: base.Add(time.Second)}, 2, 3, 4)
	check(store.AuditQuery{Until: base.Add(time.Second)}, 1)
	check(store.AuditQuery{AfterSeq: 1, Limit: 1}, 2)
	if err := s.AppendAudit(ctx, []store.AuditEvent{{ChainSeq: 3, Time: base, Type: "x", PrevHash: []byte{3}, Hash: []byte{4}}}); err == nil {
		t.Fatal("AppendAudit accepted a duplicate sequence number")
	}
	check(store.AuditQuery{}, 1, 2, 3, 4)
}

func testChangeFeed(t *testing.T, s store.Store, _ *Clock) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	feed := s.Watch(ctx)
	a := must(s.CreateUser(ctx, identity.User{UserName: "alice", Active: true}))(t)
	g := must(s.CreateGroup(ctx, identity.Group{Name: "analysts"}))(t)
	must(s.AddMember(ctx, g.ID, a.ID, "admin"))(t)
	must(s.UpdateUser(ctx, a.ID, func(u identity.User) (identity.User, error) {
		u.Active = false
		return u, nil
	}))(t)
	if err := s.RemoveMember(ctx, g.ID, a.ID, "admin"); err != nil {
		t.Fatal(err)
	}
	// A failed change publishes nothing.
	_, _ = s.CreateUser(ctx, identity.User{UserName: "alice"})
	want := []store.Change{
		{Kind: store.UserChanged, User: "alice"},
		{Kind: store.GroupChanged, Group: "analysts"},
		{Kind: store.MembershipChanged, User: "alice", Group: "analysts"},
		{Kind: store.UserChanged, User: "alice"},
		{Kind: store.MembershipChanged, User: "alice", Group: "analysts"},
	}
	for i, w := range want {
		select {
		case got := <-feed:
			if got.At.IsZero() {
				t.Errorf("change %d (%+v) does not say when it committed", i, got)
			}
			got.At = time.Time{}
			if got != w {
				t.Fatalf("change %d = %+v, want %+v", i, got, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("change %d (%+v) not delivered", i, w)
		}
	}
	select {
	case got := <-feed:
		t.Fatalf("unexpected change %+v", got)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	for range feed {
	}
}

func testUserProfileAndQueries(t *testing.T, s store.Store, c *Clock) {
	ctx := context.Background()
	profile := []byte(`{"name":{"givenName":"Ada"},"emails":[{"value":"ada@example.com","primary":true}]}`)
	a := must(s.CreateUser(ctx, identity.User{UserName: "ada", ExternalID: "ext-1", Active: true, Profile: profile}))(t)
	if got := must(s.GetUser(ctx, a.ID))(t); string(got.Profile) != string(profile) {
		t.Fatalf("profile = %q", got.Profile)
	}
	c.Advance(time.Second)
	b := must(s.CreateUser(ctx, identity.User{UserName: "Bea", ExternalID: "ext-2", Active: true}))(t)
	if got := must(s.GetUser(ctx, b.ID))(t); got.Profile != nil {
		t.Fatalf("user without a profile reads back %q", got.Profile)
	}
	c.Advance(time.Second)
	must(s.CreateUser(ctx, identity.User{UserName: "abe", ExternalID: "ext-1", Active: true}))(t)
	// Oldest first, whatever the names.
	var names []string
	for _, u := range must(s.ListUsers(ctx, store.UserQuery{}))(t) {
		names = append(names, u.UserName)
	}
	if !slices.Equal(names, []string{"ada", "Bea", "abe"}) {
		t.Fatalf("ListUsers order = %v", names)
	}
	names = nil
	for _, u := range must(s.ListUsers(ctx, store.UserQuery{ExternalID: "ext-1"}))(t) {
		names = append(names, u.UserName)
	}
	if !slices.Equal(names, []string{"ada", "abe"}) {
		t.Fatalf("ListUsers by external id = %v", names)
	}
	up := must(s.UpdateUser(ctx, a.ID, func(u identity.User) (identity.User, error) {
		u.Profile = []byte(`{}`)
		return u, nil
	}))(t)
	if string(up.Profile) != "{}" || string(must(s.GetUser(ctx, a.ID))(t).Profile) != "{}" {
		t.Fatal("profile not updated")
	}
}

func testGroupMemberChanges(t *testing.T, s store.Store, c *Clock) {
	ctx := context.Background()
	var ids []string
	for _, n := range []string{"u1", "u2", "u3", "u4"} {
		ids = append(ids, must(s.CreateUser(ctx, identity.User{UserName: n, Active: true}))(t).ID)
	}
	g := must(s.CreateGroup(ctx, identity.Group{Name: "team"}))(t)
	feed := s.Watch(ctx)
	update := func(mc store.MemberChange, rename string) error {
		_, err := s.UpdateGroup(ctx, g.ID, "scim:test", func(g identity.Group) (identity.Group, store.MemberChange, error) {
			if rename != "" {
				g.Name = rename
			}
			return g, mc, nil
		})
		return err
	}
	memberNames := func() []string {
		var out []string
		for _, m := range must(s.ListMembers(ctx, g.ID))(t) {
			out = append(out, m.UserName)
		}
		return out
	}
	if err := update(store.MemberChange{Add: ids[:3]}, ""); err != nil {
		t.Fatal(err)
	}
	if got := memberNames(); !slices.Equal(got, []string{"u1", "u2", "u3"}) {
		t.Fatalf("after add: %v", got)
	}
	// Removing a non-member is fine; adding a member twice too.
	if err := update(store.MemberChange{Add: ids[:1], Remove: []string{ids[1], ids[3]}}, ""); err != nil {
		t.Fatal(err)
	}
	if got := memberNames(); !slices.Equal(got, []string{"u1", "u3"}) {
		t.Fatalf("after remove: %v", got)
	}
	c.Advance(time.Minute)
	if err := update(store.MemberChange{Replace: true, Set: []string{ids[2], ids[3]}}, "squad"); err != nil {
		t.Fatal(err)
	}
	if got := memberNames(); !slices.Equal(got, []string{"u3", "u4"}) {
		t.Fatalf("after replace: %v", got)
	}
	// An unknown user fails the whole update, rename included.
	err := update(store.MemberChange{Add: []string{ids[0], "no-such-user"}}, "other")
	wantErr(t, err, store.ErrNotFound)
	if got := must(s.GetGroup(ctx, g.ID))(t); got.Name != "squad" {
		t.Fatalf("failed update renamed the group to %q", got.Name)
	}
	if got := memberNames(); !slices.Equal(got, []string{"u3", "u4"}) {
		t.Fatalf("failed update changed members: %v", got)
	}
	h := must(s.MembershipHistory(ctx, "squad"))(t)
	if len(h) != 4 {
		t.Fatalf("history = %+v", h)
	}
	for _, m := range h {
		if m.Source != "scim:test" || m.Group == "" {
			t.Fatalf("history entry %+v", m)
		}
	}
	// Every membership change reached the feed.
	var memberships int
	for memberships < 6 {
		select {
		case ch := <-feed:
			if ch.Kind == store.MembershipChanged {
				memberships++
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("saw %d membership changes, want 6", memberships)
		}
	}
}

func testProvisioningTokens(t *testing.T, s store.Store, c *Clock) {
	ctx := context.Background()
	exp := c.Now().Add(365 * 24 * time.Hour)
	tok := must(s.CreateProvisioningToken(ctx, identity.ProvisioningToken{Name: "azure-ad", Expires: exp}, []byte("h1")))(t)
	if tok.ID == "" || !tok.Created.Equal(c.Now()) {
		t.Fatalf("created %+v", tok)
	}
	_, err := s.CreateProvisioningToken(ctx, identity.ProvisioningToken{Name: "azure-ad"}, []byte("h2"))
	wantErr(t, err, store.ErrAlreadyExists)
	got := must(s.GetProvisioningTokenByHash(ctx, []byte("h1")))(t)
	if got.Name != "azure-ad" || !got.Expires.Equal(exp) || !got.ValidAt(c.Now()) || got.ValidAt(exp) {
		t.Fatalf("GetProvisioningTokenByHash = %+v", got)
	}
	c.Advance(time.Minute)
	if err := s.TouchProvisioningToken(ctx, tok.ID, c.Now()); err != nil {
		t.Fatal(err)
	}
	if got := must(s.GetProvisioningTokenByHash(ctx, []byte("h1")))(t); !got.LastUsed.Equal(c.Now()) {
		t.Fatalf("last used = %s", got.LastUsed)
	}
	if err := s.RevokeProvisioningToken(ctx, "azure-ad", c.Now()); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.RevokeProvisioningToken(ctx, "azure-ad", c.Now()), store.ErrNotFound)
	if got := must(s.GetProvisioningTokenByHash(ctx, []byte("h1")))(t); got.ValidAt(c.Now()) {
		t.Fatal("revoked token still valid")
	}
	// The name is free again; the revoked token stays listed.
	must(s.CreateProvisioningToken(ctx, identity.ProvisioningToken{Name: "azure-ad"}, []byte("h3")))(t)
	if l := must(s.ListProvisioningTokens(ctx))(t); len(l) != 2 || l[1].Expires != (time.Time{}) {
		t.Fatalf("ListProvisioningTokens = %+v", l)
	}
	_, err = s.GetProvisioningTokenByHash(ctx, []byte("nope"))
	wantErr(t, err, store.ErrNotFound)
}

// testTimesKeepNanoseconds: every time the store keeps comes back to the
// nanosecond. The audit hash covers an event's UnixNano, so a rounded time
// breaks the chain; session and membership times answer "who could reach
// what at T", where a rounded boundary answers wrongly.
func testTimesKeepNanoseconds(t *testing.T, s store.Store, c *Clock) {
	ctx := context.Background()
	same := func(what string, got, want time.Time) {
		t.Helper()
		if got.UnixNano() != want.UnixNano() || got.IsZero() != want.IsZero() {
			t.Errorf("%s = %s, want %s", what, got.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
		}
	}
	c.Advance(987654321 * time.Nanosecond)
	created := c.Now()
	u := must(s.CreateUser(ctx, identity.User{UserName: "alice", Active: true}))(t)
	g := must(s.CreateGroup(ctx, identity.Group{Name: "analysts"}))(t)
	c.Advance(time.Nanosecond)
	joined := c.Now()
	must(s.AddMember(ctx, g.ID, u.ID, "admin"))(t)
	c.Advance(time.Nanosecond)
	modified := c.Now()
	must(s.UpdateUser(ctx, u.ID, func(u identity.User) (identity.User, error) { u.Email = "a@example.com"; return u, nil }))(t)
	got := must(s.GetUser(ctx, u.ID))(t)
	same("user created", got.Created, created)
	same("user modified", got.Modified, modified)
	same("user by name created", must(s.GetUserByName(ctx, "alice"))(t).Created, created)
	same("group created", must(s.GetGroup(ctx, g.ID))(t).Created, created)
	c.Advance(time.Nanosecond)
	left := c.Now()
	if err := s.RemoveMember(ctx, g.ID, u.ID, "admin"); err != nil {
		t.Fatal(err)
	}
	h := must(s.MembershipHistory(ctx, "analysts"))(t)
	if len(h) != 1 {
		t.Fatalf("history = %+v", h)
	}
	same("joined", h[0].Joined, joined)
	same("left", h[0].Left, left)
	if m := must(s.MembershipsAt(ctx, left.Add(-time.Nanosecond)))(t); len(m) != 1 {
		t.Errorf("a nanosecond before leaving: %+v", m)
	}
	if m := must(s.MembershipsAt(ctx, left))(t); len(m) != 0 {
		t.Errorf("at the nanosecond of leaving: %+v", m)
	}

	sessionCreated := c.Now().Add(3 * time.Nanosecond)
	expires := c.Now().Add(8*time.Hour + 7*time.Nanosecond)
	revoked := c.Now().Add(time.Hour + 11*time.Nanosecond)
	ss := must(s.CreateSession(ctx, identity.Session{User: "alice", Created: sessionCreated, Expires: expires}, []byte("hash-1")))(t)
	if err := s.RevokeSession(ctx, ss.ID, revoked); err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]identity.Session{
		"GetSession":       must(s.GetSession(ctx, ss.ID))(t),
		"GetSessionByHash": must(s.GetSessionByHash(ctx, []byte("hash-1")))(t),
		"ListSessions":     must(s.ListSessions(ctx, "alice"))(t)[0],
	} {
		same(name+" created", got.Created, sessionCreated)
		same(name+" expires", got.Expires, expires)
		same(name+" revoked", got.Revoked, revoked)
	}

	tokExpires := c.Now().Add(24*time.Hour + 13*time.Nanosecond)
	tok := must(s.CreateProvisioningToken(ctx, identity.ProvisioningToken{Name: "idp", Created: c.Now(), Expires: tokExpires}, []byte("t1")))(t)
	used := c.Now().Add(17 * time.Nanosecond)
	if err := s.TouchProvisioningToken(ctx, tok.ID, used); err != nil {
		t.Fatal(err)
	}
	gotTok := must(s.GetProvisioningTokenByHash(ctx, []byte("t1")))(t)
	same("token created", gotTok.Created, tok.Created)
	same("token expires", gotTok.Expires, tokExpires)
	same("token last used", gotTok.LastUsed, used)
	same("token revoked", gotTok.Revoked, time.Time{})

	loaded := c.Now().Add(19 * time.Nanosecond)
	must(s.AddConfigVersion(ctx, store.ConfigVersion{Loaded: loaded, Digest: "d", Rules: []byte("{}")}))(t)
	same("config loaded", must(s.ConfigVersionAt(ctx, loaded))(t).Loaded, loaded)
	_, err := s.ConfigVersionAt(ctx, loaded.Add(-time.Nanosecond))
	wantErr(t, err, store.ErrNotFound)

	// Audit times, including ones far from the clock: an event's time is
	// whatever the writer says, and the hash covers it whole.
	times := []time.Time{
		c.Now().Add(1),
		c.Now().Add(2),
		time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2200, 6, 1, 0, 0, 0, 1, time.UTC),
	}
	var events []store.AuditEvent
	for i, at := range times {
		events = append(events, store.AuditEvent{ChainSeq: int64(i + 1), Time: at, Type: "x", PrevHash: []byte{byte(i)}, Hash: []byte{byte(i + 1)}})
	}
	if err := s.AppendAudit(ctx, events); err != nil {
		t.Fatal(err)
	}
	for i, e := range must(s.ListAudit(ctx, store.AuditQuery{}))(t) {
		same(fmt.Sprintf("audit event %d time", e.Seq), e.Time, times[i])
	}
	same("last audit time", must(s.LastAudit(ctx))(t).Time, times[len(times)-1])
	seqs := func(q store.AuditQuery) []int64 {
		var out []int64
		for _, e := range must(s.ListAudit(ctx, q))(t) {
			out = append(out, e.Seq)
		}
		return out
	}
	if got := seqs(store.AuditQuery{Since: times[1]}); !slices.Equal(got, []int64{2, 4}) {
		t.Errorf("since the second event's nanosecond: %v", got)
	}
	if got := seqs(store.AuditQuery{Since: times[0], Until: times[1]}); !slices.Equal(got, []int64{1}) {
		t.Errorf("until the second event's nanosecond: %v", got)
	}
}

// concurrency is how many writers the concurrency tests run at once.
const concurrency = 16

// parallel runs fn(i) for i in [0, n) at once and fails on any error.
func parallel(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	errs := make(chan error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			if err := fn(i); err != nil {
				errs <- fmt.Errorf("writer %d: %w", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
}

// incrementN adds one to a user's attribute n: an update whose result
// shows whether any concurrent one was lost.
func incrementN(u identity.User) (identity.User, error) {
	n, err := strconv.Atoi(u.Attributes["n"])
	if err != nil {
		return u, err
	}
	u.Attributes["n"] = strconv.Itoa(n + 1)
	return u, nil
}

// testConcurrentUserUpdates: updates of one user at once are applied one
// after the other, each to what the one before stored: none is lost and
// the version counts every one.
func testConcurrentUserUpdates(t *testing.T, s store.Store, _ *Clock) {
	ctx := context.Background()
	u := must(s.CreateUser(ctx, identity.User{UserName: "alice", Active: true, Attributes: map[string]string{"n": "0"}}))(t)
	increment := func(st store.Store) func(int) error {
		return func(int) error {
			_, err := st.UpdateUser(ctx, u.ID, incrementN)
			return err
		}
	}
	parallel(t, concurrency, increment(s))
	got := must(s.GetUser(ctx, u.ID))(t)
	if got.Version != 1+concurrency || got.Attributes["n"] != strconv.Itoa(concurrency) {
		t.Fatalf("after %d concurrent updates: version %d, counter %s", concurrency, got.Version, got.Attributes["n"])
	}
}

// testConcurrentGroupUpdates: group updates at once, each adding its own
// member, all land: every member, one history entry each, and a version
// that counts every update.
func testConcurrentGroupUpdates(t *testing.T, s store.Store, _ *Clock) {
	ctx := context.Background()
	g := must(s.CreateGroup(ctx, identity.Group{Name: "team"}))(t)
	var ids []string
	for i := range concurrency {
		ids = append(ids, must(s.CreateUser(ctx, identity.User{UserName: fmt.Sprintf("u%02d", i), Active: true}))(t).ID)
	}
	parallel(t, concurrency, func(i int) error {
		_, err := s.UpdateGroup(ctx, g.ID, "scim:test", func(g identity.Group) (identity.Group, store.MemberChange, error) {
			g.ExternalID = g.ExternalID + "x"
			return g, store.MemberChange{Add: []string{ids[i]}}, nil
		})
		return err
	})
	got := must(s.GetGroup(ctx, g.ID))(t)
	if got.Version != 1+concurrency || len(got.ExternalID) != concurrency {
		t.Fatalf("after %d concurrent updates: version %d, external id %q", concurrency, got.Version, got.ExternalID)
	}
	if m := must(s.ListMembers(ctx, g.ID))(t); len(m) != concurrency {
		t.Fatalf("%d members, want %d", len(m), concurrency)
	}
	if h := must(s.MembershipHistory(ctx, "team"))(t); len(h) != concurrency {
		t.Fatalf("%d history entries, want %d", len(h), concurrency)
	}
	// A replacing update and additions at once: whatever the order, the
	// history agrees with the members.
	parallel(t, concurrency, func(i int) error {
		if i == 0 {
			_, err := s.UpdateGroup(ctx, g.ID, "scim:test", func(g identity.Group) (identity.Group, store.MemberChange, error) {
				return g, store.MemberChange{Replace: true, Set: ids[:1]}, nil
			})
			return err
		}
		_, err := s.AddMember(ctx, g.ID, ids[i], "admin")
		return err
	})
	members := must(s.ListMembers(ctx, g.ID))(t)
	var open int
	for _, m := range must(s.MembershipHistory(ctx, "team"))(t) {
		if m.Left.IsZero() {
			open++
		}
	}
	if open != len(members) {
		t.Fatalf("%d open memberships in the history, %d members", open, len(members))
	}
}

// testConcurrentAddSameMember: adding the same person at once makes one
// membership, reported added once.
func testConcurrentAddSameMember(t *testing.T, s store.Store, _ *Clock) {
	ctx := context.Background()
	u := must(s.CreateUser(ctx, identity.User{UserName: "alice", Active: true}))(t)
	g := must(s.CreateGroup(ctx, identity.Group{Name: "analysts"}))(t)
	var mu sync.Mutex
	var added int
	parallel(t, concurrency, func(int) error {
		ok, err := s.AddMember(ctx, g.ID, u.ID, "admin")
		if ok {
			mu.Lock()
			added++
			mu.Unlock()
		}
		return err
	})
	if added != 1 {
		t.Fatalf("AddMember reported added %d times", added)
	}
	if h := must(s.MembershipHistory(ctx, "analysts"))(t); len(h) != 1 {
		t.Fatalf("history = %+v", h)
	}
}

// testConcurrentCreateSameName: of users created at once under one name
// (in any case), exactly one is created and the rest already exist.
func testConcurrentCreateSameName(t *testing.T, s store.Store, _ *Clock) {
	ctx := context.Background()
	var mu sync.Mutex
	var created int
	parallel(t, concurrency, func(i int) error {
		name := "alice"
		if i%2 == 1 {
			name = "ALICE"
		}
		_, err := s.CreateUser(ctx, identity.User{UserName: name, Active: true})
		if errors.Is(err, store.ErrAlreadyExists) {
			return nil
		}
		if err == nil {
			mu.Lock()
			created++
			mu.Unlock()
		}
		return err
	})
	if created != 1 {
		t.Fatalf("%d users created under one name", created)
	}
}

// FeedBound is how long a change committed through one handle may take to
// reach a watcher on another. It covers a backend's polling safety net,
// not only its fast path, so that a lost wake-up still passes.
const FeedBound = 3 * time.Second

// RunShared runs the part of the suite that needs two handles on one
// backing store, as two servers sharing a database have. open must return
// two handles on the same fresh, empty store, both reading time from
// clock. A backend whose change feed stays inside one process (SQLite)
// does not run it.
func RunShared(t *testing.T, open func(t *testing.T, clock *Clock) (a, b store.Store)) {
	tests := []struct {
		name string
		fn   func(t *testing.T, a, b store.Store, c *Clock)
	}{
		{"FeedAcrossHandles", testFeedAcrossHandles},
		{"ReadAfterFeedAcrossHandles", testReadAfterFeed},
		{"ConcurrentUpdatesAcrossHandles", testConcurrentAcrossHandles},
		{"PendingAcrossHandles", testPendingAcrossHandles},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			a, b := open(t, c)
			t.Cleanup(func() { a.Close(); b.Close() })
			tt.fn(t, a, b, c)
		})
	}
}

// next returns the next change on feed other than a Resync (which a
// backend may send after reconnecting), failing after FeedBound.
func next(t *testing.T, feed <-chan store.Change, what string) store.Change {
	t.Helper()
	deadline := time.After(FeedBound)
	for {
		select {
		case ch, ok := <-feed:
			if !ok {
				t.Fatalf("feed closed waiting for %s", what)
			}
			if ch.Kind == store.Resync {
				continue
			}
			return ch
		case <-deadline:
			t.Fatalf("%s not delivered within %s", what, FeedBound)
		}
	}
}

// testFeedAcrossHandles: a change committed through one handle reaches a
// watcher on the other, in commit order, and a watcher on the writing
// handle too.
func testFeedAcrossHandles(t *testing.T, a, b store.Store, _ *Clock) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	onA, onB := a.Watch(ctx), b.Watch(ctx)
	began := time.Now()
	u := must(a.CreateUser(ctx, identity.User{UserName: "alice", Active: true}))(t)
	g := must(a.CreateGroup(ctx, identity.Group{Name: "analysts"}))(t)
	must(a.AddMember(ctx, g.ID, u.ID, "admin"))(t)
	want := []store.Change{
		{Kind: store.UserChanged, User: "alice"},
		{Kind: store.GroupChanged, Group: "analysts"},
		{Kind: store.MembershipChanged, User: "alice", Group: "analysts"},
	}
	for name, feed := range map[string]<-chan store.Change{"the writer's": onA, "the other handle's": onB} {
		for i, w := range want {
			got := next(t, feed, fmt.Sprintf("change %d on %s feed", i, name))
			if got.At.IsZero() {
				t.Errorf("change %d on %s feed does not say when it committed", i, name)
			}
			got.At = time.Time{}
			if got != w {
				t.Fatalf("change %d on %s feed = %+v, want %+v", i, name, got, w)
			}
		}
	}
	t.Logf("three changes reached both handles in %s", time.Since(began))
	// And the other way.
	began = time.Now()
	must(b.UpdateUser(ctx, u.ID, func(u identity.User) (identity.User, error) { u.Active = false; return u, nil }))(t)
	if got := next(t, onA, "a change made through the other handle"); got.Kind != store.UserChanged || got.User != "alice" {
		t.Fatalf("change = %+v", got)
	}
	t.Logf("a change through the second handle reached the first in %s", time.Since(began))
	// A failed change publishes nothing anywhere.
	_, _ = b.CreateUser(ctx, identity.User{UserName: "alice"})
	for _, feed := range []<-chan store.Change{onA, onB} {
		for {
			var extra *store.Change
			select {
			case ch := <-feed:
				extra = &ch
			case <-time.After(100 * time.Millisecond):
			}
			if extra == nil {
				break
			}
			// The update above is still on b's own feed.
			if extra.Kind == store.UserChanged && extra.User == "alice" && feed == onB {
				continue
			}
			if extra.Kind != store.Resync {
				t.Fatalf("unexpected change %+v", *extra)
			}
		}
	}
}

// testReadAfterFeed: a handle that has heard of a change on its feed reads
// what the change wrote, never what it replaced, whatever it caches.
func testReadAfterFeed(t *testing.T, a, b store.Store, c *Clock) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	u := must(a.CreateUser(ctx, identity.User{UserName: "alice", Active: true}))(t)
	g := must(a.CreateGroup(ctx, identity.Group{Name: "analysts"}))(t)
	ss := must(a.CreateSession(ctx, identity.Session{User: "alice", Expires: c.Now().Add(time.Hour)}, []byte("hash-1")))(t)
	// Warm whatever b keeps.
	if got := must(b.GetUserByName(ctx, "alice"))(t); !got.Active {
		t.Fatalf("b reads %+v", got)
	}
	if gs := must(b.GroupsOf(ctx, u.ID))(t); len(gs) != 0 {
		t.Fatalf("b reads groups %+v", gs)
	}
	if got := must(b.GetSession(ctx, ss.ID))(t); !got.Revoked.IsZero() {
		t.Fatalf("b reads session %+v", got)
	}
	feed := b.Watch(ctx)
	must(a.AddMember(ctx, g.ID, u.ID, "admin"))(t)
	next(t, feed, "the membership")
	if gs := must(b.GroupsOf(ctx, u.ID))(t); len(gs) != 1 {
		t.Fatalf("after the membership reached b's feed, b reads groups %+v", gs)
	}
	must(a.UpdateUser(ctx, u.ID, func(u identity.User) (identity.User, error) { u.Active = false; return u, nil }))(t)
	next(t, feed, "the disabling")
	if got := must(b.GetUserByName(ctx, "alice"))(t); got.Active || got.Version != 2 {
		t.Fatalf("after the disabling reached b's feed, b reads %+v", got)
	}
	if got := must(b.GetSession(ctx, ss.ID))(t); got.Revoked.IsZero() {
		t.Fatalf("after the disabling reached b's feed, b reads session %+v", got)
	}
}

// testConcurrentAcrossHandles: updates of one user through two handles at
// once lose nothing, as with one.
func testConcurrentAcrossHandles(t *testing.T, a, b store.Store, _ *Clock) {
	ctx := context.Background()
	u := must(a.CreateUser(ctx, identity.User{UserName: "alice", Active: true, Attributes: map[string]string{"n": "0"}}))(t)
	parallel(t, concurrency, func(i int) error {
		st := a
		if i%2 == 1 {
			st = b
		}
		_, err := st.UpdateUser(ctx, u.ID, incrementN)
		return err
	})
	got := must(b.GetUser(ctx, u.ID))(t)
	if got.Version != 1+concurrency || got.Attributes["n"] != strconv.Itoa(concurrency) {
		t.Fatalf("after %d concurrent updates through two handles: version %d, counter %s", concurrency, got.Version, got.Attributes["n"])
	}
}

// testPending: pending sign-in state is put once per key, read, swapped
// only from the value it has, taken once, swept when expired, and bounded
// by evicting what expires first.
func testPending(t *testing.T, s store.Store, c *Clock) {
	ctx := context.Background()
	now := c.Now()
	p := store.Pending{Kind: "flow", Key: "BCDFGHJK", Value: []byte("v1\x00\xff"), Expires: now.Add(10 * time.Minute)}
	if created, _ := must2(s.PutPending(ctx, p, now, 0))(t); !created {
		t.Fatal("first put not created")
	}
	if created, _ := must2(s.PutPending(ctx, store.Pending{Kind: "flow", Key: "BCDFGHJK", Value: []byte("other"), Expires: p.Expires}, now, 0))(t); created {
		t.Error("a second put of the same key was created")
	}
	if created, _ := must2(s.PutPending(ctx, store.Pending{Kind: "attempt", Key: "BCDFGHJK", Value: []byte("a"), Expires: p.Expires}, now, 0))(t); !created {
		t.Error("a key taken in one kind was refused in another")
	}
	got := must(s.GetPending(ctx, "flow", "BCDFGHJK"))(t)
	if !bytes.Equal(got.Value, p.Value) || !got.Expires.Equal(p.Expires) {
		t.Errorf("GetPending = %q until %v, want %q until %v", got.Value, got.Expires, p.Value, p.Expires)
	}
	if ok := must(s.SwapPending(ctx, "flow", "BCDFGHJK", []byte("stale"), []byte("v2")))(t); ok {
		t.Error("swapped from a value the entry no longer has")
	}
	if ok := must(s.SwapPending(ctx, "flow", "BCDFGHJK", p.Value, []byte("v2")))(t); !ok {
		t.Error("swap from the current value refused")
	}
	if got := must(s.TakePending(ctx, "flow", "BCDFGHJK"))(t); string(got.Value) != "v2" {
		t.Errorf("TakePending = %q, want v2", got.Value)
	}
	if _, err := s.TakePending(ctx, "flow", "BCDFGHJK"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second take: %v, want ErrNotFound", err)
	}
	if _, err := s.GetPending(ctx, "flow", "BCDFGHJK"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get after take: %v, want ErrNotFound", err)
	}
	if n := must(s.CountPending(ctx, "attempt", now))(t); n != 1 {
		t.Errorf("%d attempts, want 1: a kind shares no keys with another", n)
	}

	for i := range 3 {
		e := store.Pending{Kind: "bounded", Key: fmt.Sprint(i), Value: []byte{byte(i)}, Expires: now.Add(time.Duration(i+1) * time.Minute)}
		if _, evicted := must2(s.PutPending(ctx, e, now, 3))(t); evicted {
			t.Errorf("entry %d evicted one below the bound", i)
		}
	}
	if _, evicted := must2(s.PutPending(ctx, store.Pending{Kind: "bounded", Key: "3", Value: []byte{3}, Expires: now.Add(time.Hour)}, now, 3))(t); !evicted {
		t.Error("a put at the bound evicted nothing")
	}
	if _, err := s.GetPending(ctx, "bounded", "0"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the entry expiring first survived the eviction: %v", err)
	}
	if n := must(s.CountPending(ctx, "bounded", now))(t); n != 3 {
		t.Errorf("%d bounded entries, want 3", n)
	}
	later := now.Add(150 * time.Second)
	if n := must(s.CountPending(ctx, "bounded", later))(t); n != 2 {
		t.Errorf("%d entries live 150 s later, want 2", n)
	}
	must2(s.PutPending(ctx, store.Pending{Kind: "bounded", Key: "4", Value: []byte{4}, Expires: later.Add(time.Minute)}, later, 0))(t)
	if _, err := s.GetPending(ctx, "bounded", "1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an expired entry survived a put of its kind: %v", err)
	}
}

// testPendingAcrossHandles: servers racing to take one entry, as two
// servers polling one device code do: exactly one gets it.
func testPendingAcrossHandles(t *testing.T, a, b store.Store, c *Clock) {
	ctx := context.Background()
	for i := range 20 {
		key := fmt.Sprint(i)
		must2(a.PutPending(ctx, store.Pending{Kind: "flow", Key: key, Value: []byte("done"), Expires: c.Now().Add(time.Minute)}, c.Now(), 0))(t)
		var got atomic.Int32
		var wg sync.WaitGroup
		for _, s := range []store.Store{a, b, a, b} {
			wg.Go(func() {
				if _, err := s.TakePending(ctx, "flow", key); err == nil {
					got.Add(1)
				} else if !errors.Is(err, store.ErrNotFound) {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if n := got.Load(); n != 1 {
			t.Fatalf("entry %d taken %d times, want once", i, n)
		}
	}
}
