package api

import (
	"cmp"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/store"
)

// LiveSessions lists and ends the gateway's live sessions. The gateway is
// the one place that knows them, so the API keeps nothing of its own and
// asks on every request; it is declared here, by its consumer, so that
// api need not import the gateway.
type LiveSessions interface {
	// List is every live session now, in no particular order.
	List() []LiveSession
	// End ends the live session id with reason, which its client is told
	// and session.end records; its upstream backend goes with it. It
	// reports false when no live session has that id (any more).
	End(id, reason string) (LiveSession, bool)
}

// sameUser reports whether two user names name one person: names are
// unique regardless of case, as the store keeps them.
func sameUser(a, b string) bool { return strings.EqualFold(a, b) }

// liveSessions are the live sessions that keep, oldest first; none when
// the server has no gateway.
func (s *Server) liveSessions(keep func(LiveSession) bool) []LiveSession {
	out := []LiveSession{}
	if s.Live == nil {
		return out
	}
	for _, ls := range s.Live.List() {
		if keep(ls) {
			out = append(out, ls)
		}
	}
	slices.SortFunc(out, func(a, b LiveSession) int {
		return cmp.Or(a.Started.Compare(b.Started), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// liveSession finds the live session id among those that keep.
func (s *Server) liveSession(id string, keep func(LiveSession) bool) (LiveSession, bool) {
	for _, ls := range s.liveSessions(keep) {
		if ls.ID == id {
			return ls, true
		}
	}
	return LiveSession{}, false
}

// noGateway refuses a request about live sessions on a server that runs
// no gateway, which has none to show or end.
func noGateway() error {
	return errorf(http.StatusNotImplemented, "this keygate server runs no gateway, so it has no live sessions: ask the server that serves the database connections")
}

// mySessions answers GET /v1/sessions: the caller's sign-in sessions in
// force, the one they call with marked current, and their live gateway
// sessions, so that a person can see where they are signed in and
// connected and end what they do not recognise.
func (s *Server) mySessions(w http.ResponseWriter, r *http.Request) error {
	sess := sessionOf(r)
	all, err := s.Store.ListSessions(r.Context(), sess.User)
	if err != nil {
		return err
	}
	now := s.Now()
	out := MySessions{SignIns: []Session{}}
	for _, x := range all {
		if !sameUser(x.User, sess.User) {
			continue
		}
		v := sessionView(x, now)
		if v.Status != SessionActive {
			continue
		}
		v.Current = x.ID == sess.ID
		out.SignIns = append(out.SignIns, v)
	}
	out.Live = s.liveSessions(func(ls LiveSession) bool { return sameUser(ls.User, sess.User) })
	return writeJSON(w, http.StatusOK, out)
}

// endMySession answers DELETE /v1/sessions/{id}: the caller revokes one
// of their own sign-in sessions (the one they call with included, which
// is a logout). Its tokens stop working and the gateway sessions opened
// with them end, as with an administrator's revoke. Another person's
// session is answered as one that does not exist, so that its id tells
// nothing.
func (s *Server) endMySession(w http.ResponseWriter, r *http.Request) error {
	sess := sessionOf(r)
	id := r.PathValue("id")
	target, err := s.Store.GetSession(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !sameUser(target.User, sess.User)) {
		return errorf(http.StatusNotFound, "no sign-in session %s of yours: GET /v1/sessions (the portal's sessions page) lists yours", id)
	}
	if err != nil {
		return err
	}
	if target.Revoked.IsZero() {
		now := s.Now()
		if err := s.Store.RevokeSession(r.Context(), id, now); err != nil {
			return err
		}
		// A sign-out, as logout records one, but of the session named
		// and made from the caller's: the actor and actor_session say so.
		s.Audit.Record(audit.Event{Type: audit.SignOut, Actor: sess.User, User: target.User, Client: r.RemoteAddr, SessionID: id,
			Reason: "ended by " + sess.User, Detail: map[string]any{"actor_session": sess.ID}})
		target.Revoked = now
	}
	v := sessionView(target, s.Now())
	v.Current = target.ID == sess.ID
	return writeJSON(w, http.StatusOK, v)
}

// endMyLive answers DELETE /v1/live/{id}: the caller ends one of their
// own live gateway sessions, and its upstream backend. Another person's
// session is answered as one that does not exist.
func (s *Server) endMyLive(w http.ResponseWriter, r *http.Request) error {
	if s.Live == nil {
		return noGateway()
	}
	sess := sessionOf(r)
	id := r.PathValue("id")
	mine := func(ls LiveSession) bool { return sameUser(ls.User, sess.User) }
	notFound := errorf(http.StatusNotFound, "no live session %s of yours: it may have ended already; GET /v1/sessions (the portal's sessions page) lists yours", id)
	if _, ok := s.liveSession(id, mine); !ok {
		return notFound
	}
	reason := "ended by " + sess.User
	ls, ok := s.Live.End(id, reason)
	if !ok {
		return notFound
	}
	s.Audit.Record(audit.Event{Type: audit.LiveEnd, Actor: sess.User, User: ls.User, Database: ls.Database, Access: ls.Access, Client: r.RemoteAddr,
		SessionID: ls.ID, Reason: reason, Detail: map[string]any{"actor_session": sess.ID}})
	return writeJSON(w, http.StatusOK, ls)
}

// listLive answers GET /v1/admin/live: every live gateway session, of one
// person with ?user= and on one database with ?database=.
func (s *Server) listLive(w http.ResponseWriter, r *http.Request) error {
	if s.Live == nil {
		return noGateway()
	}
	q := r.URL.Query()
	user, database := q.Get("user"), q.Get("database")
	if user != "" {
		if _, err := s.lookupUser(r.Context(), user); err != nil {
			return err
		}
	}
	if database != "" && !slices.Contains(s.Authz.Databases(), database) {
		return errorf(http.StatusNotFound, "no database named %s in the access rules in force: the config's databases list names them", database)
	}
	return writeJSON(w, http.StatusOK, s.liveSessions(func(ls LiveSession) bool {
		return (user == "" || sameUser(ls.User, user)) && (database == "" || ls.Database == database)
	}))
}

// endLive answers DELETE /v1/admin/live/{id}: an administrator ends
// anyone's live gateway session; the person's client is told who ended
// it, and the audit names the administrator as actor.
func (s *Server) endLive(w http.ResponseWriter, r *http.Request) error {
	if s.Live == nil {
		return noGateway()
	}
	id := r.PathValue("id")
	reason := "ended by administrator " + actorOf(r).Name
	ls, ok := s.Live.End(id, reason)
	if !ok {
		return errorf(http.StatusNotFound, "no live session %s: it may have ended already; `keygate admin live list` shows those there are", id)
	}
	s.adminEvent(r, audit.AdminLiveEnd, ls.User, map[string]any{"session_id": ls.ID, "database": ls.Database, "access": ls.Access, "reason": reason})
	return writeJSON(w, http.StatusOK, ls)
}
