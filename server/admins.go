package server

import (
	"github.com/keygate/keygate/config"
)

// administrators are the administrators in force, for the API.
func (s *Server) administrators() config.Administrators {
	return *s.admins.Load()
}

// setAdministrators puts a in force and says so in the log: who
// administers keygate is worth a line at every start and change.
func (s *Server) setAdministrators(a config.Administrators) {
	s.admins.Store(&a)
	if !a.Configured() {
		s.log.Info("no administrators.groups: only the admin credential in data_dir administers keygate")
		return
	}
	s.log.Info("administrators are the members of administrators.groups", "groups", a.Groups, "require_mfa", a.RequireMFA)
}

// reloadAdministrators puts the reloaded config's administrators in force
// and returns what the reload's audit event says of them: the groups in
// force, and, when they changed, the groups before. The config history
// keeps them with the access rules too (config.Rules).
func (s *Server) reloadAdministrators(next config.Administrators) map[string]any {
	prev := s.administrators()
	detail := map[string]any{"administrators": groupList(next.Groups)}
	if next.RequireMFA {
		detail["administrators_require_mfa"] = true
	}
	if prev.Equal(next) {
		return detail
	}
	detail["administrators_before"] = groupList(prev.Groups)
	if prev.RequireMFA != next.RequireMFA {
		detail["administrators_require_mfa"] = next.RequireMFA
	}
	s.log.Warn("administrators changed on reload", "groups", next.Groups, "groups_before", prev.Groups, "require_mfa", next.RequireMFA)
	s.setAdministrators(next)
	return detail
}

// groupList is groups for an audit event: a list, never null.
func groupList(groups []string) []string {
	if groups == nil {
		return []string{}
	}
	return groups
}
