// Package web is keygate's portal: server-rendered pages for people who
// would rather not live in a terminal, and for administrators.
//
// The portal holds no rule of its own. A browser signs in through the
// identity provider (package sso ends the sign-in here, in SignedIn), and
// its sign-in session credential lives in an HttpOnly cookie; each page
// calls the JSON API in-process with that credential as the bearer, the
// way the CLI does over the network. What a page shows or does is
// therefore exactly what the API allows that session, decided and audited
// in one place: an administrator's action carries their name, and a person
// who is not one gets the API's 403 on every administration page.
//
// The pages load nothing from elsewhere and run only the portal's own
// script, under a strict Content-Security-Policy; every form carries a
// token bound to the session and is refused from another origin.
package web

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/sso"
)

//go:embed templates static
var files embed.FS

// CookieName is the portal's session cookie. The __Host- prefix makes
// browsers refuse it unless it is Secure, for the whole site and for this
// host only, so a sibling host cannot plant one.
const CookieName = "__Host-keygate"

// Options configure the portal.
type Options struct {
	Log *slog.Logger
	Now func() time.Time
	// BaseURL is how browsers reach keygate, https://HOST:PORT (behind a
	// reverse proxy, the proxy's address): forms posted from it are
	// keygate's own.
	BaseURL string
	// SAML and OIDC say which identity providers the sign-in page offers.
	SAML, OIDC bool
	// SignInPath starts a browser sign-in: sso.PathBrowserStart.
	SignInPath string
}

// Portal serves the pages.
type Portal struct {
	opts  Options
	pages map[string]*template.Template
	cop   *http.CrossOriginProtection
	api   http.Handler
}

// New makes a portal.
func New(opts Options) (*Portal, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	p := &Portal{opts: opts, pages: map[string]*template.Template{}, cop: http.NewCrossOriginProtection()}
	if opts.BaseURL != "" {
		if err := p.cop.AddTrustedOrigin(opts.BaseURL); err != nil {
			return nil, fmt.Errorf("portal: base URL %q: %w", opts.BaseURL, err)
		}
	}
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(name, "templates/"), ".html")
		if base == "layout" || base == "parts" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/parts.html", name)
		if err != nil {
			return nil, fmt.Errorf("portal: parse %s: %w", name, err)
		}
		p.pages[base] = t
	}
	return p, nil
}

// Handler serves the portal's pages, and everything else from apiHandler:
// the portal shares the API's listener and calls it in-process.
func (p *Portal) Handler(apiHandler http.Handler) http.Handler {
	p.api = apiHandler
	mux := http.NewServeMux()
	mux.Handle("/", apiHandler)
	static, _ := fs.Sub(files, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", staticFiles(http.FileServerFS(static))))
	mux.HandleFunc("GET /{$}", p.page(p.home, false))
	mux.HandleFunc("POST /token", p.action(p.token))
	mux.HandleFunc("GET /sessions", p.page(p.sessions, true))
	mux.HandleFunc("POST /sessions/end", p.action(p.endSession))
	mux.HandleFunc("POST /signout", p.action(p.signOut))
	p.registerAdmin(mux)
	return mux
}

// staticFiles serves the embedded styles and script: they change only
// with the binary.
func staticFiles(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// SignedIn ends a browser sign-in: the session's credential goes into the
// portal's cookie, never into a URL, and the browser goes on to next.
// Lax, not Strict: the browser arrives from the identity provider's
// site, and a Strict cookie would not accompany that first page.
func (p *Portal) SignedIn(w http.ResponseWriter, r *http.Request, credential string, s identity.Session, next string) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: credential, Path: "/", Expires: s.Expires,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, sso.LocalPath(next), http.StatusSeeOther)
}

func clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
}

// visit is one request to a page: who is signed in, and the API as them.
type visit struct {
	w    http.ResponseWriter
	r    *http.Request
	api  *client.Client
	me   api.WhoAmI
	csrf string
}

// view is what every page template gets.
type view struct {
	Title string
	// Me is the person signed in; empty on the sign-in page.
	Me   api.WhoAmI
	CSRF string
	// Nav names the section the page belongs to, for aria-current.
	Nav string
	// Notice is the outcome of the action that led here.
	Notice string
	Data   any
}

// credential is the browser's sign-in session credential, if any.
func credentialOf(r *http.Request) string {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return ""
	}
	return c.Value
}

// formToken is the CSRF token of the session whose credential is cred:
// a page from keygate holds it, and another site cannot compute it.
func formToken(cred string) string {
	h := sha256.Sum256([]byte("keygate portal form\x00" + cred))
	return base64.RawURLEncoding.EncodeToString(h[:18])
}

// start authenticates a request to a page: the API is asked who the
// cookie's session belongs to, so an ended session is found at once.
func (p *Portal) start(w http.ResponseWriter, r *http.Request) (*visit, error) {
	cred := credentialOf(r)
	if cred == "" {
		return nil, errSignedOut
	}
	c, err := client.NewTransport(p.baseURL(r), &apiTransport{h: p.api, remote: r.RemoteAddr}, cred)
	if err != nil {
		return nil, err
	}
	me, err := c.WhoAmI(r.Context())
	if err != nil {
		return nil, err
	}
	return &visit{w: w, r: r, api: c, me: me, csrf: formToken(cred)}, nil
}

func (p *Portal) baseURL(r *http.Request) string {
	if p.opts.BaseURL != "" {
		return p.opts.BaseURL
	}
	return "https://" + r.Host
}

var errSignedOut = errors.New("not signed in")

// pageFunc renders one page for a signed-in visit.
type pageFunc func(v *visit) (string, view, error)

// page serves a page that needs a signed-in person; a visitor who is not
// gets the sign-in page (at "/"), or is sent there when needSignIn.
func (p *Portal) page(f pageFunc, needSignIn bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := p.start(w, r)
		if err == nil {
			var (
				name string
				data view
			)
			name, data, err = f(v)
			if err == nil {
				data.Me, data.CSRF = v.me, v.csrf
				data.Notice = notices[r.URL.Query().Get("done")]
				p.render(w, http.StatusOK, name, data)
				return
			}
		}
		p.fail(w, r, err, needSignIn)
	}
}

// action serves a form post: same origin and the session's form token
// first, then f, which answers with where to go next.
func (p *Portal) action(f func(v *visit) (string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := p.cop.Check(r); err != nil {
			p.problem(w, http.StatusForbidden, "Refused", "This form was sent from another site, so keygate did not act on it.")
			return
		}
		if err := r.ParseForm(); err != nil {
			p.problem(w, http.StatusBadRequest, "Cannot read the form", "Go back and try again.")
			return
		}
		cred := credentialOf(r)
		if cred == "" || subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(formToken(cred))) != 1 {
			p.problem(w, http.StatusForbidden, "Refused", "This form is stale or did not come from your keygate page: reload the page and try again.")
			return
		}
		v, err := p.start(w, r)
		if err == nil {
			var next string
			next, err = f(v)
			if err == nil {
				if next != "" {
					http.Redirect(w, r, next, http.StatusSeeOther)
				}
				return
			}
		}
		p.fail(w, r, err, true)
	}
}

// fail shows what went wrong: the sign-in page for a visitor without a
// session in force, the API's own words for a refusal.
func (p *Portal) fail(w http.ResponseWriter, r *http.Request, err error, redirect bool) {
	var ce *client.Error
	switch {
	case errors.Is(err, errSignedOut):
		if redirect {
			http.Redirect(w, r, "/?next="+r.URL.EscapedPath(), http.StatusSeeOther)
			return
		}
		p.signInPage(w, r, "")
	case errors.As(err, &ce) && ce.Status == http.StatusUnauthorized:
		clearCookie(w)
		p.signInPage(w, r, ce.Message)
	case errors.As(err, &ce) && ce.Status == http.StatusForbidden:
		p.problem(w, http.StatusForbidden, "Not allowed", ce.Message)
	case errors.As(err, &ce) && ce.Status < 500:
		p.problem(w, ce.Status, "keygate could not do that", ce.Message)
	default:
		p.opts.Log.Error("portal page failed", "method", r.Method, "path", r.URL.Path, "err", err)
		p.problem(w, http.StatusInternalServerError, "Something went wrong", "keygate could not show this page; the server log has details.")
	}
}

type signInData struct {
	Message    string
	SAML, OIDC string // start URLs, empty when not offered
}

func (p *Portal) signInPage(w http.ResponseWriter, r *http.Request, message string) {
	next := sso.LocalPath(r.URL.Query().Get("next"))
	start := func(method string) string {
		return p.opts.SignInPath + "?method=" + method + "&next=" + urlQueryEscape(next)
	}
	d := signInData{Message: message}
	if p.opts.SAML {
		d.SAML = start("saml")
	}
	if p.opts.OIDC {
		d.OIDC = start("oidc")
	}
	p.render(w, http.StatusOK, "signin", view{Title: "Sign in", Data: d})
}

type problemData struct{ Text string }

func (p *Portal) problem(w http.ResponseWriter, status int, title, text string) {
	p.render(w, status, "problem", view{Title: title, Data: problemData{Text: text}})
}

// render writes a page with the headers every page carries.
func (p *Portal) render(w http.ResponseWriter, status int, name string, data view) {
	t, ok := p.pages[name]
	if !ok {
		panic("portal: no page " + name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		p.opts.Log.Error("portal: render page", "page", name, "err", err)
		http.Error(w, "keygate could not show this page; the server log has details", http.StatusInternalServerError)
		return
	}
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// csp lets a page load only the portal's own style sheet and script, post
// forms only to keygate, and be framed by nothing.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", csp)
	// no-store keeps a page that shows a token out of the browser's cache
	// and its back-forward history.
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// apiTransport hands a request to the API handler in-process, from the
// browser's address, so the audit records where the person was.
type apiTransport struct {
	h      http.Handler
	remote string
}

func (t *apiTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	in := req.Clone(req.Context())
	in.RemoteAddr = t.remote
	in.RequestURI = req.URL.RequestURI()
	in.Host = req.URL.Host
	if in.Body == nil {
		in.Body = http.NoBody
	}
	rec := &recorder{header: http.Header{}}
	t.h.ServeHTTP(rec, in)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return &http.Response{
		StatusCode: rec.status, Status: fmt.Sprintf("%d %s", rec.status, http.StatusText(rec.status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rec.header, Body: io.NopCloser(&rec.body), ContentLength: int64(rec.body.Len()), Request: req,
	}, nil
}

// recorder keeps an API response in memory.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}
