package api

import (
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/store"
)

// Session statuses.
const (
	SessionActive  = "active"
	SessionExpired = "expired"
	SessionRevoked = "revoked"
)

func sessionView(s identity.Session, now time.Time) Session {
	out := Session{ID: s.ID, User: s.User, Source: s.Source, MFA: s.MFA, Created: s.Created, Expires: s.Expires, Status: SessionActive}
	if !s.LastUsed.IsZero() {
		out.LastUsed = &s.LastUsed
	}
	switch {
	case !s.Revoked.IsZero():
		out.Revoked, out.Status = &s.Revoked, SessionRevoked
	case !now.Before(s.Expires):
		out.Status = SessionExpired
	}
	return out
}

// whoami answers with the person as decisions through this session see
// them.
func (s *Server) whoami(w http.ResponseWriter, r *http.Request) error {
	sess := sessionOf(r)
	p, err := s.Authz.Principal(r.Context(), sess)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusForbidden, "%s is no longer a keygate user", sess.User)
	}
	if err != nil {
		return err
	}
	groups := slices.Compact(slices.Sorted(slices.Values(p.Groups)))
	if groups == nil {
		groups = []string{}
	}
	tags := p.Attributes
	if tags == nil {
		tags = map[string]string{}
	}
	administrator, _ := s.isAdministrator(p, sess)
	return writeJSON(w, http.StatusOK, WhoAmI{User: p.UserName, Groups: groups, Tags: tags, SessionID: sess.ID,
		ExpiresAt: sess.Expires, MFA: sess.MFA, Method: sess.Source, Administrator: administrator})
}

// logout revokes the caller's own session: the tokens it issued stop
// working, and gateway sessions opened with them end.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	sess := sessionOf(r)
	if err := s.Store.RevokeSession(r.Context(), sess.ID, s.Now()); err != nil {
		return err
	}
	s.Audit.Record(audit.Event{Type: audit.SignOut, User: sess.User, Client: r.RemoteAddr, SessionID: sess.ID, Reason: "signed out"})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listSessions lists sign-in sessions, of one person with ?user=, and
// only the active ones unless ?all=true.
func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	user := q.Get("user")
	if user != "" {
		if _, err := s.lookupUser(r.Context(), user); err != nil {
			return err
		}
	}
	all := q.Get("all") == "true"
	sessions, err := s.Store.ListSessions(r.Context(), user)
	if err != nil {
		return err
	}
	now := s.Now()
	out := []Session{}
	for _, sess := range sessions {
		v := sessionView(sess, now)
		if all || v.Status == SessionActive {
			out = append(out, v)
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

// revokeSession revokes one sign-in session. Revoking a revoked session
// changes nothing and says so.
func (s *Server) revokeSession(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	sess, err := s.Store.GetSession(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "no session %s: see `keygate admin session list --all`", id)
	}
	if err != nil {
		return err
	}
	if sess.Revoked.IsZero() {
		now := s.Now()
		if err := s.Store.RevokeSession(r.Context(), id, now); err != nil {
			return err
		}
		s.adminEvent(r, audit.AdminSessionRevoke, sess.User, map[string]any{"session_id": id})
		sess.Revoked = now
	}
	return writeJSON(w, http.StatusOK, sessionView(sess, s.Now()))
}
