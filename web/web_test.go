package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/identity"
)

const testCred = "ks_test-credential"

// fakeAPI answers the API calls the person's pages make, as the API
// would for a session whose credential is testCred; it records the
// requests it got.
type fakeAPI struct {
	me       api.WhoAmI
	requests []*http.Request
	bodies   []string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body strings.Builder
	if r.Body != nil {
		b := make([]byte, 4096)
		n, _ := r.Body.Read(b)
		body.Write(b[:n])
	}
	f.requests, f.bodies = append(f.requests, r), append(f.bodies, body.String())
	if r.Header.Get("Authorization") != "Bearer "+testCred {
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(api.Error{Error: "your session has expired: sign in again"})
		return
	}
	var out any
	switch r.Method + " " + r.URL.Path {
	case "GET /v1/whoami":
		out = f.me
	case "GET /v1/databases":
		out = []api.DatabaseAccess{{Database: "orders", Access: "ro", PermissionSet: "analyst", Reason: "member of analysts", Engine: "postgres", Gateway: "db.example.com:5433", TokenTTL: "15m0s"}}
	case "POST /v1/tokens":
		out = api.TokenResponse{Token: "v4.public.secret-token", User: f.me.User, Database: "orders", Access: "ro", ExpiresAt: time.Now().Add(15 * time.Minute)}
	case "POST /v1/logout":
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(api.Error{Error: "no route " + r.URL.Path})
		return
	}
	json.NewEncoder(w).Encode(out)
}

func newTestPortal(t *testing.T, opts Options) (*fakeAPI, http.Handler) {
	t.Helper()
	if opts.SignInPath == "" {
		opts.SignInPath = "/signin/start"
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAPI{me: api.WhoAmI{User: "alice", SessionID: "s1"}}
	return f, p.Handler(f)
}

func do(h http.Handler, method, target string, form url.Values, cred string) *httptest.ResponseRecorder {
	var r *http.Request
	if form != nil {
		r = httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		r = httptest.NewRequest(method, target, nil)
	}
	if cred != "" {
		r.AddCookie(&http.Cookie{Name: CookieName, Value: cred})
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// Every page carries the headers that keep it from running or loading
// anything that is not keygate's, being framed, or being stored.
func TestPagesCarrySecurityHeaders(t *testing.T) {
	_, h := newTestPortal(t, Options{SAML: true})
	for _, cred := range []string{"", testCred} {
		w := do(h, "GET", "/", nil, cred)
		hd := w.Header()
		csp := hd.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "form-action 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("signed in %v: CSP %q lacks %q", cred != "", csp, want)
			}
		}
		if strings.Contains(csp, "unsafe") {
			t.Errorf("CSP %q allows unsafe sources", csp)
		}
		if hd.Get("Cache-Control") != "no-store" || hd.Get("X-Frame-Options") != "DENY" || hd.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("headers %v", hd)
		}
	}
}

func TestSignInPage(t *testing.T) {
	_, h := newTestPortal(t, Options{SAML: true, OIDC: true})
	w := do(h, "GET", "/?next=/sessions", nil, "")
	body := w.Body.String()
	for _, want := range []string{`href="/signin/start?method=saml&amp;next=%2Fsessions"`, `href="/signin/start?method=oidc&amp;next=%2Fsessions"`} {
		if !strings.Contains(body, want) {
			t.Errorf("sign-in page lacks %s:\n%s", want, body)
		}
	}
	// A next that leaves the site is not passed on.
	if body := do(h, "GET", "/?next=//evil.example", nil, "").Body.String(); !strings.Contains(body, "next=%2F\"") {
		t.Errorf("next //evil.example kept:\n%s", body)
	}
	_, h = newTestPortal(t, Options{})
	if body := do(h, "GET", "/", nil, "").Body.String(); !strings.Contains(body, `id="signin-not-configured"`) || !strings.Contains(body, "sso") {
		t.Errorf("without sign-in configured:\n%s", body)
	}
	// Other pages send a visitor to sign in first, and back afterwards.
	if w := do(h, "GET", "/sessions", nil, ""); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/?next=/sessions" {
		t.Errorf("GET /sessions signed out: %d %s", w.Code, w.Header().Get("Location"))
	}
}

// A session the API no longer accepts signs the browser out, with the
// API's reason.
func TestEndedSessionShowsSignIn(t *testing.T) {
	_, h := newTestPortal(t, Options{SAML: true})
	w := do(h, "GET", "/", nil, "ks_revoked")
	if !strings.Contains(w.Body.String(), "your session has expired") {
		t.Errorf("page:\n%s", w.Body.String())
	}
	if c := w.Result().Cookies(); len(c) != 1 || c[0].Name != CookieName || c[0].MaxAge >= 0 {
		t.Errorf("cookie not cleared: %v", c)
	}
}

func TestSignedInSetsCookie(t *testing.T) {
	p, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	for next, want := range map[string]string{"/sessions": "/sessions", "//evil.example/x": "/", "https://evil.example": "/", `/\evil`: "/"} {
		w := httptest.NewRecorder()
		exp := time.Now().Add(time.Hour)
		p.SignedIn(w, httptest.NewRequest("POST", "/saml/acs", nil), testCred, identity.Session{Expires: exp}, next)
		if got := w.Header().Get("Location"); got != want {
			t.Errorf("next %q: went to %q, want %q", next, got, want)
		}
		c := w.Result().Cookies()
		if len(c) != 1 || c[0].Name != CookieName || c[0].Value != testCred || !c[0].HttpOnly || !c[0].Secure || c[0].SameSite != http.SameSiteLaxMode || c[0].Path != "/" {
			t.Fatalf("cookie %+v", c)
		}
	}
}

// A form is acted on only with the session's form token, and only from
// keygate's own pages.
func TestFormsNeedTokenAndSameOrigin(t *testing.T) {
	f, h := newTestPortal(t, Options{})
	home := do(h, "GET", "/", nil, testCred).Body.String()
	token := formToken(testCred)
	if !strings.Contains(home, `name="csrf" value="`+token+`"`) {
		t.Fatalf("home page holds no form token:\n%s", home)
	}
	form := url.Values{"database": {"orders"}, "access": {"ro"}}
	if w := do(h, "POST", "/token", form, testCred); w.Code != http.StatusForbidden {
		t.Errorf("without the form token: %d", w.Code)
	}
	form.Set("csrf", formToken("ks_someone-else"))
	if w := do(h, "POST", "/token", form, testCred); w.Code != http.StatusForbidden {
		t.Errorf("with another session's form token: %d", w.Code)
	}
	form.Set("csrf", token)
	r := httptest.NewRequest("POST", "/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	r.AddCookie(&http.Cookie{Name: CookieName, Value: testCred})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden {
		t.Errorf("from another site: %d", w.Code)
	}
	for _, req := range f.requests {
		if req.URL.Path == "/v1/tokens" {
			t.Fatal("a refused form reached the token endpoint")
		}
	}
}

// The token page shows the token and settings that verify the gateway,
// and is neither stored nor reached through a URL that holds the token.
func TestTokenPage(t *testing.T) {
	f, h := newTestPortal(t, Options{})
	w := do(h, "POST", "/token", url.Values{"database": {"orders"}, "access": {"ro"}, "csrf": {formToken(testCred)}}, testCred)
	body := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(body, `value="v4.public.secret-token"`) {
		t.Fatalf("%d:\n%s", w.Code, body)
	}
	if w.Header().Get("Location") != "" || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", w.Header())
	}
	for _, want := range []string{
		"host=db.example.com port=5433 dbname=orders user=alice sslmode=verify-full sslrootcert=keygate-ca.pem",
		"jdbc:postgresql://db.example.com:5433/orders?sslmode=verify-full&amp;sslrootcert=keygate-ca.pem",
		`href="/v1/ca.pem" download="keygate-ca.pem"`,
		`id="countdown" data-expires="`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("token page lacks %s", want)
		}
	}
	if strings.Count(body, "v4.public.secret-token") != 1 {
		t.Errorf("the token is on the page %d times, want once (in the copy field)", strings.Count(body, "v4.public.secret-token"))
	}
	var req map[string]string
	for i, r := range f.requests {
		if r.URL.Path == "/v1/tokens" {
			json.Unmarshal([]byte(f.bodies[i]), &req)
		}
	}
	if req["database"] != "orders" || req["access"] != "ro" {
		t.Errorf("token request %v", req)
	}
}

// Names come from the identity provider: the page shows them as text.
func TestNamesAreEscaped(t *testing.T) {
	f, h := newTestPortal(t, Options{})
	f.me.User = `<img src=x onerror=alert(1)>`
	body := do(h, "GET", "/", nil, testCred).Body.String()
	if strings.Contains(body, "<img src=x") || !strings.Contains(body, "&lt;img src=x onerror=alert(1)&gt;") {
		t.Errorf("user name not escaped:\n%s", body)
	}
}
