package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/config"
)

// RulesLister says which access rules are in force: the config whose
// rules a reload last applied, and the assignments its group naming rule
// derived from the groups the policy in force was built from.
type RulesLister interface {
	AccessRules(ctx context.Context) (AccessRules, error)
}

// accessRules answers GET /v1/admin/access/rules.
func (s *Server) accessRules(w http.ResponseWriter, r *http.Request) error {
	if s.Rules == nil {
		return errorf(http.StatusNotImplemented, "this server cannot list its access rules")
	}
	out, err := s.Rules.AccessRules(r.Context())
	if err != nil {
		return fmt.Errorf("list the access rules in force: %w", err)
	}
	return writeJSON(w, http.StatusOK, out)
}

// ConfigRules turns the config's access rules, with the assignments the
// group naming rule derived (named), into what the API shows. The
// permission sets are shown with their terms as in force: the default
// token TTL where the config gives none.
func ConfigRules(r config.Rules, named []access.Assignment) AccessRules {
	out := AccessRules{PermissionSets: []PermissionSetRule{}, Assignments: []AssignmentRule{}, Deny: []DenyRule{},
		GroupPattern: r.GroupPattern, PolicyFile: r.PolicyFile}
	levels := make(map[string]string, len(r.PermissionSets))
	for _, ps := range r.PermissionSets {
		ttl := time.Duration(ps.TokenTTL)
		if ttl == 0 {
			ttl = access.DefaultTokenTTL
		}
		var limit string
		if d := time.Duration(ps.SessionDuration); d > 0 {
			limit = config.FormatDuration(d)
		}
		out.PermissionSets = append(out.PermissionSets, PermissionSetRule{Name: ps.Name, Description: ps.Description, Access: ps.Access,
			TokenTTL: config.FormatDuration(ttl), SessionDuration: limit, RequireMFA: ps.RequireMFA, Conditions: nonNil(ps.Conditions)})
		levels[ps.Name] = ps.Access
	}
	for i, a := range r.Assignments {
		out.Assignments = append(out.Assignments, AssignmentRule{Group: a.Group, PermissionSet: a.PermissionSet, Access: levels[a.PermissionSet],
			Databases: a.Databases, DatabaseTags: a.DatabaseTags, Policy: fmt.Sprintf("assignments[%d]", i)})
	}
	for _, a := range named {
		out.Assignments = append(out.Assignments, AssignmentRule{Group: a.Group, PermissionSet: a.PermissionSet, Access: levels[a.PermissionSet],
			Databases: a.Databases, DatabaseTags: a.DatabaseTags, Policy: a.ID})
	}
	for i, d := range r.Deny {
		out.Deny = append(out.Deny, DenyRule{Description: d.Description, Group: d.Group, Databases: d.Databases, DatabaseTags: d.DatabaseTags,
			Access: nonNil(d.Access), Conditions: nonNil(d.Conditions), Policy: fmt.Sprintf("deny[%d]", i)})
	}
	return out
}

// nonNil is list, or an empty list for nil: JSON [] rather than null, so
// that a table over it needs no special case.
func nonNil(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}
