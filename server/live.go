package server

import "strings"

// liveSessions counts a person's live gateway sessions, for `keygate admin
// user show`.
func (s *Server) liveSessions(user string) int {
	n := 0
	for _, gs := range s.gw.Sessions() {
		if strings.EqualFold(gs.User, user) {
			n++
		}
	}
	return n
}
