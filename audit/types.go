package audit

import (
	"slices"
	"strings"
)

// Admin actions, recorded by the API (the actor is the administrator's
// user name, or "admin (data_dir credential)" for the break-glass
// credential) and, for people created at first sign-in, by the sign-in
// flow.
const (
	AdminGroupCreate       = AdminPrefix + ".group.create"
	AdminGroupAddMember    = AdminPrefix + ".group.add-member"
	AdminGroupRemoveMember = AdminPrefix + ".group.remove-member"
	AdminGroupRename       = AdminPrefix + ".group.rename"
	AdminGroupDelete       = AdminPrefix + ".group.delete"
	AdminUserCreate        = AdminPrefix + ".user.create"
	AdminUserDisable       = AdminPrefix + ".user.disable"
	AdminUserEnable        = AdminPrefix + ".user.enable"
	AdminUserRename        = AdminPrefix + ".user.rename"
	AdminUserDelete        = AdminPrefix + ".user.delete"
	AdminSessionCreate     = AdminPrefix + ".session.create"
	AdminSessionRevoke     = AdminPrefix + ".session.revoke"
	AdminSCIMTokenCreate   = AdminPrefix + ".scim-token.create"
	AdminSCIMTokenRevoke   = AdminPrefix + ".scim-token.revoke"
	// AdminLiveEnd: an administrator ended someone's live gateway session
	// (detail.session_id); the session.end that follows gives its end.
	AdminLiveEnd = AdminPrefix + ".live.end"
)

// LiveEnd records a person ending one of their own live gateway sessions
// (session_id; the actor is the person, detail.actor_session the sign-in
// session they asked from); the session.end that follows gives its end.
// It is not a session.* type, so that selecting session events still
// selects the gateway's own.
const LiveEnd = "live.end"

// BreakGlassUse records every request made with the admin credential in
// data_dir, reads included (but not reads of the audit log itself): the
// bootstrap and break-glass way in, which administrators who sign in as
// themselves make the exception.
const BreakGlassUse = "break-glass.use"

// Changes pushed by an identity provider over SCIM (the actor is the
// provisioning token), and SCIM requests refused before authentication.
const (
	SCIMUserCreate  = "scim.user.create"
	SCIMUserUpdate  = "scim.user.update"
	SCIMUserDelete  = "scim.user.delete"
	SCIMGroupCreate = "scim.group.create"
	SCIMGroupUpdate = "scim.group.update"
	SCIMGroupDelete = "scim.group.delete"
	SCIMAuthRefused = "scim.auth.refused"
)

// types is every event type keygate records. A test keeps it complete: it
// fails when a type constant or a type written where an event is recorded
// is missing here.
var types = []string{
	SessionStart, SessionEnd,
	Query, QueryCancel, QueryRefused,
	ConnectRefused,
	TokenIssued, TokenRefused,
	SignIn, SignInRefused, SignOut,
	SSOWarning,
	ConfigReload, ConfigRefused,
	AccessSprawl,
	UpstreamIntrusion, Checkpoint,
	AdminGroupCreate, AdminGroupAddMember, AdminGroupRemoveMember, AdminGroupRename, AdminGroupDelete,
	AdminUserCreate, AdminUserDisable, AdminUserEnable, AdminUserRename, AdminUserDelete,
	AdminSessionCreate, AdminSessionRevoke, AdminLiveEnd, LiveEnd,
	AdminSCIMTokenCreate, AdminSCIMTokenRevoke, BreakGlassUse,
	SCIMUserCreate, SCIMUserUpdate, SCIMUserDelete,
	SCIMGroupCreate, SCIMGroupUpdate, SCIMGroupDelete,
	SCIMAuthRefused,
}

// Types returns every event type keygate records, sorted. It is what the
// CLI checks --type against and what the documentation lists.
func Types() []string {
	out := slices.Clone(types)
	slices.Sort(out)
	return out
}

// KnownType reports whether t selects anything: a recorded type, or a
// dotted prefix of one ("session", "admin.group"), as store.AuditQuery.Type
// matches.
func KnownType(t string) bool {
	for _, k := range types {
		if k == t || strings.HasPrefix(k, t+".") {
			return true
		}
	}
	return false
}
