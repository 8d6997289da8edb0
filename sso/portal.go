package sso

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keygate/keygate/identity"
)

// Browser sign-in: the portal signs people in in the browser itself, with
// no `keygate login` waiting and no user code. /signin/start sends the
// browser to the identity provider like /device/start does, and the ACS or
// OIDC callback hands the new sign-in session to the portal instead of to a
// device flow.

// Browser is where a browser sign-in that no `keygate login` waits for ends up: the portal.
type Browser interface {
	// SignedIn hands the browser its new sign-in session; the portal sets its cookie
	// and sends the browser to next (a local path, already checked by sso).
	SignedIn(w http.ResponseWriter, r *http.Request, credential string, s identity.Session, next string)
}

// PathBrowserStart starts a browser sign-in for the portal. It is also the
// OpenID Connect "initiate login URI" (third-party-initiated login).
const PathBrowserStart = "/signin/start"

// maxBrowserAttempts bounds the browser attempts kept at once. Unlike a
// device flow's attempt, which the flow bounds, anyone can start one with
// a GET; past the bound the oldest is forgotten, so that a flood costs the
// server a fixed amount of memory and only slows the people it races.
const maxBrowserAttempts = 10000

// maxNext bounds the path a browser sign-in returns to.
const maxNext = 2048

// Values for the "client" of a sign-in's audit detail: what the session
// was made for.
const (
	clientCLI    = "cli"
	clientPortal = "portal"
)

// LocalPath returns p when it is a path on this server that a redirect may
// name, and "/" otherwise. It refuses anything a browser could read as
// another site: a scheme, "//host", backslashes (which browsers treat as
// slashes), and control characters or spaces (which browsers strip, so
// that "/\t/evil.example" becomes "//evil.example").
func LocalPath(p string) string {
	if p == "" || len(p) > maxNext || p[0] != '/' || strings.HasPrefix(p, "//") {
		return "/"
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c == '\\' || c >= 0x7f {
			return "/"
		}
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return "/"
	}
	return p
}

// ownPath turns v, a local path or an absolute URL on keygate's own
// BaseURL (as OIDC's target_link_uri and some identity providers' relay
// states are), into a local path; anything else becomes "/".
func (s *Service) ownPath(v string) string {
	if strings.HasPrefix(v, "/") {
		return LocalPath(v)
	}
	u, err := url.Parse(v)
	base, berr := url.Parse(s.opts.BaseURL)
	if err != nil || berr != nil || u.User != nil || !strings.EqualFold(u.Scheme, base.Scheme) || !strings.EqualFold(u.Host, base.Host) {
		return "/"
	}
	return LocalPath(u.RequestURI())
}

// sameIssuer compares issuer URLs as OpenID Connect providers write them,
// allowing for a trailing slash on one side only.
func sameIssuer(a, b string) bool {
	return a != "" && strings.TrimSuffix(a, "/") == strings.TrimSuffix(b, "/")
}

// browserStart sends the browser to the identity provider for the portal.
// It is a GET, so that the portal's sign-in page can be plain links: a
// form post that redirects to the identity provider is blocked by the
// portal's form-action 'self' in Chromium. A link from elsewhere can only
// send a person to their own identity provider, to come back signed in as
// themselves, in the browser holding the attempt cookie.
//
// With iss it is OpenID Connect's third-party-initiated login (Core §4):
// the provider's dashboard sends the browser here, naming itself, and
// optionally target_link_uri, a URL of keygate's to end up at.
func (s *Service) browserStart(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	method, next := q.Get("method"), LocalPath(q.Get("next"))
	if iss := q.Get("iss"); iss != "" {
		if s.opts.OIDC == nil || !sameIssuer(iss, s.opts.OIDCIssuer) {
			s.opts.Log.Warn("third-party-initiated sign-in from an unknown issuer", "iss", clip(iss, 200), "configured", s.opts.OIDCIssuer)
			s.portalMessage(w, http.StatusBadRequest, "Sign-in could not start", "This sign-in link names an identity provider keygate does not use. Start again from keygate's sign-in page.")
			return
		}
		method, next = "oidc", "/"
		if t := q.Get("target_link_uri"); t != "" {
			next = s.ownPath(t)
		}
	}
	a := &attempt{Method: method, Browser: true, Next: next, Expires: s.now().Add(attemptTTL)}
	target, id, ok := s.redirectFor(w, a, "Choose one of the sign-in links on keygate's sign-in page.", s.portalMessage)
	if !ok {
		return
	}
	evicted, err := s.putAttempt(r.Context(), id, a)
	if err != nil {
		s.opts.Log.Error("store a sign-in attempt", "err", err)
		s.portalMessage(w, http.StatusServiceUnavailable, "Sign-in could not start", stateUnreachable)
		return
	}
	if evicted {
		s.warnEvicted()
	}
	s.setAttemptCookie(w, id)
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// warnEvicted says, at most once a minute, that browser attempts are being
// forgotten before they finish: someone starts sign-ins faster than
// people finish them.
func (s *Service) warnEvicted() {
	s.mu.Lock()
	now := s.now()
	due := now.Sub(s.lastEvictWarning) >= time.Minute
	if due {
		s.lastEvictWarning = now
	}
	s.mu.Unlock()
	if due {
		s.opts.Log.Warn("too many browser sign-ins pending: the oldest are forgotten, and people who took longest at the identity provider must start again",
			"limit", maxBrowserAttempts)
	}
}

// signedIn ends a browser sign-in at the portal: a session, handed to the
// portal, which sends the browser to next; or the refusal page.
func (s *Service) signedIn(w http.ResponseWriter, r *http.Request, method, next string, id Identity, err error, detail map[string]any) {
	if err == nil {
		cred, sess, serr := s.signIn(r.Context(), id, r.RemoteAddr, detail)
		if serr == nil {
			s.opts.Browser.SignedIn(w, r, cred, sess, LocalPath(next))
			return
		}
		err = serr
	}
	s.refused(w, r, method, id, err, detail, true)
}

// portalMessage is a message page with a link back to the portal, where the
// person can start again.
func (s *Service) portalMessage(w http.ResponseWriter, status int, title, text string) {
	renderPage(w, status, messageTemplate, messageData{Title: title, Text: text, Back: "/", BackText: "Back to keygate"})
}
