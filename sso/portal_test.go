package sso_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/sso"
)

// Browser sign-in for the portal: /signin/start sends the browser to the
// identity provider with no user code, and the provider's answer ends at
// the portal's SignedIn with a session of the store, in the browser that
// started it and nowhere else.

const (
	issuer       = "https://op.example"
	portalCookie = "keygate_portal"
)

// portalCall is one SignedIn call.
type portalCall struct {
	credential string
	session    identity.Session
	next       string
}

// fakePortal does what the portal does with a sign-in: it sets its own
// cookie and sends the browser to next.
type fakePortal struct {
	mu    sync.Mutex
	calls []portalCall
}

var _ sso.Browser = (*fakePortal)(nil)

// Calls are the SignedIn calls so far.
func (p *fakePortal) Calls() []portalCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

func (p *fakePortal) SignedIn(w http.ResponseWriter, r *http.Request, credential string, s identity.Session, next string) {
	p.mu.Lock()
	p.calls = append(p.calls, portalCall{credential, s, next})
	p.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: portalCookie, Value: "portal-session", Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// portalEnv is aliceEnv with a portal.
func portalEnv(t *testing.T, configure func(*sso.Options)) (*env, *fakePortal) {
	p := &fakePortal{}
	e := aliceEnv(t, func(o *sso.Options) {
		o.Browser, o.OIDCIssuer = p, issuer
		if configure != nil {
			configure(o)
		}
	})
	return e, p
}

// browserStart opens /signin/start with q, as a link on the portal's page
// does: a plain GET, no Origin.
func (e *env) browserStart(q url.Values) *httptest.ResponseRecorder {
	return e.serve(httptest.NewRequest(http.MethodGet, baseURL+sso.PathBrowserStart+"?"+q.Encode(), nil))
}

// portalStart starts a portal sign-in and returns the attempt cookie and
// where the browser is sent.
func (e *env) portalStart(q url.Values) (*http.Cookie, *url.URL) {
	e.t.Helper()
	rec := e.browserStart(q)
	if rec.Code != http.StatusSeeOther {
		e.t.Fatalf("start %v: %d %s", q, rec.Code, pageText(rec))
	}
	c := cookie(rec, cookieName)
	if c == nil || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteNoneMode {
		e.t.Fatalf("start %v: attempt cookie %+v, want Secure, HttpOnly, SameSite=None", q, c)
	}
	loc, err := url.Parse(rec.Header().Get("Location"))
	if err != nil {
		e.t.Fatal(err)
	}
	return c, loc
}

// wantSignedIn checks that the last page handed the portal a session for
// user that the store holds, with next, and returns it.
func (e *env) wantSignedIn(p *fakePortal, rec *httptest.ResponseRecorder, user, method, next string) portalCall {
	e.t.Helper()
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != next {
		e.t.Fatalf("last page %d to %q, want the portal's redirect to %q: %s", rec.Code, rec.Header().Get("Location"), next, pageText(rec))
	}
	if len(p.Calls()) == 0 {
		e.t.Fatal("SignedIn not called")
	}
	call := p.Calls()[len(p.Calls())-1]
	if call.next != next {
		e.t.Errorf("SignedIn next %q, want %q", call.next, next)
	}
	s := sessionOf(e.t, e, call.credential)
	if s.ID != call.session.ID || s.User != user || s.Source != method || !s.ValidAt(e.now) {
		e.t.Errorf("stored session %+v for SignedIn's %+v", s, call.session)
	}
	if strings.Contains(rec.Header().Get("Location"), call.credential) {
		e.t.Error("the credential is in a URL")
	}
	return call
}

func TestPortalSignIn(t *testing.T) {
	for _, method := range []string{"saml", "oidc"} {
		t.Run(method, func(t *testing.T) {
			e, p := portalEnv(t, nil)
			c, loc := e.portalStart(url.Values{"method": {method}, "next": {"/databases?engine=postgres"}})
			var rec *httptest.ResponseRecorder
			answer := func(c *http.Cookie) *httptest.ResponseRecorder {
				if method == "saml" {
					if loc.Host != "idp.example" || loc.Query().Get("RelayState") != c.Value {
						t.Fatalf("redirect to %s, want the identity provider with RelayState = the cookie", loc)
					}
					return e.acs(c, loc.Query().Get("RelayState"), "response")
				}
				if loc.Host != "op.example" || loc.Query().Get("state") != c.Value {
					t.Fatalf("redirect to %s, want the provider with state = the cookie", loc)
				}
				return e.callback(c, url.Values{"state": {loc.Query().Get("state")}, "code": {"c0de"}})
			}
			rec = answer(c)
			e.wantSignedIn(p, rec, "alice", method, "/databases?engine=postgres")
			if c := cookie(rec, cookieName); c == nil || c.MaxAge >= 0 {
				t.Errorf("the attempt cookie is not cleared: %v", c)
			}
			if cookie(rec, portalCookie) == nil {
				t.Error("the portal's cookie is not set")
			}
			if method == "saml" && (len(e.saml.responses) != 1 || e.saml.responses[0].inResponseTo != e.saml.requestIDs[0]) {
				t.Errorf("HandleResponse calls %+v, want one for request %s", e.saml.responses, e.saml.requestIDs[0])
			}
			evs := e.events(audit.SignIn)
			if len(evs) != 1 {
				t.Fatalf("%d signin events, want 1", len(evs))
			}
			if d := detail(t, evs[0]); d["client"] != "portal" || d["method"] != method || evs[0].Client != clientAddr {
				t.Errorf("signin event %+v detail %v", evs[0], d)
			}
			// Used once: the same answer again is refused, with a way back.
			wantPage(t, answer(c), http.StatusForbidden, "Sign-in refused", "took too long", `href="/"`)
			if len(p.Calls()) != 1 {
				t.Errorf("SignedIn called %d times, want 1", len(p.Calls()))
			}
			d := detail(t, e.wantRefusals("unknown_request")[0])
			if d["method"] != method {
				t.Errorf("refusal detail %v", d)
			}
		})
	}
}

// TestPortalNext checks that only a path of keygate's own survives as
// next: anything a browser could take to another site becomes "/".
func TestPortalNext(t *testing.T) {
	for i, tc := range []struct{ next, want string }{
		{"/databases", "/databases"},
		{"/databases/orders?level=ro#top", "/databases/orders?level=ro#top"},
		{"/", "/"},
		{"", "/"},
		{"//evil.com", "/"},
		{"//evil.com/databases", "/"},
		{"https://evil.com", "/"},
		{"https://evil.com/databases", "/"},
		{baseURL + "/databases", "/"}, // next is a path; only target_link_uri and RelayState name URLs
		{"/\\evil.com", "/"},
		{"\\\\evil.com", "/"},
		{"/\t/evil.com", "/"},
		{"/\n/evil.com", "/"},
		{" /databases", "/"},
		{"javascript:alert(1)", "/"},
		{"databases", "/"},
		{"/" + strings.Repeat("a", 4096), "/"},
	} {
		// By number: a test's name becomes its store's path.
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Logf("next %q", tc.next)
			e, p := portalEnv(t, nil)
			c, loc := e.portalStart(url.Values{"method": {"saml"}, "next": {tc.next}})
			e.wantSignedIn(p, e.acs(c, loc.Query().Get("RelayState"), "response"), "alice", "saml", tc.want)
		})
	}
}

// TestPortalAttemptBindsTheBrowser checks that a portal sign-in finishes
// only in the browser that started it: a victim's browser cannot be made
// to finish an attacker's attempt, nor the other way round.
func TestPortalAttemptBindsTheBrowser(t *testing.T) {
	e, p := portalEnv(t, nil)
	c, loc := e.portalStart(url.Values{"method": {"saml"}})
	relay := loc.Query().Get("RelayState")
	wantPage(t, e.acs(nil, relay, "response"), http.StatusForbidden, "Sign-in refused", "not started in this browser", "keygate's sign-in page", `href="/"`)
	wantPage(t, e.acs(&http.Cookie{Name: cookieName, Value: otherFirst(c.Value)}, relay, "response"), http.StatusForbidden, "not started in this browser")
	if len(e.saml.responses) != 0 || len(p.Calls()) != 0 {
		t.Fatal("an answer from another browser was validated or signed in")
	}
	oc, oloc := e.portalStart(url.Values{"method": {"oidc"}})
	wantPage(t, e.callback(nil, url.Values{"state": {oloc.Query().Get("state")}, "code": {"c0de"}}), http.StatusForbidden, "not started in this browser")
	if len(e.oidc.exchanges) != 0 {
		t.Fatal("a code was redeemed for another browser")
	}
	e.wantRefusals("browser_mismatch", "browser_mismatch", "browser_mismatch")
	// The browsers that started them still can finish them.
	e.wantSignedIn(p, e.acs(c, relay, "response"), "alice", "saml", "/")
	e.wantSignedIn(p, e.callback(oc, url.Values{"state": {oloc.Query().Get("state")}, "code": {"c0de"}}), "alice", "oidc", "/")
}

// TestPortalRefusal checks that a refused portal sign-in shows why, with
// a link back to the portal, and makes no session.
func TestPortalRefusal(t *testing.T) {
	e, p := portalEnv(t, nil)
	alice, err := e.store.GetUserByName(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	c, loc := e.portalStart(url.Values{"method": {"oidc"}})
	q := url.Values{"state": {loc.Query().Get("state")}, "error": {"access_denied"}, "error_description": {`<a href="https://evil.example">click</a>`}}
	rec := e.callback(c, q)
	wantPage(t, rec, http.StatusForbidden, "Sign-in refused", "access_denied", `<a id="back" href="/">Back to keygate</a>`)
	if strings.Contains(rec.Body.String(), `<a href="https://evil.example">`) {
		t.Error("the provider's text is not escaped")
	}
	if len(p.Calls()) != 0 {
		t.Error("a refused sign-in reached the portal")
	}
	if d := detail(t, e.wantRefusals("provider_error")[0]); d["client"] != "portal" {
		t.Errorf("refusal detail %v", d)
	}

	// A person keygate refuses (disabled) gets the same page.
	if _, err := e.store.UpdateUser(t.Context(), alice.ID, func(u identity.User) (identity.User, error) { u.Active = false; return u, nil }); err != nil {
		t.Fatal(err)
	}
	c, loc = e.portalStart(url.Values{"method": {"saml"}})
	wantPage(t, e.acs(c, loc.Query().Get("RelayState"), "response"), http.StatusForbidden, "alice is disabled", `href="/"`)
	e.wantRefusals("provider_error", "user_disabled")
	if len(e.events(audit.SignIn)) != 0 {
		t.Error("a refused sign-in was audited as a sign-in")
	}

	// Device flows' refusals send the person back to the terminal, not to
	// the portal.
	dc := e.deviceCode()
	rec = e.signInSAML(dc.UserCode, sso.Identity{}, sso.Refuse("bad_signature", nil, "the signature does not verify"))
	wantPage(t, rec, http.StatusForbidden, "the signature does not verify")
	if strings.Contains(rec.Body.String(), `id="back"`) {
		t.Error("a device flow's refusal links to the portal")
	}
}

func TestPortalStartRefusals(t *testing.T) {
	e, _ := portalEnv(t, func(o *sso.Options) { o.OIDC = nil })
	for _, q := range []url.Values{
		{"method": {"ldap"}},
		{},
		{"method": {"oidc"}}, // not configured here
	} {
		rec := e.browserStart(q)
		wantPage(t, rec, http.StatusBadRequest, "Unknown sign-in method", `href="/"`)
		if cookie(rec, cookieName) != nil || rec.Header().Get("Location") != "" {
			t.Errorf("%v: a refused start set a cookie or redirected: %v", q, rec.Header())
		}
	}
	if n := sso.PendingAttempts(e.svc); n != 0 {
		t.Errorf("%d attempts kept for refused starts", n)
	}
	// Only a POST starts a device flow's attempt; /signin/start is GET.
	r := httptest.NewRequest(http.MethodPost, baseURL+sso.PathBrowserStart+"?method=saml", nil)
	if rec := e.serve(r); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST %s: %d, want 405", sso.PathBrowserStart, rec.Code)
	}
}

// Without a portal there is no browser sign-in to start.
func TestNoPortalNoBrowserStart(t *testing.T) {
	e := aliceEnv(t, nil)
	if rec := e.browserStart(url.Values{"method": {"saml"}}); rec.Code != http.StatusNotFound {
		t.Errorf("%s without a portal: %d, want 404", sso.PathBrowserStart, rec.Code)
	}
}

// TestPortalIdPInitiated: with idp_initiated on, a sign-in from the
// identity provider's dashboard lands signed in on the portal, at the
// relay state's path when it is one of keygate's; with it off, it is
// refused with what to change and where to start instead.
func TestPortalIdPInitiated(t *testing.T) {
	t.Run("on", func(t *testing.T) {
		e, p := portalEnv(t, func(o *sso.Options) { o.IdPInitiated = true })
		for _, tc := range []struct{ relay, next string }{
			{"", "/"},
			{"/databases", "/databases"},
			{baseURL + "/databases?engine=mysql", "/databases?engine=mysql"},
			{"https://evil.com/databases", "/"},
			{"//evil.com", "/"},
			{"/\\evil.com", "/"},
			{"http://keygate.example:8443/databases", "/"}, // not keygate's scheme
		} {
			c := &http.Cookie{Name: cookieName, Value: "an attempt under way elsewhere"}
			rec := e.acs(c, tc.relay, "unsolicited")
			e.wantSignedIn(p, rec, "alice", "saml", tc.next)
			if got := e.saml.responses[len(e.saml.responses)-1]; got.inResponseTo != "" {
				t.Errorf("relay %q: validated as an answer to %q, want to no request", tc.relay, got.inResponseTo)
			}
			if cookie(rec, cookieName) != nil {
				t.Errorf("relay %q: the attempt cookie was touched", tc.relay)
			}
		}
		ev := e.events(audit.SignIn)[0]
		if d := detail(t, ev); d["client"] != "portal" || d["initiated_by"] != "idp" {
			t.Errorf("signin detail %v", d)
		}
		e.saml.identity, e.saml.err = sso.Identity{}, sso.Refuse("replayed", nil, "this response was used before")
		before := len(p.Calls())
		wantPage(t, e.acs(nil, "", "replayed"), http.StatusForbidden, "used before", `href="/"`)
		if len(p.Calls()) != before {
			t.Error("a refused response reached the portal")
		}
		if d := detail(t, e.wantRefusals("replayed")[0]); d["initiated_by"] != "idp" {
			t.Errorf("refusal detail %v", d)
		}
	})
	t.Run("off", func(t *testing.T) {
		e, p := portalEnv(t, nil)
		for _, relay := range []string{"", "/databases", baseURL + "/"} {
			wantPage(t, e.acs(nil, relay, "unsolicited"), http.StatusForbidden, "Sign-in refused",
				"did not ask for", "sso.saml.idp_initiated: true", "sign in at "+baseURL+"/", `href="/"`)
		}
		if len(e.saml.responses) != 0 || len(p.Calls()) != 0 {
			t.Error("an unsolicited response was validated or signed in")
		}
		e.wantRefusals("idp_initiated", "idp_initiated", "idp_initiated")
	})
}

// TestThirdPartyInitiatedLogin: the OpenID provider's dashboard starts a
// sign-in at keygate's initiate login URI, naming itself as iss and
// optionally a target_link_uri (OpenID Connect Core §4).
func TestThirdPartyInitiatedLogin(t *testing.T) {
	for _, tc := range []struct {
		name string
		q    url.Values
		next string
	}{
		{"issuer alone", url.Values{"iss": {issuer}}, "/"},
		{"issuer with slash", url.Values{"iss": {issuer + "/"}}, "/"},
		{"own target", url.Values{"iss": {issuer}, "target_link_uri": {baseURL + "/databases?engine=postgres"}}, "/databases?engine=postgres"},
		{"local target", url.Values{"iss": {issuer}, "target_link_uri": {"/databases"}}, "/databases"},
		{"foreign target", url.Values{"iss": {issuer}, "target_link_uri": {"https://evil.com/databases"}}, "/"},
		{"target with user info", url.Values{"iss": {issuer}, "target_link_uri": {"https://keygate.example:8443@evil.com/"}}, "/"},
		{"method and next ignored", url.Values{"iss": {issuer}, "method": {"saml"}, "next": {"/other"}}, "/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, p := portalEnv(t, nil)
			c, loc := e.portalStart(tc.q)
			if loc.Host != "op.example" || loc.Query().Get("state") != c.Value {
				t.Fatalf("redirect to %s, want the OpenID provider with state = the cookie", loc)
			}
			e.wantSignedIn(p, e.callback(c, url.Values{"state": {c.Value}, "code": {"c0de"}}), "alice", "oidc", tc.next)
		})
	}
	t.Run("foreign issuer", func(t *testing.T) {
		e, _ := portalEnv(t, nil)
		for _, iss := range []string{"https://evil.example", issuer + ".evil.example", "https://op.example/tenant"} {
			rec := e.browserStart(url.Values{"iss": {iss}, "target_link_uri": {baseURL + "/"}})
			wantPage(t, rec, http.StatusBadRequest, "Sign-in could not start", "identity provider keygate does not use", `href="/"`)
			if cookie(rec, cookieName) != nil || rec.Header().Get("Location") != "" {
				t.Errorf("iss %s: started a sign-in: %v", iss, rec.Header())
			}
		}
		if e.oidc.state != "" || sso.PendingAttempts(e.svc) != 0 {
			t.Error("a foreign issuer started an attempt")
		}
	})
	t.Run("no OIDC", func(t *testing.T) {
		e, _ := portalEnv(t, func(o *sso.Options) { o.OIDC = nil })
		wantPage(t, e.browserStart(url.Values{"iss": {issuer}}), http.StatusBadRequest, "identity provider keygate does not use")
	})
}

// TestPortalAttemptsBounded checks that anonymous GETs of /signin/start
// cannot grow the server's memory without limit: past the bound the
// oldest pending portal attempts are forgotten, the newest still work,
// device flows' attempts are untouched, and expired ones are swept.
func TestPortalAttemptsBounded(t *testing.T) {
	e, p := portalEnv(t, nil)
	dc := e.deviceCode()
	dcCookie, dcLoc := e.start(dc.UserCode, "saml")
	first, firstLoc := e.portalStart(url.Values{"method": {"saml"}})
	for range sso.MaxBrowserAttempts + 50 {
		if rec := e.browserStart(url.Values{"method": {"oidc"}}); rec.Code != http.StatusSeeOther {
			t.Fatalf("start: %d", rec.Code)
		}
	}
	last, lastLoc := e.portalStart(url.Values{"method": {"saml"}})
	if n := sso.PendingAttempts(e.svc); n != sso.MaxBrowserAttempts+1 {
		t.Errorf("%d pending attempts, want the portal's %d and the device flow's", n, sso.MaxBrowserAttempts)
	}
	wantPage(t, e.acs(first, firstLoc.Query().Get("RelayState"), "response"), http.StatusForbidden, "unknown or took too long")
	e.wantSignedIn(p, e.acs(last, lastLoc.Query().Get("RelayState"), "response"), "alice", "saml", "/")
	wantPage(t, e.acs(dcCookie, dcLoc.Query().Get("RelayState"), "response"), http.StatusOK, "Signed in as alice")

	// Expired attempts go with the next start.
	e.tick(11 * time.Minute)
	e.portalStart(url.Values{"method": {"saml"}})
	if n := sso.PendingAttempts(e.svc); n != 1 {
		t.Errorf("%d pending attempts after the others expired, want 1", n)
	}
}
