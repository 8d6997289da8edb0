package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/metrics"
	"github.com/keygate/keygate/store"
)

// sprawlWindow is how far back the rules are compared: permission sets
// that grow faster than the people they serve, over this span, are
// sprawl.
const sprawlWindow = 30 * 24 * time.Hour

// grantsInterval is how often the number of grants is counted again:
// counting decides every person on every database, too much for every
// scrape.
const grantsInterval = 10 * time.Minute

// history keeps the versions of the access rules in the store and answers
// with past ones: authz.History.
type history struct {
	st store.Store
	mu sync.Mutex
	// last is the most recently compiled past version, keyed by its id
	// and the groups its naming rule was applied to.
	last struct {
		key    string
		policy *access.Policy
		dbs    []access.Database
	}
}

// RulesAt compiles the rules in force at the moment at, with the
// assignments their group naming rule, if any, derives from groups.
func (h *history) RulesAt(ctx context.Context, at time.Time, groups []string) (*access.Policy, []access.Database, error) {
	v, err := h.st.ConfigVersionAt(ctx, at)
	if err != nil {
		return nil, nil, err
	}
	key := fmt.Sprint(v.ID, groups)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.last.key == key {
		return h.last.policy, h.last.dbs, nil
	}
	r, err := config.DecodeRules(v.Rules)
	if err != nil {
		return nil, nil, fmt.Errorf("rules loaded %s: %w", v.Loaded, err)
	}
	named, err := r.NamedAssignments(groups)
	if err != nil {
		return nil, nil, fmt.Errorf("rules loaded %s: %w", v.Loaded, err)
	}
	p, err := r.Policy(named...)
	if err != nil {
		return nil, nil, fmt.Errorf("rules loaded %s: %w", v.Loaded, err)
	}
	h.last.key, h.last.policy, h.last.dbs = key, p, r.Databases
	return p, r.Databases, nil
}

// recordRules adds the config's access rules to the history when they
// changed, and warns when permission sets have grown faster than people
// since the rules of sprawlWindow ago.
func (s *Server) recordRules(ctx context.Context, cfg *config.Config, now time.Time) error {
	r, err := cfg.Rules()
	if err != nil {
		return err
	}
	data, digest, err := r.Encode()
	if err != nil {
		return err
	}
	users, err := s.store.ListUsers(ctx, store.UserQuery{})
	if err != nil {
		return fmt.Errorf("count people: %w", err)
	}
	people := 0
	for _, u := range users {
		if u.Active {
			people++
		}
	}
	v := store.ConfigVersion{Loaded: now, Digest: digest, Rules: data, PermissionSets: len(r.PermissionSets), Assignments: len(r.Assignments), People: people}
	if _, err := s.store.AddConfigVersion(ctx, v); err != nil {
		return err
	}
	s.rulesDigest.Store(&digest)
	sp := metrics.SprawlState{PermissionSets: v.PermissionSets, Assignments: v.Assignments}
	if old := s.sprawl.Load(); old != nil {
		sp.Grants = old.Grants
	}
	base, err := s.store.ConfigVersionAt(ctx, now.Add(-sprawlWindow))
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return err
	case outgrew(base, v):
		sp.Warning = true
		msg := fmt.Sprintf("permission sets grew from %d to %d since %s while active people went from %d to %d: merge sets that differ little, and grant through groups and attributes",
			base.PermissionSets, v.PermissionSets, base.Loaded.Format(time.DateOnly), base.People, v.People)
		s.log.Warn(msg, "permission_sets", v.PermissionSets, "people", v.People)
		s.events.Record(audit.Event{Type: audit.AccessSprawl, Actor: "config", Reason: msg, Detail: map[string]any{
			"permission_sets": v.PermissionSets, "people": v.People, "since": base.Loaded,
			"permission_sets_then": base.PermissionSets, "people_then": base.People}})
	}
	s.sprawl.Store(&sp)
	return nil
}

// outgrew reports whether permission sets grew between base and now by a
// larger factor than people did.
func outgrew(base, now store.ConfigVersion) bool {
	if base.PermissionSets == 0 || now.PermissionSets <= base.PermissionSets {
		return false
	}
	people := float64(max(now.People, 1)) / float64(max(base.People, 1))
	return float64(now.PermissionSets)/float64(base.PermissionSets) > people
}

// countGrants counts distinct (person, database, level) grants now.
func (s *Server) countGrants(ctx context.Context) (int, error) {
	holders, err := s.authz.WhoCanAll(ctx, time.Time{})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, h := range holders {
		n += slices.Index(access.Levels, h.Level) + 1
	}
	return n, nil
}

// watchGrants keeps the grant count of the sprawl metrics fresh.
func (s *Server) watchGrants(ctx context.Context) {
	t := time.NewTicker(grantsInterval)
	defer t.Stop()
	for {
		if n, err := s.countGrants(ctx); err != nil {
			s.log.Error("count grants", "err", err)
		} else {
			for {
				old := s.sprawl.Load()
				next := metrics.SprawlState{Grants: n}
				if old != nil {
					next = *old
					next.Grants = n
				}
				if s.sprawl.CompareAndSwap(old, &next) {
					break
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
