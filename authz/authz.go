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
	"strings"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/identity"
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
	store   Store
	now     func() time.Time
	state   atomic.Pointer[state]
	history History
}

// History gives the rules that were in force at a past moment; an error
// wrapping store.ErrNotFound means it has none that old.
type History interface {
	RulesAt(ctx context.Context, at time.Time) (*access.Policy, []access.Database, error)
}

// SetHistory makes WhoCan answer about past moments with the rules of
// that moment. Call it before the Authz is used.
func (a *Authz) SetHistory(h History) { a.history = h }

type state struct {
	policy    *access.Policy
	databases map[string]access.Database
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
	m := make(map[string]access.Database, len(dbs))
	for _, d := range dbs {
		m[d.Name] = d
	}
	a.state.Store(&state{policy: policy, databases: m})
}

// Authorize decides r from live state. An error means the state could not be
// read; a refusal is a Decision with Allowed false and a Reason.
func (a *Authz) Authorize(ctx context.Context, r Request) (access.Decision, error) {
	st := a.state.Load()
	refuse := func(format string, args ...any) (access.Decision, error) {
		return access.Decision{User: r.User, Database: r.Database, Level: r.Level, Reason: fmt.Sprintf(format, args...)}, nil
	}
	db, ok := st.databases[r.Database]
	if !ok {
		return refuse("database %s is not configured in keygate", r.Database)
	}
	var signIn *identity.Session
	if r.SignIn == "" && r.AssumeMFA {
		signIn = &identity.Session{User: r.User, MFA: true}
	}
	if r.SignIn != "" {
		s, err := a.store.GetSession(ctx, r.SignIn)
		if errors.Is(err, store.ErrNotFound) {
			return refuse("the sign-in session this token came from no longer exists: sign in again")
		}
		if err != nil {
			return access.Decision{}, fmt.Errorf("authorize %s: %w", r.User, err)
		}
		if !s.Revoked.IsZero() {
			return refuse("the sign-in session this token came from was revoked")
		}
		if !r.Live && !s.ValidAt(a.now()) {
			return refuse("the sign-in session this token came from has expired: sign in again")
		}
		if !strings.EqualFold(s.User, r.User) {
			return refuse("the sign-in session this token came from belongs to %s, not %s", s.User, r.User)
		}
		signIn = &s
	}
	p, err := a.principal(ctx, r.User, signIn)
	if errors.Is(err, store.ErrNotFound) {
		return refuse("%s is not a keygate user", r.User)
	}
	if err != nil {
		return access.Decision{}, err
	}
	return st.policy.Decide(p, db, r.Level), nil
}

// LeastLevel is the lowest level the person holds on database through the
// sign-in session signIn (empty for none); ok is false when they hold none.
func (a *Authz) LeastLevel(ctx context.Context, user, database, signIn string) (level access.Level, ok bool, err error) {
	st := a.state.Load()
	db, found := st.databases[database]
	if !found {
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
	p, err := a.principal(ctx, user, s)
	if errors.Is(err, store.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	level, ok = st.policy.LeastLevel(p, db)
	return level, ok, nil
}

// Principal is the person as decisions through the sign-in session see
// them; `keygate whoami` shows it.
func (a *Authz) Principal(ctx context.Context, signIn identity.Session) (identity.Principal, error) {
	return a.principal(ctx, signIn.User, &signIn)
}

// principal is the person as the decision sees them: their provisioned
// record and groups, and what their sign-in asserted (tags that override
// provisioned ones, further groups, MFA).
func (a *Authz) principal(ctx context.Context, name string, signIn *identity.Session) (identity.Principal, error) {
	u, err := a.store.GetUserByName(ctx, name)
	if err != nil {
		return identity.Principal{}, fmt.Errorf("load %s: %w", name, err)
	}
	groups, err := a.store.GroupsOf(ctx, u.ID)
	if err != nil {
		return identity.Principal{}, fmt.Errorf("load groups of %s: %w", name, err)
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
	return p, nil
}
