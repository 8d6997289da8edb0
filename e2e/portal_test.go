package e2e

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/internal/testidp"
)

// The portal in a real browser: Debian's Chromium signs people in at the
// test identity providers through the portal's own sign-in links, gets
// tokens that the real psql then uses, ends live sessions with a click,
// and runs axe-core on every page. What the portal shows is what the API
// allows, so these tests check the outcome where it matters: in the
// upstream database, in the audit log and in the HTTP status an outsider
// gets.

// portalStep bounds one step in Chromium: a page load, a click that posts
// a form, a wait for a page. It is generous because a 2-CPU machine runs
// several Chromiums, psql and keygate at once.
const portalStep = 20 * time.Second

// portalLiveEndLimit is how soon after a click a live database session
// must be gone: the sub-second revocation the architecture promises.
const portalLiveEndLimit = time.Second

// axeScript is axe-core, installed from e2e/axe/package-lock.json.
const axeScript = "axe/node_modules/axe-core/axe.min.js"

// axeInstall is the command that installs it, from the repository's root.
const axeInstall = "npm ci --prefix e2e/axe --no-audit --no-fund"

// portalCookie is the portal's sign-in cookie (web.CookieName).
const portalCookie = "__Host-keygate"

// adminPages are every administration page, by the name of its
// screenshot; {person} and {group} stand for a person and a group.
var adminPages = []struct{ shot, path string }{
	{"admin-home", "/admin/"},
	{"admin-posture", "/admin/posture"},
	{"admin-people", "/admin/people"},
	{"admin-person", "/admin/people/{person}"},
	{"admin-groups", "/admin/groups"},
	{"admin-group", "/admin/groups/{group}"},
	{"admin-access", "/admin/access"},
	{"admin-explain", "/admin/explain"},
	{"admin-explain-answer", "/admin/explain?user={person}&database=orders&access=ro"},
	{"admin-who", "/admin/who"},
	{"admin-who-answer", "/admin/who?database=orders"},
	{"admin-review", "/admin/review"},
	{"admin-audit", "/admin/audit"},
	{"admin-sessions", "/admin/sessions"},
	{"admin-findings", "/admin/findings"},
}

// adminDownloads are the administration routes that answer with a file
// rather than a page.
var adminDownloads = []string{"/admin/review.csv", "/admin/review.json"}

// adminPath fills in a path of adminPages.
func adminPath(path, who, group string) string {
	return strings.NewReplacer("{person}", url.PathEscape(who), "{group}", url.PathEscape(group)).Replace(path)
}

var (
	portalAdminsOnce sync.Once
	portalAdminsOK   bool
)

// portalServer is the sign-in server, with administrators.groups naming
// keygate-admins, applied by a reload as TestAdminSignsInAsThemselves does
// (whichever runs first adds it; the other finds it there).
func portalServer(t *testing.T) *ssoEnv {
	t.Helper()
	e := ssoServer(t)
	portalAdminsOnce.Do(func() {
		raw, err := os.ReadFile(e.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(raw), administratorsConfig) {
			if err := os.WriteFile(e.cfgPath, append(raw, administratorsConfig...), 0o600); err != nil {
				t.Fatal(err)
			}
			e.kg(t, 0, "admin", "reload")
		}
		portalAdminsOK = true
	})
	if !portalAdminsOK {
		t.Fatal("could not make keygate-admins the administrators of the sign-in server")
	}
	return e
}

// portalChromium is a Chromium for one test, as e.chromium starts it,
// that also accepts the certificates of the other keygate servers given.
func portalChromium(t *testing.T, e *ssoEnv, others ...*kgServer) *chromium {
	t.Helper()
	var pins []string
	pin := func(rawURL string, roots *x509.CertPool) {
		if p := spkiHash(servedCertificate(t, rawURL, roots)); !slices.Contains(pins, p) {
			pins = append(pins, p)
		}
	}
	for _, s := range append([]*kgServer{e.kgServer}, others...) {
		pem, err := os.ReadFile(s.caFile)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		pin(s.apiURL, roots)
	}
	pin(e.saml.URL, poolOf(e.saml.Certificate()))
	pin(e.oidc.Issuer, poolOf(e.oidc.Certificate()))

	b := &chromium{}
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		// A desktop's width, so that screenshots show the layout people see.
		chromedp.WindowSize(1280, 900),
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
	within(t, chromiumStartTimeout, cancel, "start Chromium", func() error { return chromedp.Do(ctx) })
	b.ctx = ctx
	return b
}

// portalTab is a tab on one keygate server's portal.
type portalTab struct {
	*chromiumTab
	base string

	mu      sync.Mutex
	dialogs []string
}

// portalTab opens a tab, with cookies of its own, on the portal at base.
// Every JavaScript dialog a page opens fails the test: keygate's pages
// open none, so one is a script that should not run (an injected one,
// above all). The dialog is dismissed, so that the page goes on and the
// test reports it instead of hanging.
func (b *chromium) portalTab(t *testing.T, base string) *portalTab {
	t.Helper()
	p := &portalTab{chromiumTab: b.tab(t), base: base}
	dismiss := make(chan struct{}, 16)
	err := chromedp.Listen(p.ctx, func(ev any) {
		if d, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			p.mu.Lock()
			p.dialogs = append(p.dialogs, fmt.Sprintf("%s %q on %s", d.Type, d.Message, d.URL))
			p.mu.Unlock()
			select {
			case dismiss <- struct{}{}:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// The listener may not send commands; this does, for it.
	go func() {
		for {
			select {
			case <-p.ctx.Done():
				return
			case <-dismiss:
				chromedp.Call(p.ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
			}
		}
	}()
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, d := range p.dialogs {
			t.Errorf("a page opened a JavaScript dialog: %s", d)
		}
	})
	return p
}

// do runs actions in the tab, within portalStep.
func (p *portalTab) do(t testing.TB, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, portalStep)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("Chromium: %s: %v", what, err)
	}
}

// run runs one action that returns a value, within portalStep.
func run[T any](t testing.TB, p *portalTab, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, portalStep)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("Chromium: %s: %v", what, err)
	}
	return v
}

// eval evaluates a JavaScript expression in the page. DevTools'
// evaluation is not subject to the page's Content-Security-Policy, which
// lets a test inspect the page without loosening it.
func eval[T any](t testing.TB, p *portalTab, expr string, opts ...chromedp.EvaluateOption) T {
	t.Helper()
	return run(t, p, "evaluate "+clip(expr, 80), chromedp.Evaluate[T](expr, opts...))
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// jsString is s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// load runs actions that make the tab load a page (a navigation, a click
// that posts a form) and returns the HTTP response of the page, whose
// headers it checks as every portal page must carry them.
func (p *portalTab) load(t testing.TB, what string, actions ...chromedp.Action[chromedp.Void]) *network.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, portalStep)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, actions...)
	if err != nil || resp == nil {
		t.Fatalf("Chromium: %s: no page (%v)", what, err)
	}
	if strings.HasPrefix(resp.URL, p.base+"/") {
		if err := portalHeaders(resp); err != nil {
			t.Errorf("%s: %s: %v", what, resp.URL, err)
		}
	}
	return resp
}

// open loads path and wants status.
func (p *portalTab) open(t testing.TB, path string, status int) *network.Response {
	t.Helper()
	resp := p.load(t, "open "+path, chromedp.Navigate(p.base+path))
	if resp.Status != int64(status) {
		t.Fatalf("GET %s in Chromium: %d %s, want %d", path, resp.Status, resp.StatusText, status)
	}
	return resp
}

// header is a response header by name, as Chromium reports it (HTTP/2
// names are lower case).
func header(resp *network.Response, name string) string {
	for k, v := range resp.Headers {
		if strings.EqualFold(k, name) {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}

// portalHeaders checks what every portal page carries: a
// Content-Security-Policy that runs the portal's own script files and no
// inline or evaluated script, and no caching (a token page must not
// outlive its tab).
func portalHeaders(resp *network.Response) error {
	csp := header(resp, "Content-Security-Policy")
	if csp == "" {
		return errors.New("no Content-Security-Policy")
	}
	directives := map[string][]string{}
	for _, d := range strings.Split(csp, ";") {
		if f := strings.Fields(d); len(f) > 0 {
			directives[strings.ToLower(f[0])] = f[1:]
		}
	}
	scripts, ok := directives["script-src"]
	if !ok {
		return fmt.Errorf("Content-Security-Policy %q has no script-src", csp)
	}
	if !slices.Contains(scripts, "'self'") {
		return fmt.Errorf("Content-Security-Policy %q: script-src lacks 'self'", csp)
	}
	for _, s := range scripts {
		if s != "'self'" {
			return fmt.Errorf("Content-Security-Policy %q: script-src allows %s besides 'self'", csp, s)
		}
	}
	if _, ok := directives["script-src-elem"]; ok {
		return fmt.Errorf("Content-Security-Policy %q: script-src-elem widens script-src", csp)
	}
	if _, ok := directives["script-src-attr"]; ok {
		return fmt.Errorf("Content-Security-Policy %q: script-src-attr widens script-src", csp)
	}
	if cc := header(resp, "Cache-Control"); !strings.Contains(cc, "no-store") {
		return fmt.Errorf("Cache-Control %q, want no-store", cc)
	}
	return nil
}

// waitPage waits until the tab shows path with the heading h1, after
// steps that go through other sites (the identity provider's).
func (p *portalTab) waitPage(t testing.TB, path, h1 string) {
	t.Helper()
	want := p.base + path + "\n" + h1
	var got string
	deadline := time.Now().Add(portalStep)
	for {
		ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + ((document.querySelector("main h1") || {}).textContent || "").trim()`))
		cancel()
		if err == nil {
			got = v
			if got == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Chromium: waited %s for %q, the tab shows %q", portalStep, want, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// signIn signs s in through the portal, as a person does: the sign-in
// page at /, the link of the method, the identity provider's form, and
// back to "My databases".
func (p *portalTab) signIn(t testing.TB, s testidp.SignIn) {
	t.Helper()
	p.open(t, "/", http.StatusOK)
	p.do(t, "choose "+s.Method, chromedp.Click(chromedp.CSS("#signin-"+s.Method)))
	p.idpLogin(t, s, false)
	p.waitPage(t, "/", "My databases")
	if got := strings.TrimSpace(run(t, p, "read who is signed in", chromedp.Text(chromedp.CSS("#signed-in-user")))); got != s.User {
		t.Fatalf("the portal says %q is signed in, want %s", got, s.User)
	}
}

// idpLogin fills in the identity provider's login form and sends it,
// with Enter when byKeyboard, else with a click.
func (p *portalTab) idpLogin(t testing.TB, s testidp.SignIn, byKeyboard bool) {
	t.Helper()
	var fill []chromedp.Action[chromedp.Void]
	switch s.Method {
	case "saml":
		fill = append(fill, chromedp.SendKeys(chromedp.CSS(`form input[name="user"]`), s.User))
	case "oidc":
		fill = append(fill, chromedp.SendKeys(chromedp.CSS(`form input#username`), s.User),
			chromedp.SendKeys(chromedp.CSS(`form input#password`), s.Password))
	default:
		t.Fatalf("unknown sign-in method %q", s.Method)
	}
	if byKeyboard {
		fill = append(fill, chromedp.KeyEvent(kb.Enter))
	} else {
		fill = append(fill, chromedp.Click(chromedp.CSS(`form button[type="submit"]`)))
	}
	p.do(t, "sign in at the "+s.Method+" identity provider", fill...)
}

// cookie is the portal's sign-in cookie in the tab.
func (p *portalTab) cookie(t testing.TB) *network.Cookie {
	t.Helper()
	res := run(t, p, "read cookies", func(ctx context.Context, tg *chromedp.Target) (network.GetCookiesResult, error) {
		return chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{p.base + "/"}})
	})
	for _, c := range res.Cookies {
		if c.Name == portalCookie {
			return c
		}
	}
	t.Fatalf("no %s cookie for %s", portalCookie, p.base)
	return nil
}

// getToken clicks "Get a token" for database at access on "My databases"
// and returns the token the page shows.
func (p *portalTab) getToken(t testing.TB, database, access string) string {
	t.Helper()
	resp := p.load(t, "get a token", chromedp.Click(chromedp.CSS("#token-"+database+"-"+access)))
	if resp.Status != http.StatusOK {
		t.Fatalf("POST /token: %d %s", resp.Status, resp.StatusText)
	}
	tok := run(t, p, "read the token", chromedp.Value(chromedp.CSS("#token")))
	if !strings.HasPrefix(tok, "v4.public.") {
		t.Fatalf("the token page shows %q as the token", tok)
	}
	return tok
}

// screenshotDir is where the tests save their screenshots:
// $KEYGATE_SCREENSHOTS, or e2e/screenshots.
func screenshotDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("KEYGATE_SCREENSHOTS")
	if dir == "" {
		dir = "screenshots"
	}
	dir, err := filepath.Abs(dir)
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		t.Fatalf("screenshot directory: %v", err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// screenshot saves the whole page as dir/name.png. Tests that share a
// name write the same page, so the file is replaced whole, never written
// over by two at once.
func (p *portalTab) screenshot(t testing.TB, dir, name string) {
	t.Helper()
	png := run(t, p, "screenshot "+name, chromedp.FullScreenshot(100))
	f, err := os.CreateTemp(dir, ".shot-*")
	if err == nil {
		_, err = f.Write(png)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), filepath.Join(dir, name+".png"))
		}
		if err != nil {
			os.Remove(f.Name())
		}
	}
	if err != nil {
		t.Fatalf("save screenshot %s: %v", name, err)
	}
}

// portalHTTP is what a browser signed in with cookie sends, without a
// browser: for statuses, and for requests a page would not make.
type portalHTTP struct {
	e      *ssoEnv
	cookie string
	http   *http.Client
}

func (e *ssoEnv) portalHTTP(cookie string) *portalHTTP {
	c := e.httpClient()
	// The answer itself, not where a redirect leads.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &portalHTTP{e: e, cookie: cookie, http: c}
}

// do sends a request with the cookie, as from the portal's own page, and
// returns the status and body.
func (h *portalHTTP) do(t testing.TB, method, path string, form url.Values) (int, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, h.e.apiURL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(&http.Cookie{Name: portalCookie, Value: h.cookie})
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", h.e.apiURL)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	return h.send(t, req)
}

// api calls keygate's JSON API with bearer, as the CLI does.
func (h *portalHTTP) api(t testing.TB, bearer, method, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, h.e.apiURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	return h.send(t, req)
}

func (h *portalHTTP) send(t testing.TB, req *http.Request) (int, string) {
	t.Helper()
	resp, err := h.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// liveID is the id of user's one live session on orders, as an
// administrator's API lists it.
func liveID(t testing.TB, admin *client.Client, user string) string {
	t.Helper()
	var list []api.LiveSession
	waitFor(t, 5*time.Second, func() bool {
		var err error
		list, err = admin.ListLive(context.Background(), user, "orders")
		if err != nil {
			t.Fatalf("list %s's live sessions: %v", user, err)
		}
		return len(list) == 1
	})
	return list[0].ID
}

// stillRunning fails the test if the sleeper's psql has exited.
func stillRunning(t testing.TB, sl *sleeper, what string) {
	t.Helper()
	select {
	case <-sl.exited:
		t.Fatalf("%s ended %s's live session: %s", what, sl.app, sl.stderr.String())
	default:
	}
}

// 1. A person signs in through the portal with each method, gets a token
// for orders on "My databases", saves keygate's CA bundle from the link
// on the token page, and the real psql connects with the connection
// string the page shows, run from that folder with the token as the
// password. The token reaches the browser only in the answer to a POST:
// it is in no URL and no history entry, the page is not cached, and the
// cookie that carries the sign-in is out of scripts' reach.
func TestPortalTokenAndPsql(t *testing.T) {
	t.Parallel()
	e := portalServer(t)
	b := portalChromium(t, e)
	shots := screenshotDir(t)
	caPEM, err := os.ReadFile(e.caFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{"saml", "oidc"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			name := e.addPerson(t, "portal-"+method, person{groups: []string{"analysts"}})
			p := b.portalTab(t, e.apiURL)

			p.open(t, "/", http.StatusOK)
			start := eval[string](t, p, `document.getElementById("signin-`+method+`").getAttribute("href")`)
			if !strings.HasPrefix(start, "/signin/start?method="+method+"&") {
				t.Errorf("the sign-in link for %s goes to %q", method, start)
			}
			if method == "saml" {
				p.screenshot(t, shots, "signin")
			}
			p.signIn(t, signIn(method, name))
			c := p.cookie(t)
			if !c.HTTPOnly || !c.Secure || c.SameSite != network.CookieSameSiteLax || c.Path != "/" || c.Domain != "127.0.0.1" {
				t.Errorf("the sign-in cookie: HttpOnly %v, Secure %v, SameSite %q, Path %q, Domain %q; want HttpOnly, Secure, Lax, / and the host only",
					c.HTTPOnly, c.Secure, c.SameSite, c.Path, c.Domain)
			}
			if strings.Contains(eval[string](t, p, `document.cookie`), c.Value) {
				t.Error("a script on the page can read the sign-in credential in document.cookie")
			}
			if method == "saml" {
				p.screenshot(t, shots, "databases")
			}

			tok := p.getToken(t, "orders", "ro")
			if loc := eval[string](t, p, `location.href`); loc != e.apiURL+"/token" {
				t.Errorf("the token page is at %s, want %s/token with no query", loc, e.apiURL)
			}
			history := run(t, p, "read the history", chromedp.NavigationEntries())
			for _, h := range history.Entries {
				if strings.Contains(h.URL, tok) || strings.Contains(h.URL, url.QueryEscape(tok)) {
					t.Errorf("the token is in the history entry %s", h.URL)
				}
			}
			if nav := eval[string](t, p, `performance.getEntriesByType("navigation")[0].name`); strings.Contains(nav, tok) || nav != e.apiURL+"/token" {
				t.Errorf("the token page's navigation entry is %s", nav)
			}
			if title := eval[string](t, p, `document.title`); strings.Contains(title, tok) {
				t.Error("the token is in the page title")
			}

			// The countdown runs: its text changes within 1.5 s.
			countdownRE := regexp.MustCompile(`^\d+:\d\d left$`)
			before := strings.TrimSpace(run(t, p, "read the countdown", chromedp.Text(chromedp.CSS("#countdown"))))
			time.Sleep(1500 * time.Millisecond)
			after := strings.TrimSpace(run(t, p, "read the countdown", chromedp.Text(chromedp.CSS("#countdown"))))
			if !countdownRE.MatchString(before) || !countdownRE.MatchString(after) || before == after {
				t.Errorf("the countdown read %q, then %q 1.5 s later; want M:SS left, changing", before, after)
			}

			// The CA bundle, fetched by the page as its link downloads it.
			href := eval[string](t, p, `document.getElementById("ca-download").getAttribute("href")`)
			if href != "/v1/ca.pem" {
				t.Fatalf("the CA bundle link goes to %q", href)
			}
			saveAs := eval[string](t, p, `document.getElementById("ca-download").getAttribute("download")`)
			if saveAs != "keygate-ca.pem" {
				t.Errorf("the CA bundle link saves it as %q, want keygate-ca.pem", saveAs)
			}
			bundle := eval[string](t, p, `fetch(`+jsString(href)+`).then(r => r.ok ? r.text() : Promise.reject(new Error("HTTP " + r.status)))`, chromedp.EvalAwaitPromise)
			if strings.TrimSpace(bundle) != strings.TrimSpace(string(caPEM)) {
				t.Fatalf("the CA bundle at %s is not keygate's CA:\n%s", href, bundle)
			}
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, saveAs), []byte(bundle), 0o644); err != nil {
				t.Fatal(err)
			}

			conninfo := strings.TrimSpace(run(t, p, "read the psql connection string", chromedp.Text(chromedp.CSS("#psql-conninfo"))))
			for _, want := range []string{"user=" + name + " ", "dbname=orders", "sslmode=verify-full", "sslrootcert=keygate-ca.pem"} {
				if !strings.Contains(conninfo+" ", want) {
					t.Errorf("the psql connection string %q lacks %s", conninfo, want)
				}
			}
			if strings.Contains(conninfo, tok) {
				t.Error("the psql connection string holds the token")
			}
			if method == "saml" {
				p.screenshot(t, shots, "token")
			}

			// psql exactly as the page says, from the folder holding the
			// bundle, with nothing of libpq's from this environment.
			cmd := exec.Command("psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", conninfo, "-c", "SELECT current_user, count(*) FROM customers")
			cmd.Dir = dir
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "PG") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			cmd.Env = append(cmd.Env, "PGPASSWORD="+tok, "PGCONNECT_TIMEOUT=10")
			r := runCmd(t, cmd)
			if r.code != 0 || strings.TrimSpace(r.stdout) != name+".ro|2" {
				t.Fatalf("psql %q from %s: exit %d: %s %s", conninfo, dir, r.code, r.stdout, r.stderr)
			}
		})
	}
}

// 2. A person ends their own live database session from "My sessions":
// the psql holding it ends within a second of the click, told who ended
// it, and the audit records it.
func TestPortalEndLiveSession(t *testing.T) {
	t.Parallel()
	e := portalServer(t)
	b := portalChromium(t, e)
	shots := screenshotDir(t)
	name := e.addPerson(t, "portal-live", person{groups: []string{"analysts"}})
	p := b.portalTab(t, e.apiURL)
	p.signIn(t, signIn("oidc", name))
	tok := p.getToken(t, "orders", "ro")
	sl := e.startSleeper(t, name, "orders", tok, "portal-live-"+name)

	p.open(t, "/sessions", http.StatusOK)
	buttons := eval[[]string](t, p, `Array.from(document.querySelectorAll("#live-sessions button[id^='end-live-']"), b => b.id)`)
	if len(buttons) != 1 {
		t.Fatalf("My sessions lists %d live sessions (%v), want 1", len(buttons), buttons)
	}
	p.screenshot(t, shots, "sessions")
	id := strings.TrimPrefix(buttons[0], "end-live-")
	clicked := time.Now()
	resp := p.load(t, "end the live session", chromedp.Click(chromedp.CSS(`[id=`+jsString(buttons[0])+`]`)))
	took := sl.ended(t, "the click on End").Sub(clicked)
	t.Logf("the live session ended %s after the click on End", took)
	if took > portalLiveEndLimit {
		t.Errorf("the live session ended %s after the click, want under %s", took, portalLiveEndLimit)
	}
	mustContain(t, "psql's error", sl.stderr.String(), "ended by "+name)
	if resp.Status != http.StatusOK || !strings.HasSuffix(resp.URL, "/sessions?done=live-ended") {
		t.Errorf("after ending it the tab is at %s (%d)", resp.URL, resp.Status)
	}
	// The page the click led to no longer lists it: a session being
	// ended is left out even before the gateway unregisters it.
	if n := eval[int](t, p, `document.querySelectorAll("#live-sessions button[id^='end-live-']").length`); n != 0 {
		t.Errorf("the page after End still lists %d live sessions", n)
	}
	if ev := lastOf(t, e.kgServer, audit.LiveEnd, name); ev.Actor != name || ev.SessionID != id {
		t.Errorf("%s: %+v, want actor %s and session %s", audit.LiveEnd, ev, name, id)
	}
}

// 3. An administrator, signed in through the portal, disables a person
// and ends someone's live session with a click each; with their own CLI
// session they do the same from keygate admin; every one of these is
// audited with their name. A person who is not an administrator gets 403
// on every administration page, download and action, and from the admin
// API, and nothing changes.
func TestPortalAdministrator(t *testing.T) {
	t.Parallel()
	e := portalServer(t)
	b := portalChromium(t, e)
	shots := screenshotDir(t)
	admin := e.addPerson(t, "portal-admin", person{groups: []string{"keygate-admins"}})
	bob := e.addPerson(t, "portal-bob", person{groups: []string{"analysts"}})
	carol := e.addPerson(t, "portal-carol", person{groups: []string{"analysts"}})
	dave := e.addPerson(t, "portal-dave", person{groups: []string{"analysts"}})
	outsider := e.addPerson(t, "portal-outsider", person{groups: []string{"analysts"}})

	// A person's live session, through a sign-in of their own.
	live := func(t *testing.T, name string) (*sleeper, string) {
		t.Helper()
		s := e.mustSignInHTTP(t, signIn("oidc", name)).AccessToken
		r := e.tokenWithSession(t, s, "orders")
		if r.code != 0 {
			t.Fatalf("db token as %s: exit %d: %s", name, r.code, r.stderr)
		}
		return e.startSleeper(t, name, "orders", strings.TrimSpace(r.stdout), "portal-admin-"+name), s
	}

	p := b.portalTab(t, e.apiURL)
	p.signIn(t, signIn("saml", admin))
	adminAPI, err := client.New(e.apiURL, e.caFile, p.cookie(t).Value)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("disable a person", func(t *testing.T) {
		sl, bobSession := live(t, bob)
		p.open(t, "/admin/people/"+url.PathEscape(bob), http.StatusOK)
		p.screenshot(t, shots, "admin-person")
		clicked := time.Now()
		p.load(t, "disable "+bob, chromedp.Click(chromedp.CSS("#disable-person")))
		took := sl.ended(t, "the click on Disable").Sub(clicked)
		t.Logf("%s's live session ended %s after the click on Disable", bob, took)
		if took > portalLiveEndLimit {
			t.Errorf("%s's live session ended %s after the click, want under %s", bob, took, portalLiveEndLimit)
		}
		if pr := kgJSON[api.Person](t, e.kgServer, "admin", "user", "show", bob, "--json"); pr.Active {
			t.Errorf("%s is still active after the click on Disable", bob)
		}
		if r := e.tokenWithSession(t, bobSession, "orders"); r.code == 0 {
			t.Errorf("%s still gets tokens after being disabled", bob)
		}
		if ev := lastOf(t, e.kgServer, audit.AdminUserDisable, bob); ev.Actor != admin {
			t.Errorf("%s: %+v, want actor %s", audit.AdminUserDisable, ev, admin)
		}
	})

	t.Run("end a live session", func(t *testing.T) {
		sl, _ := live(t, carol)
		id := liveID(t, adminAPI, carol)
		p.open(t, "/admin/sessions", http.StatusOK)
		p.screenshot(t, shots, "admin-sessions")
		clicked := time.Now()
		p.load(t, "end "+carol+"'s live session", chromedp.Click(chromedp.CSS(`[id=`+jsString("end-live-"+id)+`]`)))
		took := sl.ended(t, "the click on End").Sub(clicked)
		t.Logf("%s's live session ended %s after the administrator's click on End", carol, took)
		if took > portalLiveEndLimit {
			t.Errorf("%s's live session ended %s after the click, want under %s", carol, took, portalLiveEndLimit)
		}
		mustContain(t, "psql's error", sl.stderr.String(), "ended by administrator "+admin)
		if ev := lastOf(t, e.kgServer, audit.AdminLiveEnd, carol); ev.Actor != admin || ev.Detail["session_id"] != id {
			t.Errorf("%s: %+v, want actor %s and session %s", audit.AdminLiveEnd, ev, admin, id)
		}
	})

	// dave's live session stays open while someone who is not an
	// administrator tries everything, and the administrator ends it after.
	sl, _ := live(t, dave)
	daveLive := liveID(t, adminAPI, dave)

	t.Run("not an administrator", func(t *testing.T) {
		o := b.portalTab(t, e.apiURL)
		o.signIn(t, signIn("saml", outsider))
		if n := eval[int](t, o, `document.querySelectorAll('a[href^="/admin"]').length`); n != 0 {
			t.Errorf("a person who is not an administrator is offered %d links to administration", n)
		}
		csrf := eval[string](t, o, `document.querySelector('input[name="csrf"]').value`)
		cred := o.cookie(t).Value
		h := e.portalHTTP(cred)
		paths := slices.Clone(adminDownloads)
		for _, pg := range adminPages {
			paths = append(paths, adminPath(pg.path, admin, "keygate-admins"))
		}
		for _, path := range paths {
			if status, body := h.do(t, http.MethodGet, path, nil); status != http.StatusForbidden {
				t.Errorf("GET %s as %s: %d, want 403\n%s", path, outsider, status, clip(body, 400))
			}
		}
		// In Chromium too, with the portal's page saying why.
		o.open(t, "/admin/", http.StatusForbidden)
		o.screenshot(t, shots, "admin-forbidden")

		for _, post := range []struct {
			path string
			form url.Values
		}{
			{"/admin/people/" + url.PathEscape(dave) + "/disable", url.Values{"csrf": {csrf}}},
			{"/admin/people/" + url.PathEscape(admin) + "/disable", url.Values{"csrf": {csrf}}},
			{"/admin/people/" + url.PathEscape(bob) + "/enable", url.Values{"csrf": {csrf}}},
			{"/admin/sessions/end", url.Values{"csrf": {csrf}, "id": {daveLive}, "kind": {"live"}}},
		} {
			if status, body := h.do(t, http.MethodPost, post.path, post.form); status != http.StatusForbidden {
				t.Errorf("POST %s as %s with their own form token: %d, want 403\n%s", post.path, outsider, status, clip(body, 400))
			}
		}
		for _, call := range []struct{ method, path string }{
			{http.MethodGet, "/v1/admin/users"},
			{http.MethodGet, "/v1/admin/live"},
			{http.MethodGet, "/v1/admin/audit"},
			{http.MethodPost, "/v1/admin/users/" + url.PathEscape(dave) + "/disable"},
			{http.MethodDelete, "/v1/admin/live/" + url.PathEscape(daveLive)},
		} {
			if status, body := h.api(t, cred, call.method, call.path); status != http.StatusForbidden {
				t.Errorf("%s %s as %s: %d, want 403\n%s", call.method, call.path, outsider, status, clip(body, 400))
			}
		}
		stillRunning(t, sl, outsider+"'s requests")
		if pr := kgJSON[api.Person](t, e.kgServer, "admin", "user", "show", dave, "--json"); !pr.Active {
			t.Errorf("%s was disabled by %s's requests", dave, outsider)
		}
		if pr := kgJSON[api.Person](t, e.kgServer, "admin", "user", "show", admin, "--json"); !pr.Active {
			t.Errorf("%s was disabled by %s's requests", admin, outsider)
		}
		if pr := kgJSON[api.Person](t, e.kgServer, "admin", "user", "show", bob, "--json"); pr.Active {
			t.Errorf("%s was enabled by %s's requests", bob, outsider)
		}
	})

	t.Run("the same administrator from the CLI", func(t *testing.T) {
		cred := e.mustSignInHTTP(t, signIn("oidc", admin)).AccessToken
		r := e.asPerson(t, cred, "admin", "live", "end", daveLive)
		returned := time.Now()
		if r.code != 0 {
			t.Fatalf("keygate admin live end as %s: exit %d: %s %s", admin, r.code, r.stdout, r.stderr)
		}
		sl.endedWithin(t, "keygate admin live end returned", returned, portalLiveEndLimit, "ended by administrator "+admin)
		if r = e.asPerson(t, cred, "admin", "user", "disable", dave); r.code != 0 {
			t.Fatalf("keygate admin user disable as %s: exit %d: %s %s", admin, r.code, r.stdout, r.stderr)
		}
		if ev := lastOf(t, e.kgServer, audit.AdminLiveEnd, dave); ev.Actor != admin || ev.Detail["session_id"] != daveLive {
			t.Errorf("%s: %+v, want actor %s", audit.AdminLiveEnd, ev, admin)
		}
		if ev := lastOf(t, e.kgServer, audit.AdminUserDisable, dave); ev.Actor != admin {
			t.Errorf("%s: %+v, want actor %s", audit.AdminUserDisable, ev, admin)
		}
	})
}

// axeViolation is one rule axe-core found broken, with the elements that
// break it.
type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// loadAxe reads axe-core, or fails the test saying how to install it.
func loadAxe(t testing.TB) string {
	t.Helper()
	src, err := os.ReadFile(axeScript)
	if err != nil {
		t.Fatalf("axe-core is not installed (%v): run `%s` from the repository's root (scripts/test does)", err, axeInstall)
	}
	return string(src)
}

// axe runs axe-core on the page in the tab and fails the test for every
// serious or critical violation; lesser ones are logged.
func (p *portalTab) axe(t testing.TB, src, page string) {
	t.Helper()
	if !eval[bool](t, p, `typeof axe === "object"`) {
		eval[chromedp.Void](t, p, src+"\n;void 0")
	}
	vs := eval[[]axeViolation](t, p, `axe.run(document, {resultTypes: ["violations"]}).then(r => r.violations.map(v => ({
		id: v.id, impact: v.impact || "", help: v.help, nodes: v.nodes.map(n => n.target.join(" "))})))`, chromedp.EvalAwaitPromise)
	for _, v := range vs {
		msg := fmt.Sprintf("%s: axe-core %s (%s): %s, at %s", page, v.ID, v.Impact, v.Help, strings.Join(v.Nodes, ", "))
		if v.Impact == "serious" || v.Impact == "critical" {
			t.Error(msg)
		} else {
			t.Log(msg)
		}
	}
}

// 4. axe-core finds nothing serious on any page: signed out, on a server
// where sign-in is not configured, every page of a person's, the refusal
// an outsider sees, and every administration page.
func TestPortalAccessibility(t *testing.T) {
	t.Parallel()
	src := loadAxe(t)
	e := portalServer(t)
	bare := sharedServer(t)
	b := portalChromium(t, e, bare)
	shots := screenshotDir(t)
	name := e.addPerson(t, "portal-a11y", person{groups: []string{"analysts"}})
	admin := e.addPerson(t, "portal-a11y-admin", person{groups: []string{"keygate-admins"}})
	// A group keygate holds, for its page: the providers' groups live in
	// sessions alone.
	group := fmt.Sprintf("portal-a11y-team-%d", personSeq.Add(1))
	e.kg(t, 0, "admin", "group", "add", group)
	e.kg(t, 0, "admin", "group", "add-member", group, name)

	check := func(p *portalTab, page, shot string, open func(t *testing.T)) {
		t.Run(page, func(t *testing.T) {
			open(t)
			p.axe(t, src, page)
			if shot != "" {
				p.screenshot(t, shots, shot)
			}
		})
	}

	p := b.portalTab(t, e.apiURL)
	check(p, "sign-in", "signin", func(t *testing.T) { p.open(t, "/", http.StatusOK) })

	nc := b.portalTab(t, bare.apiURL)
	check(nc, "sign-in not configured", "signin-not-configured", func(t *testing.T) {
		nc.open(t, "/", http.StatusOK)
		nc.do(t, "find the notice", chromedp.WaitVisible(chromedp.CSS("#signin-not-configured")))
	})

	p.signIn(t, signIn("saml", name))
	check(p, "my databases", "databases", func(t *testing.T) { p.open(t, "/", http.StatusOK) })
	var tok string
	check(p, "token", "token", func(t *testing.T) { tok = p.getToken(t, "orders", "ro") })
	if tok != "" {
		e.startSleeper(t, name, "orders", tok, "portal-a11y-"+name)
	}
	check(p, "my sessions", "sessions", func(t *testing.T) {
		p.open(t, "/sessions", http.StatusOK)
		p.do(t, "find the live session", chromedp.WaitVisible(chromedp.CSS("#live-sessions")))
	})
	check(p, "not allowed", "admin-forbidden", func(t *testing.T) { p.open(t, "/admin/", http.StatusForbidden) })

	a := b.portalTab(t, e.apiURL)
	a.signIn(t, signIn("oidc", admin))
	for _, pg := range adminPages {
		check(a, pg.path, pg.shot, func(t *testing.T) { a.open(t, adminPath(pg.path, name, group), http.StatusOK) })
	}
}

// 5. A token and its copy with the keyboard alone: Tab through "My
// databases" to the button for orders, Enter; Tab to "Copy token",
// Enter; the clipboard holds the token and the page says so. The sign-in
// goes by keyboard too. Nothing here clicks.
func TestPortalKeyboard(t *testing.T) {
	t.Parallel()
	e := portalServer(t)
	b := portalChromium(t, e)
	name := e.addPerson(t, "portal-keys", person{groups: []string{"analysts"}})
	p := b.portalTab(t, e.apiURL)

	// A headless tab has no window focus of its own, and the clipboard
	// answers only a focused page that may use it.
	p.do(t, "emulate focus", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetFocusEmulationEnabled, emulation.SetFocusEmulationEnabledParams{Enabled: true})
		return err
	}))
	bctx := chromedp.FromContext(p.ctx).BrowserContextID
	for _, perm := range []string{"clipboard-read", "clipboard-write"} {
		p.do(t, "grant "+perm, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.CallBrowser(ctx, browser.SetPermission, browser.SetPermissionParams{
				Permission: &browser.PermissionDescriptor{Name: perm}, Setting: browser.PermissionSettingGranted,
				Origin: e.apiURL, BrowserContextID: bctx})
			return err
		}))
	}

	// tabTo presses Tab until the element sel has the focus.
	tabTo := func(sel string) {
		t.Helper()
		for range 60 {
			if eval[bool](t, p, `document.activeElement !== null && document.activeElement.matches(`+jsString(sel)+`)`) {
				return
			}
			p.do(t, "press Tab", chromedp.KeyEvent(kb.Tab))
		}
		t.Fatalf("60 presses of Tab never reached %s; the focus is on %s", sel,
			eval[string](t, p, `document.activeElement ? document.activeElement.outerHTML.slice(0, 200) : "nothing"`))
	}

	p.open(t, "/", http.StatusOK)
	tabTo("#signin-saml")
	p.do(t, "press Enter on the SAML link", chromedp.KeyEvent(kb.Enter))
	p.idpLogin(t, signIn("saml", name), true)
	p.waitPage(t, "/", "My databases")

	tabTo("#token-orders-ro")
	if resp := p.load(t, "press Enter on Get a token", chromedp.KeyEvent(kb.Enter)); resp.Status != http.StatusOK {
		t.Fatalf("POST /token: %d", resp.Status)
	}
	tok := run(t, p, "read the token", chromedp.Value(chromedp.CSS("#token")))
	if !strings.HasPrefix(tok, "v4.public.") {
		t.Fatalf("the token page shows %q", tok)
	}
	tabTo("#copy-token")
	p.do(t, "press Enter on Copy token", chromedp.KeyEvent(kb.Enter))
	var status string
	waitFor(t, 5*time.Second, func() bool {
		status = strings.TrimSpace(eval[string](t, p, `document.getElementById("copy-status").textContent`))
		return status != ""
	})
	if !strings.HasPrefix(status, "Copied") {
		t.Fatalf("#copy-status says %q, want Copied…", status)
	}
	if got := eval[string](t, p, `navigator.clipboard.readText()`, chromedp.EvalAwaitPromise); got != tok {
		t.Fatalf("the clipboard holds %q, want the token", clip(got, 40))
	}
}

// 6. Names from the identity provider are text, never markup: a person
// provisioned over SCIM with an <img onerror> display name, in a group
// whose name holds a <script>, shows literally on the administration
// pages and on the person's own, and no element or script of theirs gets
// into any page (a dialog from one fails the test: see portalTab).
func TestPortalEscapesIdPNames(t *testing.T) {
	t.Parallel()
	e := portalServer(t)
	b := portalChromium(t, e)
	shots := screenshotDir(t)
	seq := personSeq.Add(1)
	name := fmt.Sprintf("portal-xss-%d", seq)
	display := `<img src=x onerror=alert(1)>`
	group := fmt.Sprintf(`xss <script>alert(2)</script> %d`, seq)
	c := e.scimClient(t, name)
	user := c.must(201, "POST", "/Users", fmt.Sprintf(`{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": %s, "displayName": %s, "active": true}`,
		jsString(name), jsString(display)))
	uid, _ := user["id"].(string)
	c.must(201, "POST", "/Groups", fmt.Sprintf(`{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": %s, "members": [{"value": %s}]}`,
		jsString(group), jsString(uid)))
	// The same person at the identity provider, where analysts gives them
	// a database to see.
	e.saml.AddPerson(testidp.Person{UserName: name, Email: name + "@example.com", Groups: []string{"analysts"}})
	admin := e.addPerson(t, "portal-xss-admin", person{groups: []string{"keygate-admins"}})

	// clean checks the page in the tab: the texts in it literally, and no
	// element or script the names could have made.
	clean := func(t *testing.T, p *portalTab, path string, texts ...string) {
		t.Helper()
		body := eval[string](t, p, `document.body.innerText`)
		for _, s := range texts {
			if !strings.Contains(body, s) {
				t.Errorf("%s does not show %q literally:\n%s", path, s, clip(body, 2000))
			}
		}
		if n := eval[int](t, p, `document.querySelectorAll('img[src="x"], [onerror]').length`); n != 0 {
			t.Errorf("%s holds %d elements made from a name", path, n)
		}
		scripts := eval[[]string](t, p, `Array.from(document.scripts, s => s.src || "inline: " + s.text.slice(0, 80))`)
		for _, s := range scripts {
			if s != p.base+"/static/portal.js" {
				t.Errorf("%s runs a script other than the portal's: %s", path, s)
			}
		}
	}

	t.Run("own pages", func(t *testing.T) {
		p := b.portalTab(t, e.apiURL)
		p.signIn(t, signIn("saml", name))
		clean(t, p, "/", name)
		p.screenshot(t, shots, "databases-idp-names")
		p.getToken(t, "orders", "ro")
		clean(t, p, "/token", name)
		p.open(t, "/sessions", http.StatusOK)
		clean(t, p, "/sessions")
	})
	t.Run("administration", func(t *testing.T) {
		p := b.portalTab(t, e.apiURL)
		p.signIn(t, signIn("oidc", admin))
		for _, pg := range []struct {
			shot, path string
			texts      []string
		}{
			{"admin-people-idp-names", "/admin/people", []string{display}},
			{"admin-person-idp-names", "/admin/people/" + url.PathEscape(name), []string{display, group}},
			{"admin-groups-idp-names", "/admin/groups", []string{group}},
			{"admin-group-idp-names", "/admin/groups/" + url.PathEscape(group), []string{group, name}},
		} {
			p.open(t, pg.path, http.StatusOK)
			clean(t, p, pg.path, pg.texts...)
			p.screenshot(t, shots, pg.shot)
		}
	})
}
