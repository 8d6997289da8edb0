package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/identity"
)

// adminEnv is an API whose administrators are the members of
// keygate-admins, changeable as a reload changes them.
type adminEnv struct {
	*env
	admins atomic.Pointer[config.Administrators]
}

func newAdminEnv(t *testing.T, extra Routes) *adminEnv {
	t.Helper()
	e := &adminEnv{env: newEnv(t)}
	e.setAdmins(config.Administrators{Groups: []string{"keygate-admins"}})
	e.api.Administrators = func() config.Administrators { return *e.admins.Load() }
	e.api.SignIn = extra
	e.srv.Config.Handler = e.api.Handler()
	return e
}

func (e *adminEnv) setAdmins(a config.Administrators) { e.admins.Store(&a) }

// storedSession makes a session as a sign-in would, with the groups and
// MFA it asserted.
func (e *adminEnv) storedSession(t *testing.T, user string, mfa bool, groups ...string) (cred, id string) {
	t.Helper()
	cred = credential.New(credential.SessionPrefix)
	hash := credential.Hash(cred)
	s, err := e.store.CreateSession(context.Background(), identity.Session{User: user, Created: e.now, Expires: e.now.Add(time.Hour), Source: "saml", MFA: mfa, Groups: groups}, hash[:])
	if err != nil {
		t.Fatal(err)
	}
	return cred, s.ID
}

// sessionID is the id of the session whose credential is cred.
func (e *adminEnv) sessionID(t *testing.T, cred string) string {
	t.Helper()
	hash := credential.Hash(cred)
	s, err := e.store.GetSessionByHash(context.Background(), hash[:])
	if err != nil {
		t.Fatal(err)
	}
	return s.ID
}

func (e *adminEnv) must(t *testing.T, want int, method, path, bearer string, body any) {
	t.Helper()
	var out any
	if code, _ := e.call(t, method, path, bearer, body, &out); code != want {
		t.Fatalf("%s %s: %d %v, want %d", method, path, code, out, want)
	}
}

// unguardedProbe registers an admin route without the admin guard, as a
// part of the API that registers its own routes might.
type unguardedProbe struct{}

func (unguardedProbe) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/admin/probe", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, map[string]string{}) })
}

var wildcardRE = regexp.MustCompile(`\{[^}]*\}`)

// Every admin route, as registered, refuses everyone but administrators:
// 401 without a credential in force, 403 for a person who is not an
// administrator now. The routes are read from the registrations, so a
// route added later is walked too; a route registered without the guard,
// and a path no route serves, are refused the same way.
func TestEveryAdminRouteRefusesNonAdministrators(t *testing.T) {
	e := newAdminEnv(t, unguardedProbe{})
	admin := e.session(t, "ann", "keygate-admins")
	nonAdmin := e.session(t, "bob", "analysts")
	disabled := e.session(t, "carol", "keygate-admins")
	removed := e.session(t, "dave", "keygate-admins")
	revoked := e.session(t, "erin", "keygate-admins")
	e.must(t, http.StatusOK, "POST", "/v1/admin/users/carol/disable", e.admin, nil)
	e.must(t, http.StatusOK, "DELETE", "/v1/admin/groups/keygate-admins/members/dave", e.admin, nil)
	e.must(t, http.StatusOK, "DELETE", "/v1/admin/sessions/"+e.sessionID(t, revoked), e.admin, nil)
	var expiring SessionResponse
	if code, _ := e.call(t, "POST", "/v1/admin/sessions", e.admin, SessionRequest{User: "ann", TTL: "1s"}, &expiring); code != http.StatusCreated {
		t.Fatalf("short session: %d", code)
	}
	e.now = e.now.Add(2 * time.Second)

	_, patterns := e.api.routes()
	var routes []string
	for _, p := range patterns {
		if _, path, _ := strings.Cut(p, " "); strings.HasPrefix(path, AdminPrefix) {
			routes = append(routes, p)
		}
	}
	for _, want := range []string{"POST /v1/admin/users/{user}/disable", "DELETE /v1/admin/sessions/{id}", "GET /v1/admin/audit", "POST /v1/admin/reload",
		"GET /v1/admin/live", "DELETE /v1/admin/live/{id}", "GET /v1/admin/access/rules"} {
		if !slices.Contains(routes, want) {
			t.Fatalf("the walk misses %s: %v", want, routes)
		}
	}
	routes = append(routes, "GET /v1/admin/probe", "GET /v1/admin/no-such-route", "GET /v1/%61dmin/users")

	refusals := []struct {
		who, bearer string
		status      int
		msg         string
	}{
		{"no credential", "", http.StatusUnauthorized, "no credential"},
		{"an unknown credential", credential.New(credential.SessionPrefix), http.StatusUnauthorized, "unknown credential"},
		{"a wrong admin credential", "kga_" + strings.TrimPrefix(admin, "kgs_"), http.StatusUnauthorized, "admin credential required"},
		{"an expired session", expiring.Credential, http.StatusUnauthorized, "expired"},
		{"a revoked session", revoked, http.StatusUnauthorized, "revoked"},
		{"a disabled administrator", disabled, http.StatusUnauthorized, "carol was disabled"},
		{"a non-administrator", nonAdmin, http.StatusForbidden,
			"bob is not a keygate administrator: administrators are the members of keygate-admins (config administrators.groups)"},
		{"someone removed from keygate-admins", removed, http.StatusForbidden, "dave is not a keygate administrator"},
	}
	for _, route := range routes {
		method, path, _ := strings.Cut(route, " ")
		path = wildcardRE.ReplaceAllString(path, "x")
		for _, r := range refusals {
			var out Error
			code, h := e.call(t, method, path, r.bearer, nil, &out)
			if code != r.status || !strings.Contains(out.Error, r.msg) {
				t.Errorf("%s with %s: %d %q, want %d with %q", route, r.who, code, out.Error, r.status, r.msg)
			}
			if code == http.StatusUnauthorized && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s with %s: 401 without WWW-Authenticate", route, r.who)
			}
		}
		if code, _ := e.call(t, method, path, admin, nil, nil); code == http.StatusUnauthorized || code == http.StatusForbidden {
			t.Errorf("%s as administrator ann: %d", route, code)
		}
	}
	// The admin credential is not a person's session.
	for _, route := range []string{"POST /v1/tokens", "GET /v1/whoami", "GET /v1/databases"} {
		method, path, _ := strings.Cut(route, " ")
		if code, _ := e.call(t, method, path, e.admin, TokenRequest{Database: "orders"}, nil); code != http.StatusUnauthorized {
			t.Errorf("the admin credential as a session on %s: %d", route, code)
		}
	}
}

// Administrator rights are decided on each request from live state: the
// groups a person is in now (provisioned, or asserted by their sign-in),
// whether they are active, whether their session is in force, and the
// administrators config as reloaded.
func TestAdministratorRightsFollowLiveState(t *testing.T) {
	e := newAdminEnv(t, nil)
	ann := e.session(t, "ann", "keygate-admins")
	e.must(t, http.StatusOK, "GET", "/v1/admin/users", ann, nil)

	e.must(t, http.StatusOK, "DELETE", "/v1/admin/groups/keygate-admins/members/ann", e.admin, nil)
	e.must(t, http.StatusForbidden, "GET", "/v1/admin/users", ann, nil)
	e.must(t, http.StatusOK, "PUT", "/v1/admin/groups/keygate-admins/members/ann", e.admin, nil)
	e.must(t, http.StatusOK, "GET", "/v1/admin/users", ann, nil)

	// A reload that names other groups takes the rights away at once, and
	// one that names none leaves only the data_dir credential.
	e.setAdmins(config.Administrators{Groups: []string{"dba-leads"}})
	var out Error
	if code, _ := e.call(t, "GET", "/v1/admin/users", ann, nil, &out); code != http.StatusForbidden || !strings.Contains(out.Error, "members of dba-leads") {
		t.Fatalf("after the reload: %d %q", code, out.Error)
	}
	e.setAdmins(config.Administrators{})
	if code, _ := e.call(t, "GET", "/v1/admin/users", ann, nil, &out); code != http.StatusForbidden || !strings.Contains(out.Error, "names no administrators") {
		t.Fatalf("with no administrators: %d %q", code, out.Error)
	}
	e.must(t, http.StatusOK, "GET", "/v1/admin/users", e.admin, nil)
	e.setAdmins(config.Administrators{Groups: []string{"keygate-admins"}})

	// A group the identity provider asserted at sign-in counts while the
	// session lasts; a session made by an administrator asserts none.
	e.must(t, http.StatusCreated, "POST", "/v1/admin/users", e.admin, UserRequest{Name: "fay"})
	asserted, _ := e.storedSession(t, "fay", false, "keygate-admins")
	e.must(t, http.StatusOK, "GET", "/v1/admin/users", asserted, nil)
	other, _ := e.storedSession(t, "fay", false, "analysts")
	e.must(t, http.StatusForbidden, "GET", "/v1/admin/users", other, nil)

	// require_mfa: only a sign-in with a second factor administers.
	e.setAdmins(config.Administrators{Groups: []string{"keygate-admins"}, RequireMFA: true})
	if code, _ := e.call(t, "GET", "/v1/admin/users", ann, nil, &out); code != http.StatusForbidden || !strings.Contains(out.Error, "without MFA") {
		t.Fatalf("a session without MFA under require_mfa: %d %q", code, out.Error)
	}
	withMFA, _ := e.storedSession(t, "ann", true)
	e.must(t, http.StatusOK, "GET", "/v1/admin/users", withMFA, nil)
	e.setAdmins(config.Administrators{Groups: []string{"keygate-admins"}})

	// Disabling an administrator revokes their sessions; an MFA session
	// from before is no way back in.
	e.must(t, http.StatusOK, "POST", "/v1/admin/users/ann/disable", e.admin, nil)
	e.must(t, http.StatusUnauthorized, "GET", "/v1/admin/users", ann, nil)
	e.must(t, http.StatusUnauthorized, "GET", "/v1/admin/users", withMFA, nil)
}

// Admin actions are audited under the administrator who made them, with
// the session they made them from; the data_dir credential's under
// BreakGlassActor. Nothing in a request names the actor.
func TestAdminActionsAreAuditedUnderTheAdministrator(t *testing.T) {
	e := newAdminEnv(t, nil)
	ann := e.session(t, "ann", "keygate-admins")
	annSession := e.sessionID(t, ann)
	e.session(t, "bob", "analysts")
	carol := e.session(t, "carol", "analysts")

	e.must(t, http.StatusOK, "POST", "/v1/admin/users/bob/disable", ann, nil)
	e.must(t, http.StatusOK, "DELETE", "/v1/admin/sessions/"+e.sessionID(t, carol), ann, nil)
	e.must(t, http.StatusOK, "PUT", "/v1/admin/groups/keygate-admins/members/carol", ann, nil)
	// A body cannot name another actor, and a person cannot be named as
	// the data_dir credential is.
	e.must(t, http.StatusBadRequest, "POST", "/v1/admin/groups", ann, map[string]string{"name": "g", "actor": "mallory"})
	e.must(t, http.StatusBadRequest, "POST", "/v1/admin/users", ann, UserRequest{Name: BreakGlassActor})

	var page AuditPage
	if code, _ := e.call(t, "GET", "/v1/admin/audit?type=admin", ann, nil, &page); code != http.StatusOK {
		t.Fatalf("audit as ann: %d", code)
	}
	byAnn := map[string]AuditEvent{}
	for _, ev := range page.Events {
		switch ev.Actor {
		case "ann":
			byAnn[ev.Type] = ev
		case BreakGlassActor:
		default:
			t.Errorf("admin event %s with actor %q", ev.Type, ev.Actor)
		}
	}
	for typ, user := range map[string]string{"admin.user.disable": "bob", "admin.session.revoke": "carol", "admin.group.add-member": "carol"} {
		ev, ok := byAnn[typ]
		if !ok || ev.User != user || ev.Detail["actor_session"] != annSession {
			t.Errorf("%s by ann: %+v (found %v)", typ, ev, ok)
		}
	}
	if len(byAnn) != 3 {
		t.Errorf("ann's events: %v", byAnn)
	}
	var h GroupHistory
	if code, _ := e.call(t, "GET", "/v1/admin/groups/keygate-admins/history", ann, nil, &h); code != http.StatusOK {
		t.Fatalf("history: %d", code)
	}
	sources := map[string]string{}
	for _, m := range h.Memberships {
		sources[m.User] = m.Source
	}
	if sources["ann"] != BreakGlassActor || sources["carol"] != "ann" {
		t.Errorf("who added the members of keygate-admins: %v", sources)
	}
}

// keygate admin session create: an administrator may make a session for
// another administrator (the documented bootstrap) and its event says so;
// a person who is not an administrator cannot make one at all.
func TestSessionCreateByAdministrators(t *testing.T) {
	e := newAdminEnv(t, nil)
	ann := e.session(t, "ann", "keygate-admins")
	bob := e.session(t, "bob", "analysts")
	e.must(t, http.StatusCreated, "POST", "/v1/admin/users", ann, UserRequest{Name: "dave", Groups: []string{"keygate-admins"}})

	e.must(t, http.StatusForbidden, "POST", "/v1/admin/sessions", bob, SessionRequest{User: "bob"})
	e.must(t, http.StatusForbidden, "POST", "/v1/admin/sessions", bob, SessionRequest{User: "dave"})

	var dave SessionResponse
	if code, _ := e.call(t, "POST", "/v1/admin/sessions", ann, SessionRequest{User: "dave", TTL: "1h"}, &dave); code != http.StatusCreated {
		t.Fatalf("ann makes dave a session: %d", code)
	}
	e.must(t, http.StatusOK, "GET", "/v1/admin/users", dave.Credential, nil)
	var bob2 SessionResponse
	if code, _ := e.call(t, "POST", "/v1/admin/sessions", ann, SessionRequest{User: "bob", TTL: "1h"}, &bob2); code != http.StatusCreated {
		t.Fatalf("ann makes bob a session: %d", code)
	}
	e.must(t, http.StatusForbidden, "GET", "/v1/admin/users", bob2.Credential, nil)

	var page AuditPage
	if code, _ := e.call(t, "GET", "/v1/admin/audit?type=admin.session.create", ann, nil, &page); code != http.StatusOK {
		t.Fatalf("audit: %d", code)
	}
	flagged := map[string]any{}
	for _, ev := range page.Events {
		if ev.Actor == "ann" {
			flagged[ev.User] = ev.Detail["administrator"]
		}
	}
	if flagged["dave"] != true || flagged["bob"] != nil || len(flagged) != 2 {
		t.Errorf("sessions ann made, flagged administrator: %v", flagged)
	}
}

// A handler wrapped in the admin guard but reached without guardAdmin
// (as a portal page may be) authenticates the request itself.
func TestAdminGuardStandsAlone(t *testing.T) {
	e := newAdminEnv(t, nil)
	bob := e.session(t, "bob", "analysts")
	ann := e.session(t, "ann", "keygate-admins")
	ran := ""
	h := e.api.admin(func(w http.ResponseWriter, r *http.Request) error {
		ran = actorOf(r).Name
		return writeJSON(w, http.StatusOK, map[string]string{})
	})
	for bearer, want := range map[string]int{"": http.StatusUnauthorized, bob: http.StatusForbidden, ann: http.StatusOK, e.admin: http.StatusOK} {
		ran = ""
		req, _ := http.NewRequest("GET", "/admin/people", nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		rec := httptest.NewRecorder()
		h(rec, req)
		if rec.Code != want || (want == http.StatusOK) != (ran != "") {
			t.Errorf("bearer %.8s: %d (ran as %q), want %d", bearer, rec.Code, ran, want)
		}
	}
}
