package mysql

import (
	"errors"
	"fmt"
	"strings"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/mysqlproto"
	"github.com/keygate/keygate/upstream/pool"
)

// resetTimeout bounds resetting a connection for its next session.
const resetTimeout = 5 * time.Second

// Pooling reports whether Release may keep a connection for reuse.
func (u *Upstream) Pooling() bool { return u.cfg.Pool }

// PoolOwners lists the people and levels holding connections to the
// database, live or pooled, for the gateway to re-check.
func (u *Upstream) PoolOwners() []pool.Key { return u.pool.Owners() }

// DrainPool ends person's pooled connections at level (every level when
// empty), and keeps those in use from being pooled again.
func (u *Upstream) DrainPool(person, level string) int { return u.pool.Drain(person, level) }

// PoolStats are the counts of the database's pool and budget.
func (u *Upstream) PoolStats() pool.Stats { return u.pool.Stats() }

// paramsKey stands for what of the client's handshake shapes the upstream
// session beyond the person and level: the capabilities (the packets'
// format, multi-statements, found rows, IGNORE_SPACE, the interactive
// timeout) and the character set and collation. A pooled connection only
// serves a client that asked for the same. Connection attributes are left
// out: they only label the connection in performance_schema, and drivers
// put the client's process id among them, which would keep a pooled
// connection from ever serving the next run of the same program.
func paramsKey(l Login) string {
	return fmt.Sprintf("caps=%#x charset=%d", l.Caps&Relayed, l.Charset)
}

// again is c as the pool keeps it for its next lease: the session that
// had c keeps a Conn of its own, which it can no longer close.
func (c *Conn) again() *Conn {
	return &Conn{Conn: c.Conn, R: c.R, ThreadID: c.ThreadID, Caps: c.Caps, User: c.User, Started: c.Started, Status: c.Status, lease: c.lease}
}

// restart is what a reset connection runs to be as a fresh login of the
// same client at level left it. COM_RESET_CONNECTION (MariaDB 10.11)
// drops user variables, temporary tables, prepared statements, locks and
// the transaction, brings session variables back to their global values
// and the character set back to the handshake's; it keeps the role and
// the default schema as the session last set them, and the
// multi-statements option as COM_SET_OPTION last set it. So the session
// start runs again, after putting back what the server derives from the
// client's capabilities when it logs in.
func (u *Upstream) restart(c *Conn, level string) [][]byte {
	multi := byte(gomysql.MYSQL_OPTION_MULTI_STATEMENTS_OFF)
	if c.Caps&gomysql.CLIENT_MULTI_STATEMENTS != 0 {
		multi = gomysql.MYSQL_OPTION_MULTI_STATEMENTS_ON
	}
	cmds := [][]byte{{gomysql.COM_RESET_CONNECTION}, {gomysql.COM_SET_OPTION, multi, 0}}
	var set []string
	if c.Caps&gomysql.CLIENT_IGNORE_SPACE != 0 {
		set = append(set, "SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'IGNORE_SPACE')")
	}
	if c.Caps&gomysql.CLIENT_INTERACTIVE != 0 {
		set = append(set, "SESSION wait_timeout = @@SESSION.interactive_timeout")
	}
	if len(set) > 0 {
		cmds = append(cmds, query("SET "+strings.Join(set, ", ")))
	}
	for _, stmt := range u.SessionStart(access.Level(level)) {
		cmds = append(cmds, query(stmt))
	}
	return cmds
}

func query(stmt string) []byte { return append([]byte{gomysql.COM_QUERY}, stmt...) }

// reset brings c back to the state of a fresh session of its owner (see
// restart), sending every command at once, and checks that each was
// answered with OK, that no transaction is open and that nothing more
// came.
func (u *Upstream) reset(c *Conn) error {
	if c.R.Buffered() > 0 {
		return errors.New("the server sent more than the session read")
	}
	c.SetDeadline(time.Now().Add(resetTimeout))
	defer c.SetDeadline(time.Time{})
	cmds := u.restart(c, c.lease.Key().Level)
	var out []byte
	for _, cmd := range cmds {
		out, _ = mysqlproto.Append(out, 0, cmd)
	}
	if _, err := c.Conn.Write(out); err != nil {
		return fmt.Errorf("send COM_RESET_CONNECTION: %w", err)
	}
	var failed error
	for i := range cmds {
		_, _, p, err := c.R.Read()
		if err != nil {
			return fmt.Errorf("read the answer to command %d of the reset: %w", i+1, err)
		}
		if status, ok := EndStatus(p, c.Caps); ok {
			c.Status = status
			continue
		}
		switch {
		case len(p) > 0 && p[0] == mysqlproto.HeaderErr:
			e, _ := mysqlproto.DecodeErr(p, c.Caps)
			if failed == nil {
				failed = fmt.Errorf("command %d of the reset failed: %w", i+1, e)
			}
		default:
			return fmt.Errorf("command %d of the reset: unexpected packet %#x", i+1, p[0])
		}
	}
	switch {
	case failed != nil:
		return failed
	case c.Status&mysqlproto.StatusInTrans != 0:
		return errors.New("a transaction is still open after the reset")
	case c.R.Buffered() > 0:
		return errors.New("the server sent more than the reset's answers")
	}
	return nil
}

// alive checks, without blocking, that the server neither closed an idle
// pooled connection nor said anything on it since it was pooled: a KILL,
// wait_timeout or a restart of the server leave an error packet or the
// end of the stream.
func (c *Conn) alive() error {
	if c.R.Buffered() > 0 {
		return pool.ErrSpoke
	}
	return pool.Quiet(c.Conn)
}

// EndStatus is the server status flags of p when it is the OK or EOF that
// ends the answer to a command (an EOF is an OK with header 0xfe when caps
// deprecate EOF); ok is false for any other packet.
func EndStatus(p []byte, caps uint32) (status uint16, ok bool) {
	if len(p) == 0 {
		return 0, false
	}
	switch {
	case p[0] == mysqlproto.HeaderEOF && caps&gomysql.CLIENT_DEPRECATE_EOF == 0:
		if !mysqlproto.IsEOF(p, false) {
			return 0, false
		}
		return mysqlproto.EOFStatus(p), true
	case p[0] == mysqlproto.HeaderOK, p[0] == mysqlproto.HeaderEOF:
		o, err := mysqlproto.DecodeOK(p)
		if err != nil {
			return 0, false
		}
		return o.Status, true
	}
	return 0, false
}
