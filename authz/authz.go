// Package authz answers access questions from live state: the person's
// current record and groups in the store, their sign-in session, and the
// current policy. The token endpoint asks it before minting; the gateway asks
// it at connect time and whenever the person's state changes. The decision
// itself is access.Decide's.
package authz

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/internal/suggest"
	"github.com/keygate/keygate/store"
)

// Request asks whether a person may reach a database at a level through a
// sign-in session.
type Request struct {
	User     string
	Database string
	Level    access.Level
	// SignIn is the sign-in session id; empty skips the session check.
	SignIn string
	// Live marks the re-check of a session already connected: like a token
	// that expires, a sign-in session that expires does not end it; one
	// that is revoked does.
	Live bool
	// AssumeMFA decides, without a sign-in session, as if the person had
	// signed in with MFA: for explaining access to an administrator.
	AssumeMFA bool
}

// Store is what authz reads.
type Store interface {
	GetUserByName(ctx context.Context, name string) (identity.User, error)
	GroupsOf(ctx context.Context, userID string) ([]identity.Group, error)
	GetSession(ctx context.Context, id string) (identity.Session, error)
	ListUsers(ctx context.Context, q store.UserQuery) ([]identity.User, error)
	MembershipsAt(ctx context.Context, at time.Time) ([]identity.Membership, error)
}

// Authz answers Requests.
type Authz struct {
	// Refresh, when set, rebuilds the policy from the groups in the store
	// and installs it with SetGroupPolicy. A decision calls it when the
	// person is in a group that the policy in force was not built from;
	// its errors are its own to report, and the decision then uses the
	// policy in force. Set it before the first decision.
	Refresh func(ctx context.Context) error

	store   Store
	now     func() time.Time
	state   atomic.Pointer[state]
	history History
}

// History gives the rules that were in force at a past moment; an error
// wrapping store.ErrNotFound means it has none that old.
type History interface {
	// RulesAt compiles the rules in force at at; groups are the groups
	// with members then, for rules that derive grants from group names.
	RulesAt(ctx context.Context, at time.Time, groups []string) (*access.Policy, []access.Database, error)
}

// SetHistory makes WhoCan answer about past moments with the rules of
// that moment. Call it before the Authz is used.
func (a *Authz) SetHistory(h History) { a.history = h }

type state struct {
	policy    *access.Policy
	databases map[string]access.Database
	// groups are the names of the groups the policy was built from, when
	// it depends on them; nil when it does not.
	groups map[string]bool
}

// New makes an Authz over s with an initial policy.
func New(s Store, policy *access.Policy, dbs []access.Database, now func() time.Time) *Authz {
	if now == nil {
		now = time.Now
	}
	a := &Authz{store: s, now: now}
	a.SetPolicy(policy, dbs)
	return a
}

// SetPolicy swaps in a new policy and database list; later decisions use it.
func (a *Authz) SetPolicy(policy *access.Policy, dbs []access.Database) {
	a.state.Store(newState(policy, dbs, nil))
}

// SetGroupPolicy is SetPolicy for a policy that the groups in the store
// shape as well as the config, as a group naming rule's does: groups are
// the names of the groups it was built from.
//
// A group's derived assignment depends on nothing but its name, so the
// policy decides rightly for everyone whose groups it has seen. A person in
// a group it has not seen (created or renamed since) makes the decision
// call Refresh first: a grant through a new group then holds from the
// moment the group exists, not from when the change feed gets to it.
func (a *Authz) SetGroupPolicy(policy *access.Policy, dbs []access.Database, groups []string) {
	known := make(map[string]bool, len(groups))
	for _, g := range groups {
		known[g] = true
	}
	a.state.Store(newState(policy, dbs, known))
}

func newState(policy *access.Policy, dbs []access.Database, groups map[string]bool) *state {
	m := make(map[string]access.Database, len(dbs))
	for _, d := range dbs {
		m[d.Name] = d
	}
	return &state{policy: policy, databases: m, groups: groups}
}

// fresh is the state to decide on for a person in groups (from the store):
// the one in force, refreshed first if its policy has not seen one of them.
func (a *Authz) fresh(ctx context.Context, groups []identity.Group) *state {
	st := a.state.Load()
	if st.groups == nil || a.Refresh == nil {
		return st
	}
	for _, g := range groups {
		if !st.groups[g.Name] {
			// An error leaves the policy in force, which grants nothing
			// through a group it has not seen.
			_ = a.Refresh(ctx)
			return a.state.Load()
		}
	}
	return st
}

// Authorize decides r from live state. An error means the state could not be
// read; a refusal is a Decision with Allowed false and a Reason.
func (a *Authz) Authorize(ctx context.Context, r Request) (access.Decision, error) {
	refuse := func(format string, args ...any) (access.Decision, error) {
		return access.Decision{User: r.User, Database: r.Database, Level: r.Level, Reason: fmt.Sprintf(format, args...)}, nil
	}
	notConfigured := func() (access.Decision, error) {
		return refuse("%s", notConfiguredReason(r.Database, a.state.Load().databases))
	}
	if _, ok := a.state.Load().databases[r.Database]; !ok {
		return notConfigured()
	}
	var signIn *identity.Session
	if r.SignIn == "" && r.AssumeMFA {
		signIn = &identity.Session{User: r.User, MFA: true}
	}
	if r.SignIn != "" {
		s, err := a.store.GetSession(ctx, r.SignIn)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return access.Decision{}, fmt.Errorf("authorize %s: %w", r.User, err)
		}
		revoked, expired := err == nil && !s.Revoked.IsZero(), err == nil && !r.Live && !s.ValidAt(a.now())
		if err != nil || revoked || expired {
			// Disabling or deleting a person ends their sessions too: the
			// person's state is then the true reason, and signing in
			// again would not help.
			why, err := a.personGone(ctx, r.User)
			if err != nil {
				return access.Decision{}, err
			}
			if why != "" {
				return refuse("%s", why)
			}
		}
		switch {
		case err != nil:
			return refuse("the sign-in session this token came from no longer exists: sign in again")
		case revoked:
			return refuse("the sign-in session this token came from was revoked")
		case expired:
			return refuse("the sign-in session this token came from has expired: sign in again")
		}
		if !strings.EqualFold(s.User, r.User) {
			return refuse("the sign-in session this token came from belongs to %s, not %s", s.User, r.User)
		}
		signIn = &s
	}
	p, st, err := a.principal(ctx, r.User, signIn)
	if errors.Is(err, store.ErrNotFound) {
		return refuse("%s is not a keygate user", r.User)
	}
	if err != nil {
		return access.Decision{}, err
	}
	db, ok := st.databases[r.Database]
	if !ok {
		return notConfigured()
	}
	return st.policy.Decide(p, db, r.Level), nil
}

// personGone says why user may no longer have access at all, when they
// were disabled or deleted; "" when neither.
func (a *Authz) personGone(ctx context.Context, user string) (string, error) {
	u, err := a.store.GetUserByName(ctx, user)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Sprintf("%s is no longer a keygate user", user), nil
	case err != nil:
		return "", fmt.Errorf("authorize %s: %w", user, err)
	case !u.Active:
		return fmt.Sprintf("%s was disabled", u.UserName), nil
	}
	return "", nil
}

// LeastLevel is the lowest level the person holds on database through the
// sign-in session signIn (empty for none); ok is false when they hold none.
func (a *Authz) LeastLevel(ctx context.Context, user, database, signIn string) (level access.Level, ok bool, err error) {
	if _, found := a.state.Load().databases[database]; !found {
		return "", false, nil
	}
	var s *identity.Session
	if signIn != "" {
		ss, err := a.store.GetSession(ctx, signIn)
		if err != nil {
			return "", false, fmt.Errorf("least level of %s: %w", user, err)
		}
		s = &ss
	}
	p, st, err := a.principal(ctx, user, s)
	if errors.Is(err, store.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	db, found := st.databases[database]
	if !found {
		return "", false, nil
	}
	level, ok = st.policy.LeastLevel(p, db)
	return level, ok, nil
}

// Principal is the person as decisions through the sign-in session see
// them; `keygate whoami` shows it.
func (a *Authz) Principal(ctx context.Context, signIn identity.Session) (identity.Principal, error) {
	p, _, err := a.principal(ctx, signIn.User, &signIn)
	return p, err
}

// principal is the person as the decision sees them: their provisioned
// record and groups, and what their sign-in asserted (tags that override
// provisioned ones, further groups, MFA); and the state to decide for them
// on, one whose policy has seen their groups.
func (a *Authz) principal(ctx context.Context, name string, signIn *identity.Session) (identity.Principal, *state, error) {
	u, err := a.store.GetUserByName(ctx, name)
	if err != nil {
		return identity.Principal{}, nil, fmt.Errorf("load %s: %w", name, err)
	}
	groups, err := a.store.GroupsOf(ctx, u.ID)
	if err != nil {
		return identity.Principal{}, nil, fmt.Errorf("load groups of %s: %w", name, err)
	}
	p := identity.Principal{UserName: u.UserName, Active: u.Active, Attributes: u.Attributes}
	for _, g := range groups {
		p.Groups = append(p.Groups, g.Name)
	}
	if signIn != nil {
		p.MFA = signIn.MFA
		p.Groups = append(p.Groups, signIn.Groups...)
		if len(signIn.Tags) > 0 {
			p.Attributes = maps.Clone(p.Attributes)
			if p.Attributes == nil {
				p.Attributes = map[string]string{}
			}
			maps.Copy(p.Attributes, signIn.Tags)
		}
	}
	return p, a.fresh(ctx, groups), nil
}

// notConfiguredReason refuses a database name keygate does not know,
// naming the ones it does: a typo is the likely cause.
func notConfiguredReason(name string, databases map[string]access.Database) string {
	names := slices.Sorted(maps.Keys(databases))
	reason := fmt.Sprintf("database %s is not configured in keygate", name)
	if near := suggest.Closest(name, names); near != "" {
		reason += fmt.Sprintf(" (did you mean %s?)", near)
	}
	if len(names) == 0 {
		return reason + "; none is configured"
	}
	return reason + "; configured: " + strings.Join(names, ", ") + " (keygate db list shows those you can reach)"
}
