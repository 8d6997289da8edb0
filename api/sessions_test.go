package api

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/store"
)

// signedIn stores a session as sign-in through an identity provider makes
// one: with MFA, tags and groups the provider asserted.
func (e *env) signedIn(t *testing.T, s identity.Session) string {
	t.Helper()
	cred := credential.New(credential.SessionPrefix)
	h := credential.Hash(cred)
	if _, err := e.store.CreateSession(context.Background(), s, h[:]); err != nil {
		t.Fatal(err)
	}
	return cred
}

func TestWhoAmI(t *testing.T) {
	e := newEnv(t)
	e.session(t, "alice", "analysts")
	ctx := context.Background()
	u, err := e.store.GetUserByName(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.UpdateUser(ctx, u.ID, func(u identity.User) (identity.User, error) {
		u.Attributes = map[string]string{"department": "Sales", "project": "alpha"}
		return u, nil
	}); err != nil {
		t.Fatal(err)
	}
	cred := e.signedIn(t, identity.Session{User: "alice", Created: e.now, Expires: e.now.Add(8 * time.Hour), Source: "saml", MFA: true,
		Tags: map[string]string{"project": "ledger"}, Groups: []string{"engineers", "analysts"}})

	var w WhoAmI
	if code, _ := e.call(t, "GET", "/v1/whoami", cred, nil, &w); code != http.StatusOK {
		t.Fatalf("whoami: %d", code)
	}
	// The sign-in's tag overrides the provisioned one; its groups join the
	// provisioned ones, once each.
	if w.User != "alice" || !w.MFA || w.Method != "saml" || !w.ExpiresAt.Equal(e.now.Add(8*time.Hour)) || w.SessionID == "" {
		t.Errorf("whoami = %+v", w)
	}
	if w.Tags["project"] != "ledger" || w.Tags["department"] != "Sales" || len(w.Tags) != 2 {
		t.Errorf("tags = %v", w.Tags)
	}
	if !slices.Equal(w.Groups, []string{"analysts", "engineers"}) {
		t.Errorf("groups = %v", w.Groups)
	}
	if code, _ := e.call(t, "GET", "/v1/whoami", "kgs_unknown", nil, nil); code != http.StatusUnauthorized {
		t.Errorf("unknown credential: %d", code)
	}
}

func TestLogoutRevokesTheSession(t *testing.T) {
	e := newEnv(t)
	cred := e.session(t, "alice", "analysts")
	other := e.session(t, "bob", "analysts")
	if code, _ := e.call(t, "POST", "/v1/logout", cred, nil, nil); code != http.StatusNoContent {
		t.Fatalf("logout: %d", code)
	}
	var body Error
	if code, _ := e.call(t, "POST", "/v1/tokens", cred, TokenRequest{Database: "orders"}, &body); code != http.StatusUnauthorized {
		t.Errorf("token after logout: %d %s", code, body.Error)
	}
	if code, _ := e.call(t, "POST", "/v1/tokens", other, TokenRequest{Database: "orders"}, nil); code != http.StatusOK {
		t.Errorf("another person's session after alice's logout: %d", code)
	}
	e.audit.Flush(context.Background())
	events, err := e.store.ListAudit(context.Background(), store.AuditQuery{Type: "signout"})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].User != "alice" || events[0].SessionID == "" {
		t.Errorf("signout events = %+v", events)
	}
}

func TestAdminSessionListAndRevoke(t *testing.T) {
	e := newEnv(t)
	alice := e.session(t, "alice", "analysts")
	e.session(t, "bob", "analysts")
	e.signedIn(t, identity.Session{User: "alice", Created: e.now.Add(-9 * time.Hour), Expires: e.now.Add(-time.Hour), Source: "oidc"})

	var list []Session
	if code, _ := e.call(t, "GET", "/v1/admin/sessions", e.admin, nil, &list); code != http.StatusOK || len(list) != 2 {
		t.Fatalf("active sessions: %d %+v", code, list)
	}
	if code, _ := e.call(t, "GET", "/v1/admin/sessions?user=alice&all=true", e.admin, nil, &list); code != http.StatusOK || len(list) != 2 {
		t.Fatalf("alice's sessions: %d %+v", code, list)
	}
	statuses := map[string]string{}
	var active Session
	for _, s := range list {
		if s.User != "alice" {
			t.Errorf("listed for alice: %+v", s)
		}
		statuses[s.Source] = s.Status
		if s.Status == SessionActive {
			active = s
		}
	}
	if statuses["admin"] != SessionActive || statuses["oidc"] != SessionExpired {
		t.Errorf("statuses = %v", statuses)
	}
	if code, _ := e.call(t, "GET", "/v1/admin/sessions?user=nobody", e.admin, nil, nil); code != http.StatusNotFound {
		t.Errorf("sessions of an unknown person: %d", code)
	}

	var revoked Session
	if code, _ := e.call(t, "DELETE", "/v1/admin/sessions/"+active.ID, e.admin, nil, &revoked); code != http.StatusOK {
		t.Fatalf("revoke: %d", code)
	}
	if revoked.Status != SessionRevoked || revoked.Revoked == nil || !revoked.Revoked.Equal(e.now) {
		t.Errorf("revoked = %+v", revoked)
	}
	if code, _ := e.call(t, "POST", "/v1/tokens", alice, TokenRequest{Database: "orders"}, nil); code != http.StatusUnauthorized {
		t.Errorf("token from a revoked session: %d", code)
	}
	// Revoking again changes nothing and audits nothing more.
	if code, _ := e.call(t, "DELETE", "/v1/admin/sessions/"+active.ID, e.admin, nil, &revoked); code != http.StatusOK || revoked.Status != SessionRevoked {
		t.Errorf("second revoke: %d %+v", code, revoked)
	}
	if code, _ := e.call(t, "DELETE", "/v1/admin/sessions/no-such-session", e.admin, nil, nil); code != http.StatusNotFound {
		t.Errorf("unknown session: %d", code)
	}
	if code, _ := e.call(t, "GET", "/v1/admin/sessions", alice, nil, nil); code != http.StatusUnauthorized {
		t.Errorf("a session credential listing sessions: %d", code)
	}
	e.audit.Flush(context.Background())
	events, err := e.store.ListAudit(context.Background(), store.AuditQuery{Type: "admin.session.revoke"})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].User != "alice" || !strings.Contains(string(events[0].Detail), active.ID) {
		t.Errorf("revoke events = %+v", events)
	}
}
