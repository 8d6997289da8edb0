package api

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// adminEvents lists the admin audit events, flushed first.
func (e *env) adminEvents(t *testing.T) []AuditEvent {
	t.Helper()
	var page AuditPage
	if code, _ := e.call(t, "GET", "/v1/admin/audit?type=admin", e.admin, nil, &page); code != http.StatusOK {
		t.Fatalf("audit: %d", code)
	}
	return page.Events
}

func (e *env) lastEvent(t *testing.T, typ string) AuditEvent {
	t.Helper()
	events := e.adminEvents(t)
	for i := len(events) - 1; i >= 0; i-- {
		if events[i].Type == typ {
			return events[i]
		}
	}
	t.Fatalf("no %s event among %d admin events", typ, len(events))
	return AuditEvent{}
}

func TestUserListAndShow(t *testing.T) {
	e := newEnv(t)
	e.session(t, "bob", "engineers", "analysts")
	e.session(t, "alice", "analysts")
	live := &fakeLive{}
	for _, id := range []string{"g1", "g2", "g3"} {
		live.add(LiveSession{ID: id, User: "alice", Database: "orders"})
	}
	e.api.Live = live
	var people []Person
	if code, _ := e.call(t, "GET", "/v1/admin/users", e.admin, nil, &people); code != http.StatusOK || len(people) != 2 {
		t.Fatalf("list: %d %+v", code, people)
	}
	if people[0].Name != "alice" || people[1].Name != "bob" {
		t.Errorf("not by name: %+v", people)
	}
	if b := people[1]; !slices.Equal(b.Groups, []string{"analysts", "engineers"}) || !b.Active || b.Source != "admin" || b.Created.IsZero() {
		t.Errorf("bob = %+v", b)
	}
	if people[0].SignInSessions != nil || people[0].LiveSessions != nil {
		t.Errorf("a list answers session counts: %+v", people[0])
	}

	var p Person
	if code, _ := e.call(t, "GET", "/v1/admin/users/ALICE", e.admin, nil, &p); code != http.StatusOK {
		t.Fatalf("show: %d", code)
	}
	if p.Name != "alice" || !slices.Equal(p.Groups, []string{"analysts"}) || p.SignInSessions == nil || *p.SignInSessions != 1 ||
		p.LiveSessions == nil || *p.LiveSessions != 3 {
		t.Errorf("show alice = %+v", p)
	}
	e.api.Live = nil
	var bare Person
	if e.call(t, "GET", "/v1/admin/users/alice", e.admin, nil, &bare); bare.LiveSessions != nil {
		t.Errorf("live sessions answered by a server that cannot tell: %d", *bare.LiveSessions)
	}

	var body Error
	if code, _ := e.call(t, "GET", "/v1/admin/users/bobb", e.admin, nil, &body); code != http.StatusNotFound ||
		!strings.Contains(body.Error, "no person named bobb (keygate admin user list shows everyone") {
		t.Errorf("unknown person: %d %q", code, body.Error)
	}
}

func TestDisableRevokesSignInSessionsAndEnableNeedsANewOne(t *testing.T) {
	e := newEnv(t)
	first := e.session(t, "alice", "analysts")
	var s SessionResponse
	e.call(t, "POST", "/v1/admin/sessions", e.admin, SessionRequest{User: "alice"}, &s)
	bob := e.session(t, "bob", "analysts")
	e.now = e.now.Add(time.Minute)

	var ch UserChange
	if code, _ := e.call(t, "POST", "/v1/admin/users/alice/disable", e.admin, nil, &ch); code != http.StatusOK || ch.Active || !ch.Changed {
		t.Fatalf("disable: %d %+v", code, ch)
	}
	if len(ch.RevokedSessions) != 2 || !slices.Contains(ch.RevokedSessions, s.ID) {
		t.Errorf("revoked sessions %v, want alice's two (%s among them)", ch.RevokedSessions, s.ID)
	}
	ev := e.lastEvent(t, "admin.user.disable")
	if ev.User != "alice" || len(ev.Detail["revoked_sessions"].([]any)) != 2 {
		t.Errorf("disable event = %+v", ev)
	}
	for _, cred := range []string{first, s.Credential} {
		if code, _ := e.call(t, "POST", "/v1/tokens", cred, TokenRequest{Database: "orders"}, nil); code != http.StatusUnauthorized {
			t.Errorf("token through a session of a disabled person: %d", code)
		}
	}
	if code, _ := e.call(t, "POST", "/v1/tokens", bob, TokenRequest{Database: "orders"}, nil); code != http.StatusOK {
		t.Errorf("another person's session suffered: %d", code)
	}
	var body Error
	if code, _ := e.call(t, "POST", "/v1/admin/sessions", e.admin, SessionRequest{User: "alice"}, &body); code != http.StatusConflict ||
		!strings.Contains(body.Error, "keygate admin user enable alice") {
		t.Errorf("session for a disabled person: %d %q", code, body.Error)
	}
	// Disabling again changes nothing and records nothing.
	before := len(e.adminEvents(t))
	if code, _ := e.call(t, "POST", "/v1/admin/users/alice/disable", e.admin, nil, &ch); code != http.StatusOK || ch.Changed {
		t.Errorf("disable twice: %d %+v", code, ch)
	}
	if n := len(e.adminEvents(t)); n != before {
		t.Errorf("disabling a disabled person recorded %d events", n-before)
	}

	e.now = e.now.Add(time.Minute)
	var en UserChange
	if code, _ := e.call(t, "POST", "/v1/admin/users/alice/enable", e.admin, nil, &en); code != http.StatusOK || !en.Active || !en.Changed || len(en.RevokedSessions) != 0 {
		t.Fatalf("enable: %d %+v", code, en)
	}
	e.lastEvent(t, "admin.user.enable")
	if code, _ := e.call(t, "POST", "/v1/tokens", first, TokenRequest{Database: "orders"}, nil); code != http.StatusUnauthorized {
		t.Errorf("a session from before the disable works again after enable: %d", code)
	}
	var again SessionResponse
	if code, _ := e.call(t, "POST", "/v1/admin/sessions", e.admin, SessionRequest{User: "alice"}, &again); code != http.StatusCreated {
		t.Fatalf("session after enable: %d", code)
	}
	if code, _ := e.call(t, "POST", "/v1/tokens", again.Credential, TokenRequest{Database: "orders"}, nil); code != http.StatusOK {
		t.Errorf("token after enable: %d", code)
	}
}

func TestUserRenameAndDelete(t *testing.T) {
	e := newEnv(t)
	cred := e.session(t, "alice", "analysts")
	e.session(t, "bob")
	var ch UserChange
	if code, _ := e.call(t, "PATCH", "/v1/admin/users/alice", e.admin, RenameRequest{Name: "alicia"}, &ch); code != http.StatusOK || ch.Name != "alicia" || ch.Previous != "alice" {
		t.Fatalf("rename: %d %+v", code, ch)
	}
	if ev := e.lastEvent(t, "admin.user.rename"); ev.User != "alicia" || ev.Detail["previous"] != "alice" {
		t.Errorf("rename event = %+v", ev)
	}
	var w WhoAmI
	if code, _ := e.call(t, "GET", "/v1/whoami", cred, nil, &w); code != http.StatusOK || w.User != "alicia" || !slices.Equal(w.Groups, []string{"analysts"}) {
		t.Errorf("the sign-in session after a rename: %d %+v", code, w)
	}
	var body Error
	if code, _ := e.call(t, "PATCH", "/v1/admin/users/alicia", e.admin, RenameRequest{Name: "BOB"}, &body); code != http.StatusConflict || !strings.Contains(body.Error, "choose another name") {
		t.Errorf("rename onto another person: %d %q", code, body.Error)
	}
	if code, _ := e.call(t, "PATCH", "/v1/admin/users/alicia", e.admin, RenameRequest{Name: "has space"}, nil); code != http.StatusBadRequest {
		t.Errorf("rename to a bad name: %d", code)
	}

	if code, _ := e.call(t, "DELETE", "/v1/admin/users/alicia", e.admin, nil, &ch); code != http.StatusOK || ch.Name != "alicia" {
		t.Fatalf("delete: %d %+v", code, ch)
	}
	if ev := e.lastEvent(t, "admin.user.delete"); ev.User != "alicia" || len(ev.Detail["groups"].([]any)) != 1 {
		t.Errorf("delete event = %+v", ev)
	}
	if code, _ := e.call(t, "GET", "/v1/admin/users/alicia", e.admin, nil, nil); code != http.StatusNotFound {
		t.Errorf("show after delete: %d", code)
	}
	if code, _ := e.call(t, "POST", "/v1/tokens", cred, TokenRequest{Database: "orders"}, nil); code != http.StatusUnauthorized {
		t.Errorf("token through a deleted person's session: %d", code)
	}
	var h GroupHistory
	e.call(t, "GET", "/v1/admin/groups/analysts/history", e.admin, nil, &h)
	if len(h.Memberships) != 1 || h.Memberships[0].Left == nil {
		t.Errorf("history after delete: %+v", h)
	}
}

func TestGroupDeleteForceRenameAndHistory(t *testing.T) {
	e := newEnv(t)
	e.session(t, "alice", "analysts")
	e.session(t, "bob", "analysts", "engineers")

	var groups []GroupInfo
	if code, _ := e.call(t, "GET", "/v1/admin/groups", e.admin, nil, &groups); code != http.StatusOK || len(groups) != 2 ||
		groups[0].Name != "analysts" || !slices.Equal(groups[0].Members, []string{"alice", "bob"}) || !slices.Equal(groups[1].Members, []string{"bob"}) {
		t.Fatalf("list groups: %d %+v", code, groups)
	}
	var gi GroupInfo
	if code, _ := e.call(t, "GET", "/v1/admin/groups/ANALYSTS", e.admin, nil, &gi); code != http.StatusOK || gi.Name != "analysts" || len(gi.Members) != 2 {
		t.Fatalf("show group: %d %+v", code, gi)
	}

	var body Error
	if code, _ := e.call(t, "DELETE", "/v1/admin/groups/analysts", e.admin, nil, &body); code != http.StatusConflict ||
		!strings.Contains(body.Error, "alice, bob") || !strings.Contains(body.Error, "keygate admin group delete analysts --force") {
		t.Fatalf("delete with members: %d %q", code, body.Error)
	}
	e.now = e.now.Add(time.Minute)
	var gc GroupChange
	if code, _ := e.call(t, "DELETE", "/v1/admin/groups/analysts?force=true", e.admin, nil, &gc); code != http.StatusOK || !slices.Equal(gc.Removed, []string{"alice", "bob"}) {
		t.Fatalf("forced delete: %d %+v", code, gc)
	}
	var h GroupHistory
	e.call(t, "GET", "/v1/admin/groups/analysts/history", e.admin, nil, &h)
	if len(h.Memberships) != 2 {
		t.Fatalf("history after a forced delete: %+v", h)
	}
	for _, m := range h.Memberships {
		if m.Left == nil || !m.Left.Equal(e.now) {
			t.Errorf("membership not ended at the delete: %+v", m)
		}
	}
	events := e.adminEvents(t)
	var removed []string
	for _, ev := range events {
		if ev.Type == "admin.group.remove-member" && ev.Detail["group"] == "analysts" {
			removed = append(removed, ev.User)
		}
	}
	if !slices.Equal(removed, []string{"alice", "bob"}) {
		t.Errorf("remove-member events for the forced delete: %v", removed)
	}
	if ev := e.lastEvent(t, "admin.group.delete"); ev.Detail["group"] != "analysts" || len(ev.Detail["removed"].([]any)) != 2 {
		t.Errorf("delete event = %+v", ev)
	}
	// The name is free at once.
	if code, _ := e.call(t, "POST", "/v1/admin/groups", e.admin, GroupRequest{Name: "analysts"}, nil); code != http.StatusCreated {
		t.Errorf("re-create a deleted group's name: %d", code)
	}
	if code, _ := e.call(t, "DELETE", "/v1/admin/groups/analysts", e.admin, nil, nil); code != http.StatusOK {
		t.Errorf("delete an empty group without --force: %d", code)
	}

	// A rename keeps the members and the history, which follows the group.
	if code, _ := e.call(t, "PATCH", "/v1/admin/groups/engineers", e.admin, RenameRequest{Name: "platform"}, &gc); code != http.StatusOK || gc.Previous != "engineers" || gc.Name != "platform" {
		t.Fatalf("rename group: %d %+v", code, gc)
	}
	var ph GroupHistory
	e.call(t, "GET", "/v1/admin/groups/platform/history", e.admin, nil, &ph)
	if len(ph.Memberships) != 1 || ph.Memberships[0].User != "bob" || ph.Memberships[0].Left != nil {
		t.Errorf("history under the new name: %+v", ph)
	}
	if ev := e.lastEvent(t, "admin.group.rename"); ev.Detail["group"] != "platform" || ev.Detail["previous"] != "engineers" {
		t.Errorf("rename event = %+v", ev)
	}
	e.call(t, "POST", "/v1/admin/groups", e.admin, GroupRequest{Name: "ops"}, nil)
	if code, _ := e.call(t, "PATCH", "/v1/admin/groups/platform", e.admin, RenameRequest{Name: "OPS"}, &body); code != http.StatusConflict {
		t.Errorf("rename onto another group: %d %q", code, body.Error)
	}
	if code, _ := e.call(t, "DELETE", "/v1/admin/groups/nope", e.admin, nil, &body); code != http.StatusNotFound || !strings.Contains(body.Error, "keygate admin group list") {
		t.Errorf("delete unknown group: %d %q", code, body.Error)
	}
}

func TestDatabasesEndpoint(t *testing.T) {
	e := newEnv(t)
	alice := e.session(t, "alice", "analysts")
	bob := e.session(t, "bob", "engineers")
	carol := e.session(t, "carol")

	var got []DatabaseAccess
	if code, _ := e.call(t, "GET", "/v1/databases", alice, nil, &got); code != http.StatusOK {
		t.Fatalf("databases: %d", code)
	}
	if len(got) != 1 || got[0] != (DatabaseAccess{Database: "orders", Access: "ro", PermissionSet: "db-readonly", Group: "analysts", TokenTTL: "15m0s", Reason: got[0].Reason}) {
		t.Errorf("alice's databases = %+v", got)
	}
	e.call(t, "GET", "/v1/databases", bob, nil, &got)
	var rw *DatabaseAccess
	for i := range got {
		if got[i].Access == "rw" {
			rw = &got[i]
		}
		if got[i].Access == "admin" {
			t.Errorf("bob listed at admin: %+v", got[i])
		}
	}
	if rw == nil || rw.PermissionSet != "db-readwrite" || rw.Group != "engineers" || rw.TokenTTL != "30m0s" {
		t.Errorf("bob's databases = %+v", got)
	}
	if code, _ := e.call(t, "GET", "/v1/databases", carol, nil, &got); code != http.StatusOK || len(got) != 0 {
		t.Errorf("carol's databases: %d %+v", code, got)
	}
	if code, _ := e.call(t, "GET", "/v1/databases", "", nil, nil); code != http.StatusUnauthorized {
		t.Errorf("databases without a session: %d", code)
	}
	// What the list says is what the token endpoint does.
	for _, l := range []string{"ro", "rw", "admin"} {
		code, _ := e.call(t, "POST", "/v1/tokens", alice, TokenRequest{Database: "orders", Access: l}, nil)
		if (code == http.StatusOK) != (l == "ro") {
			t.Errorf("alice token at %s: %d, the list said only ro", l, code)
		}
	}
}
