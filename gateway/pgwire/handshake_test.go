package pgwire

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/audit/audittest"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/gateway"
	"github.com/keygate/keygate/pki"
	"github.com/keygate/keygate/token"
	"github.com/keygate/keygate/upstream/postgres"
)

// authorizer is an Authorizer that answers every request the same way,
// allowing under grant when allow is set.
type authorizer struct {
	allow  bool
	reason string
	grant  access.Grant
}

func (a authorizer) Authorize(_ context.Context, r authz.Request) (access.Decision, error) {
	d := access.Decision{Allowed: a.allow, User: r.User, Database: r.Database, Level: r.Level, Reason: a.reason}
	if a.allow {
		d.Grant = a.grant
	}
	return d, nil
}

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// pkiFixture is the TLS side of a test gateway, created once: making a CA
// is the slow part.
type pkiFixture struct {
	tls    *tls.Config
	pool   *x509.CertPool
	keys   *token.KeySet
	issuer *token.Issuer
}

func newPKI(t testing.TB) *pkiFixture {
	t.Helper()
	ca, err := pki.Open(t.TempDir(), []string{"localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	keys := token.NewMemoryKeys()
	return &pkiFixture{tls: ca.ServerTLS(), pool: ca.CAPool(), keys: keys, issuer: &token.Issuer{Keys: keys, Now: time.Now}}
}

// mint makes a valid token for user on database orders.
func (p *pkiFixture) mint(t testing.TB, user string) string {
	t.Helper()
	tok, _, err := p.issuer.Mint(token.Claims{User: user, Database: "orders", Access: access.ReadOnly, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// gatewayFixture is one pgwire Server over a real gateway core, with no
// upstreams at all.
type gatewayFixture struct {
	*pkiFixture
	srv   *Server
	audit *audittest.Recorder
	logs  *lockedBuffer
}

func newGateway(t testing.TB, p *pkiFixture, az gateway.Authorizer, logs io.Writer) *gatewayFixture {
	t.Helper()
	rec := &audittest.Recorder{}
	buf := &lockedBuffer{}
	if logs == nil {
		logs = buf
	}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	gw := gateway.New(&token.Verifier{Keys: p.keys, Now: time.Now}, az, rec, log, nil)
	gw.HandshakeTimeout = 2 * time.Second
	srv := &Server{
		Gateway:   gw,
		TLS:       func() *tls.Config { return p.tls },
		Upstreams: map[string]Upstream{},
	}
	return &gatewayFixture{pkiFixture: p, srv: srv, audit: rec, logs: buf}
}

// serve runs the server side of one connection over net.Pipe and returns
// the client side and a channel closed when Serve returns.
func (g *gatewayFixture) serve(t testing.TB) (net.Conn, <-chan struct{}) {
	t.Helper()
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.srv.Gateway.ServeConn(context.Background(), server, g.srv)
	}()
	client.SetDeadline(time.Now().Add(5 * time.Second))
	t.Cleanup(func() {
		client.Close()
		waitServe(t, done, 5*time.Second)
	})
	return client, done
}

func waitServe(t testing.TB, done <-chan struct{}, d time.Duration) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("Serve did not return within %s", d)
	}
}

// startTLS negotiates TLS the way libpq does: SSLRequest, 'S', handshake.
func (g *gatewayFixture) startTLS(t testing.TB, c net.Conn) *tls.Conn {
	t.Helper()
	if _, err := c.Write(encodeSSL(t)); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatalf("reading the answer to SSLRequest: %v", err)
	}
	if b[0] != 'S' {
		t.Fatalf("answer to SSLRequest = %q, want 'S'", b[0])
	}
	tc := tls.Client(c, &tls.Config{RootCAs: g.pool, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	return tc
}

// backend reads what the server sends, message by message.
type backend struct {
	t  testing.TB
	fe *pgproto3.Frontend
}

func newBackend(t testing.TB, c net.Conn) *backend {
	return &backend{t: t, fe: pgproto3.NewFrontend(c, c)}
}

func (b *backend) send(msgs ...pgproto3.FrontendMessage) {
	b.t.Helper()
	for _, m := range msgs {
		b.fe.Send(m)
	}
	if err := b.fe.Flush(); err != nil {
		b.t.Fatalf("send: %v", err)
	}
}

// next returns the next message; pgproto3 reuses messages, so use it
// before calling next again.
func (b *backend) next() pgproto3.BackendMessage {
	b.t.Helper()
	m, err := b.fe.Receive()
	if err != nil {
		b.t.Fatalf("receive: %v", err)
	}
	return m
}

// fatal reads the next message, which must be a FATAL error with code, and
// then the end of the connection.
func (b *backend) fatal(code, contains string) *pgconn.PgError {
	b.t.Helper()
	m := b.next()
	e, ok := m.(*pgproto3.ErrorResponse)
	if !ok {
		b.t.Fatalf("got %T %+v, want an ErrorResponse", m, m)
	}
	pgErr := pgconn.ErrorResponseToPgError(e)
	if pgErr.Severity != "FATAL" || pgErr.Code != code || !strings.Contains(pgErr.Message, contains) {
		b.t.Fatalf("error = %s %s %q, want FATAL %s containing %q", pgErr.Severity, pgErr.Code, pgErr.Message, code, contains)
	}
	b.closed()
	return pgErr
}

// closed checks that the server sends nothing more and hangs up.
func (b *backend) closed() {
	b.t.Helper()
	if m, err := b.fe.Receive(); err == nil {
		b.t.Fatalf("got %T %+v, want the connection closed", m, m)
	}
}

func startup(params map[string]string) *pgproto3.StartupMessage {
	return &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: params}
}

func TestPlaintextStartupIsRefused(t *testing.T) {
	g := newGateway(t, newPKI(t), authorizer{allow: true}, nil)
	c, done := g.serve(t)
	be := newBackend(t, c)
	be.send(startup(map[string]string{"user": "alice", "database": "orders"}))
	// The first answer is the refusal: a password is never asked for in
	// plaintext.
	e := be.fatal("08P01", "keygate: TLS is required")
	if e.Message != "keygate: "+TLSRequired {
		t.Errorf("message = %q", e.Message)
	}
	waitServe(t, done, 5*time.Second)
	refused := g.audit.OfType(audit.ConnectRefused)
	if len(refused) != 1 || refused[0].Reason != TLSRequired || refused[0].User != "alice" || refused[0].Database != "orders" {
		t.Errorf("audit = %+v, want one connect.refused for alice on orders", g.audit.All())
	}
}

func TestGSSENCRequestIsDeclined(t *testing.T) {
	g := newGateway(t, newPKI(t), authorizer{allow: true}, nil)
	c, _ := g.serve(t)
	if _, err := c.Write(encode(t, &pgproto3.GSSEncRequest{})); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'N' {
		t.Fatalf("answer to GSSENCRequest = %q, %v, want 'N'", b[0], err)
	}
	// libpq then tries TLS, which must still work.
	tc := g.startTLS(t, c)
	be := newBackend(t, tc)
	be.send(startup(map[string]string{"user": "alice", "database": "orders"}))
	if m := be.next(); !isType[*pgproto3.AuthenticationCleartextPassword](m) {
		t.Fatalf("got %T, want AuthenticationCleartextPassword", m)
	}
}

func TestGSSENCThenPlaintextStartupIsRefused(t *testing.T) {
	g := newGateway(t, newPKI(t), authorizer{allow: true}, nil)
	c, _ := g.serve(t)
	if _, err := c.Write(encode(t, &pgproto3.GSSEncRequest{})); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'N' {
		t.Fatalf("answer to GSSENCRequest = %q, %v, want 'N'", b[0], err)
	}
	be := newBackend(t, c)
	be.send(startup(map[string]string{"user": "alice"}))
	be.fatal("08P01", "keygate: TLS is required")
}

func isType[T any](m any) bool {
	_, ok := m.(T)
	return ok
}

func TestDataAfterSSLRequestIsRejected(t *testing.T) {
	p := newPKI(t)
	for name, after := range map[string][]byte{
		"startup message":  encode(t, startup(map[string]string{"user": "alice", "database": "orders"})),
		"tls client hello": {0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00},
		"one byte":         {0},
	} {
		t.Run(name, func(t *testing.T) {
			g := newGateway(t, p, authorizer{allow: true}, nil)
			c, done := g.serve(t)
			// One write: the server sees the extra bytes together with
			// the SSLRequest, before any TLS.
			if _, err := c.Write(append(encodeSSL(t), after...)); err != nil {
				t.Fatal(err)
			}
			first := make([]byte, 1)
			if _, err := io.ReadFull(c, first); err != nil {
				t.Fatal(err)
			}
			if first[0] == 'S' {
				t.Fatal("the server agreed to TLS with plaintext data queued behind the SSLRequest")
			}
			be := newBackend(t, &prefixed{Conn: c, r: io.MultiReader(bytes.NewReader(first), c)})
			be.fatal("08P01", "invalid start-up packet")
			waitServe(t, done, 5*time.Second)
		})
	}
}

// prefixed reads from r before the connection.
type prefixed struct {
	net.Conn
	r io.Reader
}

func (p *prefixed) Read(b []byte) (int, error) { return p.r.Read(b) }

func TestPlaintextCancelRequest(t *testing.T) {
	g := newGateway(t, newPKI(t), authorizer{allow: true}, nil)
	c, done := g.serve(t)
	if _, err := c.Write(encode(t, &pgproto3.CancelRequest{ProcessID: 1234, SecretKey: []byte{1, 2, 3, 4}})); err != nil {
		t.Fatal(err)
	}
	// The server answers nothing and hangs up, as PostgreSQL does.
	n, err := io.Copy(io.Discard, c)
	if n != 0 {
		t.Errorf("the server sent %d bytes in answer to a cancel request", n)
	}
	if err != nil && !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("reading after a cancel request: %v", err)
	}
	waitServe(t, done, 5*time.Second)
	if ev := g.audit.All(); len(ev) != 0 {
		t.Errorf("an unmatched cancel request was audited: %+v", ev)
	}
}

func TestOnlyOneCancelOrStartupInPlaintext(t *testing.T) {
	g := newGateway(t, newPKI(t), authorizer{allow: true}, nil)
	c, done := g.serve(t)
	// After a cancel request the connection is done; a startup message
	// behind it in the same write is never read.
	msg := append(encode(t, &pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}}),
		encode(t, startup(map[string]string{"user": "alice"}))...)
	go c.Write(msg)
	n, _ := io.Copy(io.Discard, c)
	if n != 0 {
		t.Errorf("the server sent %d bytes", n)
	}
	waitServe(t, done, 5*time.Second)
}

func TestStartupLengthBounds(t *testing.T) {
	g := newGateway(t, newPKI(t), authorizer{allow: true}, nil)
	c, done := g.serve(t)
	// A length beyond PostgreSQL's maximum is refused at once, without
	// reading (or waiting for) the body.
	if _, err := c.Write([]byte{0, 0, 0x27, 0x11, 0, 3, 0, 0}); err != nil {
		t.Fatal(err)
	}
	newBackend(t, c).fatal("08P01", "invalid start-up packet")
	waitServe(t, done, 5*time.Second)
}

func TestHandshakeTimeout(t *testing.T) {
	g := newGateway(t, newPKI(t), authorizer{allow: true}, nil)
	g.srv.Gateway.HandshakeTimeout = 100 * time.Millisecond
	c, done := g.serve(t)
	// Half a startup packet, then silence.
	if _, err := c.Write([]byte{0, 0, 0, 40, 0, 3}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitServe(t, done, 5*time.Second)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Serve took %s with a 100ms handshake timeout", d)
	}
}

func TestDirectTLS(t *testing.T) {
	p := newPKI(t)
	t.Run("with ALPN", func(t *testing.T) {
		g := newGateway(t, p, authorizer{allow: true}, nil)
		c, _ := g.serve(t)
		tc := tls.Client(c, &tls.Config{RootCAs: p.pool, ServerName: "localhost", NextProtos: []string{"postgresql"}})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		be := newBackend(t, tc)
		be.send(startup(map[string]string{"user": "alice", "database": "orders"}))
		if m := be.next(); !isType[*pgproto3.AuthenticationCleartextPassword](m) {
			t.Fatalf("got %T, want AuthenticationCleartextPassword", m)
		}
	})
	t.Run("without ALPN", func(t *testing.T) {
		g := newGateway(t, p, authorizer{allow: true}, nil)
		c, done := g.serve(t)
		tc := tls.Client(c, &tls.Config{RootCAs: p.pool, ServerName: "localhost"})
		// The handshake may complete from the client's point of view;
		// the server must not go on to start-up either way.
		if err := tc.Handshake(); err == nil {
			be := newBackend(t, tc)
			be.fe.Send(startup(map[string]string{"user": "alice", "database": "orders"}))
			be.fe.Flush()
			if m, err := be.fe.Receive(); err == nil {
				t.Fatalf("direct TLS without ALPN got %T", m)
			}
		}
		waitServe(t, done, 5*time.Second)
	})
}

func TestRepeatedSSLRequestInsideTLS(t *testing.T) {
	g := newGateway(t, newPKI(t), authorizer{allow: true}, nil)
	c, _ := g.serve(t)
	tc := g.startTLS(t, c)
	if _, err := tc.Write(encodeSSL(t)); err != nil {
		t.Fatal(err)
	}
	newBackend(t, tc).fatal("08P01", "invalid start-up packet")
}

// login runs start-up over TLS up to the password and returns the backend.
func (g *gatewayFixture) login(t *testing.T, msg *pgproto3.StartupMessage) *backend {
	t.Helper()
	c, _ := g.serve(t)
	be := newBackend(t, g.startTLS(t, c))
	be.send(msg)
	return be
}

func TestStartupOverTLS(t *testing.T) {
	p := newPKI(t)

	t.Run("protocol 3.2 is offered 3.0", func(t *testing.T) {
		g := newGateway(t, p, authorizer{allow: true}, nil)
		be := g.login(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion32,
			Parameters: map[string]string{"user": "alice", "database": "orders", "_pq_.b": "1", "_pq_.a": "2"}})
		m := be.next()
		nego, ok := m.(*pgproto3.NegotiateProtocolVersion)
		if !ok {
			t.Fatalf("got %T, want NegotiateProtocolVersion", m)
		}
		if nego.NewestMinorProtocol != 0 || !slices.Equal(nego.UnrecognizedOptions, []string{"_pq_.a", "_pq_.b"}) {
			t.Errorf("NegotiateProtocolVersion = %+v", nego)
		}
		if m := be.next(); !isType[*pgproto3.AuthenticationCleartextPassword](m) {
			t.Fatalf("got %T, want AuthenticationCleartextPassword", m)
		}
	})

	t.Run("no user", func(t *testing.T) {
		g := newGateway(t, p, authorizer{allow: true}, nil)
		be := g.login(t, startup(map[string]string{"database": "orders"}))
		be.fatal("08P01", "no user name given")
	})

	t.Run("replication", func(t *testing.T) {
		for _, v := range []string{"database", "true", "on", "1", "yes", "DATABASE"} {
			g := newGateway(t, p, authorizer{allow: true}, nil)
			be := g.login(t, startup(map[string]string{"user": "alice", "database": "orders", "replication": v}))
			be.fatal("08P01", "does not relay replication connections")
		}
	})

	t.Run("malformed password message", func(t *testing.T) {
		g := newGateway(t, p, authorizer{allow: true}, nil)
		be := g.login(t, startup(map[string]string{"user": "alice", "database": "orders"}))
		if m := be.next(); !isType[*pgproto3.AuthenticationCleartextPassword](m) {
			t.Fatalf("got %T, want AuthenticationCleartextPassword", m)
		}
		be.send(&pgproto3.Query{String: "SELECT 1"})
		be.fatal("08P01", "invalid start-up packet")
	})

	t.Run("not a token", func(t *testing.T) {
		g := newGateway(t, p, authorizer{allow: true}, nil)
		be := g.login(t, startup(map[string]string{"user": "alice", "database": "orders"}))
		be.next()
		be.send(&pgproto3.PasswordMessage{Password: "hunter2"})
		be.fatal("28P01", "the password is not a keygate token")
		g.noSecret(t, "hunter2")
	})

	t.Run("token signed by another key", func(t *testing.T) {
		g := newGateway(t, p, authorizer{allow: true}, nil)
		other := newPKI(t).mint(t, "alice")
		be := g.login(t, startup(map[string]string{"user": "alice", "database": "orders"}))
		be.next()
		be.send(&pgproto3.PasswordMessage{Password: other})
		be.fatal("28P01", "token")
		g.noSecret(t, other)
	})

	t.Run("token of another person", func(t *testing.T) {
		g := newGateway(t, p, authorizer{allow: true}, nil)
		tok := p.mint(t, "bob")
		be := g.login(t, startup(map[string]string{"user": "alice", "database": "orders"}))
		be.next()
		be.send(&pgproto3.PasswordMessage{Password: tok})
		be.fatal("28P01", "the token was issued to bob, not alice")
		g.noSecret(t, tok)
		g.noSessions(t)
	})

	t.Run("token given as user name", func(t *testing.T) {
		g := newGateway(t, p, authorizer{allow: true}, nil)
		tok := p.mint(t, "alice")
		be := g.login(t, startup(map[string]string{"user": tok, "database": "orders"}))
		be.next()
		be.send(&pgproto3.PasswordMessage{Password: tok})
		be.fatal("28P01", "token")
		g.noSecret(t, tok)
		g.noSessions(t)
	})

	t.Run("access denied", func(t *testing.T) {
		g := newGateway(t, p, authorizer{allow: false, reason: "alice is in no group with access to orders"}, nil)
		tok := p.mint(t, "alice")
		be := g.login(t, startup(map[string]string{"user": "alice", "database": "orders"}))
		be.next()
		be.send(&pgproto3.PasswordMessage{Password: tok})
		be.fatal("28000", "access denied: alice is in no group with access to orders")
		g.noSecret(t, tok)
		g.noSessions(t)
	})

	t.Run("database not configured", func(t *testing.T) {
		g := newGateway(t, p, authorizer{allow: true}, nil)
		tok := p.mint(t, "alice")
		be := g.login(t, startup(map[string]string{"user": "alice", "database": "orders"}))
		be.next()
		be.send(&pgproto3.PasswordMessage{Password: tok})
		be.fatal("28000", "database orders is not configured in keygate")
		g.noSecret(t, tok)
		g.noSessions(t)
	})
}

// noSecret checks that secret appears in no audit event and no log line.
func (g *gatewayFixture) noSecret(t *testing.T, secret string) {
	t.Helper()
	for _, e := range g.audit.All() {
		if strings.Contains(e.User+e.Database+e.Reason+e.Query+e.Client+e.Actor, secret) {
			t.Errorf("audit event %+v contains the secret", e)
		}
		for k, v := range e.Detail {
			if s, ok := v.(string); ok && strings.Contains(s, secret) {
				t.Errorf("audit event detail %s contains the secret", k)
			}
		}
	}
	if strings.Contains(g.logs.String(), secret) {
		t.Errorf("the log contains the secret:\n%s", g.logs.String())
	}
}

// noSessions checks that no session was started: nothing reached an
// upstream.
func (g *gatewayFixture) noSessions(t testing.TB) {
	t.Helper()
	if ev := g.audit.OfType(audit.SessionStart); len(ev) != 0 {
		t.Errorf("sessions started: %+v", ev)
	}
	if s := g.srv.Gateway.Sessions(); len(s) != 0 {
		t.Errorf("%d live sessions", len(s))
	}
}

// fakeUpstream stands in for an upstream database: Connect hands out one
// end of a pipe, Cancel records what it was asked to cancel.
type fakeUpstream struct {
	mu      sync.Mutex
	cancels []string
	params  map[string]string
}

// The upstream's own cancel key, which the client must never see or use.
const (
	upstreamPID    = 999
	upstreamSecret = "\x00\x00\x27\x0f"
)

func (f *fakeUpstream) Acquire(_ context.Context, person string, level access.Level, params map[string]string) (*postgres.Conn, error) {
	f.mu.Lock()
	f.params = maps.Clone(params)
	f.mu.Unlock()
	c, s := net.Pipe()
	go func() {
		io.Copy(io.Discard, s)
		s.Close()
	}()
	return &postgres.Conn{Conn: c, Role: postgres.RoleName(person, level), PID: upstreamPID, SecretKey: []byte(upstreamSecret),
		Params: map[string]string{"server_version": "15.0", "client_encoding": "UTF8"}, TxStatus: 'I'}, nil
}

// Terminate stands in for ending the backend: the pipe's far end closes.
func (f *fakeUpstream) Terminate(_ context.Context, c *postgres.Conn) (time.Time, error) {
	c.Close()
	return time.Now(), nil
}

func (f *fakeUpstream) Release(c *postgres.Conn, _ bool) bool { c.Close(); return false }

func (f *fakeUpstream) Pooling() bool { return false }

func (f *fakeUpstream) Cancel(_ context.Context, c *postgres.Conn) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancels = append(f.cancels, fmt.Sprintf("%d/%x", c.PID, c.SecretKey))
	return nil
}

func (f *fakeUpstream) cancelled() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cancels)
}

func TestCancelMatchesKeygatesKeyOnly(t *testing.T) {
	p := newPKI(t)
	g := newGateway(t, p, authorizer{allow: true}, nil)
	up := &fakeUpstream{}
	g.srv.Upstreams = map[string]Upstream{"orders": up}

	be := g.login(t, startup(map[string]string{"user": "alice", "database": "orders", "application_name": "psql"}))
	if m := be.next(); !isType[*pgproto3.AuthenticationCleartextPassword](m) {
		t.Fatalf("got %T, want AuthenticationCleartextPassword", m)
	}
	be.send(&pgproto3.PasswordMessage{Password: p.mint(t, "alice")})
	var pid uint32
	var secret []byte
	for pid == 0 {
		switch m := be.next().(type) {
		case *pgproto3.ErrorResponse:
			t.Fatalf("login refused: %s", m.Message)
		case *pgproto3.BackendKeyData:
			pid, secret = m.ProcessID, slices.Clone(m.SecretKey)
		}
	}
	if m := be.next(); !isType[*pgproto3.ReadyForQuery](m) {
		t.Fatalf("got %T, want ReadyForQuery", m)
	}
	if pid == upstreamPID || string(secret) == upstreamSecret || len(secret) != 4 {
		t.Fatalf("the client got cancel key %d/%x; the upstream's is %d/%x", pid, secret, upstreamPID, upstreamSecret)
	}
	if up.params["application_name"] != "psql" {
		t.Errorf("upstream got params %v", up.params)
	}
	if ev := g.audit.OfType(audit.SessionStart); len(ev) != 1 {
		t.Fatalf("session.start events: %+v", ev)
	}

	cancel := func(pid uint32, secret []byte) {
		t.Helper()
		c, done := g.serve(t)
		if _, err := c.Write(encode(t, &pgproto3.CancelRequest{ProcessID: pid, SecretKey: secret})); err != nil {
			t.Fatal(err)
		}
		// Gateway.Cancel runs inside Serve: once Serve returns, the
		// request has been acted on or ignored.
		waitServe(t, done, 5*time.Second)
	}
	flipped := slices.Clone(secret)
	flipped[3] ^= 1
	cancel(upstreamPID, []byte(upstreamSecret))  // the upstream's key
	cancel(pid, flipped)                         // a wrong secret
	cancel(pid, append(slices.Clone(secret), 0)) // a 3.2-length key with the right prefix
	cancel(pid+1, secret)                        // the right secret on another pid
	if got := up.cancelled(); len(got) != 0 {
		t.Fatalf("wrong cancel keys reached the upstream: %v", got)
	}
	cancel(pid, secret)
	want := fmt.Sprintf("%d/%x", upstreamPID, upstreamSecret)
	if got := up.cancelled(); !slices.Equal(got, []string{want}) {
		t.Fatalf("upstream cancels = %v, want [%s]", got, want)
	}
	if ev := g.audit.OfType(audit.QueryCancel); len(ev) != 1 || ev[0].User != "alice" {
		t.Errorf("query.cancel events: %+v", ev)
	}
}

// Connections still starting up are bounded: past the limit a new one is
// told to try again, and a slot frees when a start-up ends.
func TestHandshakeLimit(t *testing.T) {
	g := newGateway(t, newPKI(t), authorizer{allow: true}, nil)
	g.srv.Gateway.MaxHandshakes = 1
	first, firstDone := g.serve(t) // says nothing: holds its slot
	for g.srv.Gateway.Handshakes() != 1 {
		time.Sleep(time.Millisecond)
	}
	second, _ := g.serve(t)
	newBackend(t, second).fatal("57P03", "too many connections are starting at once")
	first.Close()
	waitServe(t, firstDone, 5*time.Second)
	third, _ := g.serve(t)
	be := newBackend(t, third)
	be.send(startup(map[string]string{"user": "alice", "database": "orders"}))
	be.fatal("08P01", "keygate: TLS is required")
}
