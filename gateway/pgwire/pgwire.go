// Package pgwire is keygate's PostgreSQL front end. It speaks the server side
// of the protocol up to authentication — TLS only, the token as a cleartext
// password inside TLS — then logs in upstream as the person's role and relays
// the rest of the conversation message by message, auditing statements.
//
// Only one request is accepted in plaintext: a CancelRequest carrying a
// cancel key that keygate itself handed out, because libpq before 17, pgjdbc
// and node-postgres send it that way.
package pgwire

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/gateway"
	"github.com/keygate/keygate/token"
	"github.com/keygate/keygate/upstream/pool"
	"github.com/keygate/keygate/upstream/postgres"
)

// TLSRequired is what a plaintext client is told.
const TLSRequired = "TLS is required: connect with sslmode=verify-full and the keygate CA (sslrootcert=ca.pem from `keygate ca`)"

// Upstream leases connections to one upstream database: the relay never
// opens or closes one itself, so that a pool can stand behind this.
type Upstream interface {
	// Acquire leases a connection logged in as person's role at level.
	Acquire(ctx context.Context, person string, level access.Level, params map[string]string) (*postgres.Conn, error)
	// Cancel cancels the statement running on c.
	Cancel(ctx context.Context, c *postgres.Conn) error
	// Terminate ends c's backend and returns when it is gone.
	Terminate(ctx context.Context, c *postgres.Conn) (time.Time, error)
	// Release hands c back once its session is over. With reuse (the
	// session ended idle), it keeps c for the person's next session if it
	// can, reporting true; if not, c stays the caller's to end and
	// release. Without reuse, it closes c.
	Release(c *postgres.Conn, reuse bool) bool
	// Pooling reports whether Release may keep a connection at all.
	Pooling() bool
}

// EngineName is the name the PostgreSQL engine goes by: config's
// engine: postgres, and the scope of its cancel keys.
const EngineName = "postgres"

func init() { gateway.RegisterEngine(EngineName, newServer) }

// newServer makes the engine from the options every engine gets.
func newServer(o gateway.EngineOptions) (gateway.Engine, error) {
	ups, err := gateway.UpstreamsOf[Upstream](o, "PostgreSQL")
	if err != nil {
		return nil, err
	}
	return &Server{Gateway: o.Gateway, TLS: o.TLS, Upstreams: ups, MaxStatement: o.MaxStatement, TruncateOversized: o.TruncateOversized}, nil
}

// Server is the PostgreSQL engine.
type Server struct {
	Gateway *gateway.Gateway
	// TLS returns the configuration for a new connection, so that a
	// renewed certificate applies without a restart.
	TLS func() *tls.Config
	// Upstreams maps keygate database names to upstreams.
	Upstreams map[string]Upstream
	// MaxStatement is the longest statement text the audit keeps whole;
	// 0 means DefaultMaxStatement. A longer statement is refused, and the
	// session ended, unless TruncateOversized is set: then it runs, and
	// the audit keeps its head and tail with its length and SHA-256.
	MaxStatement      int
	TruncateOversized bool
}

// DefaultMaxStatement is the default for Server.MaxStatement.
const DefaultMaxStatement = 1 << 20

func (srv *Server) maxStatement() int {
	if srv.MaxStatement > 0 {
		return srv.MaxStatement
	}
	return DefaultMaxStatement
}

var _ gateway.Engine = (*Server)(nil)

// Serve implements gateway.Engine.
func (srv *Server) Serve(ctx context.Context, conn net.Conn, admitted func()) {
	h := &handshake{srv: srv, raw: conn, client: conn.RemoteAddr().String()}
	sess, err := h.run(ctx)
	if err != nil {
		if !errors.Is(err, io.EOF) && !errors.Is(err, errHandled) {
			srv.Gateway.Logger().Debug("connection closed during start-up", "client", h.client, "err", err)
		}
		return
	}
	admitted()
	sess.relay()
}

// Reject implements gateway.Engine: a FATAL ErrorResponse, which libpq
// shows even in place of the answer to an SSLRequest.
func (srv *Server) Reject(conn net.Conn, r *gateway.Refusal) {
	(&handshake{srv: srv, raw: conn, conn: conn}).sendError(r)
}

// errHandled marks a start-up that ended the way the protocol wants (a
// cancel request, a refusal already sent).
var errHandled = errors.New("handled")

type handshake struct {
	srv    *Server
	raw    net.Conn
	client string
	conn   net.Conn // raw, or TLS over raw
	r      *bufio.Reader
}

func (h *handshake) run(ctx context.Context) (*session, error) {
	h.conn = h.raw
	h.r = bufio.NewReaderSize(h.raw, 512)
	// A client may go straight to TLS (PostgreSQL 17 sslnegotiation=direct).
	first, err := h.r.Peek(1)
	if err != nil {
		return nil, err
	}
	if first[0] == 0x16 {
		if err := h.startTLS(true); err != nil {
			return nil, err
		}
	}
	for negotiations := 0; ; negotiations++ {
		pkt, err := readStartupPacket(h.r)
		if err != nil {
			return nil, h.protocolError(err)
		}
		switch pkt.kind {
		case kindCancel:
			h.srv.Gateway.Cancel(ctx, EngineName, pkt.cancelPID, cancelSecret(pkt.cancelSecret), h.client)
			return nil, errHandled
		case kindGSSENC, kindSSL:
			if h.conn != h.raw || negotiations > 2 {
				return nil, h.protocolError(fmt.Errorf("%w: repeated encryption request", errProtocol))
			}
			if pkt.kind == kindGSSENC {
				if _, err := h.raw.Write([]byte{'N'}); err != nil {
					return nil, err
				}
				continue
			}
			// Bytes sent after SSLRequest but before the TLS handshake
			// would be read as if they were protected (CVE-2021-23214).
			if h.r.Buffered() > 0 {
				return nil, h.protocolError(fmt.Errorf("%w: data after SSLRequest", errProtocol))
			}
			if _, err := h.raw.Write([]byte{'S'}); err != nil {
				return nil, err
			}
			if err := h.startTLS(false); err != nil {
				return nil, err
			}
		case kindStartup:
			if h.conn == h.raw {
				h.refuse(gateway.Hello{User: pkt.params["user"], Database: pkt.params["database"], Client: h.client},
					&gateway.Refusal{Kind: gateway.RefusedProtocol, Reason: TLSRequired})
				return nil, errHandled
			}
			return h.startup(ctx, pkt)
		}
	}
}

// cancelSecret turns a 3.0 cancel key into keygate's 32-bit secret. Keys of
// another length were never handed out by keygate and match nothing.
func cancelSecret(b []byte) uint32 {
	if len(b) != 4 {
		return 0
	}
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func (h *handshake) startTLS(direct bool) error {
	// Session tickets stay on: a client that keeps them (pgjdbc, a Go
	// client with a ClientSessionCache) resumes its TLS session on its next
	// connection at about half the handshake's cost, and issuing one costs
	// a client that never resumes (libpq) nothing measurable.
	cfg := h.srv.TLS().Clone()
	if direct {
		// Direct TLS must say it is PostgreSQL, so that a TLS connection
		// meant for another service cannot be redirected here.
		cfg.NextProtos = []string{"postgresql"}
	}
	var rawConn net.Conn = h.raw
	if direct {
		rawConn = &prefixConn{Conn: h.raw, r: h.r}
	}
	tc := tls.Server(rawConn, cfg)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("tls handshake: %w", err)
	}
	if direct && tc.ConnectionState().NegotiatedProtocol != "postgresql" {
		return fmt.Errorf("%w: direct TLS without ALPN postgresql", errProtocol)
	}
	h.conn = tc
	h.r = bufio.NewReaderSize(tc, idleReadBuf)
	return nil
}

// prefixConn reads what a bufio.Reader already holds before the connection.
type prefixConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (h *handshake) startup(ctx context.Context, pkt *startupPacket) (*session, error) {
	if pkt.minor > 0 {
		// Offer 3.0 and name the protocol options we do not know, as
		// PostgreSQL does; the client then carries on in 3.0.
		var unknown []string
		for k := range pkt.params {
			if len(k) > 5 && k[:5] == "_pq_." {
				unknown = append(unknown, k)
			}
		}
		slices.Sort(unknown)
		if err := h.send(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unknown}); err != nil {
			return nil, err
		}
	}
	params := pkt.params
	hello := gateway.Hello{User: params["user"], Database: params["database"], Client: h.client, Params: params}
	if hello.User == "" {
		h.refuse(hello, &gateway.Refusal{Kind: gateway.RefusedProtocol, Reason: "no user name given: connect with user=<your keygate user name>"})
		return nil, errHandled
	}
	if hello.Database == "" {
		hello.Database = hello.User
	}
	if v, ok := params["replication"]; ok && v != "false" && v != "off" && v != "no" && v != "0" {
		h.refuse(hello, &gateway.Refusal{Kind: gateway.RefusedProtocol, Reason: "keygate does not relay replication connections"})
		return nil, errHandled
	}
	if err := h.send(&pgproto3.AuthenticationCleartextPassword{}); err != nil {
		return nil, err
	}
	pw, err := readPassword(h.r)
	if err != nil {
		return nil, h.protocolError(err)
	}
	hello.Token = pw
	gs, err := h.srv.Gateway.Admit(ctx, hello, connector{h: h, params: params})
	if err != nil {
		var r *gateway.Refusal
		errors.As(err, &r)
		h.sendError(r)
		return nil, errHandled
	}
	s := gs.Control.(*session)
	if err := s.greet(); err != nil {
		h.srv.Gateway.Unregister(s.gs, "client went away during start-up", s.endBackend())
		return nil, err
	}
	return s, nil
}

// connector logs in upstream for a client the core admits.
type connector struct {
	h      *handshake
	params map[string]string
}

// Connect implements gateway.Connector.
func (c connector) Connect(ctx context.Context, db string, d access.Decision, claims token.Claims) (*gateway.Session, error) {
	up, ok := c.h.srv.Upstreams[db]
	if !ok {
		return nil, gateway.ErrUnknownDatabase
	}
	upConn, err := up.Acquire(ctx, d.User, claims.Access, c.params)
	if err != nil {
		var reason string
		var budget *pool.BudgetError
		switch {
		case errors.As(err, &budget):
			reason = fmt.Sprintf("database %s: %s", db, budget)
		case errors.Is(err, postgres.ErrUnavailable):
			reason = fmt.Sprintf("database %s is unavailable right now", db)
		case errors.Is(err, postgres.ErrAdminLogin):
			reason = fmt.Sprintf("database %s is not ready: the upstream refuses keygate's admin role; whoever runs keygate must fix its password (admin.password_env) or pg_hba.conf", db)
		case errors.Is(err, postgres.ErrPrivileges):
			// Safe to show: role names and the statements that fix it,
			// for the person to pass on to whoever runs keygate.
			reason = fmt.Sprintf("database %s is not ready: %s", db, err)
		default:
			// The core refuses it as keygate's failure, detail logged.
			return nil, err
		}
		return nil, &gateway.Refusal{Kind: gateway.RefusedUnavailable, Reason: reason, Err: err}
	}
	return newSession(c.h, upConn, up).gs, nil
}

// send writes backend messages to the client.
func (h *handshake) send(msgs ...pgproto3.BackendMessage) error {
	var buf []byte
	var err error
	for _, m := range msgs {
		if buf, err = m.Encode(buf); err != nil {
			return err
		}
	}
	_, err = h.conn.Write(buf)
	return err
}

// refuse audits a refusal and tells the client.
func (h *handshake) refuse(hello gateway.Hello, r *gateway.Refusal) {
	h.srv.Gateway.Refuse(hello, token.Claims{}, r)
	h.sendError(r)
}

// protocolError refuses a client that broke the protocol before
// authenticating; the refusal is audited (sampled per source address).
func (h *handshake) protocolError(err error) error {
	if errors.Is(err, errProtocol) {
		h.refuse(gateway.Hello{Client: h.client}, &gateway.Refusal{Kind: gateway.RefusedProtocol, Reason: "invalid start-up packet: " + strings.TrimPrefix(err.Error(), errProtocol.Error()+": ")})
		return errHandled
	}
	return err
}

// sendError sends a FATAL ErrorResponse for a refusal.
func (h *handshake) sendError(r *gateway.Refusal) {
	h.send(fatal(r))
}

func fatal(r *gateway.Refusal) *pgproto3.ErrorResponse {
	code := map[gateway.RefusalKind]string{
		gateway.RefusedCredentials: "28P01", // invalid_password
		gateway.RefusedAccess:      "28000", // invalid_authorization_specification
		gateway.RefusedUnavailable: "57P03", // cannot_connect_now
		gateway.RefusedProtocol:    "08P01", // protocol_violation
	}[r.Kind]
	return &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: "keygate: " + r.Reason}
}
