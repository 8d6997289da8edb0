package web

import (
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/api"
)

// Credentials of the fake admin API's two sessions.
const (
	adminCred  = "ks_admin-credential"
	personCred = "ks_person-credential"
)

// evilName is a display name an identity provider could send.
const evilName = `<img src=x onerror=alert(1)>`

// adminAPI answers the admin API calls the administration pages make,
// as the API would: for adminCred as an administrator, for personCred as
// a person who is not one (403 on every /v1/admin/ route). It records
// the requests it got.
type adminAPI struct {
	mu       sync.Mutex
	requests []string
}

func (f *adminAPI) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

func (f *adminAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fail := func(status int, msg string) {
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(api.Error{Error: msg})
	}
	var admin bool
	switch r.Header.Get("Authorization") {
	case "Bearer " + adminCred:
		admin = true
	case "Bearer " + personCred:
	default:
		fail(http.StatusUnauthorized, "sign in again")
		return
	}
	if r.URL.Path == "/v1/whoami" {
		me := api.WhoAmI{User: "bob", SessionID: "s-bob", Administrator: admin}
		if admin {
			me.User, me.SessionID = "ada", "s-ada"
		}
		json.NewEncoder(w).Encode(me)
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/v1/admin/") {
		fail(http.StatusNotFound, "no route")
		return
	}
	if !admin {
		fail(http.StatusForbidden, "bob is not a keygate administrator")
		return
	}
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	one := 1
	evil := api.Person{Name: "eve", DisplayName: evilName, Email: "eve@example.com", Active: true, Groups: []string{"db-orders-ro"},
		Tags: map[string]string{"team": "<b>ops</b>"}, SignInSessions: &one}
	var out any
	switch r.Method + " " + r.URL.Path {
	case "GET /v1/admin/report":
		out = api.Report{Generated: now, Since: now.Add(-24 * time.Hour),
			Standing:      api.StandingReport{Credentials: []api.StandingCredential{{Database: "orders", Name: "postgres", Why: "superuser with a password"}, {Database: "orders", Name: "kg_eve", Why: "LOGIN outside a window", Managed: true}}},
			CredentialAge: api.Durations{Count: 10, P50Seconds: 30, P99Seconds: 600, TargetSeconds: 3600},
			TimeToRevoke:  api.Durations{Count: 2, P50Seconds: 0.2, P99Seconds: 3, TargetSeconds: 1, OverTarget: 1}}
	case "GET /v1/admin/users":
		out = []api.Person{{Name: "ada", Active: true}, evil}
	case "GET /v1/admin/users/eve":
		out = evil
	case "POST /v1/admin/users/eve/disable", "POST /v1/admin/users/eve/enable":
		out = api.UserChange{Person: evil, Changed: true}
	case "GET /v1/admin/live":
		out = []api.LiveSession{{ID: "g1", User: "eve", Database: "orders", Access: "ro", Client: "10.0.0.5:5000", Started: now}}
	case "DELETE /v1/admin/live/g1":
		out = api.LiveSession{ID: "g1"}
	case "GET /v1/admin/sessions":
		out = []api.Session{{ID: "s-eve", User: "eve", Source: "saml", Created: now, Expires: now.Add(time.Hour), Status: "active"}}
	case "DELETE /v1/admin/sessions/s-eve":
		out = api.Session{ID: "s-eve", Status: "revoked"}
	case "GET /v1/admin/access/review":
		out = []api.Holder{{User: "eve", Database: "orders", Access: "ro", Group: "=cmd|calc", PermissionSet: "reader", RequireMFA: true}}
	case "GET /v1/admin/groups":
		out = []api.GroupInfo{{Name: "db-orders-ro", Members: []string{"eve"}}}
	case "GET /v1/admin/groups/db-orders-ro":
		out = api.GroupInfo{Name: "db-orders-ro", Members: []string{"eve"}}
	case "GET /v1/admin/groups/db-orders-ro/history":
		out = api.GroupHistory{Group: "db-orders-ro", Memberships: []api.Membership{{User: "eve", Joined: now, Source: "scim"}}}
	case "GET /v1/admin/access/rules":
		out = api.AccessRules{PermissionSets: []api.PermissionSetRule{{Name: "reader", Access: "ro", TokenTTL: "15m"}},
			Assignments: []api.AssignmentRule{{Group: "db-orders-ro", PermissionSet: "reader", Access: "ro", Databases: []string{"orders"}, Policy: "assignments[0]"}}}
	case "GET /v1/admin/access/explain":
		out = api.Explanation{User: r.URL.Query().Get("user"), Database: r.URL.Query().Get("db"),
			Decisions: []api.AccessDecision{{Access: "ro", Allowed: true, Reason: "member of db-orders-ro", PermissionSet: "reader", Group: "db-orders-ro", Policy: "assignments[0]"}}}
	case "GET /v1/admin/access/who":
		out = api.WhoAnswer{Database: r.URL.Query().Get("db"), At: now, Holders: []api.Holder{{User: "eve", Access: "ro", Group: "db-orders-ro"}}}
	case "GET /v1/admin/audit":
		out = api.AuditPage{Events: []api.AuditEvent{{Seq: 1, Time: now, Type: "query", User: "eve", Database: "orders", Query: "SELECT '<script>'"}}}
	case "GET /v1/admin/access/findings":
		out = api.AccessFindings{Pattern: "db-{database}-{permission_set}", Groups: 2, Assigned: 1,
			Findings: []api.AccessFinding{{Group: "misc", Kind: "no_match", Reason: "does not match"}}}
	default:
		fail(http.StatusNotFound, "no route "+r.URL.Path)
		return
	}
	json.NewEncoder(w).Encode(out)
}

func newAdminPortal(t *testing.T) (*adminAPI, http.Handler) {
	t.Helper()
	p, err := New(Options{SignInPath: "/signin/start"})
	if err != nil {
		t.Fatal(err)
	}
	f := &adminAPI{}
	return f, p.Handler(f)
}

// adminRequest sends a request as the session whose credential is cred;
// a form is posted with that session's CSRF token unless it has one.
func adminRequest(h http.Handler, method, target string, form url.Values, cred string) *httptest.ResponseRecorder {
	var r *http.Request
	if method == http.MethodPost {
		if form == nil {
			form = url.Values{}
		}
		r = httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		r = httptest.NewRequest(method, target, nil)
	}
	r.AddCookie(&http.Cookie{Name: CookieName, Value: cred})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// routeTarget is a request line for an admin route's pattern: method
// and a path with every wildcard filled in.
func routeTarget(pattern string) (method, path string) {
	method, path, _ = strings.Cut(pattern, " ")
	path = strings.ReplaceAll(path, "{$}", "")
	path = strings.ReplaceAll(path, "{name}", "eve")
	return method, path
}

// A person who is not an administrator gets the problem page saying who
// administrators are, with 403, on every admin route; the form posts
// carry a valid CSRF token, so the refusal is the gate's.
func TestAdminRoutesRefuseNonAdministrators(t *testing.T) {
	f, h := newAdminPortal(t)
	for _, rt := range adminRoutes {
		method, path := routeTarget(rt.pattern)
		form := url.Values{"csrf": {formToken(personCred)}, "kind": {"live"}, "id": {"g1"}}
		w := adminRequest(h, method, path, form, personCred)
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "administrators.groups") {
			t.Errorf("%s as a non-administrator: %d\n%s", rt.pattern, w.Code, w.Body.String())
		}
	}
	for _, req := range f.got() {
		if strings.HasPrefix(req, "POST /v1/admin/") || strings.HasPrefix(req, "DELETE /v1/admin/") {
			t.Errorf("a non-administrator's request reached the admin API: %s", req)
		}
	}
	// Every admin route really is one of the portal's: a pattern that
	// does not match would make the walk above prove nothing.
	for _, rt := range adminRoutes {
		if !strings.HasPrefix(rt.pattern, "GET /admin/") && !strings.HasPrefix(rt.pattern, "POST /admin/") {
			t.Errorf("admin route %q is not under /admin/", rt.pattern)
		}
	}
}

// The API's own refusal reaches the problem page too, when whoami and
// the admin API disagree.
func TestAdminAPIRefusalShown(t *testing.T) {
	p, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := p.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/whoami" {
			json.NewEncoder(w).Encode(api.WhoAmI{User: "bob", Administrator: true})
			return
		}
		w.WriteHeader(http.StatusForbidden)
		json.NewEncoder(w).Encode(api.Error{Error: "bob is no longer an administrator"})
	}))
	w := adminRequest(h, "GET", "/admin/people", nil, adminCred)
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "bob is no longer an administrator") {
		t.Errorf("API refusal: %d\n%s", w.Code, w.Body.String())
	}
}

// An administrator sees every page, with the administration navigation
// and the elements the browser tests look for.
func TestAdminPages(t *testing.T) {
	_, h := newAdminPortal(t)
	pages := map[string][]string{
		"/admin/":                                 {`href="/admin/posture"`, "Naming rule findings"},
		"/admin/posture":                          {`id="standing"`, `id="credential-age"`, `id="time-to-revoke"`, `id="time-to-revoke-warning"`, "superuser with a password", "kg_eve"},
		"/admin/people":                           {`href="/admin/people/eve"`, "eve@example.com"},
		"/admin/people?q=EVE@":                    {"eve@example.com"},
		"/admin/people/eve":                       {`id="disable-person"`, `action="/admin/people/eve/disable"`, `id="end-live-g1"`, `value="/admin/people/eve"`, `href="/admin/groups/db-orders-ro"`},
		"/admin/groups":                           {`href="/admin/groups/db-orders-ro"`},
		"/admin/groups/db-orders-ro":              {`id="members"`, `id="history"`, `name="at"`},
		"/admin/access":                           {"<caption>Permission sets", "assignments[0]", "No deny rule is configured."},
		"/admin/explain":                          {`<label for="user">`, "Name a person and a database"},
		"/admin/explain?user=eve&database=orders": {"member of db-orders-ro", "allowed"},
		"/admin/who?database=orders":              {`id="holders"`, "Nobody connected in that window."},
		"/admin/review":                           {`href="/admin/review.csv"`, `href="/admin/review.json"`},
		"/admin/audit":                            {`id="audit-events"`, "SELECT &#39;&lt;script&gt;&#39;", "last 24 hours"},
		"/admin/sessions":                         {`id="end-live-g1"`, `id="end-signin-s-eve"`},
		"/admin/findings":                         {"no_match"},
	}
	for path, wants := range pages {
		w := adminRequest(h, "GET", path, nil, adminCred)
		body := w.Body.String()
		if w.Code != http.StatusOK {
			t.Errorf("%s: %d\n%s", path, w.Code, body)
			continue
		}
		for _, want := range append(wants, `aria-label="Administration"`, `href="/admin/" aria-current="page"`) {
			if !strings.Contains(body, want) {
				t.Errorf("%s lacks %s", path, want)
			}
		}
		if n := strings.Count(body, "<h1"); n != 1 {
			t.Errorf("%s has %d h1", path, n)
		}
	}
	// The people filter leaves out who does not match.
	if body := adminRequest(h, "GET", "/admin/people?q=nobody", nil, adminCred).Body.String(); strings.Contains(body, "/admin/people/eve") || !strings.Contains(body, `id="no-people"`) {
		t.Errorf("filtered people list:\n%s", body)
	}
	// The audit search passes its filters, the text among them, to the API.
	f, h := newAdminPortal(t)
	adminRequest(h, "GET", "/admin/audit?q=drop+table&user=eve&since=2026-12-01T10:00", nil, adminCred)
	var found bool
	for _, req := range f.got() {
		if strings.HasPrefix(req, "GET /v1/admin/audit?") && strings.Contains(req, "q=drop+table") && strings.Contains(req, "since=2026-12-01T10%3A00%3A00Z") && strings.Contains(req, "user=eve") {
			found = true
		}
	}
	if !found {
		t.Errorf("audit search requests: %q", f.got())
	}
}

// Names from the identity provider are text on every page that shows
// them, never markup.
func TestAdminNamesAreEscaped(t *testing.T) {
	_, h := newAdminPortal(t)
	for _, path := range []string{"/admin/people", "/admin/people/eve"} {
		body := adminRequest(h, "GET", path, nil, adminCred).Body.String()
		if strings.Contains(body, "<img") || strings.Contains(body, "<b>ops") || !strings.Contains(body, "&lt;img src=x onerror=alert(1)&gt;") {
			t.Errorf("%s does not escape the display name:\n%s", path, body)
		}
	}
}

// Disabling a person needs the session's form token; with it, the API's
// disable endpoint is called and the page says so.
func TestAdminDisableNeedsFormToken(t *testing.T) {
	f, h := newAdminPortal(t)
	w := adminRequest(h, "POST", "/admin/people/eve/disable", url.Values{}, adminCred)
	if w.Code != http.StatusForbidden {
		t.Errorf("disable without the form token: %d", w.Code)
	}
	w = adminRequest(h, "POST", "/admin/people/eve/disable", url.Values{"csrf": {formToken(personCred)}}, adminCred)
	if w.Code != http.StatusForbidden {
		t.Errorf("disable with another session's form token: %d", w.Code)
	}
	for _, req := range f.got() {
		if strings.HasPrefix(req, "POST ") {
			t.Fatalf("refused form reached the API: %s", req)
		}
	}
	w = adminRequest(h, "POST", "/admin/people/eve/disable", url.Values{"csrf": {formToken(adminCred)}}, adminCred)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/admin/people/eve?done=disabled" {
		t.Errorf("disable: %d to %q", w.Code, w.Header().Get("Location"))
	}
	if got := f.got(); got[len(got)-1] != "POST /v1/admin/users/eve/disable" {
		t.Errorf("disable called %q", got)
	}
	w = adminRequest(h, "POST", "/admin/people/eve/enable", url.Values{"csrf": {formToken(adminCred)}}, adminCred)
	if w.Header().Get("Location") != "/admin/people/eve?done=enabled" {
		t.Errorf("enable: %d to %q", w.Code, w.Header().Get("Location"))
	}
	if body := adminRequest(h, "GET", "/admin/people/eve?done=disabled", nil, adminCred).Body.String(); !strings.Contains(body, notices["disabled"]) {
		t.Errorf("the person page does not say the person was disabled")
	}
}

// Ending a session calls the admin API for its kind and goes back to the
// administration page the form names, and only to one.
func TestAdminEndSession(t *testing.T) {
	f, h := newAdminPortal(t)
	csrf := formToken(adminCred)
	for _, c := range []struct {
		form url.Values
		call string
		to   string
	}{
		{url.Values{"kind": {"live"}, "id": {"g1"}, "back": {"/admin/people/eve"}}, "DELETE /v1/admin/live/g1", "/admin/people/eve?done=live-ended"},
		{url.Values{"kind": {"signin"}, "id": {"s-eve"}}, "DELETE /v1/admin/sessions/s-eve", "/admin/sessions?done=session-ended"},
		{url.Values{"kind": {"live"}, "id": {"g1"}, "back": {"https://evil.example/admin/"}}, "DELETE /v1/admin/live/g1", "/admin/sessions?done=live-ended"},
		{url.Values{"kind": {"live"}, "id": {"g1"}, "back": {"/admin/../sessions"}}, "DELETE /v1/admin/live/g1", "/admin/sessions?done=live-ended"},
		{url.Values{"kind": {"live"}, "id": {"g1"}, "back": {"/sessions"}}, "DELETE /v1/admin/live/g1", "/admin/sessions?done=live-ended"},
	} {
		c.form.Set("csrf", csrf)
		w := adminRequest(h, "POST", "/admin/sessions/end", c.form, adminCred)
		got := f.got()
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != c.to || got[len(got)-1] != c.call {
			t.Errorf("%v: %d to %q after %q; want %q after %q", c.form, w.Code, w.Header().Get("Location"), got[len(got)-1], c.to, c.call)
		}
	}
	if w := adminRequest(h, "POST", "/admin/sessions/end", url.Values{"csrf": {csrf}, "kind": {"other"}, "id": {"x"}}, adminCred); w.Code != http.StatusBadRequest {
		t.Errorf("unknown kind: %d", w.Code)
	}
}

// The review downloads are attachments with the portal's headers, and
// the CSV keeps a cell a spreadsheet would run as text.
func TestAdminReviewDownloads(t *testing.T) {
	_, h := newAdminPortal(t)
	w := adminRequest(h, "GET", "/admin/review.csv", nil, adminCred)
	hd := w.Header()
	if w.Code != http.StatusOK || !strings.HasPrefix(hd.Get("Content-Type"), "text/csv") ||
		!strings.HasPrefix(hd.Get("Content-Disposition"), "attachment;") || hd.Get("Cache-Control") != "no-store" ||
		hd.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(hd.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("CSV: %d %v", w.Code, hd)
	}
	rows, err := csv.NewReader(w.Body).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"user", "database", "access", "group", "permission_set", "require_mfa"}, {"eve", "orders", "ro", "'=cmd|calc", "reader", "true"}}
	if len(rows) != 2 || strings.Join(rows[0], ",") != strings.Join(want[0], ",") || strings.Join(rows[1], ",") != strings.Join(want[1], ",") {
		t.Errorf("CSV rows %q, want %q", rows, want)
	}
	w = adminRequest(h, "GET", "/admin/review.json", nil, adminCred)
	var holders []api.Holder
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" || !strings.HasPrefix(w.Header().Get("Content-Disposition"), "attachment;") ||
		json.Unmarshal(w.Body.Bytes(), &holders) != nil || len(holders) != 1 || holders[0].Group != "=cmd|calc" {
		t.Errorf("JSON: %d %v %s", w.Code, w.Header(), w.Body.String())
	}
}

// adminBack returns only to a page of the administration.
func TestAdminBack(t *testing.T) {
	for in, want := range map[string]string{
		"/admin/people/eve":         "/admin/people/eve",
		"/admin/people/a%2Fb":       "/admin/people/a%2Fb",
		"":                          "/admin/sessions",
		"/admin/sessions?x=1":       "/admin/sessions",
		"//evil.example/admin/":     "/admin/sessions",
		"/admin/..":                 "/admin/sessions",
		"/admin//evil":              "/admin/sessions",
		"/admin/people/x\r\nSet: 1": "/admin/sessions",
		"/administrator":            "/admin/sessions",
	} {
		if got := adminBack(in); got != want {
			t.Errorf("adminBack(%q) = %q, want %q", in, got, want)
		}
	}
}
