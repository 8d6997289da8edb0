// Package gateway is the protocol-neutral core of keygate's database
// gateways: it authenticates a connection's token, re-checks the person's
// entitlement, keeps the registry of live sessions, routes cancel requests,
// and ends sessions whose entitlement goes away or whose permission set's
// session_duration runs out. The wire protocols live in
// sub-packages (pgwire) behind the Engine interface.
package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/token"
)

// Verifier checks a token's signature and lifetime.
type Verifier interface {
	Verify(tok string) (token.Claims, error)
}

// Authorizer decides from live state whether a request is allowed now.
type Authorizer interface {
	Authorize(ctx context.Context, r authz.Request) (access.Decision, error)
}

// Auditor records audit events. Err is non-nil while the audit store
// refuses writes: no session starts then, since its statements could not
// be recorded.
type Auditor interface {
	Record(e audit.Event)
	// Flush waits until every event recorded before the call is stored.
	Flush(ctx context.Context) error
	Err() error
}

// Engine serves client connections of one wire protocol.
type Engine interface {
	// Serve serves one connection. It calls admitted once the client has
	// authenticated: that frees the connection's pre-authentication slot
	// and lifts the handshake deadline.
	Serve(ctx context.Context, conn net.Conn, admitted func())
	// Reject tells a client that was refused before it said anything why,
	// in the engine's protocol.
	Reject(conn net.Conn, r *Refusal)
}

// RefusalKind classifies a refusal so that each protocol can pick its error
// code.
type RefusalKind int

// Kinds of refusal.
const (
	RefusedCredentials RefusalKind = iota + 1 // the token is bad
	RefusedAccess                             // the person may not do this
	RefusedUnavailable                        // keygate or the upstream cannot serve now
	RefusedProtocol                           // the client broke the protocol
)

// Refusal is an error whose Reason is safe to show the client and to write
// to the audit log; Err, if any, is internal detail for the server log.
type Refusal struct {
	Kind   RefusalKind
	Reason string
	Err    error
}

func (r *Refusal) Error() string {
	if r.Err != nil {
		return r.Reason + ": " + r.Err.Error()
	}
	return r.Reason
}

func (r *Refusal) Unwrap() error { return r.Err }

// Gateway is shared by all engines.
type Gateway struct {
	// RecheckInterval is how often Watch decides every live session again;
	// New sets DefaultRecheckInterval.
	RecheckInterval time.Duration
	// HandshakeTimeout bounds everything before a session starts;
	// MaxHandshakes and MaxHandshakesPerAddress bound the connections
	// still starting up, in all and from one source address. New sets the
	// defaults.
	HandshakeTimeout        time.Duration
	MaxHandshakes           int
	MaxHandshakesPerAddress int
	// RevocationWarning is how long a revocation may take to end a
	// session's upstream backend before keygate warns: the seeds' target
	// for time-to-revoke. New sets DefaultRevocationWarning.
	RevocationWarning time.Duration
	// Current, when set, reports whether this server's view of who may
	// do what is up to date: on a state several servers share, a
	// revocation made on another reaches this one through the state
	// database, and while that is unreachable no new session starts.
	Current func() error
	// Relay, when set, passes a cancel request that matched no session
	// here to the other servers sharing the state: a load balancer may
	// send a client's cancel connection to another server than its
	// session's. Only proof of the secret travels, never the secret.
	Relay func(ctx context.Context, engine string, id uint32, proof [32]byte)
	// Pools are the databases' pools of people's upstream connections,
	// by database name; Watch and Recheck end the pooled connections of
	// those who lost access. Set before Watch.
	Pools map[string]Pool

	verifier Verifier
	authz    Authorizer
	audit    Auditor
	log      *slog.Logger
	now      func() time.Time
	// afterFunc is time.AfterFunc, returning the timer's Stop: the one
	// seam through which tests drive session_duration timers with their
	// own clock instead of waiting.
	afterFunc func(d time.Duration, f func()) (stop func() bool)

	mu       sync.Mutex
	sessions map[*Session]struct{}
	byKey    map[cancelKey]*Session
	draining bool // no new sessions
	conns    sync.WaitGroup

	preauth preauth
	// cancels and refusals sample what unauthenticated clients make keygate
	// log and audit, per source address.
	cancels, refusals *sampler
}

// New makes a gateway core.
func New(v Verifier, authz Authorizer, a Auditor, log *slog.Logger, now func() time.Time) *Gateway {
	if now == nil {
		now = time.Now
	}
	return &Gateway{RecheckInterval: DefaultRecheckInterval, HandshakeTimeout: DefaultHandshakeTimeout, RevocationWarning: DefaultRevocationWarning,
		MaxHandshakes: DefaultMaxHandshakes, MaxHandshakesPerAddress: DefaultMaxHandshakesPerAddress,
		verifier: v, authz: authz, audit: a, log: log, now: now, afterFunc: afterFunc,
		sessions: map[*Session]struct{}{}, byKey: map[cancelKey]*Session{},
		preauth: preauth{byAddr: map[string]int{}},
		cancels: newSampler(sampleBurst, sampleWindow, now), refusals: newSampler(sampleBurst, sampleWindow, now)}
}

// What one source address may make keygate log or audit before it
// authenticates, per window.
const (
	sampleBurst  = 3
	sampleWindow = 10 * time.Second
)

// afterFunc is the real clock's timer, for Gateway.afterFunc.
func afterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }

// Audit records an event.
func (g *Gateway) Audit(e audit.Event) { g.audit.Record(e) }

// Logger is the gateway's logger.
func (g *Gateway) Logger() *slog.Logger { return g.log }

// Hello is what a client presents: who it says it is, where it wants to go,
// the token it offers as password, and its other start-up parameters.
type Hello struct {
	User     string
	Database string
	Token    string
	Client   string
	Params   map[string]string
}

// Authenticate checks a client's token and entitlement. A refusal is
// audited here, with its reason; the caller only reports it to the client.
func (g *Gateway) Authenticate(ctx context.Context, h Hello) (access.Decision, token.Claims, error) {
	d, c, err := g.authenticate(ctx, h)
	if err != nil {
		var r *Refusal
		if !errors.As(err, &r) {
			r = &Refusal{Kind: RefusedUnavailable, Reason: "keygate could not check the token", Err: err}
		}
		g.Refuse(h, c, r)
		return access.Decision{}, token.Claims{}, r
	}
	return d, c, nil
}

// Refuse audits and logs a refused connection. Refusals for breaking the
// protocol are sampled per source address: anyone can send malformed
// packets without a token, and each must not cost an audit event.
func (g *Gateway) Refuse(h Hello, c token.Claims, r *Refusal) {
	user, db := masked(h.User), masked(h.Database)
	detail := map[string]any{"token_id": c.ID}
	if r.Kind == RefusedProtocol {
		ok, suppressed := g.refusals.allow(sourceOf(h.Client))
		if !ok {
			return
		}
		detail = map[string]any{}
		if suppressed > 0 {
			detail["suppressed"] = suppressed
		}
	}
	g.audit.Record(audit.Event{Type: audit.ConnectRefused, User: user, Database: db, Access: string(c.Access), Client: h.Client, Reason: r.Reason, Detail: detail})
	level := slog.LevelInfo
	if r.Kind == RefusedUnavailable {
		// keygate's side failed, not the person: the operator must act.
		level = slog.LevelWarn
	}
	g.log.Log(context.Background(), level, "connection refused", "user", user, "database", db, "client", h.Client, "reason", r.Reason, "err", r.Err)
}

// sourceOf is the address part of a client's host:port.
func sourceOf(client string) string {
	if host, _, err := net.SplitHostPort(client); err == nil {
		return host
	}
	return client
}

// maxNameInRefusal bounds a client-supplied name in refusal records: before
// authentication anyone can send one, up to the start-up packet's size.
const maxNameInRefusal = 64

// masked keeps a token typed into a name field out of messages and logs,
// and cuts overlong names.
func masked(name string) string {
	if token.Mentions(name) {
		return "[a token]"
	}
	if len(name) > maxNameInRefusal {
		cut := maxNameInRefusal
		for cut > 0 && name[cut]&0xC0 == 0x80 {
			cut--
		}
		return name[:cut] + "…"
	}
	return name
}

func (g *Gateway) authenticate(ctx context.Context, h Hello) (access.Decision, token.Claims, error) {
	if token.Mentions(h.User) || token.Mentions(h.Database) {
		return access.Decision{}, token.Claims{}, &Refusal{Kind: RefusedCredentials, Reason: "a token was given as the user or database name: put the token in the password, your user name in user and the database in dbname"}
	}
	// A start-up parameter reaches the upstream, where it can be seen in
	// pg_stat_activity and the server log: a token has no place there.
	for k, v := range h.Params {
		if token.Mentions(k) || token.Mentions(v) {
			return access.Decision{}, token.Claims{}, &Refusal{Kind: RefusedCredentials, Reason: fmt.Sprintf("a token was given in the start-up parameter %s: put the token in the password only", masked(k))}
		}
	}
	if g.Current != nil {
		if err := g.Current(); err != nil {
			return access.Decision{}, token.Claims{}, &Refusal{Kind: RefusedUnavailable, Reason: "keygate cannot confirm it has the latest access changes (its state database is not answering, or the keygate servers disagree on the access rules), so it starts no session; try again shortly; the keygate log says which", Err: err}
		}
	}
	if err := g.audit.Err(); err != nil {
		return access.Decision{}, token.Claims{}, &Refusal{Kind: RefusedUnavailable, Reason: "keygate cannot write its audit log right now, so it starts no session; try again later", Err: err}
	}
	if h.Token == "" {
		return access.Decision{}, token.Claims{}, &Refusal{Kind: RefusedCredentials, Reason: "no token given: use a token from `keygate db token` as the password"}
	}
	c, err := g.verifier.Verify(h.Token)
	if err != nil {
		reason := err.Error()
		switch {
		case errors.Is(err, token.ErrExpired):
			reason += fmt.Sprintf(": get a fresh one with `keygate db token %s`", h.Database)
		case errors.Is(err, token.ErrMalformed) && !token.LooksLikeToken(h.Token):
			reason = "the password is not a keygate token: use the output of `keygate db token` as the password"
		}
		return access.Decision{}, token.Claims{}, &Refusal{Kind: RefusedCredentials, Reason: reason}
	}
	if !strings.EqualFold(c.User, h.User) {
		return access.Decision{}, c, &Refusal{Kind: RefusedCredentials, Reason: fmt.Sprintf("the token was issued to %s, not %s: connect with user=%s", c.User, masked(h.User), c.User)}
	}
	// An empty database is the token's: a MySQL client may connect
	// without naming one.
	if h.Database != "" && c.Database != h.Database {
		return access.Decision{}, c, &Refusal{Kind: RefusedCredentials, Reason: fmt.Sprintf("the token is for database %s, not %s: connect with dbname=%s", c.Database, masked(h.Database), c.Database)}
	}
	d, err := g.authz.Authorize(ctx, authz.Request{User: c.User, Database: c.Database, Level: c.Access, SignIn: c.Session})
	if err != nil {
		return access.Decision{}, c, &Refusal{Kind: RefusedUnavailable, Reason: "keygate could not check your access", Err: err}
	}
	if !d.Allowed {
		return access.Decision{}, c, &Refusal{Kind: RefusedAccess, Reason: "access denied: " + d.Reason}
	}
	return d, c, nil
}

// Session is a live gateway session.
type Session struct {
	ID           string
	User         string
	Database     string
	Level        access.Level
	SignIn       string
	TokenID      string
	Client       string
	UpstreamRole string
	Started      time.Time

	// Engine names the engine serving the session; its cancel keys are
	// its own, so that one engine's key never reaches another's session.
	Engine string
	// Auth is how the client gave its token, where the protocol has more
	// than one way (MySQL: caching_sha2_password or mysql_clear_password);
	// session.start records it as detail.auth.
	Auth string
	// CancelID and CancelSecret are the cancel key of the session,
	// keygate's own, never the upstream's. Register draws them unless the
	// engine set CancelID already, to the id it showed its client before
	// authentication (MySQL's connection id). The core does not read them:
	// the engine hands them to its client in its protocol's form
	// (PostgreSQL's process id and secret key).
	CancelID     uint32
	CancelSecret uint32

	BytesFromClient atomic.Int64
	BytesToClient   atomic.Int64
	// Statements counts the statements the session sent upstream (those
	// Statement and StatementSent note), for the live session lists; one
	// atomic add each keeps it off the relay's cost.
	Statements atomic.Int64

	// UpstreamPID is the upstream backend's process id, for the audit.
	UpstreamPID uint32
	// TokenIssued is when the token the session started with was issued:
	// session.start records its age (credential age at use).
	TokenIssued time.Time
	// UpstreamReused says the backend served an earlier session of the
	// same person and level from the pool, reset since; session.start
	// records it as detail.upstream_reused, and its pid as upstream_pid.
	UpstreamReused bool

	// Control is how the core acts on the session; set by the engine
	// before Register.
	Control Control
	// Grant is the grant that allowed the connection, from the decision
	// that admitted it. Its permission set's SessionDuration bounds how
	// long the session may last.
	Grant access.Grant

	killed atomic.Bool
	// revokedSince is when the change that revoked the session committed
	// (Unix ns), 0 unless a revocation ended it: session.end records how
	// long its backend outlived the change (time-to-revoke).
	revokedSince atomic.Int64

	// limitMu guards the session_duration in force, which Register,
	// re-checks and Unregister touch from different goroutines.
	limitMu sync.Mutex
	// limit is the session_duration in force; zero for none.
	limit time.Duration
	// stopLimit stops the timer that ends the session at limit; nil when
	// none is armed.
	stopLimit func() bool
	// unregistered forbids arming a timer for a session already gone.
	unregistered bool
}

// Control is what an engine lets the core do to a live session.
type Control interface {
	// Kill ends the session with a reason shown to the client: the
	// engine stops relaying, ends the upstream backend, and audits the
	// end with Unregister once the backend is gone. It must not block,
	// and is called at most once.
	Kill(reason string)
	// CancelUpstream cancels the statement running upstream.
	CancelUpstream(ctx context.Context) error
	// Abort ends the upstream backend of a session that never began to
	// relay, waits until it is gone, and says how it ended.
	Abort() BackendEnd
}

// Connector is an engine's part in admitting a session.
type Connector interface {
	// Connect logs in to database db upstream for the person and level
	// the core admitted, and returns the session to register, with
	// Engine, Client, Control, UpstreamRole and UpstreamPID set. It
	// returns ErrUnknownDatabase for a database the engine does not
	// serve, and a *Refusal to say in words why the upstream cannot be
	// reached; any other error is refused as keygate's failure.
	Connect(ctx context.Context, db string, d access.Decision, c token.Claims) (*Session, error)
}

// ErrUnknownDatabase means an engine serves no database of that name.
var ErrUnknownDatabase = errors.New("database is not served by this engine")

// Admit admits a client: it checks the token and the entitlement, has
// the engine log in upstream, and registers the session, auditing its
// start. Otherwise it audits the refusal and returns it, always as a
// *Refusal, for the engine to tell the client in its protocol. Every
// engine admits the same way, so a rule added here holds for all.
func (g *Gateway) Admit(ctx context.Context, h Hello, c Connector) (*Session, error) {
	d, claims, err := g.Authenticate(ctx, h)
	if err != nil {
		return nil, err
	}
	s, err := c.Connect(ctx, claims.Database, d, claims)
	if err != nil {
		var r *Refusal
		switch {
		case errors.Is(err, ErrUnknownDatabase):
			r = &Refusal{Kind: RefusedAccess, Reason: fmt.Sprintf("database %s is not configured in keygate", claims.Database)}
		case !errors.As(err, &r):
			r = &Refusal{Kind: RefusedUnavailable, Reason: fmt.Sprintf("keygate could not log you in to %s upstream; the keygate log says why", claims.Database), Err: err}
		}
		g.Refuse(h, claims, r)
		return nil, r
	}
	s.User, s.Database, s.Level, s.SignIn, s.TokenID, s.Grant = d.User, claims.Database, claims.Access, claims.Session, claims.ID, d.Grant
	s.TokenIssued = claims.IssuedAt
	if err := g.Register(ctx, s); err != nil {
		// Revoked while connecting, or shutting down: Kill has begun
		// ending the backend.
		var r *Refusal
		if !errors.As(err, &r) {
			r = &Refusal{Kind: RefusedUnavailable, Reason: "keygate could not start the session", Err: err}
		}
		g.Unregister(s, r.Reason, s.Control.Abort())
		return nil, r
	}
	return s, nil
}

// cancelKey finds a session from a cancel request of its engine.
type cancelKey struct {
	engine string
	id     uint32
}

// Register adds a session to the registry, gives it a cancel key, audits its
// start, arms the session_duration of its grant, and checks its entitlement
// once more: a change that committed while the connection was being set up
// is caught here, one that commits later by the watcher.
func (g *Gateway) Register(ctx context.Context, s *Session) error {
	s.ID = uuid.NewString()
	s.Started = g.now()
	g.mu.Lock()
	if g.draining {
		g.mu.Unlock()
		s.Control.Kill("keygate is shutting down")
		return &Refusal{Kind: RefusedUnavailable, Reason: "keygate is shutting down"}
	}
	if _, taken := g.byKey[cancelKey{s.Engine, s.CancelID}]; taken || s.CancelID == 0 {
		for {
			s.CancelID, s.CancelSecret = randomKey()
			if _, taken := g.byKey[cancelKey{s.Engine, s.CancelID}]; !taken && s.CancelID != 0 {
				break
			}
		}
	}
	g.sessions[s] = struct{}{}
	g.byKey[cancelKey{s.Engine, s.CancelID}] = s
	g.mu.Unlock()
	detail := map[string]any{"upstream_role": s.UpstreamRole, "token_id": s.TokenID}
	if !s.TokenIssued.IsZero() {
		detail["token_age_ms"] = max(0, s.Started.Sub(s.TokenIssued).Milliseconds())
	}
	if s.Auth != "" {
		detail["auth"] = s.Auth
	}
	if s.UpstreamReused {
		detail["upstream_reused"] = true
		detail["upstream_pid"] = s.UpstreamPID
	}
	if ps := s.Grant.PermissionSet; ps.SessionDuration > 0 {
		// An auditor reading the start learns when the session must end
		// at the latest, and under which set.
		detail["permission_set"] = ps.Name
		detail["session_duration_ms"] = ps.SessionDuration.Milliseconds()
	}
	g.audit.Record(audit.Event{Time: s.Started, Type: audit.SessionStart, User: s.User, Database: s.Database, Access: string(s.Level), Client: s.Client, SessionID: s.ID,
		Detail: detail})
	g.log.Info("session started", "session", s.ID, "user", s.User, "database", s.Database, "access", s.Level, "client", s.Client, "upstream_role", s.UpstreamRole)
	if err := g.limit(s, s.Grant.PermissionSet); err != nil {
		return err
	}
	return g.recheck(context.WithoutCancel(ctx), s, time.Time{})
}

// BackendEnd says how a session's upstream backend ended. Engines confirm
// the backend gone before the session's end is audited, so that the audit
// never shows a session ended whose backend still runs.
type BackendEnd struct {
	// At is when keygate saw the backend gone; zero when it could not
	// confirm that.
	At time.Time
	// How is BackendTerminated, BackendClosed or BackendUnconfirmed.
	How string
	// Err says why the end could not be confirmed.
	Err error
}

// How a backend ended.
const (
	BackendTerminated  = "terminated"  // keygate ended it (pg_terminate_backend or equivalent)
	BackendClosed      = "closed"      // it exited on its own after the client's Terminate
	BackendUnconfirmed = "unconfirmed" // keygate could not confirm it gone; the upstream watcher ends it
	BackendPooled      = "pooled"      // it was reset and kept for the person's next session at the same level
)

// Unregister removes a session, stops its session_duration timer and
// audits its end, with how its upstream backend ended.
func (g *Gateway) Unregister(s *Session, reason string, end BackendEnd) {
	g.mu.Lock()
	delete(g.sessions, s)
	delete(g.byKey, cancelKey{s.Engine, s.CancelID})
	g.mu.Unlock()
	s.limitMu.Lock()
	s.unregistered = true
	if s.stopLimit != nil {
		s.stopLimit()
		s.stopLimit = nil
	}
	s.limitMu.Unlock()
	dur := g.now().Sub(s.Started)
	detail := map[string]any{"duration_ms": dur.Milliseconds(), "bytes_from_client": s.BytesFromClient.Load(), "bytes_to_client": s.BytesToClient.Load(),
		"upstream_pid": s.UpstreamPID, "upstream_end": end.How}
	if !end.At.IsZero() {
		detail["upstream_gone_at"] = end.At.UTC().Format(time.RFC3339Nano)
	}
	if end.Err != nil {
		detail["upstream_error"] = end.Err.Error()
	}
	var revokedAfter time.Duration
	if since := s.revokedSince.Load(); since != 0 && !end.At.IsZero() {
		revokedAfter = max(0, end.At.Sub(time.Unix(0, since)))
		detail["revoked_after_ms"] = revokedAfter.Milliseconds()
	}
	g.audit.Record(audit.Event{Type: audit.SessionEnd, User: s.User, Database: s.Database, Access: string(s.Level), Client: s.Client, SessionID: s.ID, Reason: reason, Detail: detail})
	g.log.Info("session ended", "session", s.ID, "user", s.User, "database", s.Database, "duration", dur.Round(time.Millisecond), "reason", reason, "upstream_end", end.How)
	if revokedAfter > g.RevocationWarning {
		g.log.Warn("a revoked session's upstream backend outlived the change that revoked it by more than the target", "session", s.ID, "user", s.User,
			"database", s.Database, "revoked_after", revokedAfter.Round(time.Millisecond), "target", g.RevocationWarning)
	}
	if end.How == BackendUnconfirmed {
		g.log.Error("the session's upstream backend could not be confirmed gone; the upstream watcher ends it within seconds", "session", s.ID, "upstream_pid", s.UpstreamPID, "err", end.Err)
	}
}

// Statement audits one statement of a session at once, with detail about
// how it was sent: for a message that runs nothing by itself (a Parse),
// whose event has no outcome to wait for.
func (g *Gateway) Statement(s *Session, text string, detail map[string]any) {
	s.Statements.Add(1)
	g.audit.Record(audit.Event{Type: audit.Query, User: s.User, Database: s.Database, Access: string(s.Level), Client: s.Client, SessionID: s.ID, Query: text, Detail: detail})
}

// Stored waits until the audit events recorded so far are stored, or
// until ctx ends (the session is ending). The engines hold back what tells
// a client that a statement finished (PostgreSQL's CommandComplete or
// ReadyForQuery, MySQL's last OK, EOF or error) until its event is stored:
// a server killed at any moment has lost no statement a client saw
// finish. Concurrent sessions share the commits, so the cost is one
// commit's latency per statement, not one commit each.
func (g *Gateway) Stored(ctx context.Context) {
	// A closed log has told the server log of every event it could not
	// take; the session ends with the server.
	if err := g.audit.Flush(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, audit.ErrClosed) {
		g.log.Error("waiting for a statement's audit event to be stored", "err", err)
	}
}

// Outcome is what one statement came to, as the upstream reported it: a
// command tag, or an error with its SQLSTATE; or, when no result ever
// came, why not. Its JSON form is one element of a query event's
// detail.outcome.
type Outcome struct {
	Tag      string `json:"tag,omitempty"`
	SQLState string `json:"sqlstate,omitempty"`
	Error    string `json:"error,omitempty"`
	// Suspended: the Execute's row limit was reached; the client may
	// fetch more with another Execute, audited on its own.
	Suspended bool `json:"suspended,omitempty"`
	// Empty: the statement was empty.
	Empty bool `json:"empty,omitempty"`
	// Skipped says why the statement did not run.
	Skipped string `json:"skipped,omitempty"`
	// Unknown says why no result came.
	Unknown string `json:"unknown,omitempty"`
}

// SentStatement is the audit event of a statement sent upstream, held
// until its outcome is known: an auditor then sees a refused statement
// apart from one that ran. The engine must end it exactly once, with Done
// or Unfinished, before the session's end is audited.
type SentStatement struct {
	g       *Gateway
	s       *Session
	text    string
	detail  map[string]any
	sent    time.Time
	outcome []Outcome
	// more counts the outcomes past maxOutcomes, which are not kept.
	more int
}

// maxOutcomes bounds the outcomes one event keeps: a Query of 100,000
// statements need not make one event of 100,000 outcomes. The first
// maxOutcomes-1 and the last are kept, with a count of the rest.
const maxOutcomes = 1000

// StatementSent notes a statement of s that is being sent upstream now.
// The event takes detail over: the caller must not change it afterwards.
func (g *Gateway) StatementSent(s *Session, text string, detail map[string]any) *SentStatement {
	s.Statements.Add(1)
	return &SentStatement{g: g, s: s, text: text, detail: detail, sent: g.now()}
}

// Add appends the outcome of the next statement the message ran: a simple
// Query may hold several. Not safe for concurrent use.
func (st *SentStatement) Add(o Outcome) {
	if len(st.outcome) < maxOutcomes {
		st.outcome = append(st.outcome, o)
		return
	}
	st.outcome[maxOutcomes-1] = o
	st.more++
}

// Done writes the event once every result came. Its time is when the
// statement was sent, not now: that is when the person ran it;
// duration_ms is from sending to the end of its batch.
func (st *SentStatement) Done() {
	detail := st.detail
	if detail == nil {
		detail = make(map[string]any, 2)
	}
	if len(st.outcome) == 0 {
		st.Add(Outcome{Unknown: "the upstream reported no result"})
	}
	detail["duration_ms"] = float64(st.g.now().Sub(st.sent).Microseconds()) / 1000
	st.write(detail)
}

// Unfinished writes the event of a statement whose batch did not end,
// saying why: the session ended first. A statement the upstream failed
// as it went (a backend ended by an administrator) keeps that error as
// its last outcome.
func (st *SentStatement) Unfinished(why string) {
	if n := len(st.outcome); n == 0 || st.outcome[n-1].SQLState == "" {
		st.Add(Outcome{Unknown: why})
	}
	detail := st.detail
	if detail == nil {
		detail = make(map[string]any, 1)
	}
	st.write(detail)
}

func (st *SentStatement) write(detail map[string]any) {
	detail["outcome"] = st.outcome
	if st.more > 0 {
		detail["outcomes_omitted"] = st.more
	}
	s := st.s
	st.g.audit.Record(audit.Event{Time: st.sent, Type: audit.Query, User: s.User, Database: s.Database, Access: string(s.Level), Client: s.Client, SessionID: s.ID,
		Query: st.text, Detail: detail})
}

// RefuseStatement audits a statement or call of a session that keygate
// refused, so that it never reached the upstream.
func (g *Gateway) RefuseStatement(s *Session, reason, text string, detail map[string]any) {
	g.audit.Record(audit.Event{Type: audit.QueryRefused, User: s.User, Database: s.Database, Access: string(s.Level), Client: s.Client, SessionID: s.ID,
		Reason: reason, Query: text, Detail: detail})
	g.log.Info("statement refused", "session", s.ID, "user", s.User, "reason", reason)
}

func randomKey() (uint32, uint32) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	// Keep the pid positive as a signed 32-bit number: some clients
	// store it in an int32.
	return binary.BigEndian.Uint32(b[:4]) & 0x7fffffff, binary.BigEndian.Uint32(b[4:])
}

// Cancel handles a client's cancel request to engine: if id and secret
// match a live session of that engine, the statement running upstream is
// cancelled. Unmatched requests are ignored, as PostgreSQL does, so they
// reveal nothing.
func (g *Gateway) Cancel(ctx context.Context, engine string, id, secret uint32, client string) {
	g.mu.Lock()
	s, ok := g.byKey[cancelKey{engine, id}]
	g.mu.Unlock()
	if !ok || subtle.ConstantTimeEq(int32(s.CancelSecret), int32(secret)) != 1 {
		// Anyone can send these without a token: log a few per source.
		if ok, suppressed := g.cancels.allow(sourceOf(client)); ok {
			g.log.Info("cancel request matched no session", "client", client, "suppressed", suppressed, "relayed", g.Relay != nil)
		}
		if g.Relay != nil {
			g.Relay(ctx, engine, id, CancelProof(engine, id, secret))
		}
		return
	}
	g.CancelSession(ctx, s, client)
}

// CancelProof stands for a cancel request's secret among servers: it
// names the engine and session id, and only the one who knows the secret
// can make it.
func CancelProof(engine string, id, secret uint32) [32]byte {
	b := make([]byte, 0, len(engine)+9)
	b = append(b, engine...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint32(b, secret)
	return sha256.Sum256(b)
}

// CancelRelayed handles a cancel request another server relayed: the
// statement is cancelled if a live session here has the id and a secret
// that makes proof. Unmatched ones are ignored; they belong elsewhere.
func (g *Gateway) CancelRelayed(ctx context.Context, engine string, id uint32, proof [32]byte) {
	g.mu.Lock()
	s, ok := g.byKey[cancelKey{engine, id}]
	g.mu.Unlock()
	if !ok {
		return
	}
	want := CancelProof(engine, id, s.CancelSecret)
	if subtle.ConstantTimeCompare(want[:], proof[:]) != 1 {
		return
	}
	g.CancelSession(ctx, s, "relayed by another keygate server")
}

// Lookup finds engine's live session by its cancel id, for a protocol
// whose cancel request names a session by id alone (MySQL's KILL QUERY
// id, sent over an authenticated connection): the engine must check that
// the asker may act on it.
func (g *Gateway) Lookup(engine string, id uint32) *Session {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.byKey[cancelKey{engine, id}]
}

// CancelSession cancels the statement s runs upstream, at client's
// request, and audits it; it reports whether the cancel went through.
func (g *Gateway) CancelSession(ctx context.Context, s *Session, client string) bool {
	ctx, cancel := context.WithTimeout(ctx, cancelTimeout)
	defer cancel()
	if err := s.Control.CancelUpstream(ctx); err != nil {
		g.log.Warn("cancel failed", "session", s.ID, "err", err)
		return false
	}
	g.audit.Record(audit.Event{Type: audit.QueryCancel, User: s.User, Database: s.Database, Access: string(s.Level), Client: client, SessionID: s.ID})
	return true
}

// cancelTimeout bounds forwarding a cancel request upstream.
const cancelTimeout = 5 * time.Second

// Sessions lists the live sessions.
func (g *Gateway) Sessions() []*Session {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*Session, 0, len(g.sessions))
	for s := range g.sessions {
		out = append(out, s)
	}
	return out
}

// Handshakes is the number of connections still starting up.
func (g *Gateway) Handshakes() int {
	g.preauth.mu.Lock()
	defer g.preauth.mu.Unlock()
	return g.preauth.total
}

// SessionCount is the number of live sessions; unlike Sessions it
// allocates nothing, so it can be read on every metrics scrape.
func (g *Gateway) SessionCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sessions)
}

// DefaultRevocationWarning is Gateway.RevocationWarning's default.
const DefaultRevocationWarning = 15 * time.Minute

// DefaultRecheckInterval is how often every live session is decided again
// even without a change: it catches a re-check that failed (the store was
// unreachable when a change arrived) and anything changed outside the feed.
const DefaultRecheckInterval = 30 * time.Second

// Watch re-decides live sessions as changes arrive, and all of them every
// RecheckInterval, ending those whose entitlement is gone. It returns when
// changes is closed.
func (g *Gateway) Watch(ctx context.Context, changes <-chan store.Change) {
	tick := time.NewTicker(g.RecheckInterval)
	defer tick.Stop()
	for {
		select {
		case c, ok := <-changes:
			if !ok {
				return
			}
			for _, s := range g.Sessions() {
				if affects(c, s.User) {
					g.recheck(ctx, s, c.At)
				}
			}
			g.recheckPools(ctx, func(person string) bool { return affects(c, person) })
		case <-tick.C:
			for _, s := range g.Sessions() {
				g.recheck(ctx, s, time.Time{})
			}
			g.recheckPools(ctx, nil)
		}
	}
}

// affects reports whether a change may alter a person's entitlement. Group
// changes and resyncs may affect anyone.
func affects(c store.Change, person string) bool {
	switch c.Kind {
	case store.UserChanged, store.MembershipChanged, store.SessionChanged:
		return strings.EqualFold(c.User, person)
	}
	return true
}

// Recheck re-decides every live session, for a policy reload, and says
// how many it ended; the pooled connections of those who lost access end
// too.
func (g *Gateway) Recheck(ctx context.Context) (ended int) {
	since := g.now()
	for _, s := range g.Sessions() {
		if g.recheck(ctx, s, since) != nil {
			ended++
		}
	}
	g.recheckPools(ctx, nil)
	return ended
}

// Pool is what the core needs of a database's pool of people's upstream
// connections: who holds connections, and ending those of someone who
// lost access.
type Pool interface {
	// Holders lists each person and level holding connections to the
	// database, in use or pooled.
	Holders() []Holder
	// Drain ends the pooled connections of person at level, and keeps
	// those in use from being pooled again. It returns how many it ended.
	Drain(person string, level access.Level) int
}

// Holder is a person at a level who holds upstream connections.
type Holder struct {
	Person string
	Level  access.Level
}

// recheckPools decides again whether each holder of pooled connections
// may still reach the database at that level (only those for whom
// affected says so, all when it is nil), and drains the pools of those who
// may not. A pooled connection serves only a session the core admitted
// afresh, so what is decided is whether the backend may stay at all; no
// sign-in session stands behind it, so conditions on how the person signed
// in are taken as met.
func (g *Gateway) recheckPools(ctx context.Context, affected func(person string) bool) {
	for db, p := range g.Pools {
		for _, h := range p.Holders() {
			if affected != nil && !affected(h.Person) {
				continue
			}
			d, err := g.authz.Authorize(ctx, authz.Request{User: h.Person, Database: db, Level: h.Level, Live: true, AssumeMFA: true})
			if err != nil {
				g.log.Error("could not re-check pooled connections; trying again within "+g.RecheckInterval.String(), "user", h.Person, "database", db, "err", err)
				continue
			}
			if !d.Allowed {
				n := p.Drain(h.Person, h.Level)
				g.log.Info("ended pooled connections of a person who lost access", "user", h.Person, "database", db, "access", h.Level, "ended", n, "reason", d.Reason)
			}
		}
	}
}

// recheck ends s if it is no longer allowed, and applies the session_duration
// of the grant that now allows it (see limit). An error from the authorizer
// leaves the session alone: keygate's own trouble is not a revocation. since
// is when the change being applied committed, zero when unknown (a periodic
// re-check, or a change that committed while the session was starting).
func (g *Gateway) recheck(ctx context.Context, s *Session, since time.Time) error {
	d, err := g.authz.Authorize(ctx, authz.Request{User: s.User, Database: s.Database, Level: s.Level, SignIn: s.SignIn, Live: true})
	if err != nil {
		g.log.Error("could not re-check a live session; trying again within "+g.RecheckInterval.String(), "session", s.ID, "user", s.User, "err", err)
		return nil
	}
	if d.Allowed {
		return g.limit(s, d.Grant.PermissionSet)
	}
	if !since.IsZero() {
		s.revokedSince.CompareAndSwap(0, since.UnixNano())
	}
	g.End(s, "access revoked: "+d.Reason)
	return &Refusal{Kind: RefusedAccess, Reason: "access revoked: " + d.Reason}
}

// limit applies ps's SessionDuration to s, as IAM Identity Center applies a
// permission set's session duration to a console session: s ends when it is
// that old. It is called with the grant s connected under and with the grant
// of every later re-check, under this rule:
//
//   - The limit in force is the shortest session_duration of any grant
//     that has allowed the session, counted from the session's start.
//     A re-check that moves the session to a grant with a shorter one
//     shortens the limit, and ends the session at once if it is already
//     older than that: counting from the re-check instead would let a
//     session outlive the new limit by up to the old one.
//   - A grant with no session_duration, or a longer one, leaves the limit
//     as it is: a session cannot shed its limit by being re-decided under
//     a laxer grant, and a set lengthened by a policy reload applies to
//     sessions opened after it.
//
// When s is already past the limit, limit ends it and returns the refusal
// that says why; otherwise it (re)arms the timer that ends s on time.
func (g *Gateway) limit(s *Session, ps access.PermissionSet) error {
	d := ps.SessionDuration
	if d <= 0 {
		return nil
	}
	reason := fmt.Sprintf("session_duration of %s (%s) reached: reconnect with a fresh token", ps.Name, config.FormatDuration(d))
	s.limitMu.Lock()
	if s.unregistered || (s.limit != 0 && d >= s.limit) {
		s.limitMu.Unlock()
		return nil
	}
	if s.stopLimit != nil {
		s.stopLimit()
		s.stopLimit = nil
	}
	s.limit = d
	left := s.Started.Add(d).Sub(g.now())
	if left > 0 {
		s.stopLimit = g.afterFunc(left, func() { g.End(s, reason) })
	}
	s.limitMu.Unlock()
	if left > 0 {
		return nil
	}
	g.End(s, reason)
	return &Refusal{Kind: RefusedAccess, Reason: reason}
}

// Ending reports that the session is being ended: End was called, and
// the engine is taking down its backend before Unregister. Lists of live
// sessions leave it out, so that a session someone just ended does not
// show again with an End button.
func (s *Session) Ending() bool { return s.killed.Load() }

// End kills a session once, with a reason.
func (g *Gateway) End(s *Session, reason string) {
	if !s.killed.CompareAndSwap(false, true) {
		return
	}
	g.log.Info("ending session", "session", s.ID, "user", s.User, "database", s.Database, "reason", reason)
	s.Control.Kill(reason)
}

// Serve accepts connections on ln and hands each to engine until ctx ends
// or ln is closed.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener, engine Engine) error {
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors, or a connection aborted before it
			// was accepted: the listener still works once that passes,
			// and the sessions already open must not end over it. Back
			// off as net/http does, and say so.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			if ok, suppressed := g.refusals.allow("accept"); ok {
				g.log.Warn("accepting connections failed; retrying", "listener", ln.Addr().String(), "retry_in", delay, "err", err, "suppressed", suppressed)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		g.conns.Add(1)
		go func() {
			defer g.conns.Done()
			g.ServeConn(ctx, conn, engine)
		}()
	}
}

// ServeConn serves one accepted connection with engine under the
// pre-authentication limits: a slot among MaxHandshakes and
// MaxHandshakesPerAddress, and HandshakeTimeout to authenticate. A
// connection past a limit is rejected at once.
func (g *Gateway) ServeConn(ctx context.Context, conn net.Conn, engine Engine) {
	defer conn.Close()
	// One source's connections count together whatever their ports.
	source := sourceOf(conn.RemoteAddr().String())
	release, refusal := g.preauth.acquire(source, g.MaxHandshakes, g.MaxHandshakesPerAddress)
	if refusal != nil {
		conn.SetDeadline(time.Now().Add(time.Second))
		if ok, suppressed := g.refusals.allow(source); ok {
			g.log.Warn("connection refused before start-up", "client", conn.RemoteAddr().String(), "reason", refusal.Reason, "suppressed", suppressed)
		}
		engine.Reject(conn, refusal)
		return
	}
	defer release()
	conn.SetDeadline(time.Now().Add(g.HandshakeTimeout))
	engine.Serve(ctx, conn, func() {
		release()
		conn.SetDeadline(time.Time{})
	})
}

// Drain refuses new sessions, waits for connections to finish until ctx
// ends, then ends the sessions still open and waits for them to close.
func (g *Gateway) Drain(ctx context.Context) {
	g.mu.Lock()
	g.draining = true
	g.mu.Unlock()
	done := make(chan struct{})
	go func() {
		g.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	for _, s := range g.Sessions() {
		g.End(s, "keygate is shutting down")
	}
	<-done
}
