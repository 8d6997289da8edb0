// Package mysqlwire is keygate's MySQL and MariaDB front end. It speaks the
// server side of the connection phase itself — TLS only, the token as the
// password, taken through caching_sha2_password's full authentication or
// mysql_clear_password, both inside TLS — then logs in upstream as the
// person's user and relays the command phase packet by packet, auditing
// every statement.
//
// keygate does its own connection phase rather than go-mysql's server: that
// one hands the handshake's database to its handler before authentication,
// lets a client continue without TLS, and answers caching_sha2_password
// from a cache of password hashes. keygate needs none of that: a token is
// checked, with its expiry and the person's entitlement, on every
// connection.
//
// Client and upstream agree on the same capabilities (keygate greets with
// the upstream's, less those it does not relay), so that their packets pass
// unchanged and keygate reads only what it audits.
package mysqlwire

import (
	"context"
	"crypto/tls"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/gateway"
	"github.com/keygate/keygate/mysqlproto"
	"github.com/keygate/keygate/upstream/mysql"
)

// EngineName is the name the MySQL engine goes by: config's engine: mysql,
// for MySQL and MariaDB alike, and the scope of its connection ids.
const EngineName = "mysql"

func init() { gateway.RegisterEngine(EngineName, newServer) }

// Upstream is what the engine needs of one upstream database: connections
// leased per session, so that a pool can stand behind it.
type Upstream interface {
	// Greeting says what the upstream server says of itself.
	Greeting(ctx context.Context) (mysql.Server, error)
	// Acquire leases a connection logged in as person's user at level,
	// its session started (role, schema).
	Acquire(ctx context.Context, person string, level access.Level, l mysql.Login) (*mysql.Conn, error)
	// Cancel ends the statement running on c.
	Cancel(ctx context.Context, c *mysql.Conn) error
	// Terminate ends c upstream and returns when it is gone.
	Terminate(ctx context.Context, c *mysql.Conn) (time.Time, error)
	// Release hands c back once its session is over. With reuse (the
	// session ended between commands, outside a transaction), it keeps c
	// for the person's next session if it can, reporting true; if not, c
	// stays the caller's to end and release. Without reuse, it quits and
	// closes c.
	Release(c *mysql.Conn, reuse bool) bool
	// Pooling reports whether Release may keep a connection at all.
	Pooling() bool
	// SessionStart is what a session at level runs after login, and
	// again after COM_RESET_CONNECTION.
	SessionStart(level access.Level) []string
	// Schemas are the upstream schemas of the database; the first is
	// where sessions start.
	Schemas() []string
	// LocalInfile reports whether LOAD DATA LOCAL INFILE is allowed to
	// sessions that write.
	LocalInfile() bool
}

// newServer makes the engine from the options every engine gets.
func newServer(o gateway.EngineOptions) (gateway.Engine, error) {
	ups, err := gateway.UpstreamsOf[Upstream](o, "MySQL")
	if err != nil {
		return nil, err
	}
	return New(o.Gateway, o.TLS, ups, o.MaxStatement, o.TruncateOversized), nil
}

// New makes the MySQL engine.
func New(g *gateway.Gateway, tlsConfig func() *tls.Config, ups map[string]Upstream, maxStatement int, truncate bool) *Server {
	if maxStatement <= 0 {
		maxStatement = DefaultMaxStatement
	}
	names := make([]string, 0, len(ups))
	for name := range ups {
		names = append(names, name)
	}
	slices.Sort(names)
	srv := &Server{gw: g, tls: tlsConfig, ups: ups, names: names, maxStatement: maxStatement, truncate: truncate}
	// Connection ids start anywhere, so that one keygate's ids say
	// nothing of how many connections it served.
	srv.nextID.Store(uint32(time.Now().UnixNano()) & 0x3fffffff)
	return srv
}

// DefaultMaxStatement is the longest statement the audit keeps whole when
// the config does not say.
const DefaultMaxStatement = 1 << 20

// Server is the MySQL engine.
type Server struct {
	gw           *gateway.Gateway
	tls          func() *tls.Config
	ups          map[string]Upstream
	names        []string // of ups, sorted
	maxStatement int
	truncate     bool
	nextID       atomic.Uint32
}

var _ gateway.Engine = (*Server)(nil)

// connID hands out the id a connection's greeting shows; it becomes the
// session's cancel id, which KILL QUERY names.
func (srv *Server) connID() uint32 {
	for {
		if id := srv.nextID.Add(1) & 0x7fffffff; id != 0 {
			return id
		}
	}
}

// Serve implements gateway.Engine.
func (srv *Server) Serve(ctx context.Context, conn net.Conn, admitted func()) {
	h := &handshake{srv: srv, raw: conn, client: conn.RemoteAddr().String(), id: srv.connID()}
	s, err := h.run(ctx)
	if err != nil {
		if err != errHandled {
			srv.gw.Logger().Debug("connection closed during start-up", "client", h.client, "err", err)
		}
		return
	}
	admitted()
	s.relay(ctx)
}

// Reject implements gateway.Engine: an ERR packet in place of the
// greeting, as MySQL sends when it has too many connections.
func (srv *Server) Reject(conn net.Conn, r *gateway.Refusal) {
	mysqlproto.Write(conn, 0, refusalErr(r).Encode())
}

// MySQL error codes keygate answers with.
const (
	erConCount           = 1040 // ER_CON_COUNT_ERROR
	erHandshake          = 1043 // ER_HANDSHAKE_ERROR
	erDBAccessDenied     = 1044 // ER_DBACCESS_DENIED_ERROR
	erAccessDenied       = 1045 // ER_ACCESS_DENIED_ERROR
	erUnknownCom         = 1047 // ER_UNKNOWN_COM_ERROR
	erNoSuchThread       = 1094 // ER_NO_SUCH_THREAD
	erNotAllowedCommand  = 1148 // ER_NOT_ALLOWED_COMMAND
	erNetPacketTooLarge  = 1153 // ER_NET_PACKET_TOO_LARGE
	erSpecificAccess     = 1227 // ER_SPECIFIC_ACCESS_DENIED_ERROR
	erConnectionKilled   = 1927 // ER_CONNECTION_KILLED (MariaDB)
	erSecureTransportReq = 3159 // ER_SECURE_TRANSPORT_REQUIRED
)

// refusalErr is the ERR packet that tells a client why it was refused.
func refusalErr(r *gateway.Refusal) *mysqlproto.Err {
	e := &mysqlproto.Err{Message: "keygate: " + r.Reason}
	switch r.Kind {
	case gateway.RefusedCredentials:
		e.Code, e.SQLState = erAccessDenied, "28000"
	case gateway.RefusedAccess:
		e.Code, e.SQLState = erDBAccessDenied, "42000"
	case gateway.RefusedUnavailable:
		e.Code, e.SQLState = erConCount, "08004"
	default:
		e.Code, e.SQLState = erHandshake, "08S01"
	}
	return e
}
