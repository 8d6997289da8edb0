// Package store defines how keygate keeps its state: people, groups, their
// membership history, sign-in sessions and the audit log, plus a change feed
// that tells the gateway when someone's access may have changed.
//
// The interface follows one grid — Create/Get/List/Update/Delete per thing,
// updates through a function so each backend owns its transaction — and only
// the sentinel errors below cross it. Every backend must pass storetest.Run.
package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/keygate/keygate/identity"
)

// Sentinel errors. Backends wrap them; callers test with errors.Is.
var (
	ErrNotFound      = errors.New("not found")
	ErrAlreadyExists = errors.New("already exists")
)

// Store is keygate's persistent state.
type Store interface {
	CreateUser(ctx context.Context, u identity.User) (identity.User, error)
	GetUser(ctx context.Context, id string) (identity.User, error)
	// GetUserByName finds a user by user name, ignoring case.
	GetUserByName(ctx context.Context, name string) (identity.User, error)
	// ListUsers lists the users q selects, oldest first (creation, then id:
	// a stable order for paging).
	ListUsers(ctx context.Context, q UserQuery) ([]identity.User, error)
	// UpdateUser applies fn to the user inside one transaction. ID, Created
	// and Version are kept by the store; Version increases.
	UpdateUser(ctx context.Context, id string, fn func(identity.User) (identity.User, error)) (identity.User, error)
	DeleteUser(ctx context.Context, id string) error

	CreateGroup(ctx context.Context, g identity.Group) (identity.Group, error)
	GetGroup(ctx context.Context, id string) (identity.Group, error)
	// GetGroupByName finds a group by name, ignoring case.
	GetGroupByName(ctx context.Context, name string) (identity.Group, error)
	// ListGroups lists every group, oldest first.
	ListGroups(ctx context.Context) ([]identity.Group, error)
	// UpdateGroup applies fn to the group inside one transaction: the group
	// fn returns is stored, and so are the membership changes, recorded in
	// the history under source. A member that is not a user fails the
	// update with ErrNotFound and changes nothing.
	UpdateGroup(ctx context.Context, id, source string, fn func(identity.Group) (identity.Group, MemberChange, error)) (identity.Group, error)
	DeleteGroup(ctx context.Context, id string) error

	// AddMember makes the user a member of the group; added is false when
	// they already were. source is recorded in the membership history.
	AddMember(ctx context.Context, groupID, userID, source string) (added bool, err error)
	// RemoveMember ends a membership; ErrNotFound if there was none.
	RemoveMember(ctx context.Context, groupID, userID, source string) error
	// ListMembers lists a group's members by user name.
	ListMembers(ctx context.Context, groupID string) ([]identity.Member, error)
	// GroupsOf lists the groups a user is in now.
	GroupsOf(ctx context.Context, userID string) ([]identity.Group, error)
	// MembershipHistory lists every membership of the named group, past and
	// present, oldest first. It answers for deleted groups and users too.
	MembershipHistory(ctx context.Context, groupName string) ([]identity.Membership, error)
	// MembershipsAt lists the memberships that held at the moment at, of
	// every group, under the group's name now (or its last name, for a
	// deleted group), by group and user name.
	MembershipsAt(ctx context.Context, at time.Time) ([]identity.Membership, error)

	// CreateSession stores a session under the hash of its credential.
	CreateSession(ctx context.Context, s identity.Session, credentialHash []byte) (identity.Session, error)
	GetSessionByHash(ctx context.Context, credentialHash []byte) (identity.Session, error)
	GetSession(ctx context.Context, id string) (identity.Session, error)
	ListSessions(ctx context.Context, userName string) ([]identity.Session, error)
	RevokeSession(ctx context.Context, id string, at time.Time) error

	// CreateProvisioningToken stores a token under the hash of its secret;
	// ErrAlreadyExists if an unrevoked token has the same name.
	CreateProvisioningToken(ctx context.Context, t identity.ProvisioningToken, secretHash []byte) (identity.ProvisioningToken, error)
	GetProvisioningTokenByHash(ctx context.Context, secretHash []byte) (identity.ProvisioningToken, error)
	ListProvisioningTokens(ctx context.Context) ([]identity.ProvisioningToken, error)
	// RevokeProvisioningToken revokes the unrevoked token named name.
	RevokeProvisioningToken(ctx context.Context, name string, at time.Time) error
	// TouchProvisioningToken records that a token was used at.
	TouchProvisioningToken(ctx context.Context, id string, at time.Time) error

	// AppendAudit appends events of one chain, in order, giving each the
	// next position in the log (Seq). Events are never updated or deleted.
	AppendAudit(ctx context.Context, events []AuditEvent) error
	// LastAudit returns the newest event, or ErrNotFound on an empty log.
	LastAudit(ctx context.Context) (AuditEvent, error)
	// ChainHead returns the newest event of chain, or ErrNotFound when
	// the chain has none.
	ChainHead(ctx context.Context, chain string) (AuditEvent, error)
	ListAudit(ctx context.Context, q AuditQuery) ([]AuditEvent, error)

	// AddConfigVersion records a version of the access rules, unless the
	// newest recorded version has the same digest; added says whether it
	// did.
	AddConfigVersion(ctx context.Context, v ConfigVersion) (added bool, err error)
	// ConfigVersionAt returns the version in force at the moment at: the
	// newest loaded at or before it. ErrNotFound if there is none.
	ConfigVersionAt(ctx context.Context, at time.Time) (ConfigVersion, error)

	// Pending sign-in state (device flows, sign-in attempts, identity
	// provider assertions already used) lives here rather than in a
	// server's memory, so that a sign-in started on one server may finish
	// on another. Entries last minutes; what in them is secret is sealed
	// by the caller with a key the store never sees.
	//
	// PutPending stores p unless an entry of its kind and key exists
	// (created false). It first forgets the kind's entries that expired by
	// now and, when max > 0 and max entries remain, the one that expires
	// first, or of those the one put first (evicted true).
	PutPending(ctx context.Context, p Pending, now time.Time, max int) (created, evicted bool, err error)
	// GetPending returns the entry, expired or not; ErrNotFound if none.
	GetPending(ctx context.Context, kind, key string) (Pending, error)
	// SwapPending replaces an entry's value if it still is old; swapped
	// false if it is not (another server changed or took it).
	SwapPending(ctx context.Context, kind, key string, old, value []byte) (swapped bool, err error)
	// TakePending removes and returns the entry: of several servers taking
	// the same entry, one gets it and the others ErrNotFound.
	TakePending(ctx context.Context, kind, key string) (Pending, error)
	// CountPending counts the kind's entries that have not expired by now.
	CountPending(ctx context.Context, kind string, now time.Time) (int, error)

	// Watch delivers every change committed after the call until ctx ends.
	Watch(ctx context.Context) <-chan Change

	Close() error
}

// ConfigVersion is one version of the access rules, as a server loaded
// it. Rules is opaque to the store; the counts let rule growth be
// compared with the number of people.
type ConfigVersion struct {
	ID             int64
	Loaded         time.Time
	Digest         string
	Rules          []byte
	PermissionSets int
	Assignments    int
	// People is how many active people there were when it was loaded.
	People int
}

// Pending is an entry of pending sign-in state. Kind names what it is;
// Key is unique within a kind; Value is opaque to the store.
type Pending struct {
	Kind    string
	Key     string
	Value   []byte
	Expires time.Time
}

// UserQuery selects users. The zero value selects all of them.
type UserQuery struct {
	// ExternalID selects the users the identity provider knows by this id.
	ExternalID string
	// Email selects the users with this email address, ignoring case.
	Email string
}

// MemberChange is what a group update does to its members, by user id.
type MemberChange struct {
	// Replace makes the members exactly Set.
	Replace bool
	Set     []string
	Add     []string
	Remove  []string
}

// Replacing returns, for a Replace, the members to add and to remove
// (each sorted) to turn current into Set; the backends apply them one by
// one so that each join and leave is recorded in the history.
func (mc MemberChange) Replacing(current map[string]bool) (add, remove []string) {
	want := make(map[string]bool, len(mc.Set))
	for _, id := range mc.Set {
		want[id] = true
	}
	for id := range want {
		if !current[id] {
			add = append(add, id)
		}
	}
	for id := range current {
		if !want[id] {
			remove = append(remove, id)
		}
	}
	slices.Sort(add)
	slices.Sort(remove)
	return add, remove
}

// ChangeKind says what a Change is about.
type ChangeKind int

// Kinds of change.
const (
	// UserChanged: a user was created, updated (including disabled) or
	// deleted. Change.User is set.
	UserChanged ChangeKind = iota + 1
	// GroupChanged: a group was created, renamed or deleted. Everyone in it
	// may be affected. Change.Group is set.
	GroupChanged
	// MembershipChanged: Change.User joined or left Change.Group.
	MembershipChanged
	// SessionChanged: a sign-in session of Change.User was created or revoked.
	SessionChanged
	// Resync: changes were lost (a slow subscriber); re-check everything.
	Resync
)

func (k ChangeKind) String() string {
	switch k {
	case UserChanged:
		return "user"
	case GroupChanged:
		return "group"
	case MembershipChanged:
		return "membership"
	case SessionChanged:
		return "session"
	case Resync:
		return "resync"
	}
	return fmt.Sprintf("ChangeKind(%d)", int(k))
}

// Change is one committed change, named by user and group names as they were
// when the change happened.
type Change struct {
	Kind  ChangeKind
	User  string
	Group string
	// At is when the change committed, from which keygate measures how
	// long a revocation took to end the person's sessions; zero for a
	// Resync.
	At time.Time
}

// AuditEvent is one entry of the append-only audit log. Hash chains each
// event to the one before it; the audit package computes it.
//
// The log is one sequence of positions (Seq) made of hash chains, one per
// server that writes (Chain; "" for a lone server on SQLite). Each server
// numbers its own chain (ChainSeq) and links each event to the one before
// it in that chain, so that servers sharing a store never wait for each
// other to hash; the store alone orders the log. On SQLite, with its one
// chain, Seq and ChainSeq are the same.
type AuditEvent struct {
	// Seq is the event's position in the whole log, given by the store
	// when it appends: readers page and follow by it.
	Seq int64
	// Chain names the chain, ChainSeq numbers the event within it.
	Chain     string
	ChainSeq  int64
	Time      time.Time
	Type      string
	Actor     string
	User      string
	Database  string
	Access    string
	Client    string
	SessionID string
	Query     string
	Reason    string
	// Detail holds type-specific fields as a JSON object, or nothing. It is
	// stored and returned byte for byte, since the hash covers it.
	Detail   []byte
	PrevHash []byte
	Hash     []byte
}

// AuditQuery selects audit events. Zero fields do not filter.
type AuditQuery struct {
	User     string
	Database string
	// Type matches the event type or a dotted prefix of it: "session"
	// matches "session.start" and "session.end".
	Type  string
	Since time.Time
	Until time.Time
	// AfterSeq returns events at a later position.
	AfterSeq int64
	// Limit caps the result; 0 means no limit.
	Limit int
}
