// Package api is keygate's HTTPS JSON API, used by the CLI (and later the
// portal): the CA bundle, database tokens for signed-in people, and the admin
// operations on people, groups and sessions.
//
// Two kinds of bearer credential reach it: the admin credential the server
// writes into data_dir on first start, and sign-in session credentials. Only
// SHA-256 hashes of either are kept; comparisons are constant-time. The
// admin operations are for administrators: people in the groups config
// administrators.groups names, with their own sessions, and whoever holds
// the data_dir credential, for bootstrap and break-glass (see admins.go).
package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/scim"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/token"
)

// Authorizer answers access questions from live state.
type Authorizer interface {
	Authorize(ctx context.Context, r authz.Request) (access.Decision, error)
	LeastLevel(ctx context.Context, user, database, signIn string) (access.Level, bool, error)
	Principal(ctx context.Context, signIn identity.Session) (identity.Principal, error)
	WhoCan(ctx context.Context, database string, at time.Time) ([]authz.Holder, error)
	WhoCanAll(ctx context.Context, at time.Time) ([]authz.Holder, error)
	// Databases names the databases in the rules in force.
	Databases() []string
}

// Minter signs database tokens.
type Minter interface {
	Mint(c token.Claims) (string, token.Claims, error)
}

// Auditor records and reads back audit events.
type Auditor interface {
	Record(e audit.Event)
	Flush(ctx context.Context) error
}

// Server holds the API's dependencies.
type Server struct {
	Store  store.Store
	Authz  Authorizer
	Tokens Minter
	Audit  Auditor
	Log    *slog.Logger
	Now    func() time.Time
	// AdminHash is the SHA-256 of the admin credential in data_dir: the
	// bootstrap and break-glass way in, audited as BreakGlassActor.
	AdminHash [sha256.Size]byte
	// Administrators, when set, says whose sessions carry administrator
	// rights; it is called on every admin request, so a reload applies
	// to the next one. Unset, only the admin credential administers.
	Administrators func() config.Administrators
	// CAPEM is served at /v1/ca.pem.
	CAPEM []byte
	// SCIM serves /scim/v2/ when set.
	SCIM http.Handler
	// SignIn adds the sign-in routes: device authorization for the CLI,
	// the browser pages and the identity providers' callbacks.
	SignIn Routes
	// Reloader applies the config file again on POST /v1/admin/reload.
	Reloader Reloader
	// Findings answers GET /v1/admin/access/findings.
	Findings FindingsLister
	// Report answers GET /v1/admin/report.
	Report Reporter
	// Health, when set, says why keygate cannot do its work right now;
	// GET /healthz answers 503 with it.
	Health func() error
	// Reach, when set, says each database's engine, upstream address and
	// gateway address, for db list: see ConfigReach.
	Reach func(database string) (DatabaseReach, bool)
	// Live, when set, lists and ends the gateway's live sessions: a
	// person's own from /v1/sessions and /v1/live/, anyone's from
	// /v1/admin/live, and the count in `keygate admin user show`.
	Live LiveSessions
	// Rules answers GET /v1/admin/access/rules.
	Rules RulesLister

	// waits ends long polls of the audit log at shutdown.
	waits waitStop
}

// healthz answers 200 while keygate can do its work, and 503 with the
// cause while it cannot (such as an audit log that cannot be written,
// which stops new sessions): a load balancer or monitor sees it at once.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.Health != nil {
		if err := s.Health(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err)
			return
		}
	}
	w.Write([]byte("ok\n"))
}

// Reloader re-reads the config and applies its access rules.
type Reloader interface {
	Reload(ctx context.Context) (ReloadResult, error)
}

// FindingsLister lists the groups the group naming rule cannot use.
type FindingsLister interface {
	AccessFindings(ctx context.Context) (AccessFindings, error)
}

// Routes is a part of the API that registers its own routes.
type Routes interface {
	Register(mux *http.ServeMux)
}

// DefaultSessionTTL is how long a sign-in session lasts unless asked
// otherwise; MaxSessionTTL is the longest allowed.
const (
	DefaultSessionTTL = 8 * time.Hour
	MaxSessionTTL     = 7 * 24 * time.Hour
)

// maxBody bounds request bodies.
const maxBody = 1 << 20

// Handler returns the API's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux, _ := s.routes()
	return s.auditBeforeAnswer(s.guardAdmin(mux))
}

// auditFlushLimit bounds how long a change's answer waits for its audit
// events to be stored; past it the answer goes out, and the events stay
// queued for the writer, which retries until the store takes them.
const auditFlushLimit = 10 * time.Second

// auditBeforeAnswer makes a request that may change something (any
// method but GET, HEAD and OPTIONS) answer only once the audit events it
// recorded are stored: a client that saw a change made, a token issued or
// a session ended never sees it unaudited, even if this server dies the
// next moment.
func (s *Server) auditBeforeAnswer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			next.ServeHTTP(w, r)
			return
		}
		aw := &auditedWriter{ResponseWriter: w, flush: func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditFlushLimit)
			defer cancel()
			if err := s.Audit.Flush(ctx); err != nil {
				s.Log.Error("answering before the request's audit events are stored", "method", r.Method, "path", r.URL.Path, "err", err)
			}
		}}
		next.ServeHTTP(aw, r)
		// A handler that wrote nothing is answered after it returns.
		aw.before()
	})
}

// auditedWriter runs flush once, before the first byte of the answer.
type auditedWriter struct {
	http.ResponseWriter
	flush   func()
	flushed bool
}

func (w *auditedWriter) before() {
	if !w.flushed {
		w.flushed = true
		w.flush()
	}
}

func (w *auditedWriter) WriteHeader(code int) {
	w.before()
	w.ResponseWriter.WriteHeader(code)
}

func (w *auditedWriter) Write(b []byte) (int, error) {
	w.before()
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *auditedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// routeTable is a ServeMux that remembers the patterns registered on it,
// so that a test can walk every admin route, a new one included.
type routeTable struct {
	mux      *http.ServeMux
	patterns []string
}

// HandleFunc registers h for pattern, as http.ServeMux.HandleFunc does.
func (t *routeTable) HandleFunc(pattern string, h http.HandlerFunc) {
	t.patterns = append(t.patterns, pattern)
	t.mux.HandleFunc(pattern, h)
}

// Handle registers h for pattern, as http.ServeMux.Handle does.
func (t *routeTable) Handle(pattern string, h http.Handler) {
	t.patterns = append(t.patterns, pattern)
	t.mux.Handle(pattern, h)
}

// routes registers every route on a new mux, and returns it with the
// patterns registered through the table; SignIn registers its own
// routes on the mux itself.
func (s *Server) routes() (*http.ServeMux, []string) {
	mux := &routeTable{mux: http.NewServeMux()}
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /v1/ca.pem", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Write(s.CAPEM)
	})
	mux.HandleFunc("POST /v1/tokens", s.withSession(s.createToken))
	mux.HandleFunc("GET /v1/whoami", s.withSession(s.whoami))
	mux.HandleFunc("POST /v1/logout", s.withSession(s.logout))
	mux.HandleFunc("GET /v1/sessions", s.withSession(s.mySessions))
	mux.HandleFunc("DELETE /v1/sessions/{id}", s.withSession(s.endMySession))
	mux.HandleFunc("DELETE /v1/live/{id}", s.withSession(s.endMyLive))

	mux.HandleFunc("POST /v1/admin/groups", s.admin(s.createGroup))
	mux.HandleFunc("PUT /v1/admin/groups/{group}/members/{user}", s.admin(s.addMember))
	mux.HandleFunc("DELETE /v1/admin/groups/{group}/members/{user}", s.admin(s.removeMember))
	mux.HandleFunc("POST /v1/admin/users", s.admin(s.createUser))
	mux.HandleFunc("POST /v1/admin/users/{user}/disable", s.admin(s.disableUser))
	mux.HandleFunc("POST /v1/admin/users/{user}/enable", s.admin(s.enableUser))
	mux.HandleFunc("GET /v1/admin/users", s.admin(s.listUsers))
	mux.HandleFunc("GET /v1/admin/users/{user}", s.admin(s.showUser))
	mux.HandleFunc("PATCH /v1/admin/users/{user}", s.admin(s.renameUser))
	mux.HandleFunc("DELETE /v1/admin/users/{user}", s.admin(s.deleteUser))
	mux.HandleFunc("GET /v1/admin/groups", s.admin(s.listGroups))
	mux.HandleFunc("GET /v1/admin/groups/{group}", s.admin(s.showGroup))
	mux.HandleFunc("PATCH /v1/admin/groups/{group}", s.admin(s.renameGroup))
	mux.HandleFunc("DELETE /v1/admin/groups/{group}", s.admin(s.deleteGroup))
	mux.HandleFunc("GET /v1/databases", s.withSession(s.listDatabases))
	mux.HandleFunc("POST /v1/admin/sessions", s.admin(s.createSession))
	mux.HandleFunc("GET /v1/admin/sessions", s.admin(s.listSessions))
	mux.HandleFunc("DELETE /v1/admin/sessions/{id}", s.admin(s.revokeSession))
	mux.HandleFunc("GET /v1/admin/live", s.admin(s.listLive))
	mux.HandleFunc("DELETE /v1/admin/live/{id}", s.admin(s.endLive))
	mux.HandleFunc("GET /v1/admin/audit", s.admin(s.listAudit))
	mux.HandleFunc("POST /v1/admin/reload", s.admin(s.reload))
	mux.HandleFunc("GET /v1/admin/access/explain", s.admin(s.explainAccess))
	mux.HandleFunc("GET /v1/admin/access/who", s.admin(s.whoCan))
	mux.HandleFunc("GET /v1/admin/access/review", s.admin(s.review))
	mux.HandleFunc("GET /v1/admin/access/findings", s.admin(s.findings))
	mux.HandleFunc("GET /v1/admin/access/rules", s.admin(s.accessRules))
	mux.HandleFunc("GET /v1/admin/report", s.admin(s.report))
	mux.HandleFunc("GET /v1/admin/audit/verify", s.admin(s.verifyAudit))
	mux.HandleFunc("GET /v1/admin/audit/export", s.admin(s.exportAudit))
	mux.HandleFunc("GET /v1/admin/groups/{group}/history", s.admin(s.groupHistory))
	mux.HandleFunc("POST /v1/admin/scim-tokens", s.admin(s.createProvisioningToken))
	mux.HandleFunc("GET /v1/admin/scim-tokens", s.admin(s.listProvisioningTokens))
	mux.HandleFunc("DELETE /v1/admin/scim-tokens/{name}", s.admin(s.revokeProvisioningToken))
	if s.SCIM != nil {
		mux.Handle(scim.Prefix+"/", s.SCIM)
	}
	if s.SignIn != nil {
		s.SignIn.Register(mux.mux)
	}
	return mux.mux, mux.patterns
}

// httpError is an error with a status and a message for the caller.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

type handler func(w http.ResponseWriter, r *http.Request) error

// serve runs h and turns its error into a JSON error response. Internal
// errors are logged in full and shown as a generic message.
func (s *Server) serve(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		err := h(w, r)
		if err == nil {
			return
		}
		var he *httpError
		if !errors.As(err, &he) {
			s.Log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			he = &httpError{status: http.StatusInternalServerError, msg: "internal error; the keygate server log has details"}
		}
		writeJSON(w, he.status, Error{Error: he.msg})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errorf(http.StatusRequestEntityTooLarge, "request body over %d bytes", maxBody)
		}
		return errorf(http.StatusBadRequest, "malformed JSON body: %v", err)
	}
	return nil
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

func unauthorized(w http.ResponseWriter, msg string) error {
	w.Header().Set("WWW-Authenticate", `Bearer realm="keygate"`)
	return errorf(http.StatusUnauthorized, "%s", msg)
}

type sessionKey struct{}

// withSession guards an endpoint for signed-in people.
func (s *Server) withSession(h handler) http.HandlerFunc {
	return s.serve(func(w http.ResponseWriter, r *http.Request) error {
		cred := bearer(r)
		if cred == "" {
			return unauthorized(w, "no session: sign in with `keygate login` (automation may set KEYGATE_SESSION)")
		}
		hash := credential.Hash(cred)
		sess, err := s.Store.GetSessionByHash(r.Context(), hash[:])
		if errors.Is(err, store.ErrNotFound) {
			return unauthorized(w, "unknown session credential: sign in again with `keygate login` (or check KEYGATE_SESSION)")
		}
		if err != nil {
			return err
		}
		if !sess.ValidAt(s.Now()) {
			return s.sessionEnded(r.Context(), w, sess)
		}
		return h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess)))
	})
}

// sessionEnded refuses a sign-in session that was revoked or expired, with
// the true reason: a disabled or deleted person is told that signing in
// again will not help.
func (s *Server) sessionEnded(ctx context.Context, w http.ResponseWriter, sess identity.Session) error {
	u, err := s.Store.GetUserByName(ctx, sess.User)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return unauthorized(w, fmt.Sprintf("%s is no longer a keygate user: signing in again will not help; ask an administrator", sess.User))
	case err != nil:
		return err
	case !u.Active:
		return unauthorized(w, fmt.Sprintf("%s was disabled: signing in again will not help until an administrator enables you (keygate admin user enable %s)", u.UserName, u.UserName))
	case !sess.Revoked.IsZero():
		return unauthorized(w, "your session was revoked: sign in again with `keygate login`")
	}
	return unauthorized(w, "your session has expired: sign in again with `keygate login`")
}

func sessionOf(r *http.Request) identity.Session {
	return r.Context().Value(sessionKey{}).(identity.Session)
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	var req TokenRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	sess := sessionOf(r)
	client := r.RemoteAddr
	if req.Database == "" {
		return errorf(http.StatusBadRequest, "no database given: name one, as in `keygate db token orders`")
	}
	refuse := func(level, reason string) error {
		s.Audit.Record(audit.Event{Type: audit.TokenRefused, User: sess.User, Database: req.Database, Access: level, Client: client, Reason: reason})
		return errorf(http.StatusForbidden, "%s", reason)
	}
	var level access.Level
	if req.Access == "" {
		l, ok, err := s.Authz.LeastLevel(r.Context(), sess.User, req.Database, sess.ID)
		if err != nil {
			return err
		}
		if !ok {
			// Ask for the lowest level to get the reason for the refusal.
			l = access.ReadOnly
		}
		level = l
	} else {
		l, err := access.ParseLevel(req.Access)
		if err != nil {
			return errorf(http.StatusBadRequest, "%v", err)
		}
		level = l
	}
	d, err := s.Authz.Authorize(r.Context(), authz.Request{User: sess.User, Database: req.Database, Level: level, SignIn: sess.ID})
	if err != nil {
		return err
	}
	if !d.Allowed {
		return refuse(string(level), fmt.Sprintf("access denied: %s at %s: %s", req.Database, level, d.Reason))
	}
	exp := s.Now().Add(d.TokenTTL())
	if sess.Expires.Before(exp) {
		exp = sess.Expires
	}
	tok, claims, err := s.Tokens.Mint(token.Claims{User: d.User, Database: d.Database, Access: level, Session: sess.ID, Expires: exp})
	if err != nil {
		return err
	}
	s.Audit.Record(audit.Event{Type: audit.TokenIssued, User: d.User, Database: d.Database, Access: string(level), Client: client, SessionID: sess.ID, Reason: d.Reason,
		Detail: map[string]any{"token_id": claims.ID, "expires_at": claims.Expires, "permission_set": d.Grant.PermissionSet.Name, "group": d.Grant.Group}})
	return writeJSON(w, http.StatusOK, TokenResponse{Token: tok, User: d.User, Database: d.Database, Access: string(level), ExpiresAt: claims.Expires})
}

// adminEvent records an admin action under the administrator who made it
// (or BreakGlassActor), with the sign-in session they made it from.
func (s *Server) adminEvent(r *http.Request, typ, user string, detail map[string]any) {
	a := actorOf(r)
	if a.Session != "" {
		if detail == nil {
			detail = map[string]any{}
		}
		detail["actor_session"] = a.Session
	}
	s.Audit.Record(audit.Event{Type: typ, Actor: a.Name, User: user, Client: r.RemoteAddr, Detail: detail})
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request) error {
	var req GroupRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if err := identity.ValidateGroupName(req.Name); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	g, err := s.Store.CreateGroup(r.Context(), identity.Group{Name: req.Name})
	if errors.Is(err, store.ErrAlreadyExists) {
		return errorf(http.StatusConflict, "group %s already exists", req.Name)
	}
	if err != nil {
		return err
	}
	s.adminEvent(r, audit.AdminGroupCreate, "", map[string]any{"group": g.Name})
	return writeJSON(w, http.StatusCreated, Group{Name: g.Name, Members: []string{}})
}

func (s *Server) lookupUser(ctx context.Context, name string) (identity.User, error) {
	u, err := s.Store.GetUserByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return u, s.noPerson(name)
	}
	return u, err
}

// noPerson is the error for a person that does not exist.
func (s *Server) noPerson(name string) error {
	return errorf(http.StatusNotFound, "no person named %s (keygate admin user list shows everyone; keygate admin user add %s creates one)", name, name)
}

func (s *Server) lookupGroup(ctx context.Context, name string) (identity.Group, error) {
	g, err := s.Store.GetGroupByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return g, errorf(http.StatusNotFound, "no group named %s (keygate admin group list shows them all; keygate admin group add %s creates it)", name, name)
	}
	return g, err
}

func (s *Server) addMember(w http.ResponseWriter, r *http.Request) error {
	g, err := s.lookupGroup(r.Context(), r.PathValue("group"))
	if err != nil {
		return err
	}
	u, err := s.lookupUser(r.Context(), r.PathValue("user"))
	if err != nil {
		return err
	}
	added, err := s.Store.AddMember(r.Context(), g.ID, u.ID, actorOf(r).Name)
	if err != nil {
		return err
	}
	if added {
		s.adminEvent(r, audit.AdminGroupAddMember, u.UserName, map[string]any{"group": g.Name})
	}
	return s.writeGroup(r.Context(), w, g, http.StatusOK)
}

func (s *Server) removeMember(w http.ResponseWriter, r *http.Request) error {
	g, err := s.lookupGroup(r.Context(), r.PathValue("group"))
	if err != nil {
		return err
	}
	u, err := s.lookupUser(r.Context(), r.PathValue("user"))
	if err != nil {
		return err
	}
	err = s.Store.RemoveMember(r.Context(), g.ID, u.ID, actorOf(r).Name)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "%s is not a member of %s", u.UserName, g.Name)
	}
	if err != nil {
		return err
	}
	s.adminEvent(r, audit.AdminGroupRemoveMember, u.UserName, map[string]any{"group": g.Name})
	return s.writeGroup(r.Context(), w, g, http.StatusOK)
}

func (s *Server) writeGroup(ctx context.Context, w http.ResponseWriter, g identity.Group, status int) error {
	members, err := s.Store.ListMembers(ctx, g.ID)
	if err != nil {
		return err
	}
	out := Group{Name: g.Name, Members: []string{}}
	for _, m := range members {
		out.Members = append(out.Members, m.UserName)
	}
	return writeJSON(w, status, out)
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) error {
	var req UserRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if err := identity.ValidateUserName(req.Name); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	for _, g := range req.Groups {
		if err := identity.ValidateGroupName(g); err != nil {
			return errorf(http.StatusBadRequest, "%v", err)
		}
	}
	ctx := r.Context()
	u, err := s.Store.CreateUser(ctx, identity.User{UserName: req.Name, Email: req.Email, Active: true})
	if errors.Is(err, store.ErrAlreadyExists) {
		return errorf(http.StatusConflict, "user %s already exists", req.Name)
	}
	if err != nil {
		return err
	}
	s.adminEvent(r, audit.AdminUserCreate, u.UserName, map[string]any{"email": u.Email})
	out := User{Name: u.UserName, Email: u.Email, Active: true, Groups: []string{}}
	for _, name := range req.Groups {
		g, err := s.Store.GetGroupByName(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			g, err = s.Store.CreateGroup(ctx, identity.Group{Name: name})
			if err == nil {
				s.adminEvent(r, audit.AdminGroupCreate, "", map[string]any{"group": g.Name})
			}
		}
		if err != nil {
			return err
		}
		if _, err := s.Store.AddMember(ctx, g.ID, u.ID, actorOf(r).Name); err != nil {
			return err
		}
		s.adminEvent(r, audit.AdminGroupAddMember, u.UserName, map[string]any{"group": g.Name})
		out.Groups = append(out.Groups, g.Name)
	}
	return writeJSON(w, http.StatusCreated, out)
}

func (s *Server) createSession(w http.ResponseWriter, r *http.Request) error {
	var req SessionRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	ttl := DefaultSessionTTL
	if req.TTL != "" {
		d, err := config.ParseDuration(req.TTL)
		if err != nil {
			return errorf(http.StatusBadRequest, "ttl: %v", err)
		}
		ttl = d
	}
	if ttl <= 0 || ttl > MaxSessionTTL {
		return errorf(http.StatusBadRequest, "ttl %s must be between 1s and %s", ttl, MaxSessionTTL)
	}
	u, err := s.lookupUser(r.Context(), req.User)
	if err != nil {
		return err
	}
	if !u.Active {
		return errorf(http.StatusConflict, "%s is disabled: enable them first with `keygate admin user enable %s`", u.UserName, u.UserName)
	}
	// A session for an administrator is how one administrator brings in
	// another (the documented bootstrap): it carries their rights, so its
	// event says so. It carries no groups of its own, so it cannot make
	// anyone an administrator who is not one by their provisioned groups.
	p, err := s.Authz.Principal(r.Context(), identity.Session{User: u.UserName})
	if err != nil {
		return fmt.Errorf("read the groups of %s: %w", u.UserName, err)
	}
	administrator := s.administrators().Includes(p.Groups)
	cred := credential.New(credential.SessionPrefix)
	hash := credential.Hash(cred)
	now := s.Now()
	sess, err := s.Store.CreateSession(r.Context(), identity.Session{User: u.UserName, Created: now, Expires: now.Add(ttl), Source: "admin"}, hash[:])
	if err != nil {
		return err
	}
	detail := map[string]any{"session_id": sess.ID, "expires_at": sess.Expires}
	if administrator {
		detail["administrator"] = true
	}
	s.adminEvent(r, audit.AdminSessionCreate, u.UserName, detail)
	return writeJSON(w, http.StatusCreated, SessionResponse{ID: sess.ID, User: sess.User, Credential: cred, ExpiresAt: sess.Expires})
}

// auditPageMax bounds one page of audit events.
const auditPageMax = 1000

// listAudit answers GET /v1/admin/audit: a page of events matching the
// filters (see auditQuery), or with wait=30s, the next ones to match,
// waiting for them: the CLI follows the log this way.
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) error {
	aq, err := auditQuery(r.URL.Query())
	if err != nil {
		return err
	}
	wait, err := auditWait(r.URL.Query().Get("wait"))
	if err != nil {
		return err
	}
	// Make what was recorded before this request visible to it.
	if err := s.Audit.Flush(r.Context()); err != nil {
		return err
	}
	page, err := s.auditPage(r.Context(), aq, wait)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, page)
}

// Trailers of the audit export: whether it is whole, and if not why.
const (
	ExportCompleteTrailer = "Keygate-Export-Complete"
	ExportErrorTrailer    = "Keygate-Export-Error"
)

// exportAudit streams the whole audit log, one event a line, each with
// what its hash covers, for keygate audit verify --export to check
// offline. A trailer says whether it is whole: the status went out with
// the first line.
func (s *Server) exportAudit(w http.ResponseWriter, r *http.Request) error {
	if err := s.Audit.Flush(r.Context()); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Trailer", ExportCompleteTrailer+", "+ExportErrorTrailer)
	w.WriteHeader(http.StatusOK)
	n, err := audit.Export(r.Context(), s.Store, 0, w)
	if err != nil {
		s.Log.Error("audit export ended early", "after_event", n, "err", err)
		w.Header().Set(ExportErrorTrailer, err.Error())
		return nil
	}
	w.Header().Set(ExportCompleteTrailer, "true")
	return nil
}

func (s *Server) verifyAudit(w http.ResponseWriter, r *http.Request) error {
	if err := s.Audit.Flush(r.Context()); err != nil {
		return err
	}
	n, err := audit.Verify(r.Context(), s.Store)
	out := AuditVerification{Events: n, Intact: err == nil}
	if err != nil {
		s.Log.Error("audit log verification failed", "err", err)
		out.Error = err.Error()
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) groupHistory(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("group")
	history, err := s.Store.MembershipHistory(r.Context(), name)
	if err != nil {
		return err
	}
	if len(history) == 0 {
		if _, err := s.lookupGroup(r.Context(), name); err != nil {
			return err
		}
	}
	out := GroupHistory{Group: name, Memberships: []Membership{}}
	var at time.Time
	if v := r.URL.Query().Get("at"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return errorf(http.StatusBadRequest, "at: %v", err)
		}
		at, out.At = t, &t
	}
	for _, m := range history {
		if !at.IsZero() && (m.Joined.After(at) || (!m.Left.IsZero() && !m.Left.After(at))) {
			continue // not a member at that moment
		}
		ms := Membership{User: m.User, Joined: m.Joined, Source: m.Source}
		if !m.Left.IsZero() {
			left := m.Left
			ms.Left = &left
		}
		out.Memberships = append(out.Memberships, ms)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) createProvisioningToken(w http.ResponseWriter, r *http.Request) error {
	var req ProvisioningTokenRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if err := identity.ValidateTokenName(req.Name); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	now := s.Now()
	t := identity.ProvisioningToken{Name: req.Name, Created: now}
	if req.TTL != "" {
		d, err := config.ParseDuration(req.TTL)
		if err != nil || d <= 0 {
			return errorf(http.StatusBadRequest, "ttl: use a duration such as 365d")
		}
		t.Expires = now.Add(d)
	}
	secret := credential.New(credential.ProvisioningPrefix)
	hash := credential.Hash(secret)
	t, err := s.Store.CreateProvisioningToken(r.Context(), t, hash[:])
	if errors.Is(err, store.ErrAlreadyExists) {
		return errorf(http.StatusConflict, "a SCIM token named %s exists: revoke it first (`keygate admin scim-token revoke %s`) or choose another name", req.Name, req.Name)
	}
	if err != nil {
		return err
	}
	s.adminEvent(r, audit.AdminSCIMTokenCreate, "", map[string]any{"token": t.Name, "expires_at": t.Expires})
	out := provisioningToken(t)
	out.Token = secret
	return writeJSON(w, http.StatusCreated, out)
}

func provisioningToken(t identity.ProvisioningToken) ProvisioningToken {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	return ProvisioningToken{Name: t.Name, Created: t.Created, ExpiresAt: opt(t.Expires), RevokedAt: opt(t.Revoked), LastUsed: opt(t.LastUsed)}
}

func (s *Server) listProvisioningTokens(w http.ResponseWriter, r *http.Request) error {
	tokens, err := s.Store.ListProvisioningTokens(r.Context())
	if err != nil {
		return err
	}
	out := make([]ProvisioningToken, 0, len(tokens))
	for _, t := range tokens {
		out = append(out, provisioningToken(t))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) revokeProvisioningToken(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	err := s.Store.RevokeProvisioningToken(r.Context(), name, s.Now())
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "no active SCIM token named %s: see `keygate admin scim-token list`", name)
	}
	if err != nil {
		return err
	}
	s.adminEvent(r, audit.AdminSCIMTokenRevoke, "", map[string]any{"token": name})
	return writeJSON(w, http.StatusOK, map[string]string{"revoked": name})
}

// reload applies the config file again. A config that does not load is
// the caller's to fix: its error, with the file and line, is shown.
func (s *Server) reload(w http.ResponseWriter, r *http.Request) error {
	if s.Reloader == nil {
		return errorf(http.StatusNotImplemented, "this server cannot reload its config")
	}
	res, err := s.Reloader.Reload(r.Context())
	if err != nil {
		return errorf(http.StatusUnprocessableEntity, "config not reloaded; the running access rules stay: %v", err)
	}
	if res.RestartNeeded == nil {
		res.RestartNeeded = []string{}
	}
	return writeJSON(w, http.StatusOK, res)
}
