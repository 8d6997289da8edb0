package mysql

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/mysqlproto"
	"github.com/keygate/keygate/upstream/pool"
)

// Relayed are the capabilities a client and the upstream may agree on
// through the gateway, which relays their packets unchanged: both sides
// must read them alike. Left out: compression, query attributes and
// optional result set metadata (they change packets the gateway reads),
// and flags that only concern one side (TLS, the database in the
// handshake, client-side options).
const Relayed = gomysql.CLIENT_LONG_PASSWORD | gomysql.CLIENT_FOUND_ROWS | gomysql.CLIENT_LONG_FLAG |
	gomysql.CLIENT_LOCAL_FILES | gomysql.CLIENT_IGNORE_SPACE | gomysql.CLIENT_PROTOCOL_41 | gomysql.CLIENT_INTERACTIVE |
	gomysql.CLIENT_IGNORE_SIGPIPE | gomysql.CLIENT_TRANSACTIONS | gomysql.CLIENT_SECURE_CONNECTION |
	gomysql.CLIENT_MULTI_STATEMENTS | gomysql.CLIENT_MULTI_RESULTS | gomysql.CLIENT_PS_MULTI_RESULTS |
	gomysql.CLIENT_PLUGIN_AUTH | gomysql.CLIENT_CONNECT_ATTRS | gomysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA |
	gomysql.CLIENT_SESSION_TRACK | gomysql.CLIENT_DEPRECATE_EOF

// ErrCapabilities means the upstream server no longer offers what the
// client was promised (it was upgraded or replaced since keygate read its
// greeting).
var ErrCapabilities = errors.New("the upstream server's capabilities changed")

// Server is what the upstream server's greeting says of it.
type Server struct {
	// Version is the server's version as its handshake shows it,
	// MariaDB's "5.5.5-" prefix included.
	Version string
	Caps    uint32
	Charset byte
}

// Conn is a person's connection to the upstream server. The gateway
// relays the client's packets over it unchanged.
type Conn struct {
	net.Conn
	// R reads the server's packets; each is valid until the next read.
	R *mysqlproto.Reader
	// ThreadID is the server's connection id (CONNECTION_ID()).
	ThreadID uint32
	// Caps are the capabilities the connection agreed on.
	Caps uint32
	// User is the upstream user it is logged in as.
	User string
	// Started is when the upstream accepted it.
	Started time.Time
	// Status is the server status flags of the last OK keygate read on
	// it (whether a transaction is open).
	Status uint16
	// Reused says the connection served an earlier session of the same
	// person, level and handshake, and was reset since.
	Reused bool

	// lease is the connection's slot in the database's budget; release
	// ends it, or hands it to the pool, once.
	lease     *pool.Lease
	release   sync.Once
	closeOnce sync.Once
}

// Login is what the client asked for, repeated upstream.
type Login struct {
	Caps    uint32
	Charset byte
	// Attrs are connection attributes for the upstream's
	// performance_schema; keygate adds its own.
	Attrs map[string]string
}

// dialTimeout bounds reaching the upstream and its handshake.
const dialTimeout = 10 * time.Second

// Greeting returns what the upstream server says of itself, from the last
// connection keygate opened to it or, before any, from a new connection
// that only reads the greeting.
func (u *Upstream) Greeting(ctx context.Context) (Server, error) {
	if s := u.greeting.Load(); s != nil {
		return *s, nil
	}
	// Every client's greeting waits for this: after a failure, say so at
	// once for a while rather than dial again for each.
	if failed := u.greetFailed.Load(); failed != 0 && time.Since(time.Unix(0, failed)) < greetRetry {
		return Server{}, fmt.Errorf("upstream %s: %w: it did not answer %s ago", u.cfg.Name, ErrUnavailable, time.Since(time.Unix(0, failed)).Round(time.Millisecond))
	}
	ctx, cancel := context.WithTimeout(ctx, greetTimeout)
	defer cancel()
	s, err := u.readServer(ctx)
	if err != nil {
		u.greetFailed.Store(time.Now().UnixNano())
		return Server{}, err
	}
	return s, nil
}

// How long a client's greeting may wait for the upstream's, and how long
// a failure stands before the next try.
const (
	greetTimeout = 2 * time.Second
	greetRetry   = 5 * time.Second
)

// readServer reads the server's greeting by logging in as the admin user
// and quitting: a connection that closed before authenticating would be
// logged by the server as aborted. If the login fails after the greeting
// (the admin user authenticates with another method), the greeting
// stands.
func (u *Upstream) readServer(ctx context.Context) (Server, error) {
	c, err := u.login(ctx, u.cfg.AdminUser, u.cfg.AdminPassword, Login{})
	if err != nil {
		if s := u.greeting.Load(); s != nil {
			return *s, nil
		}
		return Server{}, fmt.Errorf("upstream %s: %w", u.cfg.Name, err)
	}
	mysqlproto.Write(c.Conn, 0, []byte{gomysql.COM_QUIT})
	c.Close()
	return *u.greeting.Load(), nil
}

func (u *Upstream) remember(g *mysqlproto.Greeting) Server {
	s := Server{Version: g.Version, Caps: g.Caps, Charset: g.Charset}
	u.greeting.Store(&s)
	return s
}

func (u *Upstream) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", u.cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return conn, nil
}

func readGreeting(r *mysqlproto.Reader) (*mysqlproto.Greeting, error) {
	_, _, p, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%w: read greeting: %w", ErrUnavailable, err)
	}
	g, err := mysqlproto.DecodeGreeting(p)
	if err != nil {
		return nil, fmt.Errorf("read greeting: %w", err)
	}
	return g, nil
}

// Acquire leases a connection to the database as person's user at
// level: an idle one of the same person, level and handshake (see
// paramsKey) from the pool if there is one, reset when its last session
// ended; else a new login inside a login window, with the client's
// capabilities, whose session is then started (its role, its schema).
// Either way it stays within the database's connection budget, waiting up
// to its queue_timeout for a slot, and fails with a *pool.BudgetError
// when none came. The connection is the caller's until Release or
// Terminate.
func (u *Upstream) Acquire(ctx context.Context, person string, level access.Level, l Login) (*Conn, error) {
	if err := u.checked(ctx); err != nil {
		return nil, err
	}
	key := pool.Key{Person: person, Level: string(level), Params: paramsKey(l)}
	c, lease, reused, err := u.pool.Take(ctx, key, func(ctx context.Context) (*Conn, error) { return u.open(ctx, person, level, l) },
		(*Conn).alive, func(c *Conn, err error) {
			u.log.Info("a pooled connection was closed upstream; opening another", "user", c.User, "thread", c.ThreadID, "err", err)
			u.close(c)
		})
	var budget *pool.BudgetError
	if errors.As(err, &budget) {
		return nil, fmt.Errorf("connect %s as %s: %w", u.cfg.Name, UserName(person, level), err)
	}
	if err != nil {
		return nil, err
	}
	c.lease, c.Reused = lease, reused
	return c, nil
}

// open logs in as person's user at level through a login window and
// starts the session.
func (u *Upstream) open(ctx context.Context, person string, level access.Level, l Login) (*Conn, error) {
	var c *Conn
	err := u.WithLogin(ctx, person, level, func(user, password string) error {
		var err error
		c, err = u.login(ctx, user, password, l)
		if err != nil {
			return err
		}
		u.Opened(uint64(c.ThreadID))
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(dialTimeout))
	for _, stmt := range u.SessionStart(level) {
		if err := c.Exec(stmt); err != nil {
			u.close(c)
			return nil, fmt.Errorf("start session of %s: %w", c.User, err)
		}
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// login opens a connection and authenticates as user with
// mysql_native_password, the method keygate's person users have.
func (u *Upstream) login(ctx context.Context, user, password string, l Login) (*Conn, error) {
	raw, err := u.dial(ctx)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(dialTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	raw.SetDeadline(deadline)
	c, err := u.handshake(raw, user, password, l)
	if err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

func (u *Upstream) handshake(raw net.Conn, user, password string, l Login) (*Conn, error) {
	r := mysqlproto.NewReader(bufio.NewReader(raw))
	g, err := readGreeting(r)
	if err != nil {
		return nil, err
	}
	server := u.remember(g)
	if l.Caps&^server.Caps&Relayed != 0 {
		return nil, fmt.Errorf("%w: it lacks %#x", ErrCapabilities, l.Caps&^server.Caps&Relayed)
	}
	caps := (l.Caps&Relayed | gomysql.CLIENT_PROTOCOL_41 | gomysql.CLIENT_SECURE_CONNECTION | gomysql.CLIENT_PLUGIN_AUTH |
		gomysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA | gomysql.CLIENT_CONNECT_ATTRS) & server.Caps
	conn := raw
	seq := byte(1)
	if t := u.base.TLS; t != nil {
		switch {
		case server.Caps&gomysql.CLIENT_SSL != 0:
			caps |= gomysql.CLIENT_SSL
			req := &mysqlproto.Response{Caps: caps, MaxPacket: mysqlproto.MaxFrame, Charset: l.Charset, SSLRequest: true}
			if _, err := mysqlproto.Write(raw, seq, req.Encode()); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
			seq++
			tc := tls.Client(raw, t)
			if err := tc.Handshake(); err != nil {
				return nil, fmt.Errorf("upstream TLS: %w", err)
			}
			conn = tc
			r = mysqlproto.NewReader(bufio.NewReader(tc))
		case !u.base.AllowFallbackToPlaintext:
			return nil, fmt.Errorf("upstream %s does not offer TLS, which its tls setting requires", u.cfg.Name)
		}
	}
	attrs := map[string]string{"program_name": "keygate"}
	for k, v := range l.Attrs {
		if k != "program_name" {
			attrs[k] = v
		}
	}
	resp := &mysqlproto.Response{Caps: caps, MaxPacket: mysqlproto.MaxFrame, Charset: l.Charset, User: user,
		Auth: gomysql.CalcNativePassword(g.Salt, []byte(password)), AuthName: mysqlproto.NativePassword, Attrs: attrs}
	if _, err := mysqlproto.Write(conn, seq, resp.Encode()); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for switched := false; ; switched = true {
		last, _, p, err := r.Read()
		if err != nil {
			return nil, fmt.Errorf("%w: login: %w", ErrUnavailable, err)
		}
		if len(p) == 0 {
			return nil, fmt.Errorf("login: an empty packet")
		}
		switch p[0] {
		case mysqlproto.HeaderOK:
			r.Reuse = true
			c := &Conn{Conn: conn, R: r, ThreadID: g.ConnID, Caps: caps, User: user, Started: time.Now(), Status: g.Status}
			if ok, err := mysqlproto.DecodeOK(p); err == nil {
				c.Status = ok.Status
			}
			return c, nil
		case mysqlproto.HeaderErr:
			e, _ := mysqlproto.DecodeErr(p, caps)
			return nil, fmt.Errorf("login as %s: %w", user, e)
		case mysqlproto.HeaderEOF:
			method, salt, err := mysqlproto.DecodeAuthSwitch(p)
			if err != nil {
				return nil, err
			}
			if switched || method != mysqlproto.NativePassword {
				return nil, fmt.Errorf("login as %s: the server asks for %s; keygate's users authenticate with %s", user, method, mysqlproto.NativePassword)
			}
			if _, err := mysqlproto.Write(conn, last+1, gomysql.CalcNativePassword(salt, []byte(password))); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
		default:
			return nil, fmt.Errorf("login as %s: unexpected packet %#x", user, p[0])
		}
	}
}

// Exec runs one statement that returns no rows, for keygate's own use of
// the connection between the client's commands.
func (c *Conn) Exec(stmt string) error {
	if _, err := mysqlproto.Write(c.Conn, 0, append([]byte{gomysql.COM_QUERY}, stmt...)); err != nil {
		return err
	}
	_, _, p, err := c.R.Read()
	if err != nil {
		return err
	}
	switch {
	case len(p) > 0 && p[0] == mysqlproto.HeaderOK:
		if ok, err := mysqlproto.DecodeOK(p); err == nil {
			c.Status = ok.Status
		}
		return nil
	case len(p) > 0 && p[0] == mysqlproto.HeaderErr:
		e, _ := mysqlproto.DecodeErr(p, c.Caps)
		return e
	default:
		return fmt.Errorf("%s: the server answered with a result set", stmt)
	}
}

// Close closes the connection's socket, once.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() { err = c.Conn.Close() })
	return err
}

// Cancel ends the statement running on c (KILL QUERY), leaving the
// connection open.
func (u *Upstream) Cancel(ctx context.Context, c *Conn) error {
	return u.exec(ctx, "cancel a query", "KILL QUERY "+strconv.FormatUint(uint64(c.ThreadID), 10))
}

// Terminate ends c's connection upstream and returns once the server no
// longer lists it, freeing its place in the budget.
func (u *Upstream) Terminate(ctx context.Context, c *Conn) (time.Time, error) {
	at, err := u.kill(ctx, uint64(c.ThreadID))
	c.Close()
	if err == nil {
		u.Closed(uint64(c.ThreadID))
	} else {
		u.closedAsync(uint64(c.ThreadID))
	}
	c.release.Do(func() { u.endLease(c) })
	return at, err
}

// Release hands c back once its session is over.
//
// With reuse, the session ended between commands outside a transaction
// and c could serve again: Release resets it (COM_RESET_CONNECTION, then
// the session start again) and keeps it for its owner's next session,
// reporting true. It reports false, and leaves c to the caller, when it
// cannot: pooling is off, too many resets are under way (see
// pool.Resetting), the reset failed, or its owner lost access meanwhile.
// The caller then ends the connection and calls Release(c, false).
//
// Without reuse, Release sends COM_QUIT and closes c; the watcher forgets
// it once the server no longer lists it. A pooled connection stays
// recorded as keygate's own, so the watcher leaves it alone. After
// Terminate, Release does nothing.
func (u *Upstream) Release(c *Conn, reuse bool) bool {
	if reuse {
		return u.keep(c)
	}
	c.release.Do(func() { u.close(c) })
	return false
}

// keep resets c and pools it; see Release.
func (u *Upstream) keep(c *Conn) bool {
	if !u.cfg.Pool || c.lease == nil {
		return false
	}
	done, ok := u.pool.Resetting()
	if !ok {
		return false
	}
	err := u.reset(c)
	done()
	if err != nil {
		u.log.Warn("could not reset a connection for reuse; ending it", "user", c.User, "thread", c.ThreadID, "err", err)
		return false
	}
	kept := false
	c.release.Do(func() {
		// Once pooled, c is another lease's: this one's Release does
		// nothing more.
		if kept = u.pool.Put(c.lease, c.again()); !kept {
			u.close(c)
		}
	})
	return kept
}

// close quits and closes c and frees its place in the budget; the watcher
// forgets it once the server no longer lists it.
func (u *Upstream) close(c *Conn) {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	mysqlproto.Write(c.Conn, 0, []byte{gomysql.COM_QUIT})
	c.Close()
	u.closedAsync(uint64(c.ThreadID))
	u.endLease(c)
}

// endLease frees c's place in the budget, if it holds one.
func (u *Upstream) endLease(c *Conn) {
	if c.lease != nil {
		u.pool.Close(c.lease)
	}
}

// Schemas are the upstream schemas the database's roles are granted on;
// the first is where sessions start.
func (u *Upstream) Schemas() []string { return u.schemas }

// LocalInfile reports whether the database lets sessions that write load
// files from the client (LOAD DATA LOCAL INFILE).
func (u *Upstream) LocalInfile() bool { return u.cfg.LocalInfile }
