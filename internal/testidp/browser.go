package testidp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptrace"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Browser stands in for a person's web browser: it keeps cookies, trusts
// the certificates it is given, follows redirects, and submits the forms
// of keygate's sign-in pages and of the test identity providers, with the
// Origin header a browser sends. It reads pages with regular expressions,
// which is enough for the few it visits: keygate's, samlidp's and the
// example OpenID provider's.
type Browser struct {
	// Client makes the requests; its jar holds the cookies.
	Client *http.Client
	// StopAt, if set, ends redirect chains at URLs that start with it:
	// the page is then the redirect itself.
	StopAt string

	t testing.TB
}

// NewBrowser makes a browser that trusts roots; nil means the system's.
func NewBrowser(t testing.TB, roots *x509.CertPool) *Browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots}
	b := &Browser{t: t}
	b.Client = &http.Client{Transport: tr, Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if b.StopAt != "" && strings.HasPrefix(req.URL.String(), b.StopAt) {
				return http.ErrUseLastResponse
			}
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			return nil
		}}
	return b
}

// Page is what the browser shows after a request and its redirects.
type Page struct {
	URL    *url.URL
	Status int
	Header http.Header
	Body   string
	// ClientAddr is the browser's end of the connection that fetched the
	// page, as the server saw it in RemoteAddr.
	ClientAddr string
}

var (
	h1RE    = regexp.MustCompile(`(?is)<h1\b[^>]*>(.*?)</h1>`)
	tagRE   = regexp.MustCompile(`(?s)<[^>]*>`)
	formRE  = regexp.MustCompile(`(?is)<form\b([^>]*)>(.*?)</form>`)
	fieldRE = regexp.MustCompile(`(?is)<(input|button)\b([^>]*)>`)
	attrRE  = regexp.MustCompile(`(?s)([a-zA-Z_:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))`)
)

// Title is the text of the page's first h1 heading.
func (p *Page) Title() string {
	m := h1RE.FindStringSubmatch(p.Body)
	if m == nil {
		return ""
	}
	return strings.TrimSpace(html.UnescapeString(tagRE.ReplaceAllString(m[1], "")))
}

// Location is where a redirect page points.
func (p *Page) Location() *url.URL {
	loc := p.Header.Get("Location")
	if loc == "" {
		return nil
	}
	u, err := p.URL.Parse(loc)
	if err != nil {
		return nil
	}
	return u
}

// String describes the page for failure messages.
func (p *Page) String() string {
	return p.URL.String() + " (" + http.StatusText(p.Status) + "):\n" + p.Body
}

// FormValue is the value of the first form field named name, or "".
func (p *Page) FormValue(name string) string {
	for _, f := range p.forms() {
		if v, ok := f.fields[name]; ok {
			return v[0]
		}
	}
	return ""
}

// form is a form on a page: where it posts, its fields with their values,
// and its buttons by id.
type form struct {
	method  string
	action  *url.URL
	fields  url.Values
	buttons map[string][2]string // id → name, value
}

func attrs(s string) map[string]string {
	out := map[string]string{}
	for _, m := range attrRE.FindAllStringSubmatch(s, -1) {
		out[strings.ToLower(m[1])] = html.UnescapeString(m[2] + m[3] + m[4])
	}
	return out
}

func (p *Page) forms() []form {
	var out []form
	for _, m := range formRE.FindAllStringSubmatch(p.Body, -1) {
		a := attrs(m[1])
		action, err := p.URL.Parse(a["action"])
		if err != nil {
			continue
		}
		f := form{method: strings.ToUpper(a["method"]), action: action, fields: url.Values{}, buttons: map[string][2]string{}}
		if f.method == "" {
			f.method = http.MethodGet
		}
		for _, fm := range fieldRE.FindAllStringSubmatch(m[2], -1) {
			fa := attrs(fm[2])
			switch {
			case strings.EqualFold(fm[1], "button") || fa["type"] == "submit":
				if fa["id"] != "" {
					f.buttons[fa["id"]] = [2]string{fa["name"], fa["value"]}
				}
			case fa["name"] != "":
				f.fields.Add(fa["name"], fa["value"])
			}
		}
		out = append(out, f)
	}
	return out
}

// Get opens rawURL.
func (b *Browser) Get(rawURL string) *Page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

// post sends a form, with the Origin of the page it is on.
func (b *Browser) post(from *Page, target *url.URL, values url.Values) *Page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, target.String(), strings.NewReader(values.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", from.URL.Scheme+"://"+from.URL.Host)
	return b.do(req)
}

func (b *Browser) do(req *http.Request) *Page {
	b.t.Helper()
	var addr string
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { addr = i.Conn.LocalAddr().String() }}
	req = req.WithContext(httptrace.WithClientTrace(context.Background(), trace))
	resp, err := b.Client.Do(req)
	if err != nil {
		b.t.Fatalf("browser: %s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatalf("browser: read %s: %v", resp.Request.URL, err)
	}
	return &Page{URL: resp.Request.URL, Status: resp.StatusCode, Header: resp.Header, Body: string(body), ClientAddr: addr}
}

// Submit fills in the page's form that has the given fields and submits
// it, with its hidden fields.
func (b *Browser) Submit(p *Page, values url.Values) *Page {
	b.t.Helper()
	for _, f := range p.forms() {
		if !hasFields(f, values) {
			continue
		}
		for k, v := range values {
			f.fields[k] = v
		}
		return b.send(p, f)
	}
	b.t.Fatalf("browser: no form with fields %v on %s", sortedKeys(values), p)
	return nil
}

// Click submits the form holding the button with the given id, as
// clicking it does: the button's name and value go with the form.
func (b *Browser) Click(p *Page, buttonID string) *Page {
	b.t.Helper()
	for _, f := range p.forms() {
		btn, ok := f.buttons[buttonID]
		if !ok {
			continue
		}
		if btn[0] != "" {
			f.fields.Set(btn[0], btn[1])
		}
		return b.send(p, f)
	}
	b.t.Fatalf("browser: no button #%s on %s", buttonID, p)
	return nil
}

func (b *Browser) send(p *Page, f form) *Page {
	b.t.Helper()
	if f.method == http.MethodGet {
		u := *f.action
		u.RawQuery = f.fields.Encode()
		return b.Get(u.String())
	}
	return b.post(p, f.action, f.fields)
}

func hasFields(f form, values url.Values) bool {
	for k := range values {
		if _, ok := f.fields[k]; !ok {
			return false
		}
	}
	return true
}

// SAMLLogin answers the SAML identity provider's login step on p as user;
// the page it returns is the provider's answer, a form that posts the
// SAMLResponse to the service provider.
func (b *Browser) SAMLLogin(p *Page, user string) *Page {
	b.t.Helper()
	next := b.Submit(p, url.Values{"user": {user}})
	if next.Status != http.StatusOK || !strings.Contains(next.Body, `name="SAMLResponse"`) {
		b.t.Fatalf("browser: the SAML identity provider did not answer with a SAMLResponse: %s", next)
	}
	return next
}

// PostSAMLResponse submits the SAML identity provider's answer on p, as
// its script does; tamper, if not nil, changes the SAMLResponse first.
func (b *Browser) PostSAMLResponse(p *Page, tamper func(samlResponse string) string) *Page {
	b.t.Helper()
	for _, f := range p.forms() {
		if f.fields.Get("SAMLResponse") == "" {
			continue
		}
		if tamper != nil {
			f.fields.Set("SAMLResponse", tamper(f.fields.Get("SAMLResponse")))
		}
		return b.send(p, f)
	}
	b.t.Fatalf("browser: no SAMLResponse form on %s", p)
	return nil
}

// OIDCLogin answers the OpenID provider's login form on p; the page it
// returns is where the provider's redirects lead.
func (b *Browser) OIDCLogin(p *Page, user, password string) *Page {
	b.t.Helper()
	if p.Status != http.StatusOK {
		b.t.Fatalf("browser: want the OpenID provider's login form: %s", p)
	}
	return b.Submit(p, url.Values{"username": {user}, "password": {password}})
}

// SignIn says how the browser signs in at the identity provider.
type SignIn struct {
	// Method is "saml" or "oidc": the button chosen on keygate's page.
	Method string
	// User, and for OIDC Password, are what the login step is given.
	User, Password string
	// Tamper, if not nil, changes the SAMLResponse before it goes to
	// keygate.
	Tamper func(samlResponse string) string
}

// DeviceSignIn completes a `keygate login` in the browser: it opens the
// verification URL (verification_uri_complete), checks that the page
// shows the code in it, chooses the sign-in method, signs in at the
// identity provider, and returns keygate's last page, which says whether
// the sign-in succeeded.
func (b *Browser) DeviceSignIn(verificationURL string, s SignIn) *Page {
	b.t.Helper()
	u, err := url.Parse(verificationURL)
	if err != nil {
		b.t.Fatal(err)
	}
	page := b.Get(verificationURL)
	if code := u.Query().Get("user_code"); page.Status != http.StatusOK || !strings.Contains(page.Body, ">"+code+"<") {
		b.t.Fatalf("browser: the verification page does not show the code %q: %s", code, page)
	}
	page = b.Click(page, "signin-"+s.Method)
	switch s.Method {
	case "saml":
		page = b.PostSAMLResponse(b.SAMLLogin(page, s.User), s.Tamper)
	case "oidc":
		page = b.OIDCLogin(page, s.User, s.Password)
	default:
		b.t.Fatalf("browser: unknown sign-in method %q", s.Method)
	}
	return page
}
