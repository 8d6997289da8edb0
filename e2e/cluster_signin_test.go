package e2e

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testidp"
)

// roundRobin is a TCP load balancer with no source affinity in front of
// the servers' API: each connection goes to the next server in turn. With
// keep-alives off, a person's consecutive requests land on different
// servers.
type roundRobin struct {
	ln       net.Listener
	backends []string

	mu     sync.Mutex
	served []string // the backend of each connection, in order
}

func startRoundRobin(t *testing.T, ln net.Listener, backends ...string) *roundRobin {
	lb := &roundRobin{ln: ln, backends: backends}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			lb.mu.Lock()
			to := lb.backends[len(lb.served)%len(lb.backends)]
			lb.served = append(lb.served, to)
			lb.mu.Unlock()
			go proxyTo(c, to)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return lb
}

func proxyTo(c net.Conn, to string) {
	defer c.Close()
	u, err := net.DialTimeout("tcp", to, 5*time.Second)
	if err != nil {
		return
	}
	defer u.Close()
	go func() {
		io.Copy(u, c)
		u.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(c, u)
}

func (lb *roundRobin) connections() int {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return len(lb.served)
}

// next names the backend the next connection goes to.
func (lb *roundRobin) next() string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.backends[len(lb.served)%len(lb.backends)]
}

// Two servers on one state behind a load balancer that sends every
// connection to the other server: a device sign-in's code, browser
// attempt, identity provider answer and poll each land on a different
// server than the step before, for SAML and OIDC, and the session
// works. A SAML response replayed to the other server is refused there
// too, and the sign-in the portal starts finishes on the other server.
func TestClusterSignIn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	publicURL := "https://" + ln.Addr().String()
	idpSAML, err := testidp.NewSAML(testidp.SAMLOptions{TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idpSAML.Close)
	secret := "secret-" + randomHex(t)
	idpOIDC := testidp.NewOIDC(testidp.OIDCOptions{Clients: []testidp.OIDCClient{
		{ID: "keygate", Secret: secret, RedirectURIs: []string{publicURL + "/oidc/callback"}},
	}})
	t.Cleanup(idpOIDC.Close)
	var bundle []byte
	for _, c := range []*x509.Certificate{idpSAML.Certificate(), idpOIDC.Certificate()} {
		bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	idpCA := filepath.Join(t.TempDir(), "idp-ca.pem")
	if err := os.WriteFile(idpCA, bundle, 0o644); err != nil {
		t.Fatal(err)
	}

	env := newStateDatabase(t, nil, "clsignin")
	a := startServerWith(t, "clsignin", serverOptions{
		env: append(env, oidcSecretEnv+"="+secret),
		extraConfig: fmt.Sprintf(stateConfig, "a") + "public_url: " + publicURL + "\n" +
			fmt.Sprintf(ssoConfig, idpSAML.MetadataURL, idpOIDC.Issuer, idpCA),
		stopWithTest: true,
	})
	b := a.sibling(t, "")
	b.editConfig(t, "node: a", "node: b")
	b.launch(t)
	t.Cleanup(func() { b.stop(t) })
	lb := startRoundRobin(t, ln, strings.TrimPrefix(a.apiURL, "https://"), strings.TrimPrefix(b.apiURL, "https://"))
	nodeOf := map[string]string{strings.TrimPrefix(a.apiURL, "https://"): "a", strings.TrimPrefix(b.apiURL, "https://"): "b"}
	// From here on, a's clients reach the API through the load balancer,
	// as the public_url both servers share says. The balancer passes TLS
	// through, so the CLI trusts keygate's CA there.
	a.apiURL = publicURL
	t.Setenv("KEYGATE_CA", a.caFile)

	roots := x509.NewCertPool()
	ca, err := os.ReadFile(a.caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(ca)
	roots.AddCert(idpSAML.Certificate())
	roots.AddCert(idpOIDC.Certificate())
	e := &ssoEnv{kgServer: a, saml: idpSAML, oidc: idpOIDC, roots: roots, spEntityID: publicURL + "/saml/metadata"}
	e.saml.RegisterSPFrom(t, e.httpClient(), e.spEntityID, false)
	browser := func() *testidp.Browser {
		br := e.browser(t)
		br.Client.Transport.(*http.Transport).DisableKeepAlives = true
		return br
	}

	for i, method := range []string{"saml", "oidc", "saml", "oidc"} {
		name := e.addPerson(t, "cluster-"+method, person{groups: []string{"analysts"}})
		codeOn := nodeOf[lb.next()]
		dc := e.startDevice(t)
		if i%2 == 1 {
			// One poll before the browser moves every later step of
			// this journey to the other server.
			if early := e.pollDevice(t, dc.DeviceCode); early.Error != "authorization_pending" {
				t.Fatalf("sign-in %d (%s): a poll before the browser answered %+v", i, method, early)
			}
		}
		br := browser()
		page := br.DeviceSignIn(dc.VerificationURIComplete, signIn(method, name))
		if want := "Signed in as " + name; page.Title() != want {
			t.Fatalf("sign-in %d (%s): the browser shows %s, want %q", i, method, page, want)
		}
		pollOn := nodeOf[lb.next()]
		tok := e.pollDevice(t, dc.DeviceCode)
		if tok.AccessToken == "" || tok.Session.User != name {
			t.Fatalf("sign-in %d (%s): the poll through %s answered %+v", i, method, pollOn, tok)
		}
		if again := e.pollDevice(t, dc.DeviceCode); again.AccessToken != "" || again.Error != "invalid_grant" {
			t.Fatalf("sign-in %d (%s): a second poll of the same device code answered %+v, want invalid_grant", i, method, again)
		}
		if r := e.tokenWithSession(t, tok.AccessToken, "orders"); r.code != 0 {
			t.Fatalf("sign-in %d (%s): db token with the new session: %s", i, method, r.stderr)
		}
		t.Logf("%s sign-in: device code from node %s, polled on node %s", method, codeOn, pollOn)
	}
	if n := lb.connections(); n < 20 {
		t.Fatalf("the load balancer saw %d connections; the journeys did not go through it", n)
	}

	// A SAML response the identity provider sent unasked signs the person
	// in to the portal on one server; the same response is refused on the
	// other.
	name := e.addPerson(t, "cluster-replay", person{groups: []string{"analysts"}})
	br := browser()
	br.StopAt = publicURL + "/"
	form := br.SAMLLogin(br.Get(e.saml.IdPInitiatedURL(t, e.spEntityID)), name)
	firstOn := nodeOf[lb.next()]
	first := br.PostSAMLResponse(form, nil)
	if first.Status != http.StatusSeeOther {
		t.Fatalf("IdP-initiated sign-in on node %s: %s", firstOn, first)
	}
	againOn := nodeOf[lb.next()]
	again := browser().PostSAMLResponse(form, nil)
	if firstOn == againOn || again.Status != http.StatusForbidden || again.Title() != "Sign-in refused" {
		t.Fatalf("the same response on node %s, after node %s took it: %s", againOn, firstOn, again)
	}
	if out := e.kg(t, 0, "audit", "--type", "signin.refused", "--json"); strings.Count(out, `"code":"replayed"`) != 1 {
		t.Fatalf("want one signin.refused event with code replayed, got:\n%s", out)
	}
}
