package scim

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/store"
)

// TestDeactivationRevokesSignInSessions: a person the identity provider
// deactivates loses their sign-in sessions, as one an admin disables does,
// and the audit names the sessions that ended.
func TestDeactivationRevokesSignInSessions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := e.do("POST", "/Users", `{`+userSchemas+`, "userName": "ada@example.com", "active": true}`).want(t, http.StatusCreated)
	id := r.str("id")
	expires := e.now.Add(time.Hour)
	a, err := e.store.CreateSession(ctx, identity.Session{User: "ada@example.com", Expires: expires}, []byte("hash-a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.store.CreateSession(ctx, identity.Session{User: "ada@example.com", Expires: expires}, []byte("hash-b"))
	if err != nil {
		t.Fatal(err)
	}
	e.now = e.now.Add(time.Minute)

	// Another change leaves the sessions alone and names none.
	e.do("PATCH", "/Users/"+id, patchBody(`{"op": "replace", "path": "displayName", "value": "Ada"}`)).want(t, http.StatusOK)
	e.now = e.now.Add(time.Minute)
	e.do("PATCH", "/Users/"+id, patchBody(`{"op": "replace", "path": "active", "value": false}`)).want(t, http.StatusOK)
	for _, s := range []identity.Session{a, b} {
		got, err := e.store.GetSession(ctx, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.ValidAt(e.now) {
			t.Errorf("session %s of a deactivated person still valid", s.ID)
		}
	}

	e.flush()
	events, err := e.store.ListAudit(ctx, store.AuditQuery{Type: "scim.user.update"})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 {
		t.Fatalf("%d scim.user.update events, want 2", len(events))
	}
	var first, second struct {
		Revoked *[]string `json:"revoked_sessions"`
	}
	if err := json.Unmarshal(events[0].Detail, &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(events[1].Detail, &second); err != nil {
		t.Fatal(err)
	}
	if first.Revoked != nil {
		t.Errorf("a change that deactivates nobody names revoked sessions: %s", events[0].Detail)
	}
	if second.Revoked == nil || !slices.Equal(slices.Sorted(slices.Values(*second.Revoked)), slices.Sorted(slices.Values([]string{a.ID, b.ID}))) {
		t.Errorf("deactivation event %s, want both sessions %s and %s", events[1].Detail, a.ID, b.ID)
	}
}
