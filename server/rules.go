package server

import (
	"context"
	"fmt"

	"github.com/keygate/keygate/api"
)

// AccessRules lists the access rules in force (api.RulesLister): the
// config a reload last applied, with the assignments its group naming
// rule derives from the groups the policy in force was built from, so
// that the list is what decisions use now.
func (s *Server) AccessRules(ctx context.Context) (api.AccessRules, error) {
	s.policyMu.Lock()
	cfg, groups := s.rules.cfg, s.groups
	s.policyMu.Unlock()
	r, err := cfg.Rules()
	if err != nil {
		return api.AccessRules{}, fmt.Errorf("read the access rules in force: %w", err)
	}
	named, _ := cfg.NamedAssignments(groups)
	return api.ConfigRules(r, named), nil
}
