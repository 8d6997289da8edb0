package server

import (
	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/gateway"
)

// liveSessions is the gateway's live sessions as the API lists and ends
// them (api.LiveSessions): the gateway's registry is the one record of
// them, so this reads it on every call and keeps nothing.
type liveSessions struct{ gw *gateway.Gateway }

var _ api.LiveSessions = liveSessions{}

// List is every live session now, less those being ended.
func (l liveSessions) List() []api.LiveSession {
	gs := l.gw.Sessions()
	out := make([]api.LiveSession, 0, len(gs))
	for _, s := range gs {
		if !s.Ending() {
			out = append(out, liveView(s))
		}
	}
	return out
}

// End ends the live session id: its client is told reason, its upstream
// backend is ended, and session.end records reason.
func (l liveSessions) End(id, reason string) (api.LiveSession, bool) {
	for _, s := range l.gw.Sessions() {
		if s.ID == id && !s.Ending() {
			l.gw.End(s, reason)
			return liveView(s), true
		}
	}
	return api.LiveSession{}, false
}

func liveView(s *gateway.Session) api.LiveSession {
	return api.LiveSession{ID: s.ID, User: s.User, Database: s.Database, Access: string(s.Level), Engine: s.Engine, Client: s.Client,
		SignIn: s.SignIn, UpstreamRole: s.UpstreamRole, Started: s.Started, Statements: s.Statements.Load()}
}
