package server

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/store"
)

// accessRules is what the access policy is built from besides the groups
// in the store: the config whose access rules are in force (which a reload
// replaces) and the databases decisions know.
type accessRules struct {
	cfg *config.Config
	dbs []access.Database
}

// builtPolicy is a policy and what it was built from.
type builtPolicy struct {
	policy *access.Policy
	// groups are the names of the groups in the store the policy was
	// built from; nil when the config has no group naming rule, as the
	// policy then does not depend on them.
	groups   []string
	assigned int // assignments the naming rule derived
	findings int // groups it could not use
}

// buildPolicy is the one place the access policy is made: the config's
// rules plus the assignments its group naming rule derives from groups.
func buildPolicy(cfg *config.Config, groups []string) (builtPolicy, error) {
	b := builtPolicy{groups: groups}
	assigned, findings := cfg.NamedAssignments(groups)
	p, err := cfg.Policy(assigned...)
	if err != nil {
		return builtPolicy{}, err
	}
	b.policy, b.assigned, b.findings = p, len(assigned), len(findings)
	return b, nil
}

// groupNames lists the names of the groups in the store, when cfg has a
// group naming rule to apply to them; nil otherwise.
func (s *Server) groupNames(ctx context.Context, cfg *config.Config) ([]string, error) {
	if cfg.GroupPattern() == nil {
		return nil, nil
	}
	gs, err := s.store.ListGroups(ctx)
	if err != nil {
		return nil, fmt.Errorf("list groups for the group naming rule: %w", err)
	}
	names := make([]string, len(gs))
	for i, g := range gs {
		names[i] = g.Name
	}
	slices.Sort(names)
	return names, nil
}

// install puts a built policy in force. The caller holds policyMu.
func (s *Server) install(rules accessRules, b builtPolicy, took time.Duration) {
	s.rules, s.groups = rules, b.groups
	if b.groups == nil {
		s.authz.SetPolicy(b.policy, rules.dbs)
		return
	}
	s.authz.SetGroupPolicy(b.policy, rules.dbs, b.groups)
	args := []any{"pattern", rules.cfg.GroupPattern().String(), "groups", len(b.groups), "assigned", b.assigned, "findings", b.findings, "took", took}
	if b.findings > 0 {
		args = append(args, "see", "keygate access findings")
	}
	s.log.Info("group naming rule applied", args...)
}

// refreshPolicy builds the policy again when the groups in the store are
// no longer those the policy in force was built from. It runs when the
// change feed reports a group created, renamed or deleted, and when a
// decision meets a group the policy has not seen; a membership change,
// which the feed reports as a group change too, finds the same names and
// costs one query. Its error is logged here.
func (s *Server) refreshPolicy(ctx context.Context) error {
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	rules := s.rules
	start := time.Now()
	groups, err := s.groupNames(ctx, rules.cfg)
	if err == nil && (groups == nil || slices.Equal(groups, s.groups)) {
		return nil
	}
	var b builtPolicy
	if err == nil {
		b, err = buildPolicy(rules.cfg, groups)
	}
	if err != nil {
		s.log.Error("could not rebuild the access policy for a change of groups; the policy in force stays", "err", err)
		return err
	}
	s.install(rules, b, time.Since(start))
	return nil
}

// watchGroups keeps the policy in step with the groups in the store until
// changes is closed, so that `keygate access who` and `review` see grants
// by group name as soon as the groups change. Decisions do not wait for
// it: they refresh the policy themselves when they meet a new group, and
// the gateway, which watches the same feed, decides live sessions again
// on every group change.
func (s *Server) watchGroups(ctx context.Context, changes <-chan store.Change) {
	for c := range changes {
		if c.Kind != store.GroupChanged && c.Kind != store.Resync {
			continue
		}
		// An identity provider's sync changes many groups at once; one
		// rebuild covers every change already queued.
		for drained := false; !drained; {
			select {
			case _, ok := <-changes:
				if !ok {
					return
				}
			default:
				drained = true
			}
		}
		s.refreshPolicy(ctx)
	}
}

// AccessFindings lists the groups the group naming rule cannot use, from
// the groups in the store now.
func (s *Server) AccessFindings(ctx context.Context) (api.AccessFindings, error) {
	s.policyMu.Lock()
	cfg := s.rules.cfg
	s.policyMu.Unlock()
	out := api.AccessFindings{Findings: []api.AccessFinding{}}
	groups, err := s.groupNames(ctx, cfg)
	if err != nil || groups == nil {
		return out, err
	}
	assigned, findings := cfg.NamedAssignments(groups)
	out.Pattern, out.Groups, out.Assigned = cfg.GroupPattern().String(), len(groups), len(assigned)
	for _, f := range findings {
		out.Findings = append(out.Findings, api.AccessFinding{Group: f.Group, Kind: string(f.Kind), Reason: f.Reason})
	}
	return out, nil
}
