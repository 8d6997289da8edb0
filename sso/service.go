package sso

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/internal/guesslimit"
	"github.com/keygate/keygate/store"
)

// SAMLConnector is a SAML 2.0 identity provider.
type SAMLConnector interface {
	// AuthnRequestURL is where to send the browser to sign in, and the ID
	// of the AuthnRequest it carries.
	AuthnRequestURL(relayState string) (redirect, requestID string, err error)
	// HandleResponse validates a SAMLResponse form value. inResponseTo is
	// the ID of the request this browser was sent with; empty for a
	// response the identity provider sent unasked.
	HandleResponse(ctx context.Context, samlResponse, inResponseTo string) (Identity, error)
	// Metadata is keygate's service provider metadata.
	Metadata() ([]byte, error)
}

// OIDCConnector is an OpenID Connect provider.
type OIDCConnector interface {
	// AuthCodeURL is where to send the browser: an authorization request
	// with state, nonce and a PKCE challenge for verifier.
	AuthCodeURL(state, nonce, verifier string) string
	// Exchange redeems the code and validates the ID token.
	Exchange(ctx context.Context, code, verifier, nonce string) (Identity, error)
}

// Store is what sign-in reads and writes.
type Store interface {
	GetUserByName(ctx context.Context, name string) (identity.User, error)
	ListUsers(ctx context.Context, q store.UserQuery) ([]identity.User, error)
	CreateUser(ctx context.Context, u identity.User) (identity.User, error)
	CreateSession(ctx context.Context, s identity.Session, credentialHash []byte) (identity.Session, error)
	// Pending sign-in state: device flows and browser attempts.
	PutPending(ctx context.Context, p store.Pending, now time.Time, max int) (created, evicted bool, err error)
	GetPending(ctx context.Context, kind, key string) (store.Pending, error)
	SwapPending(ctx context.Context, kind, key string, old, value []byte) (bool, error)
	TakePending(ctx context.Context, kind, key string) (store.Pending, error)
	CountPending(ctx context.Context, kind string, now time.Time) (int, error)
}

// Auditor records audit events.
type Auditor interface {
	Record(e audit.Event)
}

// Options configure a Service.
type Options struct {
	Store Store
	Audit Auditor
	Log   *slog.Logger
	Now   func() time.Time
	// BaseURL is how browsers and the CLI reach the API, https://HOST:PORT:
	// behind a reverse proxy, the proxy's address.
	BaseURL         string
	SessionDuration time.Duration
	// MatchBy is config.MatchUserName, MatchEmail or MatchExternalID.
	MatchBy  string
	JITUsers bool
	// IdPInitiated accepts SAML responses that no request of keygate's
	// asked for. With a Browser, such a response signs the person in to
	// the portal; without one, it only says who signed in.
	IdPInitiated bool
	SAML         SAMLConnector // nil when SAML is not configured
	OIDC         OIDCConnector // nil when OIDC is not configured
	// OIDCIssuer is the OpenID provider's issuer URL, as configured: a
	// third-party-initiated sign-in at PathBrowserStart must name it.
	OIDCIssuer string
	// Browser is the portal, where browser sign-ins end; nil when there is
	// no portal, and then PathBrowserStart is not served.
	Browser Browser
}

// Paths the service answers on.
const (
	PathDeviceCode   = "/v1/device/code"
	PathDeviceToken  = "/v1/device/token"
	PathDevice       = "/device"
	PathDeviceStart  = "/device/start"
	PathSAMLMetadata = "/saml/metadata"
	PathSAMLACS      = "/saml/acs"
	PathOIDCCallback = "/oidc/callback"
)

// A source may enter codeGuessBurst unknown user codes, then one per
// codeGuessInterval: plenty for typos, hopeless for guessing one of 20^8.
const (
	codeGuessBurst    = 20
	codeGuessInterval = 30 * time.Second
)

// Service serves sign-in: the device authorization endpoints the CLI uses,
// the pages the browser sees, and the identity providers' callbacks.
type Service struct {
	opts Options
	// guesses limits unknown user codes by source: RFC 8628 §5.1 asks
	// that user codes be protected against guessing.
	guesses *guesslimit.Limiter

	mu               sync.Mutex
	lastEvictWarning time.Time
}

// New makes a Service.
func New(opts Options) *Service {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SessionDuration == 0 {
		opts.SessionDuration = 8 * time.Hour
	}
	return &Service{opts: opts, guesses: guesslimit.New(codeGuessBurst, codeGuessInterval)}
}

func (s *Service) now() time.Time { return s.opts.Now() }

// Register adds the service's routes to mux.
func (s *Service) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST "+PathDeviceCode, s.deviceCode)
	mux.HandleFunc("POST "+PathDeviceToken, s.deviceToken)
	mux.HandleFunc("GET "+PathDevice, s.devicePage)
	mux.HandleFunc("POST "+PathDeviceStart, s.deviceStart)
	if s.opts.SAML != nil {
		mux.HandleFunc("GET "+PathSAMLMetadata, s.samlMetadata)
		mux.HandleFunc("POST "+PathSAMLACS, s.samlACS)
	}
	if s.opts.OIDC != nil {
		mux.HandleFunc("GET "+PathOIDCCallback, s.oidcCallback)
	}
	if s.opts.Browser != nil {
		mux.HandleFunc("GET "+PathBrowserStart, s.browserStart)
	}
}

// DeviceCodeResponse is RFC 8628 §3.2's answer.
type DeviceCodeResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

// TokenResponse is the successful answer to a poll: the sign-in session's
// credential and what it is.
type TokenResponse struct {
	AccessToken string      `json:"access_token"`
	TokenType   string      `json:"token_type"`
	ExpiresIn   int         `json:"expires_in"`
	Session     SessionInfo `json:"session"`
}

// oauthError is RFC 6749 §5.2's error body.
type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (s *Service) deviceCode(w http.ResponseWriter, r *http.Request) {
	if !s.enabled() {
		writeJSON(w, http.StatusNotFound, oauthError{Error: "unsupported_grant_type", Description: "sign-in is not configured on this keygate server: add an sso section (saml or oidc) to its config"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, oauthError{Error: "invalid_request", Description: "cannot read the form"})
		return
	}
	code, fl, err := s.startFlow(r.Context(), clip(r.PostForm.Get("client_name"), 64))
	if errors.Is(err, errTooManyFlows) {
		writeJSON(w, http.StatusServiceUnavailable, oauthError{Error: "slow_down", Description: "too many sign-ins are pending; try again in a minute"})
		return
	}
	if err != nil {
		s.unavailable(w, "start a device flow", err)
		return
	}
	uri := s.opts.BaseURL + PathDevice
	writeJSON(w, http.StatusOK, DeviceCodeResponse{
		DeviceCode: code, UserCode: formatUserCode(fl.userCode),
		VerificationURI: uri, VerificationURIComplete: uri + "?user_code=" + formatUserCode(fl.userCode),
		ExpiresIn: int(DeviceCodeTTL / time.Second), Interval: int(PollInterval / time.Second),
	})
}

// GrantTypeDeviceCode is RFC 8628's grant type.
const GrantTypeDeviceCode = "urn:ietf:params:oauth:grant-type:device_code"

func (s *Service) deviceToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, oauthError{Error: "invalid_request", Description: "cannot read the form"})
		return
	}
	if r.PostForm.Get("grant_type") != GrantTypeDeviceCode {
		writeJSON(w, http.StatusBadRequest, oauthError{Error: "unsupported_grant_type", Description: "use grant_type " + GrantTypeDeviceCode})
		return
	}
	res, fl, a, err := s.poll(r.Context(), r.PostForm.Get("device_code"))
	if err != nil {
		s.unavailable(w, "poll a device flow", err)
		return
	}
	switch res {
	case pollPending:
		writeJSON(w, http.StatusBadRequest, oauthError{Error: "authorization_pending"})
	case pollSlowDown:
		writeJSON(w, http.StatusBadRequest, oauthError{Error: "slow_down"})
	case pollExpired:
		writeJSON(w, http.StatusBadRequest, oauthError{Error: "expired_token", Description: "the code expired before the browser sign-in finished: run keygate login again"})
	case pollDenied:
		writeJSON(w, http.StatusBadRequest, oauthError{Error: "access_denied", Description: fl.Refusal.Reason})
	case pollApproved:
		writeJSON(w, http.StatusOK, TokenResponse{AccessToken: a.Credential, TokenType: "Bearer",
			ExpiresIn: int(a.Session.Expires.Sub(s.now()) / time.Second), Session: a.Session})
	default:
		writeJSON(w, http.StatusBadRequest, oauthError{Error: "invalid_grant", Description: "unknown device code: run keygate login again"})
	}
}

// stateUnreachable is what a page says when the store cannot be reached.
const stateUnreachable = "keygate cannot reach its state just now. Try again in a few seconds."

// unavailable answers the CLI when the store cannot be reached: it keeps
// polling, and the person is not told their sign-in failed.
func (s *Service) unavailable(w http.ResponseWriter, what string, err error) {
	s.opts.Log.Error(what, "err", err)
	w.Header().Set("Retry-After", "5")
	writeJSON(w, http.StatusServiceUnavailable, oauthError{Error: "temporarily_unavailable", Description: "keygate cannot reach its state; try again in a few seconds"})
}

func (s *Service) enabled() bool { return s.opts.SAML != nil || s.opts.OIDC != nil }

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (s *Service) devicePage(w http.ResponseWriter, r *http.Request) {
	code := r.URL.Query().Get("user_code")
	page := devicePageData{UserCode: code, SAML: s.opts.SAML != nil, OIDC: s.opts.OIDC != nil}
	if code != "" {
		fl, ok, wait, err := s.lookupUserCode(r, code)
		switch {
		case err != nil:
			s.opts.Log.Error("look up a user code", "err", err)
			page.Error = stateUnreachable
		case wait > 0:
			page.Error = fmt.Sprintf("Too many unknown codes from this address: wait %s, then try again.", wait.Round(time.Second))
		case !ok:
			page.Error = "That code is unknown or has expired. Run keygate login again and use the code it shows."
		default:
			page.UserCode, page.Client, page.Valid = formatUserCode(fl.userCode), fl.Client, true
		}
	}
	renderPage(w, http.StatusOK, devicePageTemplate, page)
}

// lookupUserCode finds the flow of a user code as typed, charging the
// source for an unknown one; wait is set while the source is over its
// limit.
func (s *Service) lookupUserCode(r *http.Request, code string) (fl *flow, ok bool, wait time.Duration, err error) {
	src, now := guesslimit.Source(r), s.now()
	if allowed, wait := s.guesses.Allowed(src, now); !allowed {
		return nil, false, wait, nil
	}
	fl, ok, err = s.pendingFlow(r.Context(), code)
	if err == nil && !ok {
		s.guesses.Failed(src, now)
	}
	return fl, ok, 0, err
}

// deviceStart sends the browser to the chosen identity provider. It is a
// POST from keygate's own page, so that a link alone cannot start a
// sign-in for someone else's code.
func (s *Service) deviceStart(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil || !s.sameOrigin(r) {
		s.message(w, http.StatusBadRequest, "Sign-in could not start", "Start again from the link keygate login printed.")
		return
	}
	fl, ok, wait, err := s.lookupUserCode(r, r.PostForm.Get("user_code"))
	if err != nil {
		s.opts.Log.Error("look up a user code", "err", err)
		s.message(w, http.StatusServiceUnavailable, "Sign-in could not start", stateUnreachable)
		return
	}
	if wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		s.message(w, http.StatusTooManyRequests, "Too many unknown codes", fmt.Sprintf("Too many unknown codes from this address: wait %s, then try again.", wait.Round(time.Second)))
		return
	}
	if !ok {
		s.message(w, http.StatusBadRequest, "Unknown or expired code", "Run keygate login again and use the code it shows.")
		return
	}
	a := &attempt{UserCode: fl.userCode, Method: r.PostForm.Get("method"), Expires: s.now().Add(attemptTTL)}
	target, id, ok := s.redirectFor(w, a, "Choose one of the buttons on the sign-in page.", s.message)
	if !ok {
		return
	}
	if err := s.flowAttempt(r.Context(), fl.userCode, id, a); err != nil {
		s.opts.Log.Error("store a sign-in attempt", "err", err)
		s.message(w, http.StatusServiceUnavailable, "Sign-in could not start", stateUnreachable)
		return
	}
	s.setAttemptCookie(w, id)
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// redirectFor names a new attempt and builds the identity provider's URL
// for a's method, filling in what the answer is checked against. On
// failure it has shown the person a page through msg, with hint for an
// unknown method.
func (s *Service) redirectFor(w http.ResponseWriter, a *attempt, hint string, msg func(http.ResponseWriter, int, string, string)) (target, id string, ok bool) {
	id = randomToken()
	switch {
	case a.Method == "saml" && s.opts.SAML != nil:
		u, reqID, err := s.opts.SAML.AuthnRequestURL(id)
		if err != nil {
			s.opts.Log.Error("build SAML request", "err", err)
			msg(w, http.StatusBadGateway, "Sign-in could not start", "keygate could not build a request to the identity provider; the server log has details.")
			return "", "", false
		}
		target, a.RequestID = u, reqID
	case a.Method == "oidc" && s.opts.OIDC != nil:
		a.Nonce, a.Verifier = randomToken(), randomToken()
		target = s.opts.OIDC.AuthCodeURL(id, a.Nonce, a.Verifier)
	default:
		msg(w, http.StatusBadRequest, "Unknown sign-in method", hint)
		return "", "", false
	}
	return target, id, true
}

// setAttemptCookie binds the attempt id to this browser. SameSite=None:
// the SAML response comes back as a cross-site POST from the identity
// provider, which Lax cookies do not accompany.
func (s *Service) setAttemptCookie(w http.ResponseWriter, id string) {
	http.SetCookie(w, &http.Cookie{Name: attemptCookie, Value: id, Path: "/", MaxAge: int(attemptTTL / time.Second),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteNoneMode})
}

// sameOrigin accepts a form post from keygate's own pages: browsers send
// Origin on POST, and a post from another site names that site. Behind a
// reverse proxy that rewrites Host, keygate's pages are at BaseURL.
func (s *Service) sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	return o == "" || strings.EqualFold(o, "https://"+r.Host) || strings.EqualFold(o, s.opts.BaseURL)
}

// takeAttempt returns and forgets the attempt named by state, if this
// browser started it.
func (s *Service) takeAttempt(r *http.Request, state, method string) (*attempt, *Refusal) {
	c, err := r.Cookie(attemptCookie)
	if err != nil || state == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(state)) != 1 {
		return nil, Refuse("browser_mismatch", nil, "this sign-in was not started in this browser: %s", s.startAgain())
	}
	a, err := s.takeStoredAttempt(r.Context(), state)
	if err != nil {
		return nil, Refuse("error", err, "keygate cannot reach its state just now: %s", s.startAgain())
	}
	if a == nil || s.now().After(a.Expires) || a.Method != method {
		return nil, Refuse("unknown_request", nil, "this sign-in is unknown or took too long: %s", s.startAgain())
	}
	return a, nil
}

// startAgain says where to start a sign-in over, before keygate knows
// which kind it was.
func (s *Service) startAgain() string {
	if s.opts.Browser != nil {
		return "start again from keygate's sign-in page, or from the link keygate login printed"
	}
	return "start again from the link keygate login printed"
}

// complete ends a browser sign-in: a session for the flow, or the refusal
// recorded for both the browser and the waiting CLI.
func (s *Service) complete(w http.ResponseWriter, r *http.Request, a *attempt, method string, id Identity, err error) {
	http.SetCookie(w, &http.Cookie{Name: attemptCookie, Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteNoneMode})
	if a != nil && a.Browser {
		s.signedIn(w, r, method, a.Next, id, err, map[string]any{"client": clientPortal})
		return
	}
	var fl *flow
	if a != nil {
		var cerr error
		if fl, cerr = s.claim(r.Context(), a.UserCode); cerr != nil && err == nil {
			err = cerr
		}
	}
	if err == nil && fl == nil {
		err = Refuse("expired", nil, "the code from keygate login expired while you were signing in (or another browser finished it): run keygate login again")
	}
	if err == nil {
		cred, sess, serr := s.signIn(r.Context(), id, r.RemoteAddr, map[string]any{"client": clientCLI})
		if serr == nil {
			serr = s.finish(r.Context(), fl, &approval{Credential: cred, Session: SessionInfo{ID: sess.ID, User: sess.User, Expires: sess.Expires, MFA: sess.MFA, Method: method}}, nil)
		}
		if serr == nil {
			s.message(w, http.StatusOK, "Signed in as "+sess.User, "Return to your terminal: keygate login has finished there. You can close this window.")
			return
		}
		err = serr
	}
	ref := s.refused(w, r, method, id, err, nil, a == nil && s.opts.Browser != nil)
	if fl != nil {
		if ferr := s.finish(r.Context(), fl, nil, ref); ferr != nil {
			s.opts.Log.Error("record a refused device flow", "err", ferr)
		}
	}
}

// refused logs, audits and shows a refused sign-in. back adds a link to
// the portal, to start again there; detail adds to the audit event's.
func (s *Service) refused(w http.ResponseWriter, r *http.Request, method string, id Identity, err error, detail map[string]any, back bool) *Refusal {
	ref := AsRefusal(err)
	if ref.Code == "error" {
		s.opts.Log.Error("sign-in failed", "method", method, "err", err)
	} else {
		s.opts.Log.Warn("sign-in refused", "method", method, "code", ref.Code, "reason", ref.Reason, "err", ref.Err)
	}
	d := map[string]any{"code": ref.Code, "method": method}
	for k, v := range detail {
		d[k] = v
	}
	s.opts.Audit.Record(audit.Event{Type: audit.SignInRefused, User: id.UserName, Client: r.RemoteAddr, Reason: ref.Reason, Detail: d})
	if back {
		s.portalMessage(w, http.StatusForbidden, "Sign-in refused", ref.Reason)
	} else {
		s.message(w, http.StatusForbidden, "Sign-in refused", ref.Reason)
	}
	return ref
}

func (s *Service) samlMetadata(w http.ResponseWriter, r *http.Request) {
	md, err := s.opts.SAML.Metadata()
	if err != nil {
		s.opts.Log.Error("SAML metadata", "err", err)
		http.Error(w, "cannot build metadata; the server log has details", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/samlmetadata+xml")
	w.Write(md)
}

// maxSAMLResponse bounds the ACS form; real responses are a few KiB, large
// group lists a few hundred.
const maxSAMLResponse = 2 << 20

func (s *Service) samlACS(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxSAMLResponse)
	if err := r.ParseForm(); err != nil {
		s.complete(w, r, nil, "saml", Identity{}, Refuse("malformed", err, "the identity provider's response could not be read"))
		return
	}
	resp, relay := r.PostForm.Get("SAMLResponse"), r.PostForm.Get("RelayState")
	if unasked(relay) {
		s.idpInitiated(w, r, resp, relay)
		return
	}
	a, ref := s.takeAttempt(r, relay, "saml")
	if ref != nil {
		s.complete(w, r, nil, "saml", Identity{}, ref)
		return
	}
	id, err := s.opts.SAML.HandleResponse(r.Context(), resp, a.RequestID)
	s.complete(w, r, a, "saml", id, err)
}

// unasked reports whether a response's RelayState says that no attempt of
// keygate's asked for it: an attempt's RelayState is its random name,
// while an identity provider that starts a sign-in itself sends none or a
// target of its own configuration (Okta's default RelayState, Azure's
// relay state), a path or a URL.
func unasked(relay string) bool {
	return relay == "" || strings.HasPrefix(relay, "/") || strings.HasPrefix(relay, "https://") || strings.HasPrefix(relay, "http://")
}

// idpInitiated handles a sign-in started from the identity provider's
// portal (Azure's My Apps and "Test this application", Okta's dashboard).
// It stays off unless configured: a response nobody in this browser asked
// for can be an attacker's own, posted to sign the person in as the
// attacker (login CSRF). When on, it signs the person in to keygate's
// portal, at the relay state's path if it names one of keygate's; with no
// portal there is nothing to sign in to, so it only says who signed in.
func (s *Service) idpInitiated(w http.ResponseWriter, r *http.Request, resp, relay string) {
	if !s.opts.IdPInitiated {
		where := "run keygate login and sign in from the page it opens"
		if s.opts.Browser != nil {
			where = "sign in at " + s.opts.BaseURL + "/ instead"
		}
		s.complete(w, r, nil, "saml", Identity{}, Refuse("idp_initiated", nil,
			"the identity provider sent a sign-in keygate did not ask for, and IdP-initiated sign-in is off (an administrator can switch it on with sso.saml.idp_initiated: true): %s", where))
		return
	}
	id, err := s.opts.SAML.HandleResponse(r.Context(), resp, "")
	if s.opts.Browser != nil {
		// The attempt cookie is left alone: it may belong to a sign-in
		// this browser has under way elsewhere.
		s.signedIn(w, r, "saml", s.ownPath(relay), id, err, map[string]any{"client": clientPortal, "initiated_by": "idp"})
		return
	}
	if err != nil {
		s.complete(w, r, nil, "saml", id, err)
		return
	}
	s.message(w, http.StatusOK, "Signed in as "+id.UserName, "To use keygate from a terminal, run keygate login there and choose the sign-in button on the page it opens.")
}

func (s *Service) oidcCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	a, ref := s.takeAttempt(r, q.Get("state"), "oidc")
	if ref != nil {
		s.complete(w, r, nil, "oidc", Identity{}, ref)
		return
	}
	if e := q.Get("error"); e != "" {
		s.complete(w, r, a, "oidc", Identity{}, Refuse("provider_error", nil, "the identity provider refused the sign-in: %s %s", clip(e, 64), clip(q.Get("error_description"), 200)))
		return
	}
	id, err := s.opts.OIDC.Exchange(r.Context(), q.Get("code"), a.Verifier, a.Nonce)
	s.complete(w, r, a, "oidc", id, err)
}
