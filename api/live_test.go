package api

import (
	"context"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/identity"
)

// fakeLive is a gateway's live sessions: End removes one and keeps the
// reason it was given.
type fakeLive struct {
	mu       sync.Mutex
	sessions []LiveSession
	ended    map[string]string
}

func (f *fakeLive) add(ls LiveSession) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sessions = append(f.sessions, ls)
}

func (f *fakeLive) List() []LiveSession {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sessions)
}

func (f *fakeLive) End(id, reason string) (LiveSession, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.IndexFunc(f.sessions, func(ls LiveSession) bool { return ls.ID == id })
	if i < 0 {
		return LiveSession{}, false
	}
	ls := f.sessions[i]
	f.sessions = slices.Delete(f.sessions, i, i+1)
	if f.ended == nil {
		f.ended = map[string]string{}
	}
	f.ended[id] = reason
	return ls, true
}

func (f *fakeLive) reason(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ended[id]
}

// liveEnv is an adminEnv whose gateway has a live session of alice's
// (g-alice, opened through her sign-in session) and one of bob's.
func liveEnv(t *testing.T) (*adminEnv, *fakeLive) {
	t.Helper()
	e := newAdminEnv(t, nil)
	live := &fakeLive{}
	e.api.Live = live
	start := e.now.Add(-time.Minute)
	live.add(LiveSession{ID: "g-bob", User: "bob", Database: "orders", Access: "ro", Engine: "postgres", Client: "10.0.0.2:5000", SignIn: "s-bob", UpstreamRole: "kg_bob_ro", Started: start, Statements: 7})
	live.add(LiveSession{ID: "g-alice", User: "alice", Database: "orders", Access: "ro", Engine: "postgres", Client: "10.0.0.1:5000", SignIn: "s-alice", UpstreamRole: "kg_alice_ro", Started: start.Add(time.Second), Statements: 2})
	return e, live
}

// lastAudit is the last event of type typ, as the API shows it.
func (e *env) lastAudit(t *testing.T, typ string) (AuditEvent, bool) {
	t.Helper()
	var page AuditPage
	if code, _ := e.call(t, "GET", "/v1/admin/audit?type="+typ, e.admin, nil, &page); code != http.StatusOK {
		t.Fatalf("audit: %d", code)
	}
	if len(page.Events) == 0 {
		return AuditEvent{}, false
	}
	return page.Events[len(page.Events)-1], true
}

// A person sees their own sign-in sessions in force, the one they ask
// with marked, and their own live gateway sessions: nobody else's.
func TestMySessions(t *testing.T) {
	e, _ := liveEnv(t)
	alice := e.session(t, "alice", "analysts")
	other, otherID := e.storedSession(t, "alice", true)
	e.session(t, "bob", "analysts")
	_, revokedID := e.storedSession(t, "alice", false)
	e.must(t, http.StatusOK, "DELETE", "/v1/admin/sessions/"+revokedID, e.admin, nil)
	if _, err := e.store.CreateSession(context.Background(), identity.Session{User: "alice", Created: e.now.Add(-2 * time.Hour), Expires: e.now.Add(-time.Hour), Source: "oidc"}, []byte("expired-hash-of-32-bytes-long!!!")); err != nil {
		t.Fatal(err)
	}

	var mine MySessions
	if code, _ := e.call(t, "GET", "/v1/sessions", alice, nil, &mine); code != http.StatusOK {
		t.Fatalf("GET /v1/sessions: %d", code)
	}
	if len(mine.SignIns) != 2 {
		t.Fatalf("alice's sign-ins: %+v", mine.SignIns)
	}
	current := map[string]bool{}
	for _, s := range mine.SignIns {
		if s.User != "alice" || s.Status != SessionActive {
			t.Errorf("listed %+v", s)
		}
		current[s.ID] = s.Current
	}
	if !current[e.sessionID(t, alice)] || current[otherID] {
		t.Errorf("current marks: %v", current)
	}
	if len(mine.Live) != 1 || mine.Live[0].ID != "g-alice" || mine.Live[0].Statements != 2 || mine.Live[0].UpstreamRole != "kg_alice_ro" {
		t.Errorf("alice's live sessions: %+v", mine.Live)
	}
	// Asked from her other session, that one is current.
	var fromOther MySessions
	if code, _ := e.call(t, "GET", "/v1/sessions", other, nil, &fromOther); code != http.StatusOK {
		t.Fatalf("GET /v1/sessions: %d", code)
	}
	for _, s := range fromOther.SignIns {
		if s.Current != (s.ID == otherID) {
			t.Errorf("from her other session: %+v", s)
		}
	}
	e.must(t, http.StatusUnauthorized, "GET", "/v1/sessions", "", nil)
	e.must(t, http.StatusUnauthorized, "GET", "/v1/sessions", e.admin, nil)

	// A server without a gateway has no live sessions to show.
	e.api.Live = nil
	var bare MySessions
	if code, _ := e.call(t, "GET", "/v1/sessions", alice, nil, &bare); code != http.StatusOK || bare.Live == nil || len(bare.Live) != 0 {
		t.Errorf("without a gateway: %d %+v", code, bare.Live)
	}
}

// A person ends one of their own sign-in sessions; another person's is
// answered as one that does not exist.
func TestEndMySession(t *testing.T) {
	e, _ := liveEnv(t)
	alice := e.session(t, "alice", "analysts")
	other, otherID := e.storedSession(t, "alice", false)
	bob := e.session(t, "bob", "analysts")
	bobID := e.sessionID(t, bob)

	var s Session
	if code, _ := e.call(t, "DELETE", "/v1/sessions/"+otherID, alice, nil, &s); code != http.StatusOK || s.Status != SessionRevoked || s.ID != otherID || s.Current {
		t.Fatalf("alice ends her other session: %d %+v", code, s)
	}
	e.must(t, http.StatusUnauthorized, "POST", "/v1/tokens", other, TokenRequest{Database: "orders"})
	e.must(t, http.StatusOK, "POST", "/v1/tokens", alice, TokenRequest{Database: "orders"})
	ev, ok := e.lastAudit(t, "signout")
	if !ok || ev.Actor != "alice" || ev.User != "alice" || ev.SessionID != otherID || ev.Reason != "ended by alice" || ev.Detail["actor_session"] != e.sessionID(t, alice) {
		t.Errorf("signout event: %+v", ev)
	}
	// Again: nothing changes, and nothing more is recorded.
	if code, _ := e.call(t, "DELETE", "/v1/sessions/"+otherID, alice, nil, &s); code != http.StatusOK || s.Status != SessionRevoked {
		t.Errorf("again: %d %+v", code, s)
	}

	for _, id := range []string{bobID, "no-such-session"} {
		var body Error
		code, _ := e.call(t, "DELETE", "/v1/sessions/"+id, alice, nil, &body)
		if code != http.StatusNotFound || body.Error != "no sign-in session "+id+" of yours: GET /v1/sessions (the portal's sessions page) lists yours" {
			t.Errorf("alice ends %s: %d %q", id, code, body.Error)
		}
	}
	e.must(t, http.StatusOK, "POST", "/v1/tokens", bob, TokenRequest{Database: "orders"})

	// Her own current session: a logout.
	if code, _ := e.call(t, "DELETE", "/v1/sessions/"+e.sessionID(t, alice), alice, nil, &s); code != http.StatusOK || !s.Current || s.Status != SessionRevoked {
		t.Errorf("alice ends her current session: %d %+v", code, s)
	}
	e.must(t, http.StatusUnauthorized, "GET", "/v1/sessions", alice, nil)
}

// A person ends their own live gateway session, told who ended it; not
// another's.
func TestEndMyLive(t *testing.T) {
	e, live := liveEnv(t)
	alice := e.session(t, "alice", "analysts")

	var body Error
	if code, _ := e.call(t, "DELETE", "/v1/live/g-bob", alice, nil, &body); code != http.StatusNotFound || !strings.Contains(body.Error, "no live session g-bob of yours") {
		t.Errorf("alice ends bob's live session: %d %q", code, body.Error)
	}
	if live.reason("g-bob") != "" {
		t.Fatal("bob's live session was ended by alice")
	}
	var ls LiveSession
	if code, _ := e.call(t, "DELETE", "/v1/live/g-alice", alice, nil, &ls); code != http.StatusOK || ls.ID != "g-alice" || ls.User != "alice" {
		t.Fatalf("alice ends her live session: %d %+v", code, ls)
	}
	if r := live.reason("g-alice"); r != "ended by alice" {
		t.Errorf("ended with reason %q", r)
	}
	ev, ok := e.lastAudit(t, "live.end")
	if !ok || ev.Actor != "alice" || ev.User != "alice" || ev.SessionID != "g-alice" || ev.Database != "orders" || ev.Access != "ro" ||
		ev.Reason != "ended by alice" || ev.Detail["actor_session"] != e.sessionID(t, alice) {
		t.Errorf("live.end event: %+v", ev)
	}
	e.must(t, http.StatusNotFound, "DELETE", "/v1/live/g-alice", alice, nil)
	e.must(t, http.StatusUnauthorized, "DELETE", "/v1/live/g-bob", "", nil)

	e.api.Live = nil
	e.must(t, http.StatusNotImplemented, "DELETE", "/v1/live/g-bob", alice, nil)
}

// An administrator lists everyone's live sessions, filtered, and ends
// anyone's, on record under their own name.
func TestAdminLive(t *testing.T) {
	e, live := liveEnv(t)
	ann := e.session(t, "ann", "keygate-admins")
	e.session(t, "alice", "analysts")
	e.session(t, "bob", "analysts")

	var all []LiveSession
	if code, _ := e.call(t, "GET", "/v1/admin/live", ann, nil, &all); code != http.StatusOK || len(all) != 2 || all[0].ID != "g-bob" || all[1].ID != "g-alice" {
		t.Fatalf("all live sessions, oldest first: %+v", all)
	}
	for q, want := range map[string][]string{
		"?user=ALICE":                    {"g-alice"},
		"?database=orders":               {"g-bob", "g-alice"},
		"?user=bob&database=orders":      {"g-bob"},
		"?user=ann":                      {},
		"?user=alice&database=orders&x=": {"g-alice"},
	} {
		var got []LiveSession
		if code, _ := e.call(t, "GET", "/v1/admin/live"+q, ann, nil, &got); code != http.StatusOK {
			t.Fatalf("%s: %d", q, code)
		}
		ids := []string{}
		for _, ls := range got {
			ids = append(ids, ls.ID)
		}
		if !slices.Equal(ids, want) {
			t.Errorf("%s: %v, want %v", q, ids, want)
		}
	}
	var body Error
	if code, _ := e.call(t, "GET", "/v1/admin/live?user=nobody", ann, nil, &body); code != http.StatusNotFound || !strings.Contains(body.Error, "no person named nobody") {
		t.Errorf("unknown person: %d %q", code, body.Error)
	}
	if code, _ := e.call(t, "GET", "/v1/admin/live?database=nope", ann, nil, &body); code != http.StatusNotFound || !strings.Contains(body.Error, "no database named nope") {
		t.Errorf("unknown database: %d %q", code, body.Error)
	}

	var ls LiveSession
	if code, _ := e.call(t, "DELETE", "/v1/admin/live/g-bob", ann, nil, &ls); code != http.StatusOK || ls.User != "bob" {
		t.Fatalf("ann ends bob's live session: %d %+v", code, ls)
	}
	if r := live.reason("g-bob"); r != "ended by administrator ann" {
		t.Errorf("ended with reason %q", r)
	}
	ev, ok := e.lastAudit(t, "admin.live.end")
	if !ok || ev.Actor != "ann" || ev.User != "bob" || ev.Detail["session_id"] != "g-bob" || ev.Detail["database"] != "orders" || ev.Detail["actor_session"] != e.sessionID(t, ann) {
		t.Errorf("admin.live.end event: %+v", ev)
	}
	if code, _ := e.call(t, "DELETE", "/v1/admin/live/g-bob", ann, nil, &body); code != http.StatusNotFound || !strings.Contains(body.Error, "keygate admin live list") {
		t.Errorf("ending it again: %d %q", code, body.Error)
	}
	// The data_dir credential ends one as break-glass, and says so.
	e.must(t, http.StatusOK, "DELETE", "/v1/admin/live/g-alice", e.admin, nil)
	if r := live.reason("g-alice"); r != "ended by administrator "+BreakGlassActor {
		t.Errorf("ended with the data_dir credential with reason %q", r)
	}
}

// whoami says whether the session carries administrator rights, decided
// as the admin guard decides them.
func TestWhoAmIAdministrator(t *testing.T) {
	e := newAdminEnv(t, nil)
	ann := e.session(t, "ann", "keygate-admins")
	bob := e.session(t, "bob", "analysts")
	admin := func(cred string) bool {
		t.Helper()
		var w WhoAmI
		if code, _ := e.call(t, "GET", "/v1/whoami", cred, nil, &w); code != http.StatusOK {
			t.Fatalf("whoami: %d", code)
		}
		return w.Administrator
	}
	if !admin(ann) || admin(bob) {
		t.Errorf("administrator: ann %v, bob %v", admin(ann), admin(bob))
	}
	e.setAdmins(config.Administrators{Groups: []string{"keygate-admins"}, RequireMFA: true})
	if admin(ann) {
		t.Error("ann without MFA under require_mfa is shown as an administrator")
	}
	withMFA, _ := e.storedSession(t, "ann", true)
	if !admin(withMFA) {
		t.Error("ann with MFA is not shown as an administrator")
	}
	e.setAdmins(config.Administrators{})
	if admin(withMFA) {
		t.Error("an administrator while the config names none")
	}
}

type rulesFunc func(ctx context.Context) (AccessRules, error)

func (f rulesFunc) AccessRules(ctx context.Context) (AccessRules, error) { return f(ctx) }

// The access rules in force are for administrators, as configured, with
// the terms in force and each rule's name as decisions give it.
func TestAccessRules(t *testing.T) {
	e := newAdminEnv(t, nil)
	ann := e.session(t, "ann", "keygate-admins")
	bob := e.session(t, "bob", "analysts")
	e.must(t, http.StatusNotImplemented, "GET", "/v1/admin/access/rules", ann, nil)

	rules := config.Rules{
		PermissionSets: []config.PermissionSet{
			{Name: "db-readonly", Access: "ro", Conditions: []string{"person.department == database.department"}},
			{Name: "db-admin", Access: "admin", Description: "schema changes", TokenTTL: config.Duration(5 * time.Minute), SessionDuration: config.Duration(time.Hour), RequireMFA: true},
		},
		Assignments: []config.Assignment{
			{Group: "analysts", PermissionSet: "db-readonly", Databases: []string{"orders"}},
			{Group: "dbadmins", PermissionSet: "db-admin", DatabaseTags: map[string]string{"environment": "prod"}},
		},
		Deny:         []config.Deny{{Description: "no writes to billing", Databases: []string{"billing"}, Access: []string{"rw"}}},
		GroupPattern: "kg-{environment}-{permission_set}",
	}
	named := []access.Assignment{{Group: "kg-prod-db-readonly", PermissionSet: "db-readonly", DatabaseTags: map[string]string{"environment": "prod"}, ID: access.NamingRuleID("kg-prod-db-readonly")}}
	e.api.Rules = rulesFunc(func(context.Context) (AccessRules, error) { return ConfigRules(rules, named), nil })
	e.must(t, http.StatusForbidden, "GET", "/v1/admin/access/rules", bob, nil)

	var got AccessRules
	if code, _ := e.call(t, "GET", "/v1/admin/access/rules", ann, nil, &got); code != http.StatusOK {
		t.Fatalf("rules: %d", code)
	}
	want := AccessRules{
		PermissionSets: []PermissionSetRule{
			{Name: "db-readonly", Access: "ro", TokenTTL: "15m", Conditions: []string{"person.department == database.department"}},
			{Name: "db-admin", Description: "schema changes", Access: "admin", TokenTTL: "5m", SessionDuration: "1h", RequireMFA: true, Conditions: []string{}},
		},
		Assignments: []AssignmentRule{
			{Group: "analysts", PermissionSet: "db-readonly", Access: "ro", Databases: []string{"orders"}, Policy: "assignments[0]"},
			{Group: "dbadmins", PermissionSet: "db-admin", Access: "admin", DatabaseTags: map[string]string{"environment": "prod"}, Policy: "assignments[1]"},
			{Group: "kg-prod-db-readonly", PermissionSet: "db-readonly", Access: "ro", DatabaseTags: map[string]string{"environment": "prod"}, Policy: "group_naming[kg-prod-db-readonly]"},
		},
		Deny:         []DenyRule{{Description: "no writes to billing", Databases: []string{"billing"}, Access: []string{"rw"}, Conditions: []string{}, Policy: "deny[0]"}},
		GroupPattern: "kg-{environment}-{permission_set}",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rules:\n%+v\nwant\n%+v", got, want)
	}
}
