package authz

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/store"
)

// ErrUnknownDatabase means a database is not configured in keygate.
var ErrUnknownDatabase = errors.New("database is not configured in keygate")

// Holder is a person who could reach a database: the highest level, and
// the group and permission set that give it.
type Holder struct {
	User          string
	Database      string
	Level         access.Level
	Group         string
	PermissionSet string
	// RequireMFA says the grant holds only for a sign-in with MFA.
	RequireMFA bool
	// Deleted says the person has since been deleted.
	Deleted bool
}

// WhoCan lists everyone who could reach database at the moment at (now
// when zero), at the highest level they could, by user name. Group
// memberships are those of that moment, from the membership history; the
// rules are those in force then, from the config history (the current ones
// when it has none that old); people's tags and status are those of now,
// as keygate does not keep their history.
func (a *Authz) WhoCan(ctx context.Context, database string, at time.Time) ([]Holder, error) {
	return a.holders(ctx, []string{database}, at)
}

// WhoCanAll is WhoCan for every database the rules know, by database and
// then user name: the grant matrix of an access review.
func (a *Authz) WhoCanAll(ctx context.Context, at time.Time) ([]Holder, error) {
	return a.holders(ctx, nil, at)
}

// holders answers WhoCan for the databases named, or every database when
// names is nil, reading people and memberships once for all of them.
func (a *Authz) holders(ctx context.Context, names []string, at time.Time) ([]Holder, error) {
	st := a.state.Load()
	policy, databases := st.policy, st.databases
	past := !at.IsZero()
	if !past {
		at = a.now()
	}
	memberships, err := a.store.MembershipsAt(ctx, at)
	if err != nil {
		return nil, fmt.Errorf("who can reach databases: %w", err)
	}
	if past && a.history != nil {
		var groups []string
		for _, m := range memberships {
			groups = append(groups, m.Group)
		}
		p, dbs, err := a.history.RulesAt(ctx, at, slices.Compact(slices.Sorted(slices.Values(groups))))
		switch {
		case err == nil:
			policy, databases = p, map[string]access.Database{}
			for _, d := range dbs {
				databases[d.Name] = d
			}
		case !errors.Is(err, store.ErrNotFound):
			return nil, fmt.Errorf("who can reach databases: %w", err)
		}
	}
	if names == nil {
		names = slices.Sorted(maps.Keys(databases))
	}
	dbs := make([]access.Database, len(names))
	for i, name := range names {
		db, ok := databases[name]
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrUnknownDatabase, name)
		}
		dbs[i] = db
	}
	users, err := a.store.ListUsers(ctx, store.UserQuery{})
	if err != nil {
		return nil, fmt.Errorf("who can reach databases: %w", err)
	}
	people := map[string]*identity.Principal{}
	for _, u := range users {
		people[strings.ToLower(u.UserName)] = &identity.Principal{UserName: u.UserName, Active: u.Active, Attributes: u.Attributes, MFA: true}
	}
	deleted := map[string]bool{}
	for _, ms := range memberships {
		key := strings.ToLower(ms.User)
		p, ok := people[key]
		if !ok {
			p = &identity.Principal{UserName: ms.User, Active: true, MFA: true}
			people[key], deleted[key] = p, true
		}
		p.Groups = append(p.Groups, ms.Group)
	}
	var out []Holder
	for _, db := range dbs {
		for key, p := range people {
			for _, level := range slices.Backward(access.Levels) {
				d := policy.Decide(*p, db, level)
				if d.Allowed {
					out = append(out, Holder{User: p.UserName, Database: db.Name, Level: level, Group: d.Grant.Group,
						PermissionSet: d.Grant.PermissionSet.Name, RequireMFA: d.Grant.PermissionSet.RequireMFA, Deleted: deleted[key]})
					break
				}
			}
		}
	}
	slices.SortFunc(out, func(x, y Holder) int {
		if c := strings.Compare(x.Database, y.Database); c != 0 {
			return c
		}
		return strings.Compare(strings.ToLower(x.User), strings.ToLower(y.User))
	})
	return out, nil
}
