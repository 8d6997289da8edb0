package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/sqlite"
	"github.com/keygate/keygate/token"
)

type env struct {
	srv    *httptest.Server
	admin  string
	keys   *token.KeySet
	now    time.Time
	audit  *audit.Log
	store  *sqlite.Store
	policy *access.Policy
	api    *Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC), keys: token.NewMemoryKeys()}
	now := func() time.Time { return e.now }
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keygate.db"), now)
	if err != nil {
		t.Fatal(err)
	}
	e.store = st
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if e.audit, err = audit.Open(ctx, st, log, now); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.audit.Close(); st.Close() })
	e.policy, err = access.NewPolicy(
		[]access.PermissionSet{{Name: "db-readonly", Level: access.ReadOnly, TokenTTL: 15 * time.Minute}, {Name: "db-readwrite", Level: access.ReadWrite, TokenTTL: 30 * time.Minute}},
		[]access.Assignment{{Group: "analysts", PermissionSet: "db-readonly", Databases: []string{"orders"}}, {Group: "engineers", PermissionSet: "db-readwrite", Databases: []string{"*"}}})
	if err != nil {
		t.Fatal(err)
	}
	az := authz.New(st, e.policy, []access.Database{{Name: "orders"}}, now)
	e.admin = credential.New(credential.AdminPrefix)
	s := &Server{Store: st, Authz: az, Tokens: &token.Issuer{Keys: e.keys, Now: now}, Audit: e.audit, Log: log, Now: now,
		AdminHash: credential.Hash(e.admin), CAPEM: []byte("-----BEGIN CERTIFICATE-----\n")}
	e.api = s
	e.srv = httptest.NewServer(s.Handler())
	t.Cleanup(e.srv.Close)
	return e
}

// call makes a request and decodes the JSON response into out (if not nil).
func (e *env) call(t *testing.T, method, path, bearer string, body any, out any) (int, http.Header) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %d %q is not JSON: %v", method, path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode, resp.Header
}

func (e *env) session(t *testing.T, user string, groups ...string) string {
	t.Helper()
	if code, _ := e.call(t, "POST", "/v1/admin/users", e.admin, UserRequest{Name: user, Groups: groups}, nil); code != http.StatusCreated {
		t.Fatalf("create user %s: %d", user, code)
	}
	var s SessionResponse
	if code, _ := e.call(t, "POST", "/v1/admin/sessions", e.admin, SessionRequest{User: user, TTL: "1h"}, &s); code != http.StatusCreated {
		t.Fatalf("create session: %d", code)
	}
	if !strings.HasPrefix(s.Credential, credential.SessionPrefix) {
		t.Fatalf("credential %q", s.Credential)
	}
	return s.Credential
}

func TestAdminEndpointsNeedTheAdminCredential(t *testing.T) {
	e := newEnv(t)
	for _, bearer := range []string{"", "kga_wrong", e.admin + "x", strings.TrimPrefix(e.admin, "kga_")} {
		var body Error
		code, h := e.call(t, "POST", "/v1/admin/groups", bearer, GroupRequest{Name: "g"}, &body)
		if code != http.StatusUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") || body.Error == "" {
			t.Errorf("bearer %q: %d %v %q", bearer, code, h.Get("WWW-Authenticate"), body.Error)
		}
	}
	// A session of a person who is not an administrator is refused as
	// such: the credential is good, the rights are missing.
	cred := e.session(t, "alice", "analysts")
	if code, _ := e.call(t, "GET", "/v1/admin/audit", cred, nil, nil); code != http.StatusForbidden {
		t.Errorf("a non-administrator's session on an admin endpoint: %d", code)
	}
}

func TestTokenEndpoint(t *testing.T) {
	e := newEnv(t)
	alice := e.session(t, "alice", "analysts")
	bob := e.session(t, "bob", "engineers")

	var tr TokenResponse
	if code, _ := e.call(t, "POST", "/v1/tokens", alice, TokenRequest{Database: "orders"}, &tr); code != http.StatusOK {
		t.Fatalf("alice's token: %d", code)
	}
	c, err := (&token.Verifier{Keys: e.keys, Now: func() time.Time { return e.now }}).Verify(tr.Token)
	if err != nil {
		t.Fatal(err)
	}
	if c.User != "alice" || c.Database != "orders" || c.Access != access.ReadOnly || !c.Expires.Equal(e.now.Add(15*time.Minute)) || c.Session == "" {
		t.Fatalf("claims = %+v", c)
	}
	// Without --access bob, granted rw, gets the least he may use: ro,
	// through his rw grant and with its TTL.
	if code, _ := e.call(t, "POST", "/v1/tokens", bob, TokenRequest{Database: "orders"}, &tr); code != http.StatusOK || tr.Access != "ro" || !tr.ExpiresAt.Equal(e.now.Add(30*time.Minute)) {
		t.Fatalf("bob's token: %d %+v", code, tr)
	}
	// He asks for rw to write.
	if code, _ := e.call(t, "POST", "/v1/tokens", bob, TokenRequest{Database: "orders", Access: "rw"}, &tr); code != http.StatusOK || tr.Access != "rw" {
		t.Fatalf("bob's rw token: %d %+v", code, tr)
	}

	var refusal Error
	code, _ := e.call(t, "POST", "/v1/tokens", alice, TokenRequest{Database: "orders", Access: "rw"}, &refusal)
	if code != http.StatusForbidden || !strings.Contains(refusal.Error, "no assignment grants rw on orders") {
		t.Fatalf("alice rw: %d %q", code, refusal.Error)
	}
	for _, tc := range []struct {
		req  any
		code int
		want string
	}{
		{TokenRequest{Database: "nope"}, http.StatusForbidden, "database nope is not configured"},
		{TokenRequest{Database: "orders", Access: "superuser"}, http.StatusBadRequest, "unknown access level"},
		{TokenRequest{}, http.StatusBadRequest, "no database given"},
		{`{"database": "orders", "extra": 1}`, http.StatusBadRequest, "unknown field"},
		{`{not json`, http.StatusBadRequest, "malformed JSON"},
		{`{"database": "` + strings.Repeat("x", 2<<20) + `"}`, http.StatusRequestEntityTooLarge, "over"},
	} {
		var body Error
		code, _ := e.call(t, "POST", "/v1/tokens", alice, tc.req, &body)
		if code != tc.code || !strings.Contains(body.Error, tc.want) {
			t.Errorf("%.60v: %d %q, want %d %q", tc.req, code, body.Error, tc.code, tc.want)
		}
	}
	if code, h := e.call(t, "POST", "/v1/tokens", "kgs_unknown", TokenRequest{Database: "orders"}, nil); code != http.StatusUnauthorized || h.Get("WWW-Authenticate") == "" {
		t.Fatalf("unknown session: %d", code)
	}

	// A token never outlives its session.
	e.now = e.now.Add(59 * time.Minute)
	if code, _ := e.call(t, "POST", "/v1/tokens", alice, TokenRequest{Database: "orders"}, &tr); code != http.StatusOK || !tr.ExpiresAt.Equal(e.now.Add(time.Minute)) {
		t.Fatalf("token near session end: %d expires %s, want %s", code, tr.ExpiresAt, e.now.Add(time.Minute))
	}
	e.now = e.now.Add(2 * time.Minute)
	if code, _ := e.call(t, "POST", "/v1/tokens", alice, TokenRequest{Database: "orders"}, nil); code != http.StatusUnauthorized {
		t.Fatalf("expired session: %d", code)
	}
}

// TestEndedSessionSaysWhy: a person whose session ended because they were
// disabled is not told to sign in again.
func TestEndedSessionSaysWhy(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	creds := map[string]string{}
	for _, u := range []string{"alice", "carol"} {
		creds[u] = e.session(t, u, "analysts")
		sessions, err := e.store.ListSessions(ctx, u)
		if err != nil || len(sessions) != 1 {
			t.Fatalf("sessions of %s: %v %v", u, sessions, err)
		}
		if err := e.store.RevokeSession(ctx, sessions[0].ID, e.now); err != nil {
			t.Fatal(err)
		}
	}
	alice, err := e.store.GetUserByName(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.UpdateUser(ctx, alice.ID, func(u identity.User) (identity.User, error) { u.Active = false; return u, nil }); err != nil {
		t.Fatal(err)
	}
	for user, want := range map[string]string{
		"alice": "alice was disabled: signing in again will not help",
		"carol": "your session was revoked: sign in again",
	} {
		var body Error
		code, _ := e.call(t, "POST", "/v1/tokens", creds[user], TokenRequest{Database: "orders"}, &body)
		if code != http.StatusUnauthorized || !strings.Contains(body.Error, want) {
			t.Errorf("%s: %d %q, want %q", user, code, body.Error, want)
		}
	}
}

func TestAdminFlowAndAudit(t *testing.T) {
	e := newEnv(t)
	var g Group
	if code, _ := e.call(t, "POST", "/v1/admin/groups", e.admin, GroupRequest{Name: "analysts"}, &g); code != http.StatusCreated || g.Name != "analysts" {
		t.Fatalf("create group: %d %+v", code, g)
	}
	if code, _ := e.call(t, "POST", "/v1/admin/groups", e.admin, GroupRequest{Name: "analysts"}, nil); code != http.StatusConflict {
		t.Fatalf("duplicate group: %d", code)
	}
	var u User
	if code, _ := e.call(t, "POST", "/v1/admin/users", e.admin, UserRequest{Name: "alice", Email: "a@example.com", Groups: []string{"analysts", "new-group"}}, &u); code != http.StatusCreated || len(u.Groups) != 2 {
		t.Fatalf("create user: %d %+v", code, u)
	}
	if code, _ := e.call(t, "POST", "/v1/admin/users", e.admin, UserRequest{Name: "ALICE"}, nil); code != http.StatusConflict {
		t.Fatalf("duplicate user (other case): %d", code)
	}
	if code, _ := e.call(t, "POST", "/v1/admin/users", e.admin, UserRequest{Name: "has space"}, nil); code != http.StatusBadRequest {
		t.Fatalf("bad user name: %d", code)
	}
	if code, _ := e.call(t, "DELETE", "/v1/admin/groups/new-group/members/alice", e.admin, nil, &g); code != http.StatusOK || len(g.Members) != 0 {
		t.Fatalf("remove member: %d %+v", code, g)
	}
	var body Error
	if code, _ := e.call(t, "DELETE", "/v1/admin/groups/new-group/members/alice", e.admin, nil, &body); code != http.StatusNotFound || !strings.Contains(body.Error, "not a member") {
		t.Fatalf("remove non-member: %d %q", code, body.Error)
	}
	if code, _ := e.call(t, "PUT", "/v1/admin/groups/nope/members/alice", e.admin, nil, &body); code != http.StatusNotFound || !strings.Contains(body.Error, "keygate admin group add nope") {
		t.Fatalf("add to unknown group: %d %q", code, body.Error)
	}
	if code, _ := e.call(t, "POST", "/v1/admin/users/alice/disable", e.admin, nil, &u); code != http.StatusOK || u.Active {
		t.Fatalf("disable: %d %+v", code, u)
	}
	if code, _ := e.call(t, "POST", "/v1/admin/sessions", e.admin, SessionRequest{User: "alice"}, &body); code != http.StatusConflict || !strings.Contains(body.Error, "disabled") {
		t.Fatalf("session for disabled user: %d %q", code, body.Error)
	}
	for _, ttl := range []string{"0s", "8d", "soon"} {
		if code, _ := e.call(t, "POST", "/v1/admin/sessions", e.admin, SessionRequest{User: "alice", TTL: ttl}, nil); code != http.StatusBadRequest {
			t.Errorf("ttl %q: %d", ttl, code)
		}
	}

	var page AuditPage
	if code, _ := e.call(t, "GET", "/v1/admin/audit?type=admin", e.admin, nil, &page); code != http.StatusOK {
		t.Fatalf("audit: %d", code)
	}
	var types []string
	for _, ev := range page.Events {
		if ev.Actor != BreakGlassActor {
			t.Errorf("admin event %s has actor %q", ev.Type, ev.Actor)
		}
		types = append(types, ev.Type)
	}
	want := "admin.group.create admin.user.create admin.group.add-member admin.group.create admin.group.add-member admin.group.remove-member admin.user.disable"
	if strings.Join(types, " ") != want {
		t.Fatalf("admin events:\n%s\nwant\n%s", strings.Join(types, " "), want)
	}
	// Every request made with the data_dir credential is on record too.
	var uses AuditPage
	if code, _ := e.call(t, "GET", "/v1/admin/audit?type=break-glass", e.admin, nil, &uses); code != http.StatusOK || len(uses.Events) == 0 {
		t.Fatalf("break-glass uses: %d, %d events", code, len(uses.Events))
	}
	for _, ev := range uses.Events {
		if ev.Actor != BreakGlassActor || ev.Detail["path"] == nil || strings.HasPrefix(ev.Detail["path"].(string), "/v1/admin/audit") {
			t.Errorf("break-glass use %+v: want the actor and the path, and no read of the audit log", ev)
		}
	}
	var v AuditVerification
	if code, _ := e.call(t, "GET", "/v1/admin/audit/verify", e.admin, nil, &v); code != http.StatusOK || !v.Intact || v.Events != int64(len(page.Events)+len(uses.Events)) {
		t.Fatalf("verify: %d %+v; want %d events", code, v, len(page.Events)+len(uses.Events))
	}
}

func TestAuditPaging(t *testing.T) {
	e := newEnv(t)
	for range auditPageMax + 10 {
		e.audit.Record(audit.Event{Type: audit.Query, User: "alice", Query: "SELECT 1"})
	}
	var page AuditPage
	e.call(t, "GET", "/v1/admin/audit", e.admin, nil, &page)
	if len(page.Events) != auditPageMax || page.Next != page.Events[len(page.Events)-1].Seq {
		t.Fatalf("first page: %d events, next %d", len(page.Events), page.Next)
	}
	var second AuditPage
	e.call(t, "GET", "/v1/admin/audit?after="+strconv.FormatInt(page.Next, 10), e.admin, nil, &second)
	if len(second.Events) != 10 || second.Next != 0 || second.Events[0].Seq != page.Next+1 {
		t.Fatalf("second page: %d events, next %d", len(second.Events), second.Next)
	}
	var body Error
	if code, _ := e.call(t, "GET", "/v1/admin/audit?since=yesterday", e.admin, nil, &body); code != http.StatusBadRequest {
		t.Fatalf("bad since: %d", code)
	}
}

type findingsFunc func(ctx context.Context) (AccessFindings, error)

func (f findingsFunc) AccessFindings(ctx context.Context) (AccessFindings, error) { return f(ctx) }

// The findings of the group naming rule are for administrators only.
func TestAccessFindingsEndpoint(t *testing.T) {
	e := newEnv(t)
	if code, _ := e.call(t, "GET", "/v1/admin/access/findings", e.admin, nil, nil); code != http.StatusNotImplemented {
		t.Errorf("without a lister: %d", code)
	}
	want := AccessFindings{Pattern: "kg-{environment}-{permission_set}", Groups: 2, Assigned: 1,
		Findings: []AccessFinding{{Group: "marketing", Kind: "no_match", Reason: "does not match the group naming rule kg-{environment}-{permission_set}"}}}
	e.api.Findings = findingsFunc(func(context.Context) (AccessFindings, error) { return want, nil })
	if code, _ := e.call(t, "GET", "/v1/admin/access/findings", "", nil, nil); code != http.StatusUnauthorized {
		t.Errorf("without the admin credential: %d", code)
	}
	var got AccessFindings
	if code, _ := e.call(t, "GET", "/v1/admin/access/findings", e.admin, nil, &got); code != http.StatusOK || !reflect.DeepEqual(got, want) {
		t.Errorf("findings: %d %+v", code, got)
	}
}

// A change is answered only once its audit events are stored: a client
// that saw it made never sees it unaudited, even if the server dies the
// moment after. The store is read directly, not through the API (whose
// audit reads flush first).
func TestChangesAnsweredAfterTheirAudit(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i := range 20 {
		name := fmt.Sprintf("audited%d", i)
		if code, _ := e.call(t, "POST", "/v1/admin/users", e.admin, UserRequest{Name: name}, nil); code != http.StatusCreated {
			t.Fatalf("create user %s: %d", name, code)
		}
		events, err := e.store.ListAudit(ctx, store.AuditQuery{User: name})
		if err != nil {
			t.Fatal(err)
		}
		if len(events) == 0 {
			t.Fatalf("the answer to creating %s came before its audit event was stored", name)
		}
	}
}
