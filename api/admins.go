package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/store"
)

// BreakGlassActor is the actor of admin actions made with the admin
// credential in data_dir. A user name cannot hold a space, so no person
// can be recorded as it, nor it as a person.
const BreakGlassActor = "admin (data_dir credential)"

// AdminPrefix is where the admin API lives. Every request under it is
// authenticated as an administrator before it is routed, so a route
// registered without the admin guard is guarded all the same.
const AdminPrefix = "/v1/admin/"

// Actor is who makes an admin request: an administrator signed in as
// themselves, or whoever holds the data_dir credential.
type Actor struct {
	// Name is the administrator's user name, or BreakGlassActor.
	Name string
	// Session is the administrator's sign-in session id; empty for the
	// data_dir credential.
	Session string
	// BreakGlass marks the data_dir credential.
	BreakGlass bool
}

type actorKey struct{}

// ActorOf is who made the admin request whose context ctx is: the reload
// it triggers records them.
func ActorOf(ctx context.Context) (Actor, bool) {
	a, ok := ctx.Value(actorKey{}).(Actor)
	return a, ok
}

func withActor(r *http.Request, a Actor) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), actorKey{}, a))
}

// actorOf is the actor of a request the admin guard let through.
func actorOf(r *http.Request) Actor {
	a, _ := ActorOf(r.Context())
	return a
}

// administrators are the administrators in force now: read on every
// request, so that a reload applies to the next one.
func (s *Server) administrators() config.Administrators {
	if s.Administrators == nil {
		return config.Administrators{}
	}
	return s.Administrators()
}

// guardAdmin authenticates every request under AdminPrefix before mux
// routes it; the rest go straight to mux.
func (s *Server) guardAdmin(mux http.Handler) http.Handler {
	guarded := s.serve(func(w http.ResponseWriter, r *http.Request) error {
		a, err := s.authenticateAdmin(w, r)
		if err != nil {
			return err
		}
		mux.ServeHTTP(w, withActor(r, a))
		return nil
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, AdminPrefix) || r.URL.Path == strings.TrimSuffix(AdminPrefix, "/") {
			guarded(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// admin guards an admin endpoint: it runs h for an administrator only. A
// request routed through guardAdmin is authenticated once, there; one
// that reaches h another way is authenticated here.
func (s *Server) admin(h handler) http.HandlerFunc {
	return s.serve(func(w http.ResponseWriter, r *http.Request) error {
		if _, ok := ActorOf(r.Context()); ok {
			return h(w, r)
		}
		a, err := s.authenticateAdmin(w, r)
		if err != nil {
			return err
		}
		return h(w, withActor(r, a))
	})
}

// authenticateAdmin says who makes an admin request: 401 without a
// credential that is in force, 403 for a person who is not an
// administrator now. Membership is decided on each request from the
// person's provisioned groups and those their sign-in asserted, as access
// to databases is, so removing someone from the administrators' groups,
// disabling them or revoking their session takes effect on their next
// request.
func (s *Server) authenticateAdmin(w http.ResponseWriter, r *http.Request) (Actor, error) {
	ctx := r.Context()
	admins := s.administrators()
	cred := bearer(r)
	if cred == "" {
		return Actor{}, unauthorized(w, "no credential: sign in with `keygate login` to run keygate admin as yourself, or pass --config FILE (the server's config) to use its admin credential in data_dir")
	}
	hash := credential.Hash(cred)
	if subtle.ConstantTimeCompare(hash[:], s.AdminHash[:]) == 1 {
		// Every use is on record, reads included, flagged as break-glass
		// once the administrators are named; but not a read of the audit
		// log itself, which would find its own record and wake a follower
		// on every read: the log line below notes those.
		if !strings.HasPrefix(r.URL.Path, AdminPrefix+"audit") {
			s.Audit.Record(audit.Event{Type: audit.BreakGlassUse, Actor: BreakGlassActor, Client: r.RemoteAddr,
				Detail: map[string]any{"method": r.Method, "path": r.URL.Path, "administrators_named": admins.Configured()}})
		}
		if admins.Configured() {
			s.Log.Warn("the data_dir admin credential was used while administrators.groups names the administrators: it is for bootstrap and break-glass only",
				"method", r.Method, "path", r.URL.Path, "client", r.RemoteAddr, "administrators", admins.Groups)
		}
		return Actor{Name: BreakGlassActor, BreakGlass: true}, nil
	}
	if strings.HasPrefix(cred, credential.AdminPrefix) {
		return Actor{}, unauthorized(w, "admin credential required: this is not the server's admin credential; run admin commands with --config pointing at the server's config, which locates data_dir/admin.credential, or sign in with `keygate login` as an administrator")
	}
	sess, err := s.Store.GetSessionByHash(ctx, hash[:])
	if errors.Is(err, store.ErrNotFound) {
		return Actor{}, unauthorized(w, "unknown credential: sign in again with `keygate login` (or check KEYGATE_SESSION), or pass --config FILE to use the server's admin credential")
	}
	if err != nil {
		return Actor{}, fmt.Errorf("admin request: look up the session: %w", err)
	}
	if !sess.ValidAt(s.Now()) {
		return Actor{}, s.sessionEnded(ctx, w, sess)
	}
	p, err := s.Authz.Principal(ctx, sess)
	if errors.Is(err, store.ErrNotFound) {
		return Actor{}, unauthorized(w, fmt.Sprintf("%s is no longer a keygate user: signing in again will not help; ask an administrator", sess.User))
	}
	if err != nil {
		return Actor{}, fmt.Errorf("admin request by %s: %w", sess.User, err)
	}
	if !p.Active {
		return Actor{}, unauthorized(w, fmt.Sprintf("%s was disabled: signing in again will not help until an administrator enables you", p.UserName))
	}
	if ok, why := s.isAdministrator(p, sess); !ok {
		s.Log.Warn("admin request refused", "user", p.UserName, "session_id", sess.ID, "method", r.Method, "path", r.URL.Path, "client", r.RemoteAddr, "reason", why)
		return Actor{}, errorf(http.StatusForbidden, "%s", why)
	}
	return Actor{Name: p.UserName, Session: sess.ID}, nil
}

// isAdministrator decides whether p, signed in with sess, holds
// administrator rights now, and when not, says why and what would change
// it. It is the one place that decides: the admin guard refuses with its
// reason, and whoami shows its answer, so that the portal offers the
// admin pages to exactly those the API lets in.
func (s *Server) isAdministrator(p identity.Principal, sess identity.Session) (ok bool, why string) {
	admins := s.administrators()
	switch {
	case !p.Active:
		return false, fmt.Sprintf("%s was disabled: signing in again will not help until an administrator enables you", p.UserName)
	case !admins.Configured():
		return false, fmt.Sprintf("%s is not a keygate administrator: this server names no administrators (config administrators.groups), so only its admin credential in data_dir administers it (keygate admin --config FILE)", p.UserName)
	case !admins.Includes(p.Groups):
		return false, fmt.Sprintf("%s is not a keygate administrator: administrators are the members of %s (config administrators.groups)", p.UserName, admins.Describe())
	case admins.RequireMFA && !sess.MFA:
		return false, fmt.Sprintf("%s is an administrator, but this session was signed in without MFA, which config administrators.require_mfa requires: sign in again with a second factor (keygate login)", p.UserName)
	}
	return true, ""
}
