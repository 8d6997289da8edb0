package api

import "time"

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
	Seq       int64          `json:"seq"`
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

// AuditVerification is the result of checking the audit log's hash chain.
type AuditVerification struct {
	Events int64  `json:"events"`
	Intact bool   `json:"intact"`
	Error  string `json:"error,omitempty"`
}

// AuditPage is a page of audit events; Next is the "after" value for the
// following page, zero at the end.
type AuditPage struct {
	Events []AuditEvent `json:"events"`
	Next   int64        `json:"next,omitempty"`
}
