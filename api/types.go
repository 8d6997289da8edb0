package api

import (
	"strings"
	"time"
)

// The JSON bodies of the API. The CLI (package client) uses the same types.

// Error is the body of every non-2xx response.
type Error struct {
	Error string `json:"error"`
}

// TokenRequest asks for a database token. An empty Access means the least
// privilege the person holds on the database.
type TokenRequest struct {
	Database string `json:"database"`
	Access   string `json:"access,omitempty"`
}

// TokenResponse carries a database token.
type TokenResponse struct {
	Token     string    `json:"token"`
	User      string    `json:"user"`
	Database  string    `json:"database"`
	Access    string    `json:"access"`
	ExpiresAt time.Time `json:"expires_at"`
}

// GroupRequest creates a group.
type GroupRequest struct {
	Name string `json:"name"`
}

// Group describes a group.
type Group struct {
	Name    string   `json:"name"`
	Members []string `json:"members"`
}

// UserRequest creates a user, creating any named group that does not exist.
type UserRequest struct {
	Name   string   `json:"name"`
	Email  string   `json:"email,omitempty"`
	Groups []string `json:"groups,omitempty"`
}

// User describes a user.
type User struct {
	Name   string   `json:"name"`
	Email  string   `json:"email,omitempty"`
	Active bool     `json:"active"`
	Groups []string `json:"groups"`
}

// SessionRequest creates a sign-in session for a user.
type SessionRequest struct {
	User string `json:"user"`
	// TTL is a duration such as "8h"; empty means 8h.
	TTL string `json:"ttl,omitempty"`
}

// SessionResponse carries a new session's credential, shown once.
type SessionResponse struct {
	ID         string    `json:"id"`
	User       string    `json:"user"`
	Credential string    `json:"credential"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// AuditEvent is one audit log entry as the API shows it.
type AuditEvent struct {
	Seq int64 `json:"seq"`
	// Node and NodeSeq place the event in the chain of the server that
	// wrote it, when several servers share the state; both are empty for
	// a lone server's.
	Node      string         `json:"node,omitempty"`
	NodeSeq   int64          `json:"node_seq,omitempty"`
	Time      time.Time      `json:"time"`
	Type      string         `json:"type"`
	Actor     string         `json:"actor,omitempty"`
	User      string         `json:"user"`
	Database  string         `json:"database"`
	Access    string         `json:"access"`
	Query     string         `json:"query"`
	Client    string         `json:"client"`
	Reason    string         `json:"reason"`
	SessionID string         `json:"session_id,omitempty"`
	Detail    map[string]any `json:"detail,omitempty"`
}

// Outcome summarises a query event's detail.outcome, one entry a
// statement: the command tag, ERROR with the SQLSTATE and message, "more
// rows" for a portal suspended at its row limit, "empty", "skipped" after
// an earlier error of its batch, or ? when the gateway could not tell.
func (e AuditEvent) Outcome() string {
	list, ok := e.Detail["outcome"].([]any)
	if !ok {
		return ""
	}
	out := make([]string, 0, len(list))
	for _, item := range list {
		o, _ := item.(map[string]any)
		tag, _ := o["tag"].(string)
		state, _ := o["sqlstate"].(string)
		msg, _ := o["error"].(string)
		switch {
		case tag != "":
			out = append(out, tag)
		case state != "" || msg != "":
			out = append(out, strings.Join(strings.Fields("ERROR "+state+" "+msg), " "))
		case o["suspended"] == true:
			out = append(out, "more rows")
		case o["empty"] == true:
			out = append(out, "empty")
		case o["skipped"] != nil:
			out = append(out, "skipped")
		default:
			out = append(out, "?")
		}
	}
	return strings.Join(out, ", ")
}

// AuditVerification is the result of checking the audit log's hash chain.
type AuditVerification struct {
	Events int64  `json:"events"`
	Intact bool   `json:"intact"`
	Error  string `json:"error,omitempty"`
}

// AuditPage is a page of audit events; Next is the "after" value for the
// following page, zero at the end. Last is the "after" value to wait for
// newer events with: the log was read up to it, past events that did not
// match.
type AuditPage struct {
	Events []AuditEvent `json:"events"`
	Next   int64        `json:"next,omitempty"`
	Last   int64        `json:"last,omitempty"`
}

// ProvisioningTokenRequest creates a SCIM bearer token.
type ProvisioningTokenRequest struct {
	Name string `json:"name"`
	// TTL is a duration such as "365d"; empty means the token never expires.
	TTL string `json:"ttl,omitempty"`
}

// ProvisioningToken describes a SCIM bearer token; Token is set only in the
// answer to its creation, the one time it is shown.
type ProvisioningToken struct {
	Name      string     `json:"name"`
	Token     string     `json:"token,omitempty"`
	Created   time.Time  `json:"created"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	LastUsed  *time.Time `json:"last_used,omitempty"`
}

// Membership is one person's stay in a group.
type Membership struct {
	User   string     `json:"user"`
	Joined time.Time  `json:"joined"`
	Left   *time.Time `json:"left,omitempty"`
	Source string     `json:"source"`
}

// GroupHistory answers "who was in this group", over all time or at one
// moment (At).
type GroupHistory struct {
	Group       string       `json:"group"`
	At          *time.Time   `json:"at,omitempty"`
	Memberships []Membership `json:"memberships"`
}

// Session describes a sign-in session; never its credential.
type Session struct {
	ID string `json:"id"`
	// User is who signed in; Source is how: saml, oidc or admin.
	User     string     `json:"user"`
	Source   string     `json:"source"`
	MFA      bool       `json:"mfa"`
	Created  time.Time  `json:"created"`
	Expires  time.Time  `json:"expires_at"`
	Revoked  *time.Time `json:"revoked_at,omitempty"`
	LastUsed *time.Time `json:"last_used,omitempty"`
	// Status is active, expired or revoked.
	Status string `json:"status"`
	// Current marks the session the request was made with, in a person's
	// own list (GET /v1/sessions); false everywhere else.
	Current bool `json:"current,omitempty"`
}

// LiveSession is a gateway session open now: a client connected through
// keygate to a database.
type LiveSession struct {
	// ID is the gateway session's id, as session.start and session.end
	// record it.
	ID       string `json:"id"`
	User     string `json:"user"`
	Database string `json:"database"`
	Access   string `json:"access"`
	// Engine is postgres or mysql.
	Engine string `json:"engine"`
	// Client is the client's address, host:port.
	Client string `json:"client"`
	// SignIn is the id of the sign-in session whose token opened it.
	SignIn string `json:"sign_in"`
	// UpstreamRole is the database role (PostgreSQL) or user (MySQL) the
	// session runs as upstream.
	UpstreamRole string    `json:"upstream_role"`
	Started      time.Time `json:"started"`
	// Statements is how many statements it has sent upstream so far.
	Statements int64 `json:"statements"`
}

// MySessions is where the signed-in person is signed in and connected:
// their sign-in sessions in force (the one asked with marked Current) and
// their live gateway sessions, oldest first.
type MySessions struct {
	SignIns []Session     `json:"sign_ins"`
	Live    []LiveSession `json:"live"`
}

// WhoAmI is the signed-in person as access decisions see them through
// the session, like aws sts get-caller-identity: provisioned groups and
// tags merged with what the identity provider asserted at sign-in.
type WhoAmI struct {
	User      string            `json:"user"`
	Groups    []string          `json:"groups"`
	Tags      map[string]string `json:"tags"`
	SessionID string            `json:"session_id"`
	ExpiresAt time.Time         `json:"expires_at"`
	MFA       bool              `json:"mfa"`
	Method    string            `json:"method"`
	// Administrator says the session carries administrator rights now:
	// the admin API would let it through (config administrators.groups,
	// and administrators.require_mfa).
	Administrator bool `json:"administrator"`
}

// ReloadResult says what a config reload applied.
type ReloadResult struct {
	Path           string `json:"path"`
	PermissionSets int    `json:"permission_sets"`
	Assignments    int    `json:"assignments"`
	// NamedAssignments is how many assignments the group naming rule
	// derives from the groups there are now.
	NamedAssignments int `json:"named_assignments"`
	Databases        int `json:"databases"`
	// SessionsEnded is how many live sessions the new rules ended.
	SessionsEnded int `json:"sessions_ended"`
	// RestartNeeded names changed settings that apply only on restart.
	RestartNeeded []string `json:"restart_needed"`
}

// Explanation is why a person may or may not reach a database.
type Explanation struct {
	User     string `json:"user"`
	Database string `json:"database"`
	// MFA says the decisions assume a sign-in with MFA.
	MFA       bool             `json:"mfa"`
	Decisions []AccessDecision `json:"decisions"`
}

// AccessDecision is the decision at one access level and what made it.
type AccessDecision struct {
	Access  string `json:"access"`
	Allowed bool   `json:"allowed"`
	// Reason names the group, permission set and rule that allowed it, or
	// the nearest miss.
	Reason        string `json:"reason"`
	PermissionSet string `json:"permission_set,omitempty"`
	Group         string `json:"group,omitempty"`
	TokenTTL      string `json:"token_ttl,omitempty"`
	// Policy is the rule the decision rests on: assignments[N], deny[N],
	// group_naming[GROUP] for a group the naming rule assigns, or a policy
	// file's @id.
	Policy string `json:"policy,omitempty"`
	// Deny is the description of the deny rule that refused.
	Deny string `json:"deny,omitempty"`
	// Condition is the condition text that allowed or refused.
	Condition string `json:"condition,omitempty"`
}

// Holder is a person who could reach a database, at the highest level
// they could, and through what.
type Holder struct {
	User          string `json:"user"`
	Database      string `json:"database,omitempty"`
	Access        string `json:"access"`
	Group         string `json:"group"`
	PermissionSet string `json:"permission_set"`
	RequireMFA    bool   `json:"require_mfa,omitempty"`
	// Deleted says the person has been deleted since.
	Deleted bool `json:"deleted,omitempty"`
}

// Connection sums up who connected to a database in a window, from the
// audit log.
type Connection struct {
	User     string    `json:"user"`
	Sessions int       `json:"sessions"`
	Access   []string  `json:"access"`
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
}

// WhoAnswer answers "who could, and who did, reach this database".
type WhoAnswer struct {
	Database string `json:"database"`
	// At is the moment Holders describe.
	At      time.Time `json:"at"`
	Holders []Holder  `json:"holders"`
	// Connected is who opened gateway sessions between Since and Until.
	Since     time.Time    `json:"since"`
	Until     time.Time    `json:"until"`
	Connected []Connection `json:"connected"`
}

// AccessFindings lists the groups the group naming rule cannot use.
type AccessFindings struct {
	// Pattern is the naming rule; empty when the config has none, and
	// then there is nothing to find.
	Pattern string `json:"pattern"`
	// Groups is how many groups there are; Assigned how many of them the
	// rule turns into assignments.
	Groups   int             `json:"groups"`
	Assigned int             `json:"assigned"`
	Findings []AccessFinding `json:"findings"`
}

// AccessFinding is one group the naming rule cannot use, and why.
type AccessFinding struct {
	Group string `json:"group"`
	// Kind is no_match, unknown_permission_set or unknown_tag_value.
	Kind   string `json:"kind"`
	Reason string `json:"reason"`
}

// Person is everything the admin API shows of a person: `keygate admin
// user list` and `show`.
type Person struct {
	Name        string            `json:"name"`
	Email       string            `json:"email,omitempty"`
	DisplayName string            `json:"display_name,omitempty"`
	ExternalID  string            `json:"external_id,omitempty"`
	Active      bool              `json:"active"`
	Groups      []string          `json:"groups"`
	Tags        map[string]string `json:"tags"`
	// Source is who created the person: admin, scim, sso, or "" when the
	// audit log no longer says.
	Source   string    `json:"source,omitempty"`
	Created  time.Time `json:"created"`
	Modified time.Time `json:"modified"`
	// SignInSessions is how many active sign-in sessions the person holds;
	// LiveSessions how many gateway sessions they have open, when the
	// server can tell (only in show).
	SignInSessions *int `json:"sign_in_sessions,omitempty"`
	LiveSessions   *int `json:"live_sessions,omitempty"`
}

// GroupInfo describes a group for `keygate admin group list` and `show`.
type GroupInfo struct {
	Name       string    `json:"name"`
	ExternalID string    `json:"external_id,omitempty"`
	Members    []string  `json:"members"`
	Created    time.Time `json:"created"`
	Modified   time.Time `json:"modified"`
}

// RenameRequest gives a person or a group a new name.
type RenameRequest struct {
	Name string `json:"name"`
}

// UserChange answers a change to a person: enable, disable, rename, delete.
type UserChange struct {
	Person
	// Changed is false when the person already was as asked.
	Changed bool `json:"changed"`
	// RevokedSessions are the ids of the sign-in sessions the change ended.
	RevokedSessions []string `json:"revoked_sessions,omitempty"`
	// Previous is the old name, for a rename.
	Previous string `json:"previous,omitempty"`
}

// GroupChange answers a change to a group: rename, delete.
type GroupChange struct {
	Name     string `json:"name"`
	Previous string `json:"previous,omitempty"`
	// Removed are the members a forced delete removed first.
	Removed []string `json:"removed,omitempty"`
}

// DatabaseAccess is one database and level the signed-in person may use,
// and what grants it: `keygate db list`.
type DatabaseAccess struct {
	Database      string `json:"database"`
	Access        string `json:"access"`
	PermissionSet string `json:"permission_set"`
	Group         string `json:"group,omitempty"`
	TokenTTL      string `json:"token_ttl"`
	Reason        string `json:"reason"`
	// Engine is the database's engine, as configured: postgres or mysql.
	Engine string `json:"engine,omitempty"`
	// Address is the upstream's address as configured, host:port. Scripts
	// written for aws rds generate-db-auth-token name a database by it;
	// only the databases the person may use are listed, so it tells them
	// nothing about the others.
	Address string `json:"address,omitempty"`
	// Gateway is where keygate's gateway for the engine takes clients,
	// host:port: empty when keygate has no listener for the engine.
	Gateway string `json:"gateway,omitempty"`
}

// Report is the seeds' measures over a window: what `keygate report` and
// the posture page show, each with its target.
type Report struct {
	// Generated is when the report was made; Since is the start of the
	// window the audit figures cover (the window ends at Generated).
	Generated time.Time `json:"generated"`
	Since     time.Time `json:"since"`
	// Standing is what each database's scan found now, not over the
	// window.
	Standing StandingReport `json:"standing_credentials"`
	// CredentialAge is the age of the token each database session
	// started with (session.start's token_age_ms); its target is the
	// longest token_ttl, 1h.
	CredentialAge Durations `json:"credential_age"`
	// TimeToRevoke is, for each session a revocation ended, the time
	// from the change that removed access to its upstream backend gone
	// (session.end's revoked_after_ms); its target is
	// report.revocation_target.
	TimeToRevoke Durations `json:"time_to_revoke"`
	Sprawl       Sprawl    `json:"sprawl"`
	// Findings are the groups the group naming rule cannot use.
	Findings AccessFindings `json:"naming_findings"`
}

// StandingReport lists the logins that reach the databases without
// keygate. Its target is zero.
type StandingReport struct {
	Target      int                  `json:"target"`
	Credentials []StandingCredential `json:"credentials"`
	// ScanErrors names the databases that could not be scanned, and why:
	// their standing credentials are unknown, not zero.
	ScanErrors []ScanError `json:"scan_errors"`
}

// StandingCredential is one standing credential on one database.
type StandingCredential struct {
	Database string `json:"database"`
	// Name is the role (PostgreSQL) or 'user'@'host' (MySQL).
	Name string `json:"name"`
	Why  string `json:"why"`
	// Managed says it is one of keygate's person roles, found able to
	// log in while no login window is open.
	Managed bool `json:"managed"`
}

// ScanError is a database whose standing credentials could not be read.
type ScanError struct {
	Database string `json:"database"`
	Error    string `json:"error"`
}

// Durations summarises measured durations over the report's window
// against a target: percentiles are nearest-rank over every measurement
// in the window.
type Durations struct {
	// Count is how many measurements the window holds.
	Count      int     `json:"count"`
	P50Seconds float64 `json:"p50_seconds"`
	P99Seconds float64 `json:"p99_seconds"`
	MaxSeconds float64 `json:"max_seconds"`
	// TargetSeconds is the most a measurement should be; OverTarget
	// counts those that were more.
	TargetSeconds float64 `json:"target_seconds"`
	OverTarget    int     `json:"over_target"`
}

// Sprawl is the size of the access rules in force.
type Sprawl struct {
	PermissionSets int `json:"permission_sets"`
	Assignments    int `json:"assignments"`
	// Grants counts distinct (person, database, level) grants, as last
	// counted (every 10 minutes); a grant at rw counts ro and rw.
	Grants int `json:"grants"`
	// Warning is set when permission sets grew faster than active people
	// over the last 30 days.
	Warning bool `json:"warning"`
}

// AccessRules are the access rules in force, as configured: the permission
// sets, the assignments (the config's, and those the group naming rule
// derives from the groups there are now) and the deny rules. A Cedar
// policy file's policies add to them and are not listed here.
type AccessRules struct {
	PermissionSets []PermissionSetRule `json:"permission_sets"`
	Assignments    []AssignmentRule    `json:"assignments"`
	Deny           []DenyRule          `json:"deny"`
	// GroupPattern is the group naming rule; empty when there is none.
	GroupPattern string `json:"group_pattern,omitempty"`
	// PolicyFile is the Cedar policy file in force; empty when none.
	PolicyFile string `json:"policy_file,omitempty"`
}

// PermissionSetRule is a permission set: an access level and the terms
// that come with it.
type PermissionSetRule struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Access is the level it grants: ro, rw or admin.
	Access string `json:"access"`
	// TokenTTL is how long its tokens last, the default (15m) when the
	// config gives none.
	TokenTTL string `json:"token_ttl"`
	// SessionDuration is the longest a database session under it may
	// last; empty for no limit.
	SessionDuration string `json:"session_duration,omitempty"`
	RequireMFA      bool   `json:"require_mfa"`
	// Conditions must all hold for it to grant anything.
	Conditions []string `json:"conditions"`
}

// AssignmentRule grants a group a permission set on databases: those
// named ("*" for all), or those whose tags match DatabaseTags.
type AssignmentRule struct {
	Group         string `json:"group"`
	PermissionSet string `json:"permission_set"`
	// Access is the permission set's level.
	Access       string            `json:"access"`
	Databases    []string          `json:"databases,omitempty"`
	DatabaseTags map[string]string `json:"database_tags,omitempty"`
	// Policy names the rule as decisions do: assignments[N] for the
	// config's, group_naming[GROUP] for one the naming rule derives.
	Policy string `json:"policy"`
}

// DenyRule refuses access whatever grants it.
type DenyRule struct {
	Description string `json:"description"`
	// Group is whose access it refuses; empty for everyone.
	Group        string            `json:"group,omitempty"`
	Databases    []string          `json:"databases,omitempty"`
	DatabaseTags map[string]string `json:"database_tags,omitempty"`
	// Access lists the levels refused, each with the levels above it;
	// empty refuses all.
	Access     []string `json:"access"`
	Conditions []string `json:"conditions"`
	// Policy names the rule as decisions do: deny[N].
	Policy string `json:"policy"`
}
