package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beevik/etree"
	crewjam "github.com/crewjam/saml"

	"github.com/keygate/keygate/internal/testidp"
)

// Sign-in end to end: a keygate server whose sso section points at a SAML
// identity provider (crewjam's samlidp) and an OpenID provider (zitadel's
// example), both running in this test process; a browser stand-in that
// takes a person through keygate's device page and the provider's login;
// and the token, gateway and audit log that come after.

// ssoEnv is the keygate server with sign-in configured, and its identity
// providers.
type ssoEnv struct {
	*kgServer
	saml *testidp.SAML
	oidc *testidp.OIDC
	// roots are what a browser trusts: keygate's CA and the identity
	// providers' TLS certificate.
	roots *x509.CertPool
	// spEntityID is keygate's SAML entity ID.
	spEntityID string
	// tmp holds the providers' certificate file for the server.
	tmp   string
	ready bool
}

const oidcSecretEnv = "KEYGATE_E2E_OIDC_SECRET"

// ssoConfig is the sso section: both methods, the SAML metadata read
// again every second (so that a certificate rotation shows within the
// test), IdP-initiated SAML on (so that its replay protection can be
// tested), and the attributes the providers send groups and tags in.
const ssoConfig = `sso:
  saml:
    idp_metadata_url: %[1]s
    ca_file: %[3]s
    metadata_refresh: 1s
    idp_initiated: true
    attributes:
      groups: ` + testidp.GroupsAttribute + `
  oidc:
    issuer: %[2]s
    ca_file: %[3]s
    client_id: keygate
    client_secret_env: ` + oidcSecretEnv + `
    attributes:
      groups: groups
      tags:
        project: project
`

// ssoPermissionSets and ssoAssignments give group mfa-writers write
// access to orders through a permission set that requires MFA.
const (
	ssoPermissionSets = `  - name: db-mfa-writer
    access: rw
    require_mfa: true
`
	ssoAssignments = `  - group: mfa-writers
    permission_set: db-mfa-writer
    databases: [orders]
`
)

var (
	ssoOnce   sync.Once
	ssoShared *ssoEnv
)

// ssoServer is the sign-in server the tests in this file share, started
// on first use.
func ssoServer(t testing.TB) *ssoEnv {
	t.Helper()
	ssoOnce.Do(func() {
		ssoShared = &ssoEnv{}
		ssoShared.start(t)
		ssoShared.ready = true
	})
	if !ssoShared.ready {
		t.Fatal("the sign-in keygate server failed to start")
	}
	return ssoShared
}

func (e *ssoEnv) start(t testing.TB) {
	t.Helper()
	var err error
	if e.tmp, err = tempDir("keygate-e2e-idp-"); err != nil {
		t.Fatal(err)
	}
	// keygate's OIDC redirect URI must be registered at the provider
	// before either starts, so the API's port is chosen first.
	apiPort := freePort(t)
	apiURL := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	if e.saml, err = testidp.NewSAML(testidp.SAMLOptions{TLS: true}); err != nil {
		t.Fatal(err)
	}
	secret := "secret-" + randomHex(t)
	e.oidc = testidp.NewOIDC(testidp.OIDCOptions{Clients: []testidp.OIDCClient{
		{ID: "keygate", Secret: secret, RedirectURIs: []string{apiURL + "/oidc/callback"}},
	}})
	// keygate trusts the providers' certificate as it trusts a private
	// CA: through sso.saml.ca_file and sso.oidc.ca_file.
	var bundle []byte
	for _, c := range []*x509.Certificate{e.saml.Certificate(), e.oidc.Certificate()} {
		bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	idpCA := filepath.Join(e.tmp, "idp-ca.pem")
	if err := os.WriteFile(idpCA, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	e.kgServer = startServerWith(t, "sso", serverOptions{
		apiPort:        apiPort,
		env:            []string{oidcSecretEnv + "=" + secret},
		permissionSets: ssoPermissionSets,
		assignments:    ssoAssignments,
		extraConfig:    fmt.Sprintf(ssoConfig, e.saml.MetadataURL, e.oidc.Issuer, idpCA),
	})
	ca, err := os.ReadFile(e.caFile)
	if err != nil {
		t.Fatal(err)
	}
	e.roots = x509.NewCertPool()
	if !e.roots.AppendCertsFromPEM(ca) {
		t.Fatalf("no certificate in %s", e.caFile)
	}
	e.roots.AddCert(e.saml.Certificate())
	e.roots.AddCert(e.oidc.Certificate())
	e.spEntityID = apiURL + "/saml/metadata"
	e.saml.RegisterSPFrom(t, e.httpClient(), e.spEntityID, false)
}

func stopSSO() {
	if ssoShared == nil {
		return
	}
	if ssoShared.kgServer != nil {
		ssoShared.terminate()
	}
	if ssoShared.saml != nil {
		ssoShared.saml.Close()
	}
	if ssoShared.oidc != nil {
		ssoShared.oidc.Close()
	}
	os.RemoveAll(ssoShared.tmp)
}

func (e *ssoEnv) httpClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.roots}}}
}

func (e *ssoEnv) browser(t testing.TB) *testidp.Browser { return testidp.NewBrowser(t, e.roots) }

var personSeq atomic.Int64

// person is what the identity providers assert about someone.
type person struct {
	groups []string
	tags   map[string]string
	mfa    bool
	// mutate changes their SAML assertions before the provider signs them.
	mutate func(a *crewjam.Assertion)
}

// addPerson makes a keygate user with a name of its own, and the same
// person at both identity providers.
func (e *ssoEnv) addPerson(t testing.TB, prefix string, p person) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", prefix, personSeq.Add(1))
	e.kg(t, 0, "admin", "user", "add", name, "--email", name+"@example.com")
	if p.groups == nil {
		p.groups = []string{}
	}
	e.saml.AddPerson(testidp.Person{UserName: name, Email: name + "@example.com", Groups: p.groups, Tags: p.tags, MFA: p.mfa, Mutate: p.mutate})
	claims := map[string]any{"groups": p.groups}
	if v, ok := p.tags["project"]; ok {
		claims["project"] = v
	}
	e.oidc.AddUser(testidp.OIDCUser{ID: "id-" + name, UserName: name, Password: "pw-" + name,
		Email: name + "@example.com", EmailVerified: true, Claims: claims, MFA: p.mfa})
	return name
}

// signIn is how the browser signs name in by method.
func signIn(method, name string) testidp.SignIn {
	return testidp.SignIn{Method: method, User: name, Password: "pw-" + name}
}

// deviceCode is the answer to POST /v1/device/code (RFC 8628 §3.2).
type deviceCode struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

// deviceToken is the answer to a poll of POST /v1/device/token: a
// session, or an OAuth error.
type deviceToken struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	Session     struct {
		ID        string    `json:"id"`
		User      string    `json:"user"`
		ExpiresAt time.Time `json:"expires_at"`
		MFA       bool      `json:"mfa"`
		Method    string    `json:"method"`
	} `json:"session"`
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func (e *ssoEnv) postForm(t testing.TB, path string, form url.Values, out any) int {
	t.Helper()
	resp, err := e.httpClient().PostForm(e.apiURL+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("POST %s: %s: %v", path, body, err)
	}
	return resp.StatusCode
}

// startDevice asks for a device code, as `keygate login` does.
func (e *ssoEnv) startDevice(t testing.TB) deviceCode {
	t.Helper()
	var dc deviceCode
	if status := e.postForm(t, "/v1/device/code", url.Values{"client_name": {"e2e"}}, &dc); status != http.StatusOK {
		t.Fatalf("device code: %d %+v", status, dc)
	}
	return dc
}

// pollDevice polls the token endpoint once.
func (e *ssoEnv) pollDevice(t testing.TB, deviceCode string) deviceToken {
	t.Helper()
	var tok deviceToken
	e.postForm(t, "/v1/device/token", url.Values{
		"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {deviceCode}}, &tok)
	return tok
}

// signInHTTP runs a device sign-in over the API, without the CLI: device
// code, the browser's journey, one poll. It returns keygate's last page
// and the poll's answer.
func (e *ssoEnv) signInHTTP(t testing.TB, s testidp.SignIn) (*testidp.Page, deviceToken) {
	t.Helper()
	dc := e.startDevice(t)
	page := e.browser(t).DeviceSignIn(dc.VerificationURIComplete, s)
	return page, e.pollDevice(t, dc.DeviceCode)
}

// mustSignInHTTP signs in over the API and returns the poll's answer,
// which carries the session credential.
func (e *ssoEnv) mustSignInHTTP(t testing.TB, s testidp.SignIn) deviceToken {
	t.Helper()
	page, tok := e.signInHTTP(t, s)
	if want := "Signed in as " + s.User; page.Title() != want {
		t.Fatalf("browser: want %q, got %s", want, page)
	}
	if tok.AccessToken == "" {
		t.Fatalf("poll after the browser signed in: %+v", tok)
	}
	return tok
}

// tokenWithSession runs `keygate db token` with KEYGATE_SESSION set.
func (e *ssoEnv) tokenWithSession(t testing.TB, session, db string, extra ...string) result {
	t.Helper()
	return e.run(t, []string{"KEYGATE_SESSION=" + session}, append([]string{"db", "token", db}, extra...)...)
}

// auditEvent is a line of `keygate audit --json`.
type auditEvent struct {
	Type   string         `json:"type"`
	User   string         `json:"user"`
	Client string         `json:"client"`
	Reason string         `json:"reason"`
	Detail map[string]any `json:"detail"`
}

// refusal is the last signin.refused event keygate recorded for the
// browser connection at clientAddr.
func (e *ssoEnv) refusal(t testing.TB, clientAddr string) auditEvent {
	t.Helper()
	out := e.kg(t, 0, "audit", "--type", "signin.refused", "--json", "--since", "1h")
	var found *auditEvent
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev auditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("audit --json line %q: %v", sc.Text(), err)
		}
		if ev.Client == clientAddr {
			found = &ev
		}
	}
	if found == nil {
		t.Fatalf("no signin.refused event from %s in:\n%s", clientAddr, out)
	}
	return *found
}

// waitMetadataRefresh waits until keygate has read the SAML metadata
// again at least once: two fetches, since the second starts only after
// the first was applied.
func (e *ssoEnv) waitMetadataRefresh(t testing.TB) {
	t.Helper()
	n := e.saml.MetadataFetches()
	waitFor(t, 10*time.Second, func() bool { return e.saml.MetadataFetches() >= n+2 })
}

func randomHex(t testing.TB) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// The device authorization grant over plain HTTP, as any client would
// drive it: a pending poll, the browser's sign-in, one poll that hands
// out the session credential, and no second one; the credential then
// gets a database token, and the gateway lets the person in as
// themselves, with the access the identity provider's groups give.
func TestDeviceSignInOverHTTP(t *testing.T) {
	e := ssoServer(t)
	for _, method := range []string{"saml", "oidc"} {
		t.Run(method, func(t *testing.T) {
			name := e.addPerson(t, "dev-"+method, person{groups: []string{"analysts"}, tags: map[string]string{"project": "apollo"}})
			dc := e.startDevice(t)
			if dc.VerificationURI != e.apiURL+"/device" || dc.VerificationURIComplete != dc.VerificationURI+"?user_code="+dc.UserCode ||
				len(dc.UserCode) != 9 || dc.DeviceCode == "" || dc.Interval <= 0 || dc.ExpiresIn <= 0 {
				t.Fatalf("device code answer: %+v", dc)
			}
			if tok := e.pollDevice(t, dc.DeviceCode); tok.Error != "authorization_pending" || tok.AccessToken != "" {
				t.Fatalf("poll before the browser: %+v", tok)
			}
			page := e.browser(t).DeviceSignIn(dc.VerificationURIComplete, signIn(method, name))
			if page.Status != http.StatusOK || page.Title() != "Signed in as "+name {
				t.Fatalf("browser's last page: %s", page)
			}
			tok := e.pollDevice(t, dc.DeviceCode)
			if !strings.HasPrefix(tok.AccessToken, "kgs_") || tok.TokenType != "Bearer" || tok.Session.User != name ||
				tok.Session.Method != method || tok.Session.MFA || tok.Session.ID == "" || !tok.Session.ExpiresAt.After(time.Now()) {
				t.Fatalf("poll after the browser: %+v", tok)
			}
			if again := e.pollDevice(t, dc.DeviceCode); again.AccessToken != "" || again.Error != "invalid_grant" {
				t.Fatalf("a second poll: %+v; the credential is handed out once", again)
			}
			r := e.tokenWithSession(t, tok.AccessToken, "orders")
			if r.code != 0 {
				t.Fatalf("db token with the signed-in session: exit %d: %s", r.code, r.stderr)
			}
			q := e.psql(t, e.connString(name, "orders"), strings.TrimSpace(r.stdout), "SELECT current_user, count(*) FROM customers")
			if q.code != 0 || strings.TrimSpace(q.stdout) != name+".ro|2" {
				t.Fatalf("psql as %s: exit %d: %s %s", name, q.code, q.stdout, q.stderr)
			}
		})
	}
}

// A permission set with require_mfa grants nothing to a session signed in
// with a password alone, and says why; a session signed in with a second
// factor gets its token: by SAML's AuthnContextClassRef and by OIDC's amr.
func TestRequireMFA(t *testing.T) {
	e := ssoServer(t)
	for _, method := range []string{"saml", "oidc"} {
		t.Run(method, func(t *testing.T) {
			without := e.addPerson(t, "pwd-"+method, person{groups: []string{"mfa-writers"}})
			tok := e.mustSignInHTTP(t, signIn(method, without))
			if tok.Session.MFA {
				t.Fatal("a password sign-in made an MFA session")
			}
			r := e.tokenWithSession(t, tok.AccessToken, "orders", "--access", "rw")
			if r.code == 0 {
				t.Fatal("a token was issued to a session without MFA for a set that requires it")
			}
			mustContain(t, "db token without MFA", r.stderr, "requires MFA")

			with := e.addPerson(t, "mfa-"+method, person{groups: []string{"mfa-writers"}, mfa: true})
			tok = e.mustSignInHTTP(t, signIn(method, with))
			if !tok.Session.MFA {
				t.Fatal("an MFA sign-in made a session without MFA")
			}
			r = e.tokenWithSession(t, tok.AccessToken, "orders", "--access", "rw")
			if r.code != 0 {
				t.Fatalf("db token with MFA: exit %d: %s", r.code, r.stderr)
			}
			q := e.psql(t, e.connString(with, "orders"), strings.TrimSpace(r.stdout),
				"INSERT INTO orders (customer_id, amount) VALUES (1, 5) RETURNING session_user")
			if q.code != 0 || strings.SplitN(q.stdout, "\n", 2)[0] != with+".rw" {
				t.Fatalf("write with MFA: exit %d: %s %s", q.code, q.stdout, q.stderr)
			}
		})
	}
}

// The identity provider rotates its signing certificate. Responses signed
// with the new key are refused while the metadata lists only the old
// certificate; once it lists the new one, keygate reads it on its next
// refresh and the sign-in succeeds, with the server never restarted.
func TestCertificateRotationEndToEnd(t *testing.T) {
	e := ssoServer(t)
	name := e.addPerson(t, "rot", person{groups: []string{"analysts"}})
	e.mustSignInHTTP(t, signIn("saml", name))

	_, oldCert := e.saml.SigningKey()
	newKey, newCert := testidp.KeyPair(t, "test-idp-rotated", time.Now().Add(2*365*24*time.Hour))
	// Whatever happens, leave the provider publishing what it signs with,
	// and keygate having read it, for the tests that follow.
	t.Cleanup(func() {
		e.saml.Publish()
		e.waitMetadataRefresh(t)
	})
	e.saml.Publish(oldCert)
	e.saml.SetSigningKey(newKey, newCert)
	page, tok := e.signInHTTP(t, signIn("saml", name))
	if page.Title() != "Sign-in refused" || tok.Error != "access_denied" {
		t.Fatalf("signed with a certificate the metadata does not list: %s\npoll: %+v", page, tok)
	}
	if ev := e.refusal(t, page.ClientAddr); ev.Detail["code"] != "untrusted_certificate" {
		t.Fatalf("audit: %+v, want code untrusted_certificate", ev)
	}

	e.saml.Publish(newCert)
	e.waitMetadataRefresh(t)
	tok = e.mustSignInHTTP(t, signIn("saml", name))
	if tok.Session.User != name {
		t.Fatalf("after the rotation: %+v", tok)
	}
	select {
	case <-e.done:
		t.Fatal("the keygate server exited")
	default:
	}
}

// cli is a person's machine: the keygate CLI with a config directory of
// its own, and nothing else of keygate's in its environment.
type cli struct {
	e   *ssoEnv
	dir string
}

func (e *ssoEnv) newCLI(t testing.TB) *cli {
	t.Helper()
	return &cli{e: e, dir: t.TempDir()}
}

func (c *cli) command(args ...string) *exec.Cmd {
	cmd := exec.Command(keygateBin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYGATE_") && !strings.HasPrefix(kv, "BROWSER=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "KEYGATE_CONFIG_DIR="+c.dir)
	return cmd
}

// run runs the CLI as the person, with extra environment.
func (c *cli) run(t testing.TB, env []string, args ...string) result {
	t.Helper()
	cmd := c.command(args...)
	cmd.Env = append(cmd.Env, env...)
	return runCmd(t, cmd)
}

// sessionFile is where keygate login caches the default profile's
// session.
func (c *cli) sessionFile() string { return filepath.Join(c.dir, "sessions", "default.json") }

// cachedSession reads the session keygate login cached.
func (c *cli) cachedSession(t testing.TB) (credential, id string) {
	t.Helper()
	raw, err := os.ReadFile(c.sessionFile())
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Credential string `json:"credential"`
		ID         string `json:"session_id"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("session cache: %v", err)
	}
	return s.Credential, s.ID
}

// verificationURLRE finds the verification URL keygate login prints; the
// space after it shows that the URL is complete, however the output
// arrives.
var verificationURLRE = regexp.MustCompile(`(https://\S+/device\?user_code=[A-Z-]+)\s`)

// urlWatcher collects what a command writes and hands over the first
// verification URL in it.
type urlWatcher struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	sent  bool
	found chan string
}

func (w *urlWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if m := verificationURLRE.FindSubmatch(w.buf.Bytes()); !w.sent && m != nil {
		w.sent = true
		w.found <- string(m[1])
	}
	return len(p), nil
}

func (w *urlWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// pendingLogin is a `keygate login --no-browser` that has printed its
// verification URL and waits for the browser.
type pendingLogin struct {
	// link is the verification URL it printed.
	link   string
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr *urlWatcher
	exited chan error
}

// startLogin runs `keygate login --server URL --ca FILE --no-browser` and
// returns once it has printed the verification URL.
func (c *cli) startLogin(t testing.TB) *pendingLogin {
	t.Helper()
	l := &pendingLogin{cmd: c.command("login", "--server", c.e.apiURL, "--ca", c.e.caFile, "--no-browser"),
		stderr: &urlWatcher{found: make(chan string, 1)}, exited: make(chan error, 1)}
	l.cmd.Stdout, l.cmd.Stderr = &l.stdout, l.stderr
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { l.exited <- l.cmd.Wait() }()
	select {
	case l.link = <-l.stderr.found:
	case err := <-l.exited:
		t.Fatalf("keygate login exited (%v) without printing a verification URL:\n%s", err, l.stderr)
	case <-time.After(15 * time.Second):
		l.cmd.Process.Kill()
		t.Fatalf("keygate login printed no verification URL within 15s:\n%s", l.stderr)
	}
	return l
}

// userCode is the user code in the verification URL.
func (l *pendingLogin) userCode() string {
	return strings.TrimPrefix(l.link[strings.Index(l.link, "?"):], "?user_code=")
}

// wait returns how the command ended, once the browser is done.
func (l *pendingLogin) wait(t testing.TB) result {
	t.Helper()
	var err error
	select {
	case err = <-l.exited:
	case <-time.After(20 * time.Second):
		l.cmd.Process.Kill()
		t.Fatalf("keygate login still running 20s after the browser finished:\n%s", l.stderr)
	}
	r := result{stdout: l.stdout.String(), stderr: l.stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	// The person checks the code on the page against the terminal's.
	if code := l.userCode(); strings.Count(r.stderr, code) < 2 {
		t.Fatalf("keygate login does not show the user code %s apart from the URL:\n%s", code, r.stderr)
	}
	return r
}

// login runs `keygate login --no-browser`, signs in in the browser
// stand-in at the URL it prints, and returns the browser's last page and
// how the command ended.
func (c *cli) login(t testing.TB, s testidp.SignIn) (*testidp.Page, result) {
	t.Helper()
	l := c.startLogin(t)
	page := c.e.browser(t).DeviceSignIn(l.link, s)
	return page, l.wait(t)
}

// mustLogin signs in with keygate login and checks that it succeeded.
func (c *cli) mustLogin(t testing.TB, s testidp.SignIn) {
	t.Helper()
	page, r := c.login(t, s)
	if want := "Signed in as " + s.User; page.Title() != want || r.code != 0 || !strings.Contains(r.stderr, want) {
		t.Fatalf("keygate login as %s: exit %d\n%s\nbrowser: %s", s.User, r.code, r.stderr, page)
	}
}

// dbToken runs `keygate db token` as the person, with no flags and no
// KEYGATE_SESSION: the profile keygate login saved says where, the cached
// session says who.
func (c *cli) dbToken(t testing.TB, db string, extra ...string) result {
	t.Helper()
	return c.run(t, nil, append([]string{"db", "token", db}, extra...)...)
}

// a, b. keygate login through SAML and through OIDC: the CLI prints the
// verification URL, the browser signs in, login exits 0 and caches the
// session readable by the person alone; keygate db token then needs no
// flags and no KEYGATE_SESSION, and psql connects through the gateway
// with the token as the person.
func TestLogin(t *testing.T) {
	e := ssoServer(t)
	for _, method := range []string{"saml", "oidc"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			name := e.addPerson(t, "login-"+method, person{groups: []string{"analysts"}, tags: map[string]string{"project": "apollo"}})
			c := e.newCLI(t)
			c.mustLogin(t, signIn(method, name))
			fi, err := os.Stat(c.sessionFile())
			if err != nil {
				t.Fatalf("no session cache: %v", err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Fatalf("session cache mode %v, want 0600", fi.Mode().Perm())
			}
			profiles, err := os.ReadFile(filepath.Join(c.dir, "config"))
			if err != nil || !strings.Contains(string(profiles), e.apiURL) {
				t.Fatalf("profile does not name the server %s: %q %v", e.apiURL, profiles, err)
			}
			r := c.dbToken(t, "orders")
			tok := strings.TrimSpace(r.stdout)
			if r.code != 0 || !strings.HasPrefix(tok, "v4.public.") {
				t.Fatalf("keygate db token orders: exit %d: %q %s", r.code, r.stdout, r.stderr)
			}
			q := e.psql(t, e.connString(name, "orders"), tok, "SELECT current_user, count(*) FROM customers")
			if q.code != 0 || strings.TrimSpace(q.stdout) != name+".ro|2" {
				t.Fatalf("psql as %s: exit %d: %s %s", name, q.code, q.stdout, q.stderr)
			}
		})
	}
}

// c. keygate whoami shows the person as access decisions see them: the
// tags from the PrincipalTag attributes, the groups the provider
// asserted, MFA, the sign-in method and when the session expires.
func TestWhoAmI(t *testing.T) {
	e := ssoServer(t)
	tags := map[string]string{"project": "apollo", "cost-center": "cc-42"}
	name := e.addPerson(t, "who", person{groups: []string{"analysts", "data team"}, tags: tags, mfa: true})
	c := e.newCLI(t)
	c.mustLogin(t, signIn("saml", name))
	_, id := c.cachedSession(t)

	r := c.run(t, nil, "whoami", "-o", "json")
	if r.code != 0 {
		t.Fatalf("whoami -o json: exit %d: %s", r.code, r.stderr)
	}
	var w struct {
		User      string            `json:"user"`
		Groups    []string          `json:"groups"`
		Tags      map[string]string `json:"tags"`
		SessionID string            `json:"session_id"`
		ExpiresAt time.Time         `json:"expires_at"`
		MFA       *bool             `json:"mfa"`
		Method    string            `json:"method"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &w); err != nil {
		t.Fatalf("whoami -o json printed %q: %v", r.stdout, err)
	}
	slices.Sort(w.Groups)
	if w.User != name || !maps.Equal(w.Tags, tags) || !slices.Equal(w.Groups, []string{"analysts", "data team"}) ||
		w.MFA == nil || !*w.MFA || w.Method != "saml" || w.SessionID != id ||
		w.ExpiresAt.Before(time.Now().Add(time.Hour)) || w.ExpiresAt.After(time.Now().Add(9*time.Hour)) {
		t.Fatalf("whoami -o json = %s", r.stdout)
	}

	r = c.run(t, nil, "whoami")
	if r.code != 0 {
		t.Fatalf("whoami: exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{name, "analysts", "data team", "cost-center=cc-42", "project=apollo", "saml", id,
		w.ExpiresAt.Local().Format("2006-01-02 15:04")} {
		mustContain(t, "whoami", r.stdout, want)
	}
	if !regexp.MustCompile(`(?m)^MFA:\s+yes$`).MatchString(r.stdout) {
		t.Fatalf("whoami does not say MFA yes:\n%s", r.stdout)
	}
}

// hostileCase is a tampered sign-in and the refusal code keygate must
// audit for it.
type hostileCase struct {
	name string
	code string
	// mutate changes the assertion before the provider signs it.
	mutate func(a *crewjam.Assertion)
	// tamper changes the signed response on its way through the browser.
	tamper func(t testing.TB, resp string) string
}

// hostileCases are the attacks that a browser, or a network in front of
// one, can make on the response the identity provider sends back.
var hostileCases = []hostileCase{
	{name: "unsigned", code: "unsigned", tamper: func(t testing.TB, r string) string {
		return testidp.EditResponse(t, r, testidp.Unsign)
	}},
	{name: "signature wrapping", code: "signature_wrapping", tamper: func(t testing.TB, r string) string {
		return testidp.EditResponse(t, r, func(doc *etree.Document) {
			doc.Root().InsertChildAt(testidp.AssertionOf(doc).Index(), testidp.ForgedAssertion(doc, "admin"))
		})
	}},
	{name: "wrong audience", code: "audience", mutate: func(a *crewjam.Assertion) {
		a.Conditions.AudienceRestrictions[0].Audience.Value = "https://other.example/saml/metadata"
	}},
	{name: "expired", code: "expired", mutate: func(a *crewjam.Assertion) {
		a.Conditions.NotBefore = time.Now().Add(-2 * time.Hour)
		a.Conditions.NotOnOrAfter = time.Now().Add(-time.Hour)
	}},
	{name: "comment injection", code: "xml_comment", tamper: func(t testing.TB, r string) string {
		return testidp.CommentInNameID(t, r, nameIDOf(t, r), ".admin")
	}},
}

// nameIDOf is the NameID of a response.
func nameIDOf(t testing.TB, resp string) string {
	t.Helper()
	var id string
	testidp.EditResponse(t, resp, func(doc *etree.Document) { id = testidp.AssertionOf(doc).FindElement(".//NameID").Text() })
	return id
}

// e. Hostile responses, end to end: the browser posts a response altered
// in transit, or signed over an altered assertion, to keygate's ACS;
// keygate login fails with the refusal's reason, nothing is cached, and
// the audit log records the refusal with the code of the check that
// caught it.
func TestHostileSignIns(t *testing.T) {
	e := ssoServer(t)
	refused := func(t *testing.T, c *cli, page *testidp.Page, r result, code string) {
		t.Helper()
		if page.Status != http.StatusForbidden || page.Title() != "Sign-in refused" {
			t.Fatalf("browser's last page: %s", page)
		}
		if r.code != 1 || !strings.Contains(r.stderr, "sign-in refused") {
			t.Fatalf("keygate login: exit %d, want 1 with the refusal:\n%s", r.code, r.stderr)
		}
		if _, err := os.Stat(c.sessionFile()); err == nil {
			t.Fatal("a refused sign-in left a cached session")
		}
		ev := e.refusal(t, page.ClientAddr)
		if ev.Detail["code"] != code || ev.Detail["method"] != "saml" || ev.Reason == "" {
			t.Fatalf("audit event %+v, want code %s", ev, code)
		}
		mustContain(t, "keygate login", r.stderr, ev.Reason)
	}
	// Each of these concerns one person's sign-ins alone, so they run
	// side by side.
	t.Run("per person", func(t *testing.T) {
		for _, hc := range hostileCases {
			t.Run(hc.name, func(t *testing.T) {
				t.Parallel()
				name := e.addPerson(t, "hostile", person{groups: []string{"analysts"}, mutate: hc.mutate})
				s := signIn("saml", name)
				if hc.tamper != nil {
					s.Tamper = func(resp string) string { return hc.tamper(t, resp) }
				}
				c := e.newCLI(t)
				page, r := c.login(t, s)
				refused(t, c, page, r, hc.code)
			})
		}
		// A response captured from one sign-in, posted in another.
		t.Run("replayed into another sign-in", func(t *testing.T) {
			t.Parallel()
			name := e.addPerson(t, "replay", person{groups: []string{"analysts"}})
			var captured string
			s := signIn("saml", name)
			s.Tamper = func(resp string) string { captured = resp; return resp }
			e.newCLI(t).mustLogin(t, s)
			s.Tamper = func(string) string { return captured }
			c := e.newCLI(t)
			page, r := c.login(t, s)
			refused(t, c, page, r, "in_response_to")
		})
		// An IdP-initiated response answers no request, so only its
		// assertion ID stops a second use.
		t.Run("replayed IdP-initiated response", func(t *testing.T) {
			t.Parallel()
			name := e.addPerson(t, "replay-idp", person{groups: []string{"analysts"}})
			b := e.browser(t)
			form := b.SAMLLogin(b.Get(e.saml.IdPInitiatedURL(t, e.spEntityID)), name)
			// With idp_initiated on, the person lands signed in on the portal.
			first := b.PostSAMLResponse(form, nil)
			if first.Title() != "My databases" || !strings.Contains(first.Body, `<strong id="signed-in-user">`+name+`</strong>`) {
				t.Fatalf("IdP-initiated sign-in: %s", first)
			}
			again := e.browser(t).PostSAMLResponse(form, nil)
			if again.Status != http.StatusForbidden || again.Title() != "Sign-in refused" {
				t.Fatalf("the same response again: %s", again)
			}
			if ev := e.refusal(t, again.ClientAddr); ev.Detail["code"] != "replayed" {
				t.Fatalf("audit event %+v, want code replayed", ev)
			}
		})
	})
	// An attacker's key: the response carries a valid signature, by a
	// certificate the metadata does not list. The provider signs with it
	// for everyone meanwhile, so this runs alone.
	t.Run("untrusted certificate", func(t *testing.T) {
		name := e.addPerson(t, "untrusted", person{groups: []string{"analysts"}})
		key, cert := e.saml.SigningKey()
		t.Cleanup(func() {
			e.saml.SetSigningKey(key, cert)
			e.saml.Publish()
		})
		e.saml.Publish(cert)
		e.saml.SetSigningKey(testidp.KeyPair(t, "attacker", time.Now().Add(time.Hour)))
		c := e.newCLI(t)
		page, r := c.login(t, signIn("saml", name))
		refused(t, c, page, r, "untrusted_certificate")
	})
}

// g. keygate logout revokes the session at the server, not only on disk;
// an administrator lists sessions and revokes one, and the gateway ends
// a live connection opened with a token of that session.
func TestLogoutAndSessionRevocation(t *testing.T) {
	e := ssoServer(t)
	name := e.addPerson(t, "logout", person{groups: []string{"analysts"}, mfa: true})
	c := e.newCLI(t)
	c.mustLogin(t, signIn("oidc", name))
	cred, id := c.cachedSession(t)

	list := e.kg(t, 0, "admin", "session", "list", "--user", name)
	header := strings.Fields(strings.SplitN(list, "\n", 2)[0])
	for _, col := range []string{"ID", "USER", "SOURCE", "MFA", "EXPIRES", "STATUS"} {
		if !slices.Contains(header, col) {
			t.Fatalf("admin session list has no %s column:\n%s", col, list)
		}
	}
	row := sessionRow(t, list, id)
	if row["USER"] != name || row["SOURCE"] != "oidc" || row["MFA"] != "yes" || row["STATUS"] != "active" {
		t.Fatalf("admin session list row %v:\n%s", row, list)
	}

	if r := c.run(t, nil, "logout"); r.code != 0 {
		t.Fatalf("keygate logout: exit %d: %s", r.code, r.stderr)
	}
	if _, err := os.Stat(c.sessionFile()); err == nil {
		t.Fatal("keygate logout left the session cache")
	}
	r := c.dbToken(t, "orders")
	if r.code == 0 {
		t.Fatal("db token after logout succeeded")
	}
	mustContain(t, "db token after logout", r.stderr, "keygate login")
	// The credential itself no longer works: the server revoked it.
	r = c.run(t, []string{"KEYGATE_SESSION=" + cred}, "db", "token", "orders", "--server", e.apiURL, "--ca", e.caFile)
	if r.code == 0 {
		t.Fatal("the logged-out session's credential still gets tokens")
	}
	mustContain(t, "db token with the logged-out credential", r.stderr, "sign in again")
	row = sessionRow(t, e.kg(t, 0, "admin", "session", "list", "--user", name, "--all"), id)
	if row["STATUS"] != "revoked" {
		t.Fatalf("after logout the session is %v", row)
	}

	// An administrator revokes a session whose token holds a live
	// connection.
	c = e.newCLI(t)
	c.mustLogin(t, signIn("saml", name))
	_, id = c.cachedSession(t)
	r = c.dbToken(t, "orders")
	if r.code != 0 {
		t.Fatalf("db token: %s", r.stderr)
	}
	sl := e.startSleeper(t, name, "orders", strings.TrimSpace(r.stdout), "revoke-"+id)
	out := e.kg(t, 0, "admin", "session", "revoke", id)
	sl.endedWithin(t, "keygate admin session revoke returned", time.Now(), time.Second, "access revoked")
	mustContain(t, "admin session revoke", out, id)
	if r := c.dbToken(t, "orders"); r.code == 0 || !strings.Contains(r.stderr, "sign in again") {
		t.Fatalf("db token with the revoked session: exit %d: %s", r.code, r.stderr)
	}
	if strings.Contains(e.kg(t, 0, "admin", "session", "list", "--user", name), id) {
		t.Fatal("the revoked session is still listed as active")
	}
}

// sessionRow is the row of session id in `keygate admin session list`
// output, by column. The columns are single words; the dates in
// CREATED and EXPIRES are two, so the row is read from both ends.
func sessionRow(t testing.TB, list, id string) map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(list), "\n")
	header := strings.Fields(lines[0])
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != id {
			continue
		}
		row := map[string]string{}
		for i, col := range header {
			switch col {
			case "ID", "USER", "SOURCE", "MFA":
				row[col] = f[i]
			case "STATUS":
				row[col] = f[len(f)-1]
			}
		}
		return row
	}
	t.Fatalf("no session %s in:\n%s", id, list)
	return nil
}
