package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNodeTaken is returned by HoldNode and NodeHeld when another server
// runs under the same node name.
var ErrNodeTaken = errors.New("another keygate server runs under this node name on the state database")

// Key spaces of the session locks, the first of their two keys.
const (
	nodeLockSpace   = 0x6b676e64 // "kgnd"
	windowLockSpace = 0x6b67776e // "kgwn"
)

// locker is the connection that holds this server's session locks: its
// node name (HoldNode) and the login windows it has open (Lock). Session
// locks end with their connection, however the server ends, so a server
// that dies leaves none behind. When the connection breaks (the state
// database restarted), its locks are gone with it: the next use connects
// again and takes the node name back.
type locker struct {
	pool *pgxpool.Pool

	mu   sync.Mutex
	conn *pgx.Conn
	node string // the node name held, "" before HoldNode
	// held are the names Lock holds, each with a channel closed when it
	// is let go: a session lock is shared by everything on its
	// connection, so this server's own callers wait here for each other.
	held map[string]chan struct{}
}

// ready connects and takes the node name back if the connection is gone.
// The caller holds l.mu.
func (l *locker) ready(ctx context.Context) error {
	if l.conn != nil && !l.conn.IsClosed() {
		return nil
	}
	c, err := l.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	conn := c.Hijack()
	if l.node != "" {
		held, err := tryLock(ctx, conn, nodeLockSpace, l.node)
		if err != nil {
			conn.Close(ctx)
			return err
		}
		if !held {
			conn.Close(ctx)
			return fmt.Errorf("node %s: %w", l.node, ErrNodeTaken)
		}
	}
	l.conn = conn
	return nil
}

// tryLock takes the session lock name in space on conn if it is free.
func tryLock(ctx context.Context, conn *pgx.Conn, space int64, name string) (bool, error) {
	var held bool
	err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, space, name).Scan(&held)
	return held, err
}

// broke drops the connection after a failed use; its locks are gone.
// The caller holds l.mu.
func (l *locker) broke() {
	if l.conn != nil {
		l.conn.Close(context.Background())
		l.conn = nil
	}
}

func (l *locker) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.broke()
}

// HoldNode takes the node name for this server for as long as the store is
// open: two servers under one name would write one audit chain at once.
func (s *Store) HoldNode(ctx context.Context, node string) error {
	s.locks.mu.Lock()
	defer s.locks.mu.Unlock()
	s.locks.broke()
	s.locks.node = node
	if err := s.locks.ready(ctx); err != nil {
		s.locks.node = ""
		if errors.Is(err, ErrNodeTaken) {
			return err
		}
		return fmt.Errorf("hold node name %s: %w", node, err)
	}
	return nil
}

// NodeHeld checks that this server still holds its node name, taking it
// back after the state database restarted. It fails with ErrNodeTaken
// while another connection holds it: a server under the same name, or
// this server's own connection from before a network failure, until the
// state database notices that it is gone.
func (s *Store) NodeHeld(ctx context.Context) error {
	s.locks.mu.Lock()
	defer s.locks.mu.Unlock()
	if s.locks.node == "" {
		return nil
	}
	// A connection that broke unnoticed fails the first query: then
	// connect once more at once.
	var err error
	for range 2 {
		if err = s.locks.ready(ctx); err != nil {
			return err
		}
		if _, err = s.locks.conn.Exec(ctx, `SELECT 1`); err == nil {
			return nil
		}
		s.locks.broke()
	}
	return fmt.Errorf("node name lock: %w", err)
}

// lockPoll is how often Lock tries again for a lock another server holds:
// login windows last milliseconds.
const lockPoll = 2 * time.Millisecond

// Lock holds the lock called name for this server until unlock is called,
// waiting while another server holds it, until ctx ends. Servers sharing
// the state take a person's login window in turn this way, so that none
// changes the password or closes the window under another's login; the
// callers of one server take it in turn too. A lock lost with a broken
// connection is not restored.
func (s *Store) Lock(ctx context.Context, name string) (unlock func(), err error) {
	for {
		s.locks.mu.Lock()
		wait, mine := s.locks.held[name]
		var held bool
		if !mine {
			err = s.locks.ready(ctx)
			if err == nil {
				if held, err = tryLock(ctx, s.locks.conn, windowLockSpace, name); err != nil {
					s.locks.broke()
				}
			}
			if held {
				if s.locks.held == nil {
					s.locks.held = map[string]chan struct{}{}
				}
				s.locks.held[name] = make(chan struct{})
			}
		}
		conn := s.locks.conn
		s.locks.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		if held {
			return func() { s.unlock(conn, name) }, nil
		}
		// Another caller of this server holds it: wait for it to let go.
		// Another server: look again shortly.
		var retry <-chan time.Time
		if wait == nil {
			retry = time.After(lockPoll)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("lock %s: another holds it: %w", name, ctx.Err())
		case <-wait:
		case <-retry:
		}
	}
}

func (s *Store) unlock(conn *pgx.Conn, name string) {
	s.locks.mu.Lock()
	defer s.locks.mu.Unlock()
	close(s.locks.held[name])
	delete(s.locks.held, name)
	if s.locks.conn != conn {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, windowLockSpace, name); err != nil {
		s.locks.broke()
	}
}

// OtherNodes counts the other servers running on this state database now:
// those holding a node name, other than this one.
func (s *Store) OtherNodes(ctx context.Context) (int, error) {
	s.locks.mu.Lock()
	var pid uint32
	if s.locks.conn != nil {
		pid = s.locks.conn.PgConn().PID()
	}
	s.locks.mu.Unlock()
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_locks
		WHERE locktype = 'advisory' AND classid = $1 AND objsubid = 2 AND granted AND pid <> $2
		AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())`, nodeLockSpace, pid).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count the other servers: %w", err)
	}
	return n, nil
}
