package mysqlwire

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/gateway"
	"github.com/keygate/keygate/mysqlproto"
	"github.com/keygate/keygate/token"
	"github.com/keygate/keygate/upstream/mysql"
	"github.com/keygate/keygate/upstream/pool"
)

// TLSRequired is what a client without TLS is told.
const TLSRequired = "TLS is required: connect with TLS that verifies keygate's CA (ca.pem from `keygate ca`): " +
	"mariadb --ssl-ca=ca.pem --ssl-verify-server-cert, mysql --ssl-mode=VERIFY_IDENTITY --ssl-ca=ca.pem, or tls=<a config with the CA> in a driver"

// errHandled marks a start-up that ended the way the protocol wants (a
// refusal already sent and audited).
var errHandled = errors.New("handled")

// maxHandshakePacket bounds what a client may send before it
// authenticates: a handshake response holds names, a token and a few
// connection attributes.
const maxHandshakePacket = 64 << 10

// fallbackVersion is shown when no upstream has answered yet; the
// session's login then fails with the reason.
const fallbackVersion = "5.5.5-10.11.0-MariaDB-keygate"

// greetCaps are the capabilities keygate itself needs to offer: TLS and
// the database in the handshake, which keygate takes and never forwards.
const greetCaps = gomysql.CLIENT_SSL | gomysql.CLIENT_CONNECT_WITH_DB | gomysql.CLIENT_PROTOCOL_41 |
	gomysql.CLIENT_SECURE_CONNECTION | gomysql.CLIENT_PLUGIN_AUTH | gomysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA

type handshake struct {
	srv    *Server
	raw    net.Conn
	conn   net.Conn // raw, or TLS over raw
	br     *bufio.Reader
	r      *mysqlproto.Reader
	client string
	id     uint32
	seq    byte // of the last packet read
	caps   uint32
	resp   *mysqlproto.Response
	auth   string
}

// greeting is what keygate shows of the upstream before authentication:
// the version of the first database's server (the first in name order
// that answers), and the capabilities every answering server has.
func (srv *Server) greeting(ctx context.Context) (version string, caps uint32, charset byte) {
	caps = mysql.Relayed
	for _, name := range srv.names {
		s, err := srv.ups[name].Greeting(ctx)
		if err != nil {
			continue
		}
		if version == "" {
			version, charset = s.Version, s.Charset
		}
		caps &= s.Caps
	}
	if version == "" {
		return fallbackVersion, gomysql.CLIENT_PROTOCOL_41 | gomysql.CLIENT_SECURE_CONNECTION | gomysql.CLIENT_PLUGIN_AUTH, gomysql.DEFAULT_COLLATION_ID
	}
	return version, caps & mysql.Relayed, charset
}

// salt is 20 random printable bytes, as servers send: some clients stop at
// a NUL.
func salt() []byte {
	b := make([]byte, 20)
	rand.Read(b)
	for i := range b {
		b[i] = 0x21 + b[i]%94
	}
	return b
}

func (h *handshake) run(ctx context.Context) (*session, error) {
	h.conn = h.raw
	h.br = bufio.NewReaderSize(h.raw, 512)
	h.r = mysqlproto.NewReader(h.br)
	h.r.Max = maxHandshakePacket
	version, caps, charset := h.srv.greeting(ctx)
	h.caps = caps | greetCaps
	g := &mysqlproto.Greeting{Version: version, ConnID: h.id, Salt: salt(), Caps: h.caps, Charset: charset,
		Status: mysqlproto.StatusAutocommit, AuthName: mysqlproto.CachingSHA2}
	if _, err := mysqlproto.Write(h.raw, 0, g.Encode()); err != nil {
		return nil, err
	}
	resp, err := h.read()
	if err != nil {
		return nil, err
	}
	if !resp.SSLRequest {
		// Whatever it sent is not a token in clear: no method keygate
		// names sends one before TLS.
		h.refuse(gateway.Hello{User: resp.User, Database: resp.Database, Client: h.client},
			&gateway.Refusal{Kind: gateway.RefusedProtocol, Reason: TLSRequired}, erSecureTransportReq, "HY000")
		return nil, errHandled
	}
	if err := h.startTLS(); err != nil {
		return nil, err
	}
	if resp, err = h.read(); err != nil {
		return nil, err
	}
	if resp.SSLRequest {
		return nil, h.protocolError("a second SSLRequest")
	}
	h.resp = resp
	tok, err := h.token(g.Salt)
	if err != nil {
		return nil, err
	}
	return h.admit(ctx, tok)
}

// read reads a handshake response from the client.
func (h *handshake) read() (*mysqlproto.Response, error) {
	p, err := h.readAuth()
	if err != nil {
		return nil, err
	}
	resp, err := mysqlproto.DecodeResponse(p)
	if err != nil {
		return nil, h.protocolError(err.Error())
	}
	return resp, nil
}

// readAuth reads a packet of the connection phase from the client.
func (h *handshake) readAuth() ([]byte, error) {
	_, last, p, err := h.r.Read()
	if err != nil {
		if errors.Is(err, mysqlproto.ErrMalformed) || errors.Is(err, mysqlproto.ErrTooLarge) {
			return nil, h.protocolError(err.Error())
		}
		return nil, err
	}
	h.seq = last
	return p, nil
}

// send sends a packet in the handshake's sequence.
func (h *handshake) send(p []byte) error {
	h.seq++
	last, err := mysqlproto.Write(h.conn, h.seq, p)
	h.seq = last
	return err
}

func (h *handshake) startTLS() error {
	// Session tickets stay on, as on the PostgreSQL gateway: a client
	// that keeps them (Connector/J) resumes its TLS session.
	cfg := h.srv.tls().Clone()
	// The TLS handshake may already be in the reader's buffer.
	tc := tls.Server(&bufferedConn{Conn: h.raw, r: h.br}, cfg)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("tls handshake: %w", err)
	}
	h.conn = tc
	h.r = mysqlproto.NewReader(bufio.NewReaderSize(tc, 4096))
	h.r.Max = maxHandshakePacket
	return nil
}

// token takes the token from the client, inside TLS. A client that names
// mysql_clear_password sent it already; any other is asked for
// caching_sha2_password's full authentication, switching to that method
// first if it named another, and sends it in clear.
func (h *handshake) token(salt []byte) (string, error) {
	resp := h.resp
	switch resp.AuthName {
	case mysqlproto.ClearPassword:
		h.auth = mysqlproto.ClearPassword
		return mysqlproto.Password(resp.Auth), nil
	case mysqlproto.CachingSHA2:
	default:
		if err := h.send(mysqlproto.AuthSwitch(mysqlproto.CachingSHA2, salt)); err != nil {
			return "", err
		}
		p, err := h.readAuth()
		if err != nil {
			return "", err
		}
		resp.Auth = p
	}
	h.auth = mysqlproto.CachingSHA2
	if len(resp.Auth) == 0 || (len(resp.Auth) == 1 && resp.Auth[0] == 0) {
		// No password at all: nothing to ask for.
		return "", nil
	}
	if err := h.send(mysqlproto.FullAuthentication); err != nil {
		return "", err
	}
	p, err := h.readAuth()
	if err != nil {
		return "", err
	}
	return mysqlproto.Password(p), nil
}

// admit has the core admit the client, then tells it.
func (h *handshake) admit(ctx context.Context, tok string) (*session, error) {
	resp := h.resp
	hello := gateway.Hello{User: resp.User, Database: resp.Database, Token: tok, Client: h.client, Params: resp.Attrs}
	if hello.User == "" {
		h.refuse(hello, &gateway.Refusal{Kind: gateway.RefusedProtocol, Reason: "no user name given: connect with -u <your keygate user name>"}, 0, "")
		return nil, errHandled
	}
	var s *session
	gs, err := h.srv.gw.Admit(ctx, hello, connector{h: h, made: &s})
	if err != nil {
		var r *gateway.Refusal
		errors.As(err, &r)
		h.send(refusalErr(r).Encode())
		return nil, errHandled
	}
	if err := h.send(mysqlproto.EncodeOK(mysqlproto.StatusAutocommit)); err != nil {
		h.srv.gw.Unregister(gs, "client went away during start-up", s.endBackend())
		return nil, err
	}
	return s, nil
}

// connector logs in upstream for a client the core admits.
type connector struct {
	h    *handshake
	made **session
}

// Connect implements gateway.Connector.
func (c connector) Connect(ctx context.Context, db string, d access.Decision, claims token.Claims) (*gateway.Session, error) {
	up, ok := c.h.srv.ups[db]
	if !ok {
		return nil, gateway.ErrUnknownDatabase
	}
	h := c.h
	// The client's flags, less those keygate did not offer.
	caps := h.resp.Caps & h.caps & mysql.Relayed
	uc, err := up.Acquire(ctx, d.User, claims.Access, mysql.Login{Caps: caps, Charset: h.resp.Charset, Attrs: h.resp.Attrs})
	if err != nil {
		var reason string
		var budget *pool.BudgetError
		switch {
		case errors.As(err, &budget):
			reason = fmt.Sprintf("database %s: %s", db, budget)
		case errors.Is(err, mysql.ErrUnavailable):
			reason = fmt.Sprintf("database %s is unavailable right now", db)
		case errors.Is(err, mysql.ErrAdminLogin):
			reason = fmt.Sprintf("database %s is not ready: the upstream refuses keygate's admin user; whoever runs keygate must fix its password (admin.password_env) or its host", db)
		case errors.Is(err, mysql.ErrPrivileges), errors.Is(err, mysql.ErrEngine), errors.Is(err, mysql.ErrCapabilities):
			reason = fmt.Sprintf("database %s is not ready: %s", db, err)
		default:
			return nil, err
		}
		return nil, &gateway.Refusal{Kind: gateway.RefusedUnavailable, Reason: reason, Err: err}
	}
	s := newSession(h, up, uc, db, claims.Access)
	*c.made = s
	return s.gs, nil
}

// refuse audits a refusal and tells the client, with code and state when
// given, else those of the refusal's kind.
func (h *handshake) refuse(hello gateway.Hello, r *gateway.Refusal, code uint16, state string) {
	h.srv.gw.Refuse(hello, token.Claims{}, r)
	e := refusalErr(r)
	if code != 0 {
		e.Code, e.SQLState = code, state
	}
	h.send(e.Encode())
}

// protocolError refuses a client that broke the protocol before
// authenticating; the refusal is audited (sampled per source address).
func (h *handshake) protocolError(what string) error {
	h.refuse(gateway.Hello{Client: h.client}, &gateway.Refusal{Kind: gateway.RefusedProtocol, Reason: "invalid handshake: " + what}, 0, "")
	return errHandled
}

// bufferedConn reads what a bufio.Reader already holds before the
// connection.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
