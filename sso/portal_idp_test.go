package sso_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/internal/testidp"
	"github.com/keygate/keygate/sso"
	"github.com/keygate/keygate/sso/oidc"
	"github.com/keygate/keygate/sso/saml"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/sqlite"
)

// The portal's sign-in against real identity providers: crewjam's samlidp
// and zitadel's example OpenID provider, each running in this process,
// behind keygate's own SAML and OIDC connectors, with a browser stand-in
// that keeps cookies. The portal is a stand-in that sets its cookie and
// redirects, and a page that says whether the browser brought the cookie.

// idpEnv is a Service at an HTTPS address of its own, with both
// connectors pointing at running identity providers.
type idpEnv struct {
	url    string // keygate's base URL
	store  *sqlite.Store
	audit  *audit.Log
	saml   *testidp.SAML
	op     *testidp.OIDC
	portal *fakePortal
	roots  *x509.CertPool
}

func newIdPEnv(t *testing.T, idpInitiated bool) *idpEnv {
	t.Helper()
	ctx := context.Background()
	e := &idpEnv{portal: &fakePortal{}}
	mux := http.NewServeMux()
	srv := httptest.NewUnstartedServer(mux)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	e.url = srv.URL

	e.saml = testidp.StartSAML(t, testidp.SAMLOptions{TLS: true, People: []testidp.Person{{UserName: "alice", Email: "alice@contoso.com"}}})
	e.op = testidp.StartOIDC(t, testidp.OIDCOptions{
		Clients: []testidp.OIDCClient{{ID: "keygate", Secret: "s3cret", RedirectURIs: []string{e.url + sso.PathOIDCCallback}}},
		Users:   []testidp.OIDCUser{{ID: "id-alice", UserName: "alice", Password: "correct horse", FirstName: "Alice", LastName: "Liddell", Email: "alice@contoso.com", EmailVerified: true}},
	})
	e.roots = x509.NewCertPool()
	for _, c := range []*x509.Certificate{srv.Certificate(), e.saml.Certificate(), e.op.Certificate()} {
		e.roots.AddCert(c)
	}

	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keygate.db"), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	al, err := audit.Open(ctx, st, log, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close(); st.Close() })
	e.store, e.audit = st, al
	if _, err := st.CreateUser(ctx, identity.User{UserName: "alice", Email: "alice@contoso.com", Active: true}); err != nil {
		t.Fatal(err)
	}

	spKey, spCert := testidp.KeyPair(t, "keygate", time.Now().Add(24*time.Hour))
	sp, err := saml.New(ctx, saml.Config{EntityID: e.url + sso.PathSAMLMetadata, ACSURL: e.url + sso.PathSAMLACS,
		MetadataURL: e.saml.MetadataURL, HTTPClient: e.saml.Client, Refresh: time.Hour, ClockSkew: time.Minute,
		Key: spKey, Cert: spCert, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	md, err := sp.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	e.saml.RegisterSP(t, md, false)
	rp, err := oidc.New(ctx, oidc.Config{Issuer: e.op.Issuer, ClientID: "keygate", ClientSecret: "s3cret", RedirectURL: e.url + sso.PathOIDCCallback,
		HTTPClient: e.op.Client, Scopes: []string{"profile", "email"}, Mapping: sso.Mapping{UserName: "preferred_username", Email: "email"}})
	if err != nil {
		t.Fatal(err)
	}

	svc := sso.New(sso.Options{Store: st, Audit: al, Log: log, BaseURL: e.url, MatchBy: config.MatchUserName,
		IdPInitiated: idpInitiated, SAML: sp, OIDC: rp, OIDCIssuer: e.op.Issuer, Browser: e.portal})
	svc.Register(mux)
	// The portal's pages: they say where the browser is and whether it
	// brought the portal's cookie.
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		_, err := r.Cookie(portalCookie)
		fmt.Fprintf(w, "<h1>Portal</h1><p id=path>%s</p><p id=cookie>%t</p>", html.EscapeString(r.URL.RequestURI()), err == nil)
	})
	return e
}

func (e *idpEnv) browser(t *testing.T) *testidp.Browser { return testidp.NewBrowser(t, e.roots) }

// wantPortal checks that page is the portal's at path, reached with the
// portal's cookie, after SignedIn was handed a stored session for alice.
func (e *idpEnv) wantPortal(t *testing.T, page *testidp.Page, path, method string) portalCall {
	t.Helper()
	if page.Status != http.StatusOK || page.Title() != "Portal" || !strings.HasPrefix(page.URL.String(), e.url) ||
		!strings.Contains(page.Body, "<p id=path>"+html.EscapeString(path)+"</p>") || !strings.Contains(page.Body, "<p id=cookie>true</p>") {
		t.Fatalf("want the portal's page %s, with its cookie: %s", path, page)
	}
	calls := e.portal.Calls()
	if len(calls) == 0 {
		t.Fatal("SignedIn not called")
	}
	call := calls[len(calls)-1]
	h := credential.Hash(call.credential)
	s, err := e.store.GetSessionByHash(context.Background(), h[:])
	if err != nil {
		t.Fatalf("SignedIn's credential names no stored session: %v", err)
	}
	if s.ID != call.session.ID || s.User != "alice" || s.Source != method || !s.ValidAt(time.Now()) || call.next != path {
		t.Errorf("stored session %+v, SignedIn %+v", s, call)
	}
	return call
}

func TestPortalSignInWithIdPs(t *testing.T) {
	e := newIdPEnv(t, false)

	t.Run("saml", func(t *testing.T) {
		b := e.browser(t)
		page := b.Get(e.url + sso.PathBrowserStart + "?method=saml&next=" + url.QueryEscape("/databases?engine=postgres"))
		page = b.PostSAMLResponse(b.SAMLLogin(page, "alice"), nil)
		e.wantPortal(t, page, "/databases?engine=postgres", "saml")
	})

	t.Run("oidc", func(t *testing.T) {
		b := e.browser(t)
		page := b.Get(e.url + sso.PathBrowserStart + "?method=oidc&next=/databases")
		page = b.OIDCLogin(page, "alice", "correct horse")
		e.wantPortal(t, page, "/databases", "oidc")
	})

	// Okta's dashboard tile: the initiate login URI, with the provider's
	// issuer and a target.
	t.Run("oidc third-party-initiated", func(t *testing.T) {
		b := e.browser(t)
		q := url.Values{"iss": {e.op.Issuer}, "target_link_uri": {e.url + "/databases/orders"}}
		page := b.OIDCLogin(b.Get(e.url+sso.PathBrowserStart+"?"+q.Encode()), "alice", "correct horse")
		e.wantPortal(t, page, "/databases/orders", "oidc")

		q.Set("iss", "https://evil.example")
		page = e.browser(t).Get(e.url + sso.PathBrowserStart + "?" + q.Encode())
		if page.Status != http.StatusBadRequest || page.Title() != "Sign-in could not start" || !strings.HasPrefix(page.URL.String(), e.url) {
			t.Fatalf("a foreign issuer: %s", page)
		}
	})

	// The identity provider's answer, carried to another browser (one the
	// attacker wants signed in, or the victim's), is refused there.
	t.Run("answer in another browser", func(t *testing.T) {
		b := e.browser(t)
		form := b.SAMLLogin(b.Get(e.url+sso.PathBrowserStart+"?method=saml"), "alice")
		before := len(e.portal.Calls())
		page := e.browser(t).PostSAMLResponse(form, nil)
		if page.Status != http.StatusForbidden || page.Title() != "Sign-in refused" || !strings.Contains(page.Body, "not started in this browser") ||
			!strings.Contains(page.Body, `<a id="back" href="/">`) {
			t.Fatalf("another browser: %s", page)
		}
		if len(e.portal.Calls()) != before {
			t.Fatal("another browser was signed in")
		}
		// The browser that started it still finishes it.
		e.wantPortal(t, b.PostSAMLResponse(form, nil), "/", "saml")
	})

	t.Run("idp-initiated off", func(t *testing.T) {
		b := e.browser(t)
		page := b.PostSAMLResponse(b.SAMLLogin(b.Get(e.saml.IdPInitiatedURL(t, e.url+sso.PathSAMLMetadata)), "alice"), nil)
		if page.Status != http.StatusForbidden || !strings.Contains(page.Body, "sso.saml.idp_initiated: true") || !strings.Contains(page.Body, "sign in at "+e.url+"/") {
			t.Fatalf("IdP-initiated sign-in while off: %s", page)
		}
	})

	ctx := context.Background()
	if err := e.audit.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	evs, err := e.store.ListAudit(ctx, store.AuditQuery{Type: audit.SignIn})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.Type != audit.SignIn {
			continue
		}
		n++
		if !strings.Contains(string(ev.Detail), `"client":"portal"`) {
			t.Errorf("signin event without client portal: %s", ev.Detail)
		}
	}
	if n != 4 {
		t.Errorf("%d signin events, want 4", n)
	}
}

// TestPortalIdPInitiatedWithIdP: Azure's "Test this application" or a
// dashboard tile sends a response nobody asked for; with idp_initiated on
// it lands the person signed in on the portal, at the relay state's path
// only when that is keygate's own.
func TestPortalIdPInitiatedWithIdP(t *testing.T) {
	e := newIdPEnv(t, true)
	entityID := e.url + sso.PathSAMLMetadata
	for _, tc := range []struct{ start, next string }{
		{e.saml.IdPInitiatedURL(t, entityID), "/"},
		{e.saml.IdPInitiatedURLWithRelayState(t, entityID, "/databases"), "/databases"},
		{e.saml.IdPInitiatedURLWithRelayState(t, entityID, e.url+"/databases/orders"), "/databases/orders"},
		{e.saml.IdPInitiatedURLWithRelayState(t, entityID, "https://evil.example/"), "/"},
		{e.saml.IdPInitiatedURLWithRelayState(t, entityID, "//evil.example/"), "/"},
	} {
		b := e.browser(t)
		e.wantPortal(t, b.PostSAMLResponse(b.SAMLLogin(b.Get(tc.start), "alice"), nil), tc.next, "saml")
	}
	// An SP-initiated response cannot pass for an unasked one by losing
	// its RelayState: it answers a request, and only the attempt that sent
	// the request may take it.
	b := e.browser(t)
	form := b.SAMLLogin(b.Get(e.url+sso.PathBrowserStart+"?method=saml"), "alice")
	before := len(e.portal.Calls())
	for _, relay := range []string{"", "/databases"} {
		resp, err := e.browser(t).Client.PostForm(e.url+sso.PathSAMLACS, url.Values{"SAMLResponse": {form.FormValue("SAMLResponse")}, "RelayState": {relay}})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "did not send") {
			t.Fatalf("an SP-initiated response with RelayState %q: %s %s", relay, resp.Status, body)
		}
	}
	if len(e.portal.Calls()) != before {
		t.Fatal("an SP-initiated response signed in as an IdP-initiated one")
	}
}
