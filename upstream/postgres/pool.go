package postgres

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/upstream/pool"
)

// resetTimeout bounds resetting a connection for its next session.
const resetTimeout = 5 * time.Second

// discardAll is the simple Query that resets a session for the next one:
// it ends prepared statements, portals, temporary tables, LISTENs, advisory
// locks and session settings (back to the start-up parameters' values),
// and the session's role to the login role, as pgbouncer's
// server_reset_query does.
var discardAll = func() []byte {
	const q = "DISCARD ALL\x00"
	b := []byte{'Q', 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(4+len(q)))
	return append(b, q...)
}()

// Pooling reports whether Release may keep a connection for reuse.
func (u *Upstream) Pooling() bool { return u.cfg.Pool }

// closeIdle ends a connection the pool lets go.
func (u *Upstream) closeIdle(c *Conn) { u.close(c, true) }

// PoolOwners lists the people and levels holding connections to the
// database, live or pooled, for the gateway to re-check.
func (u *Upstream) PoolOwners() []pool.Key { return u.pool.Owners() }

// DrainPool ends person's pooled connections at level (every level when
// empty), and keeps those in use from being pooled again.
func (u *Upstream) DrainPool(person, level string) int { return u.pool.Drain(person, level) }

// PoolStats are the counts of the database's pool and budget.
func (u *Upstream) PoolStats() pool.Stats { return u.pool.Stats() }

// paramsKey stands for the start-up parameters that reach the upstream:
// a pooled connection serves only a session that asked for the same.
func paramsKey(params map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(params)) {
		if droppedParams[k] || strings.HasPrefix(k, "_pq_.") {
			continue
		}
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(params[k])
		b.WriteByte(0)
	}
	return b.String()
}

// again is c as the pool keeps it for its next lease.
func (c *Conn) again() *Conn {
	return &Conn{Conn: c.Conn, Role: c.Role, PID: c.PID, SecretKey: c.SecretKey, Params: c.Params, TxStatus: 'I', lease: c.lease}
}

// reset runs DISCARD ALL on an idle connection and checks it came back
// idle with nothing more to read, updating the parameters it reports.
func (c *Conn) reset() error {
	if c.TxStatus != 'I' {
		return fmt.Errorf("the session ended in a transaction (status %q)", c.TxStatus)
	}
	c.Conn.SetDeadline(time.Now().Add(resetTimeout))
	defer c.Conn.SetDeadline(time.Time{})
	if _, err := c.Conn.Write(discardAll); err != nil {
		return fmt.Errorf("send DISCARD ALL: %w", err)
	}
	r := bufio.NewReaderSize(c.Conn, 512)
	params := maps.Clone(c.Params)
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return fmt.Errorf("read reply to DISCARD ALL: %w", err)
		}
		n := int(binary.BigEndian.Uint32(hdr[1:])) - 4
		if n < 0 || n > 1<<16 {
			return fmt.Errorf("reply to DISCARD ALL: message %q of length %d", hdr[0], n+4)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return fmt.Errorf("read reply to DISCARD ALL: %w", err)
		}
		switch hdr[0] {
		case 'C', 'N':
		case 'S':
			if k, v, ok := strings.Cut(strings.TrimSuffix(string(body), "\x00"), "\x00"); ok {
				params[k] = v
			}
		case 'E':
			return fmt.Errorf("DISCARD ALL failed: %s", errorText(body))
		case 'Z':
			if n != 1 || body[0] != 'I' || r.Buffered() > 0 {
				return errors.New("the connection was not idle after DISCARD ALL")
			}
			c.Params = params
			return nil
		default:
			return fmt.Errorf("unexpected message %q in reply to DISCARD ALL", hdr[0])
		}
	}
}

// errorText is the message field of an ErrorResponse body.
func errorText(body []byte) string {
	for len(body) > 1 {
		field, rest, ok := strings.Cut(string(body[1:]), "\x00")
		if body[0] == 'M' {
			return field
		}
		if !ok {
			break
		}
		body = []byte(rest)
	}
	return "no message"
}

// alive checks, without blocking, that the backend of an idle pooled
// connection neither closed it nor said anything (a FATAL from
// pg_terminate_backend or idle_session_timeout) since it was pooled.
func (c *Conn) alive() error { return pool.Quiet(c.Conn) }
