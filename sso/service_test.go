package sso_test

import (
	"context"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/sso"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/sqlite"
)

// The tests in this package drive the Service through its HTTP handlers
// the way `keygate login` and a browser do, on the real SQLite store and
// audit log. The connectors are stand-ins that return the outcome a test
// chooses: the SAML and OIDC protocols themselves are tested in sso/saml
// and sso/oidc, and end to end in e2e.

const (
	baseURL = "https://keygate.example:8443"
	// clientAddr is where every test request comes from.
	clientAddr = "192.0.2.7:50123"
	cookieName = "keygate_signin"
)

var userCodeRE = regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`)

// fakeSAML is a SAML identity provider whose responses say whatever the
// test set in identity and err.
type fakeSAML struct {
	identity sso.Identity
	err      error
	// requestIDs are the AuthnRequest IDs handed out, in order.
	requestIDs []string
	// responses are the HandleResponse calls, in order.
	responses []samlCall
}

type samlCall struct{ response, inResponseTo string }

var _ sso.SAMLConnector = (*fakeSAML)(nil)

func (f *fakeSAML) AuthnRequestURL(relayState string) (string, string, error) {
	id := "_req" + strconv.Itoa(len(f.requestIDs)+1)
	f.requestIDs = append(f.requestIDs, id)
	return "https://idp.example/sso?" + url.Values{"SAMLRequest": {id}, "RelayState": {relayState}}.Encode(), id, nil
}

func (f *fakeSAML) HandleResponse(_ context.Context, response, inResponseTo string) (sso.Identity, error) {
	f.responses = append(f.responses, samlCall{response, inResponseTo})
	return f.identity, f.err
}

func (f *fakeSAML) Metadata() ([]byte, error) { return []byte("<EntityDescriptor/>"), nil }

// fakeOIDC is an OpenID Connect provider whose ID tokens say whatever the
// test set in identity and err.
type fakeOIDC struct {
	identity sso.Identity
	err      error
	// state, nonce and verifier are those of the last AuthCodeURL.
	state, nonce, verifier string
	exchanges              []oidcCall
}

type oidcCall struct{ code, verifier, nonce string }

var _ sso.OIDCConnector = (*fakeOIDC)(nil)

func (f *fakeOIDC) AuthCodeURL(state, nonce, verifier string) string {
	f.state, f.nonce, f.verifier = state, nonce, verifier
	return "https://op.example/authorize?" + url.Values{"state": {state}, "nonce": {nonce}}.Encode()
}

func (f *fakeOIDC) Exchange(_ context.Context, code, verifier, nonce string) (sso.Identity, error) {
	f.exchanges = append(f.exchanges, oidcCall{code, verifier, nonce})
	return f.identity, f.err
}

// env is a Service with both connectors, on a store and audit log of its
// own, at a time the test moves.
type env struct {
	t     *testing.T
	now   time.Time
	store *sqlite.Store
	audit *audit.Log
	mux   *http.ServeMux
	svc   *sso.Service
	saml  *fakeSAML
	oidc  *fakeOIDC
}

// newEnv makes an env; configure may change the options (remove a
// connector, say) before the Service is made.
func newEnv(t *testing.T, configure func(*sso.Options)) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC), saml: &fakeSAML{}, oidc: &fakeOIDC{}}
	clock := func() time.Time { return e.now }
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keygate.db"), clock)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	al, err := audit.Open(ctx, st, log, clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close(); st.Close() })
	e.store, e.audit = st, al
	opts := sso.Options{Store: st, Audit: al, Log: log, Now: clock, BaseURL: baseURL,
		MatchBy: config.MatchUserName, SAML: e.saml, OIDC: e.oidc}
	if configure != nil {
		configure(&opts)
	}
	e.svc = sso.New(opts)
	e.mux = http.NewServeMux()
	e.svc.Register(e.mux)
	return e
}

func (e *env) tick(d time.Duration) { e.now = e.now.Add(d) }

// serve handles r as coming from clientAddr, unless the test replaced
// httptest.NewRequest's default address with another.
func (e *env) serve(r *http.Request) *httptest.ResponseRecorder {
	if r.RemoteAddr == "192.0.2.1:1234" {
		r.RemoteAddr = clientAddr
	}
	rec := httptest.NewRecorder()
	e.mux.ServeHTTP(rec, r)
	return rec
}

func formRequest(path string, form url.Values) *http.Request {
	r := httptest.NewRequest(http.MethodPost, baseURL+path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

func withCookie(r *http.Request, c *http.Cookie) *http.Request {
	if c != nil {
		r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	return r
}

func (e *env) addUser(u identity.User) identity.User {
	e.t.Helper()
	u, err := e.store.CreateUser(context.Background(), u)
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

// deviceCode asks for a device code as `keygate login` does.
func (e *env) deviceCode() sso.DeviceCodeResponse {
	e.t.Helper()
	rec := e.serve(formRequest(sso.PathDeviceCode, url.Values{"client_name": {"build-host-7"}}))
	if rec.Code != http.StatusOK {
		e.t.Fatalf("device code: %d %s", rec.Code, rec.Body)
	}
	var dc sso.DeviceCodeResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &dc); err != nil {
		e.t.Fatal(err)
	}
	return dc
}

// tokenAnswer is the token endpoint's answer: a TokenResponse or an error.
type tokenAnswer struct {
	Status int
	Header http.Header
	sso.TokenResponse
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func (e *env) pollWith(form url.Values) tokenAnswer {
	e.t.Helper()
	rec := e.serve(formRequest(sso.PathDeviceToken, form))
	a := tokenAnswer{Status: rec.Code, Header: rec.Header()}
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		e.t.Fatalf("token endpoint answered %d %q: %v", rec.Code, rec.Body, err)
	}
	return a
}

// poll polls the token endpoint as `keygate login` does.
func (e *env) poll(deviceCode string) tokenAnswer {
	e.t.Helper()
	return e.pollWith(url.Values{"grant_type": {sso.GrantTypeDeviceCode}, "device_code": {deviceCode}})
}

// wantPollError checks that a poll is refused with code.
func (e *env) wantPollError(deviceCode, code string) tokenAnswer {
	e.t.Helper()
	a := e.poll(deviceCode)
	if a.Status != http.StatusBadRequest || a.Error != code || a.AccessToken != "" {
		e.t.Fatalf("poll = %d %q %q (token %q), want 400 %q", a.Status, a.Error, a.Description, a.AccessToken, code)
	}
	return a
}

// startRequest is the device page's form post, sent from keygate's own
// page as a browser sends it.
func startRequest(userCode, method string) *http.Request {
	r := formRequest(sso.PathDeviceStart, url.Values{"user_code": {userCode}, "method": {method}})
	r.Header.Set("Origin", baseURL)
	return r
}

// start picks a sign-in method on the device page and returns the attempt
// cookie and where the browser is sent.
func (e *env) start(userCode, method string) (*http.Cookie, *url.URL) {
	e.t.Helper()
	rec := e.serve(startRequest(userCode, method))
	if rec.Code != http.StatusSeeOther {
		e.t.Fatalf("start %s: %d %s", method, rec.Code, pageText(rec))
	}
	c := cookie(rec, cookieName)
	if c == nil {
		e.t.Fatalf("start %s: no %s cookie", method, cookieName)
	}
	loc, err := url.Parse(rec.Header().Get("Location"))
	if err != nil {
		e.t.Fatal(err)
	}
	return c, loc
}

// acs posts a SAML response back as the identity provider makes the
// browser do: a cross-site form post.
func (e *env) acs(c *http.Cookie, relayState, response string) *httptest.ResponseRecorder {
	r := formRequest(sso.PathSAMLACS, url.Values{"SAMLResponse": {response}, "RelayState": {relayState}})
	r.Header.Set("Origin", "https://idp.example")
	return e.serve(withCookie(r, c))
}

// callback is the OIDC provider's redirect back.
func (e *env) callback(c *http.Cookie, q url.Values) *httptest.ResponseRecorder {
	return e.serve(withCookie(httptest.NewRequest(http.MethodGet, baseURL+sso.PathOIDCCallback+"?"+q.Encode(), nil), c))
}

// signInSAML runs the browser side of a device flow through SAML, with
// the identity provider answering id or err, and returns the ACS's page.
func (e *env) signInSAML(userCode string, id sso.Identity, err error) *httptest.ResponseRecorder {
	e.t.Helper()
	c, loc := e.start(userCode, "saml")
	e.saml.identity, e.saml.err = id, err
	return e.acs(c, loc.Query().Get("RelayState"), "PHNhbWxwOlJlc3BvbnNlLz4=")
}

func (e *env) devicePage(userCode string) *httptest.ResponseRecorder {
	return e.serve(httptest.NewRequest(http.MethodGet, baseURL+sso.PathDevice+"?"+url.Values{"user_code": {userCode}}.Encode(), nil))
}

func cookie(rec *httptest.ResponseRecorder, name string) *http.Cookie {
	for _, c := range rec.Result().Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// pageText is a page with HTML escapes undone: the text the person reads.
func pageText(rec *httptest.ResponseRecorder) string { return html.UnescapeString(rec.Body.String()) }

// wantPage checks a page's status and that it says each of texts.
func wantPage(t *testing.T, rec *httptest.ResponseRecorder, status int, texts ...string) {
	t.Helper()
	body := pageText(rec)
	if rec.Code != status {
		t.Fatalf("status %d, want %d: %s", rec.Code, status, body)
	}
	for _, s := range texts {
		if !strings.Contains(body, s) {
			t.Errorf("page does not say %q: %s", s, body)
		}
	}
}

// events returns the stored audit events of exactly type typ.
func (e *env) events(typ string) []store.AuditEvent {
	e.t.Helper()
	ctx := context.Background()
	if err := e.audit.Flush(ctx); err != nil {
		e.t.Fatal(err)
	}
	all, err := e.store.ListAudit(ctx, store.AuditQuery{Type: typ})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []store.AuditEvent
	for _, ev := range all {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

func detail(t *testing.T, ev store.AuditEvent) map[string]any {
	t.Helper()
	var d map[string]any
	if err := json.Unmarshal(ev.Detail, &d); err != nil {
		t.Fatalf("detail of %s: %v", ev.Type, err)
	}
	return d
}

// wantRefusals checks that the audit log holds signin.refused events with
// exactly these codes, in order.
func (e *env) wantRefusals(codes ...string) []store.AuditEvent {
	e.t.Helper()
	evs := e.events(audit.SignInRefused)
	var got []string
	for _, ev := range evs {
		got = append(got, detail(e.t, ev)["code"].(string))
	}
	if strings.Join(got, ",") != strings.Join(codes, ",") {
		e.t.Fatalf("signin.refused codes = %q, want %q", got, codes)
	}
	return evs
}

func TestDeviceCode(t *testing.T) {
	e := newEnv(t, nil)
	rec := e.serve(formRequest(sso.PathDeviceCode, url.Values{"client_name": {"build-host-7"}}))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if got := rec.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	var dc sso.DeviceCodeResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &dc); err != nil {
		t.Fatal(err)
	}
	// 32 random bytes, unpadded base64url.
	if len(dc.DeviceCode) != 43 {
		t.Errorf("device_code %q: %d characters, want 43", dc.DeviceCode, len(dc.DeviceCode))
	}
	if !userCodeRE.MatchString(dc.UserCode) {
		t.Errorf("user_code %q is not XXXX-XXXX from the alphabet", dc.UserCode)
	}
	if want := baseURL + "/device"; dc.VerificationURI != want {
		t.Errorf("verification_uri = %q, want %q", dc.VerificationURI, want)
	}
	if want := baseURL + "/device?user_code=" + dc.UserCode; dc.VerificationURIComplete != want {
		t.Errorf("verification_uri_complete = %q, want %q", dc.VerificationURIComplete, want)
	}
	if dc.ExpiresIn != 600 || dc.Interval != 2 {
		t.Errorf("expires_in %d, interval %d; want 600, 2", dc.ExpiresIn, dc.Interval)
	}

	other := e.deviceCode()
	if other.DeviceCode == dc.DeviceCode || other.UserCode == dc.UserCode {
		t.Errorf("two flows share a code: %+v and %+v", dc, other)
	}
	// The browser shows what the CLI said it runs on, so the person can
	// tell their own sign-in from someone else's.
	wantPage(t, e.devicePage(dc.UserCode), http.StatusOK, "build-host-7", `id="user-code">`+dc.UserCode)
}

func TestDeviceCodeWithoutConnector(t *testing.T) {
	e := newEnv(t, func(o *sso.Options) { o.SAML, o.OIDC = nil, nil })
	rec := e.serve(formRequest(sso.PathDeviceCode, nil))
	var body struct{ Error string }
	json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != http.StatusNotFound || body.Error != "unsupported_grant_type" {
		t.Fatalf("device code without a connector = %d %s, want 404 unsupported_grant_type", rec.Code, rec.Body)
	}
	for _, path := range []string{sso.PathSAMLACS, sso.PathOIDCCallback} {
		if rec := e.serve(formRequest(path, nil)); rec.Code != http.StatusNotFound && rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("POST %s without a connector = %d, want no route", path, rec.Code)
		}
	}
}

func TestDevicePageFindsTheCodeAsTyped(t *testing.T) {
	e := newEnv(t, nil)
	code := e.deviceCode().UserCode
	bare := strings.ReplaceAll(code, "-", "")
	for _, typed := range []string{
		code,
		strings.ToLower(code),
		bare,
		strings.ToLower(bare),
		bare[:4] + " " + bare[4:],
		" " + strings.ToLower(bare[:2]+" "+bare[2:6]+" "+bare[6:]) + " ",
	} {
		rec := e.devicePage(typed)
		wantPage(t, rec, http.StatusOK, `id="user-code">`+code, `action="/device/start"`, `value="`+code+`"`)
		if strings.Contains(pageText(rec), "unknown or has expired") {
			t.Errorf("%q: page says the code is unknown", typed)
		}
	}

	// Every letter moved one place along the alphabet: a well-formed code
	// that no flow has.
	const alphabet = "BCDFGHJKLMNPQRSTVWXZ"
	unknown := strings.Map(func(r rune) rune {
		if i := strings.IndexRune(alphabet, r); i >= 0 {
			return rune(alphabet[(i+1)%len(alphabet)])
		}
		return r
	}, code)
	for _, typed := range []string{unknown, "", "<b>BCDF-GHJK</b>"} {
		rec := e.devicePage(typed)
		if typed == "" {
			wantPage(t, rec, http.StatusOK, `<form method="get" action="/device">`)
			continue
		}
		wantPage(t, rec, http.StatusOK, "That code is unknown or has expired.")
		if strings.Contains(rec.Body.String(), "/device/start") || strings.Contains(rec.Body.String(), "<b>BCDF") {
			t.Errorf("%q: the page offers to sign in or echoes markup: %s", typed, rec.Body)
		}
	}
	for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"} {
		if e.devicePage(code).Header().Get(h) == "" {
			t.Errorf("device page has no %s", h)
		}
	}
	// Browsers send the page's origin with its form post only under a
	// policy that allows it to the same origin.
	if p := e.devicePage(code).Header().Get("Referrer-Policy"); p != "same-origin" {
		t.Errorf("device page Referrer-Policy %q, want same-origin", p)
	}
}

func TestDeviceStart(t *testing.T) {
	e := newEnv(t, nil)
	code := e.deviceCode().UserCode

	t.Run("saml", func(t *testing.T) {
		rec := e.serve(startRequest(strings.ToLower(code), "saml"))
		if rec.Code != http.StatusSeeOther {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		c := cookie(rec, cookieName)
		if c == nil {
			t.Fatal("no attempt cookie")
		}
		// The SAML response comes back as a cross-site POST, which only a
		// SameSite=None cookie accompanies; None needs Secure.
		if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteNoneMode || c.Path != "/" || c.MaxAge != 600 || len(c.Value) < 43 {
			t.Errorf("cookie %+v: want Secure, HttpOnly, SameSite=None, Path=/, Max-Age=600 and a random value", c)
		}
		loc, err := url.Parse(rec.Header().Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		if loc.Host != "idp.example" || loc.Query().Get("RelayState") != c.Value || loc.Query().Get("SAMLRequest") != e.saml.requestIDs[len(e.saml.requestIDs)-1] {
			t.Errorf("redirect to %s, want the connector's URL with RelayState = the cookie %q", loc, c.Value)
		}
	})

	t.Run("oidc", func(t *testing.T) {
		c, loc := e.start(code, "oidc")
		if loc.Host != "op.example" || loc.Query().Get("state") != c.Value || e.oidc.state != c.Value {
			t.Errorf("redirect to %s with cookie %q, want the connector's URL with state = the cookie", loc, c.Value)
		}
		if len(e.oidc.nonce) < 43 || len(e.oidc.verifier) < 43 || e.oidc.nonce == e.oidc.verifier || e.oidc.nonce == c.Value || e.oidc.verifier == c.Value {
			t.Errorf("state %q, nonce %q, verifier %q: want three different random values", c.Value, e.oidc.nonce, e.oidc.verifier)
		}
	})

	refused := func(t *testing.T, r *http.Request, text string) {
		t.Helper()
		before := len(e.saml.requestIDs)
		rec := e.serve(r)
		wantPage(t, rec, http.StatusBadRequest, text)
		if cookie(rec, cookieName) != nil || rec.Header().Get("Location") != "" || len(e.saml.requestIDs) != before {
			t.Errorf("a refused start set a cookie, redirected or built a request: %v", rec.Header())
		}
	}
	t.Run("cross-origin", func(t *testing.T) {
		r := startRequest(code, "saml")
		r.Header.Set("Origin", "https://evil.example")
		refused(t, r, "Sign-in could not start")
	})
	t.Run("other port", func(t *testing.T) {
		r := startRequest(code, "saml")
		r.Header.Set("Origin", "https://keygate.example:9443")
		refused(t, r, "Sign-in could not start")
	})
	t.Run("unknown code", func(t *testing.T) {
		refused(t, startRequest("BBBB-BBBB", "saml"), "Unknown or expired code")
	})
	t.Run("unknown method", func(t *testing.T) {
		refused(t, startRequest(code, "ldap"), "Unknown sign-in method")
	})
	t.Run("unconfigured method", func(t *testing.T) {
		e := newEnv(t, func(o *sso.Options) { o.OIDC = nil })
		rec := e.serve(startRequest(e.deviceCode().UserCode, "oidc"))
		wantPage(t, rec, http.StatusBadRequest, "Unknown sign-in method")
		if cookie(rec, cookieName) != nil {
			t.Error("a refused start set a cookie")
		}
	})
}

// TestSignIn is a whole sign-in: the CLI waits, the browser signs in,
// and the CLI gets a credential that is a real session, once.
func TestSignIn(t *testing.T) {
	e := newEnv(t, nil)
	e.addUser(identity.User{UserName: "alice@contoso.com", Email: "alice@contoso.com", Active: true})
	dc := e.deviceCode()
	e.wantPollError(dc.DeviceCode, "authorization_pending")
	e.tick(sso.PollInterval)

	id := sso.Identity{Method: "saml", Subject: "alice@contoso.com", UserName: "alice@contoso.com", MFA: true,
		Tags: map[string]string{"project": "alpha", "environment": "prod"}, Groups: []string{"analysts", "oncall"}}
	rec := e.signInSAML(dc.UserCode, id, nil)
	wantPage(t, rec, http.StatusOK, "Signed in as alice@contoso.com")
	wantExpiry := e.now.Add(8 * time.Hour)
	if c := cookie(rec, cookieName); c == nil || c.MaxAge >= 0 {
		t.Errorf("the attempt cookie is not cleared at the end: %v", c)
	}
	if got := e.saml.responses; len(got) != 1 || got[0].inResponseTo != e.saml.requestIDs[0] {
		t.Errorf("HandleResponse calls %+v, want one for request %s", got, e.saml.requestIDs[0])
	}
	// Signed in, not yet collected by the CLI: the user code is spent, so
	// nobody can sign in over the result before the CLI picks it up.
	wantPage(t, e.devicePage(dc.UserCode), http.StatusOK, "That code is unknown or has expired.")
	wantPage(t, e.serve(startRequest(dc.UserCode, "saml")), http.StatusBadRequest, "Unknown or expired code")

	e.tick(sso.PollInterval)
	a := e.poll(dc.DeviceCode)
	if a.Status != http.StatusOK {
		t.Fatalf("poll after sign-in = %d %s %s", a.Status, a.Error, a.Description)
	}
	if a.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("token response Cache-Control = %q, want no-store", a.Header.Get("Cache-Control"))
	}
	// The session began at sign-in, one poll interval ago.
	if wantIn := int(wantExpiry.Sub(e.now) / time.Second); !strings.HasPrefix(a.AccessToken, "kgs_") || a.TokenType != "Bearer" || a.ExpiresIn != wantIn {
		t.Errorf("token %q type %q expires_in %d, want kgs_..., Bearer, %d", a.AccessToken, a.TokenType, a.ExpiresIn, wantIn)
	}
	if s := a.Session; s.ID == "" || s.User != "alice@contoso.com" || !s.MFA || s.Method != "saml" || !s.Expires.Equal(wantExpiry) {
		t.Errorf("session info %+v", s)
	}

	// Handed out exactly once: the device code is gone.
	e.tick(sso.PollInterval)
	e.wantPollError(dc.DeviceCode, "invalid_grant")
	// And the user code cannot start another sign-in.
	wantPage(t, e.devicePage(dc.UserCode), http.StatusOK, "That code is unknown or has expired.")

	sess := sessionOf(t, e, a.AccessToken)
	if sess.ID != a.Session.ID || sess.User != "alice@contoso.com" || !sess.MFA || sess.Source != "saml" ||
		!sess.Expires.Equal(wantExpiry) || !sess.ValidAt(e.now) {
		t.Errorf("stored session %+v", sess)
	}
	if sess.Tags["project"] != "alpha" || sess.Tags["environment"] != "prod" || len(sess.Tags) != 2 {
		t.Errorf("session tags %v, want the asserted ones", sess.Tags)
	}
	if strings.Join(sess.Groups, ",") != "analysts,oncall" {
		t.Errorf("session groups %v, want the asserted ones", sess.Groups)
	}

	// The audit log says who signed in, how, and which session it was.
	evs := e.events(audit.SignIn)
	if len(evs) != 1 {
		t.Fatalf("%d signin events, want 1", len(evs))
	}
	ev := evs[0]
	if ev.User != "alice@contoso.com" || ev.SessionID != sess.ID || ev.Client != clientAddr {
		t.Errorf("signin event %+v", ev)
	}
	d := detail(t, ev)
	tags, _ := d["tags"].(map[string]any)
	if d["method"] != "saml" || d["mfa"] != true || d["subject"] != "alice@contoso.com" || tags["project"] != "alpha" || tags["environment"] != "prod" {
		t.Errorf("signin detail %v", d)
	}
	e.wantRefusals()
}

func sessionOf(t *testing.T, e *env, cred string) identity.Session {
	t.Helper()
	h := credential.Hash(cred)
	s, err := e.store.GetSessionByHash(context.Background(), h[:])
	if err != nil {
		t.Fatalf("the credential finds no session: %v", err)
	}
	return s
}

func TestSessionExpiry(t *testing.T) {
	for _, tc := range []struct {
		name     string
		notAfter time.Duration // from now; 0 for none
		want     time.Duration
	}{
		{"session duration", 0, 2 * time.Hour},
		{"provider ends it sooner", 45 * time.Minute, 45 * time.Minute},
		{"provider allows longer", 24 * time.Hour, 2 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *sso.Options) { o.SessionDuration = 2 * time.Hour })
			e.addUser(identity.User{UserName: "alice", Active: true})
			dc := e.deviceCode()
			id := sso.Identity{Method: "saml", UserName: "alice"}
			if tc.notAfter != 0 {
				id.NotAfter = e.now.Add(tc.notAfter)
			}
			wantPage(t, e.signInSAML(dc.UserCode, id, nil), http.StatusOK, "Signed in as alice")
			a := e.poll(dc.DeviceCode)
			if a.Status != http.StatusOK || a.ExpiresIn != int(tc.want/time.Second) || !a.Session.Expires.Equal(e.now.Add(tc.want)) {
				t.Fatalf("poll = %d, expires_in %d, expires_at %v; want %v from now", a.Status, a.ExpiresIn, a.Session.Expires, tc.want)
			}
			if s := sessionOf(t, e, a.AccessToken); !s.Expires.Equal(e.now.Add(tc.want)) {
				t.Errorf("stored session expires %v, want %v", s.Expires, e.now.Add(tc.want))
			}
		})
	}

	t.Run("provider session already over", func(t *testing.T) {
		e := newEnv(t, nil)
		e.addUser(identity.User{UserName: "alice", Active: true})
		dc := e.deviceCode()
		wantPage(t, e.signInSAML(dc.UserCode, sso.Identity{Method: "saml", UserName: "alice", NotAfter: e.now}, nil), http.StatusForbidden, "Sign-in refused")
		e.wantPollError(dc.DeviceCode, "access_denied")
		e.wantRefusals("expired")
	})
}
