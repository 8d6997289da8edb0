package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keygate/keygate/internal/testidp"
)

// Sign-in in a real browser: Debian's Chromium, driven over the DevTools
// protocol, takes the person from the URL `keygate login` prints through
// keygate's device page and the identity provider's login and back. What
// the browser stand-in of internal/testidp imitates, Chromium does for
// real: it runs the SAML provider's auto-submitting form, follows the
// OpenID provider's redirects, keeps keygate's Secure, SameSite=None
// attempt cookie across sites, and checks every TLS certificate.

// chromiumPath is Debian's chromium, which scripts/test installs.
const chromiumPath = "/usr/bin/chromium"

// Time limits: Chromium's start, one whole sign-in in it, and the dump
// of a failed one.
const (
	chromiumStartTimeout = 20 * time.Second
	chromiumSignInLimit  = 15 * time.Second
	chromiumDumpTimeout  = 5 * time.Second
)

// keygate login through SAML and through OIDC, with the person's
// sign-in done in Chromium: login exits 0 and keygate db token then works
// with the session it cached.
func TestLoginInChromium(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("no Chromium (%v): run scripts/test, which installs Debian's chromium package", err)
	}
	e := ssoServer(t)
	browser := e.chromium(t)
	for _, method := range []string{"saml", "oidc"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			name := e.addPerson(t, "chromium-"+method, person{groups: []string{"analysts"}})
			c := e.newCLI(t)
			l := c.startLogin(t)
			browser.tab(t).deviceSignIn(t, e.apiURL, l.link, signIn(method, name))
			r := l.wait(t)
			if want := "Signed in as " + name; r.code != 0 || !strings.Contains(r.stderr, want) {
				t.Fatalf("keygate login after the sign-in in Chromium: exit %d, want 0 and %q:\n%s", r.code, want, r.stderr)
			}
			r = c.dbToken(t, "orders")
			if tok := strings.TrimSpace(r.stdout); r.code != 0 || !strings.HasPrefix(tok, "v4.public.") {
				t.Fatalf("keygate db token orders: exit %d: %q %s", r.code, r.stdout, r.stderr)
			}
		})
	}
}

// chromium is a headless Chromium for one test, each of whose subtests
// signs in in a tab of its own.
type chromium struct {
	ctx context.Context
	// output is what the browser process printed.
	output syncBuffer
}

// chromium starts Chromium, trusting the certificates that keygate and
// the identity providers serve, and stops it when the test ends.
//
// Chromium does not read Go's trust roots, and its own store (NSS, under
// the home directory) would need certutil and would outlive the test. So
// rather than the blanket --ignore-certificate-errors, it is given
// --ignore-certificate-errors-spki-list with the SHA-256 hash of the
// public key of each server certificate the sign-in goes through,
// keygate's and the providers', read in a handshake that Go verified
// against keygate's CA and the providers' certificates: those exact
// certificates are accepted, and a certificate error anywhere else still
// stops the page. Chromium honours that flag only with --user-data-dir,
// which chromedp sets to a new empty directory.
func (e *ssoEnv) chromium(t *testing.T) *chromium {
	t.Helper()
	keygateCA, err := os.ReadFile(e.caFile)
	if err != nil {
		t.Fatal(err)
	}
	kgRoots := x509.NewCertPool()
	kgRoots.AppendCertsFromPEM(keygateCA)
	var pins []string
	for _, s := range []struct {
		url   string
		roots *x509.CertPool
	}{
		{e.apiURL, kgRoots},
		{e.saml.URL, poolOf(e.saml.Certificate())},
		{e.oidc.Issuer, poolOf(e.oidc.Certificate())},
	} {
		if pin := spkiHash(servedCertificate(t, s.url, s.roots)); !slices.Contains(pins, pin) {
			pins = append(pins, pin)
		}
	}

	b := &chromium{}
	// chromedp's defaults run it headless, with no first-run pages, no
	// background networking, sync or extensions, and shared memory in
	// /tmp rather than a container's small /dev/shm; on a closed network
	// QUIC and component updates only make refused connections.
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(pins, ",")),
		chromedp.CombinedOutput(&b.output),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		if t.Failed() {
			t.Logf("Chromium's output:\n%s", b.output.String())
		}
	})
	// The first action starts the browser and binds it to ctx, so it has
	// no deadline of its own: the wait for it has.
	within(t, chromiumStartTimeout, cancel, "start Chromium", func() error { return chromedp.Do(ctx) })
	b.ctx = ctx
	return b
}

// tab opens a tab in a browser context of its own, with no cookies but
// its own, closed when the test ends; if the test failed, the page it
// was on is logged first.
func (b *chromium) tab(t *testing.T) *chromiumTab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	tab := &chromiumTab{ctx: ctx}
	t.Cleanup(func() {
		if t.Failed() {
			tab.dump(t)
		}
		cancel()
	})
	within(t, chromiumStartTimeout, cancel, "open a tab in Chromium", func() error { return chromedp.Do(ctx) })
	return tab
}

// within runs f and fails the test if it takes longer than d, after
// calling cancel, which makes f return.
func within(t testing.TB, d time.Duration, cancel func(), what string, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(d):
		cancel()
		t.Fatalf("%s: not done after %s", what, d)
	}
}

// chromiumTab is one tab of Chromium.
type chromiumTab struct {
	ctx context.Context
}

// deviceSignIn completes a `keygate login` in the tab, as a person does:
// it opens the verification URL, checks that the page shows the code in
// it, clicks the button of the sign-in method, fills in the identity
// provider's login form, and waits for keygate's page saying who signed
// in, which the provider's form or redirect leads to.
func (tab *chromiumTab) deviceSignIn(t testing.TB, apiURL, verificationURL string, s testidp.SignIn) {
	t.Helper()
	u, err := url.Parse(verificationURL)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(tab.ctx, chromiumSignInLimit)
	defer cancel()
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("Chromium: %s: %v", what, err)
		}
	}
	text := func(what string, sel chromedp.CSS) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("Chromium: %s: %v", what, err)
		}
		return strings.TrimSpace(v)
	}

	step("open the verification URL", chromedp.Navigate(verificationURL))
	if want, got := u.Query().Get("user_code"), text("read the user code", "#user-code"); got != want {
		t.Fatalf("Chromium: the verification page shows the code %q, want %q", got, want)
	}
	step("choose "+s.Method, chromedp.Click(chromedp.CSS("#signin-"+s.Method)))
	switch s.Method {
	case "saml":
		step("sign in at the SAML identity provider",
			chromedp.SendKeys(chromedp.CSS(`form input[name="user"]`), s.User),
			chromedp.Click(chromedp.CSS(`form button[type="submit"]`)))
	case "oidc":
		step("sign in at the OpenID provider",
			chromedp.SendKeys(chromedp.CSS(`form input#username`), s.User),
			chromedp.SendKeys(chromedp.CSS(`form input#password`), s.Password),
			chromedp.Click(chromedp.CSS(`form button[type="submit"]`)))
	default:
		t.Fatalf("unknown sign-in method %q", s.Method)
	}
	// Only keygate's message page has a #title.
	step("wait for keygate's answer", chromedp.WaitVisible(chromedp.CSS("#title")))
	if want, got := "Signed in as "+s.User, text("read keygate's answer", "#title"); got != want {
		t.Fatalf("Chromium: keygate's page says %q, want %q", got, want)
	}
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatalf("Chromium: %v", err)
	}
	if !strings.HasPrefix(loc, apiURL+"/") {
		t.Fatalf("Chromium: the sign-in ended at %s, not at keygate's %s", loc, apiURL)
	}
}

// dump logs the tab's URL and HTML, and writes a screenshot to a file
// that outlives the test.
func (tab *chromiumTab) dump(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, chromiumDumpTimeout)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Logf("Chromium: no page to show: %v", err)
		return
	}
	html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		html = "(" + err.Error() + ")"
	}
	t.Logf("Chromium was at %s:\n%s", loc, html)
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Logf("Chromium: screenshot: %v", err)
		return
	}
	f, err := os.CreateTemp("", "keygate-chromium-*.png")
	if err == nil {
		_, err = f.Write(png)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Logf("Chromium: save the screenshot: %v", err)
		return
	}
	t.Logf("Chromium: screenshot in %s", f.Name())
}

// servedCertificate is the certificate the HTTPS server at rawURL
// presents, verified against roots.
func servedCertificate(t testing.TB, rawURL string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", u.Host,
		&tls.Config{RootCAs: roots, ServerName: u.Hostname()})
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", u.Host, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// spkiHash is the base64 SHA-256 hash of a certificate's public key, as
// Chromium's --ignore-certificate-errors-spki-list takes it.
func spkiHash(c *x509.Certificate) string {
	h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(h[:])
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// syncBuffer is a bytes.Buffer safe to write from one goroutine while
// another reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
