package server

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/config"
)

// Reload reads the config file again and applies its access rules while
// the server runs: permission sets, assignments and database tags, the
// removal of a database, and who the administrators are. Every live session is then decided again, so
// one whose access is gone ends at once. What needs a restart to change
// (listeners, data_dir, public_url, sign-in, a database's address or a
// new database, report.revocation_target) is named in the result and left as it runs. A config
// that does not load changes nothing.
func (s *Server) Reload(ctx context.Context) (api.ReloadResult, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	// A reload asked for through the API names who asked; SIGHUP names
	// no one.
	by := map[string]any{}
	if a, ok := api.ActorOf(ctx); ok {
		by["requested_by"] = a.Name
	}
	refuse := func(err error) (api.ReloadResult, error) {
		s.events.Record(audit.Event{Type: audit.ConfigRefused, Actor: "config", Reason: err.Error(), Detail: by})
		s.log.Error("config reload refused; the running access rules stay", "path", s.cfg.Path(), "err", err)
		return api.ReloadResult{}, err
	}
	next, err := config.Load(s.cfg.Path())
	if err != nil {
		return refuse(err)
	}
	dbs, restart := reloadedDatabases(s.cfg, next)
	restart = append(restart, needsRestart(s.cfg, next)...)
	built, err := s.reloadPolicy(ctx, accessRules{cfg: next, dbs: dbs})
	if err != nil {
		return refuse(err)
	}
	if err := s.recordRules(ctx, next, time.Now()); err != nil {
		s.log.Error("record the reloaded access rules in the config history", "err", err)
	}
	admins := s.reloadAdministrators(next.Administrators)
	ended := s.gw.Recheck(ctx)
	res := api.ReloadResult{Path: next.Path(), PermissionSets: len(next.PermissionSets), Assignments: len(next.Assignments),
		NamedAssignments: built.assigned, Databases: len(dbs), SessionsEnded: ended, RestartNeeded: restart}
	detail := map[string]any{
		"permission_sets": res.PermissionSets, "assignments": res.Assignments, "named_assignments": res.NamedAssignments,
		"databases": res.Databases, "sessions_ended": res.SessionsEnded, "restart_needed": restart}
	maps.Copy(detail, admins)
	maps.Copy(detail, by)
	s.events.Record(audit.Event{Type: audit.ConfigReload, Actor: "config", Detail: detail})
	s.log.Info("config reloaded", "path", res.Path, "permission_sets", res.PermissionSets, "assignments", res.Assignments,
		"named_assignments", res.NamedAssignments, "sessions_ended", res.SessionsEnded, "restart_needed", restart)
	return res, nil
}

// reloadPolicy builds the policy of a reloaded config, from the groups in
// the store now, and puts it in force; on error nothing changes. The lock
// is released before live sessions are decided again, as those decisions
// may refresh the policy themselves.
func (s *Server) reloadPolicy(ctx context.Context, rules accessRules) (builtPolicy, error) {
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	start := time.Now()
	groups, err := s.groupNames(ctx, rules.cfg)
	if err != nil {
		return builtPolicy{}, err
	}
	built, err := buildPolicy(rules.cfg, groups)
	if err != nil {
		return builtPolicy{}, fmt.Errorf("%s: %w", rules.cfg.Path(), err)
	}
	s.install(rules, built, time.Since(start))
	return built, nil
}

// reloadedDatabases is the databases decisions know after a reload: those
// the server serves that the new config still has, with the new config's
// tags. A database the new config adds has no upstream yet, and one whose
// connection settings changed keeps the old ones, until a restart.
func reloadedDatabases(running, next *config.Config) ([]access.Database, []string) {
	var out []access.Database
	var restart []string
	for _, d := range running.Databases {
		n, ok := next.FindDatabase(d.Name)
		if !ok {
			continue
		}
		out = append(out, n.AccessDatabase())
		d.Tags, n.Tags = nil, nil
		if !reflect.DeepEqual(d, n) {
			restart = append(restart, "databases."+d.Name)
		}
	}
	for _, n := range next.Databases {
		if _, ok := running.FindDatabase(n.Name); !ok {
			restart = append(restart, "databases."+n.Name+" (new)")
		}
	}
	return out, restart
}

// needsRestart names the top-level settings that differ between the
// running config and the new one and only take effect on restart.
func needsRestart(running, next *config.Config) []string {
	var out []string
	for key, same := range map[string]bool{
		"data_dir":         running.DataDir == next.DataDir,
		"public_hostnames": slices.Equal(running.PublicHostnames, next.PublicHostnames),
		"public_url":       running.PublicURL == next.PublicURL,
		"listen":           running.Listen == next.Listen,
		"log":              running.Log == next.Log,
		"sso":              reflect.DeepEqual(running.SSO, next.SSO),
		"shutdown_grace":   running.ShutdownGrace == next.ShutdownGrace,
		"audit":            running.Audit == next.Audit,
		// The gateway reads its revocation target without a lock, and
		// the report measures against the same one.
		"report": running.Report == next.Report,
		"state":  running.State == next.State,
	} {
		if !same {
			out = append(out, key)
		}
	}
	slices.Sort(out)
	return out
}
