package postgres

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/store"
)

// notifyChannel is the channel a write transaction notifies on commit.
// The payload is the revision; readers do not trust it, they read the
// table.
const notifyChannel = "keygate_changes"

// cancelChannel carries the cancel requests a server could not match to
// a session of its own, to the server that holds the session.
const cancelChannel = "keygate_cancel"

// feedChunk is how many revisions one read of the feed covers.
const feedChunk = 1000

// pruneEvery is how often a server deletes changes older than the
// retention. Every server does; deleting what another already deleted
// costs nothing.
const pruneEvery = time.Minute

// record gives the transaction's changes the next revision and queues the
// notification, which PostgreSQL sends only if the transaction commits.
// It must be the transaction's last statement: the revision row stays
// locked until the commit, so that revisions commit in order.
func record(ctx context.Context, tx pgx.Tx, changes []store.Change, at time.Time) error {
	kinds := make([]int16, len(changes))
	users := make([]string, len(changes))
	groups := make([]string, len(changes))
	for i, c := range changes {
		kinds[i], users[i], groups[i] = int16(c.Kind), c.User, c.Group
	}
	_, err := tx.Exec(ctx, `WITH r AS (UPDATE feed_revision SET rev = rev + 1 RETURNING rev),
		c AS (INSERT INTO feed_changes (rev, n, kind, user_name, group_name, at)
			SELECT r.rev, c.n, c.kind, c.user_name, c.group_name, $4
			FROM r, unnest($1::smallint[], $2::text[], $3::text[]) WITH ORDINALITY AS c(kind, user_name, group_name, n))
		SELECT pg_notify('`+notifyChannel+`', rev::text) FROM r`, kinds, users, groups, nanos(at))
	if err != nil {
		return fmt.Errorf("record changes: %w", err)
	}
	return nil
}

// feed carries the changes every server commits to this server's
// watchers. It reads them from feed_changes in revision order when a
// NOTIFY wakes it, when this server commits a change, and every poll
// interval in any case, so that a lost notification or a broken LISTEN
// connection delays a change by at most one interval.
type feed struct {
	pool      *pgxpool.Pool
	local     store.Feed
	poll      time.Duration
	retention time.Duration

	// mu serializes reads of the feed; last is the newest revision
	// delivered.
	mu   sync.Mutex
	last int64
	// onCancel is told of the cancel requests other servers relay.
	onCancel atomic.Pointer[func(payload string)]
	// synced is when the feed last read the head revision and delivered
	// everything up to it (UnixNano).
	synced atomic.Int64

	cancel context.CancelFunc
	done   chan struct{}
}

func startFeed(ctx context.Context, pool *pgxpool.Pool, poll, retention time.Duration) (*feed, error) {
	f := &feed{pool: pool, poll: poll, retention: retention, done: make(chan struct{})}
	// Watch promises changes committed after it is called: the ones
	// before the store opened are no one's business here.
	if err := pool.QueryRow(ctx, `SELECT rev FROM feed_revision`).Scan(&f.last); err != nil {
		return nil, fmt.Errorf("read change feed revision: %w", err)
	}
	f.synced.Store(time.Now().UnixNano())
	bg, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go f.run(bg)
	return f, nil
}

func (f *feed) stop() {
	f.cancel()
	<-f.done
}

// catchUp delivers what is committed now, after this server's own write:
// as with SQLite, a change is on every local watcher's channel by the time
// the write returns. A failure is left to the next poll.
func (f *feed) catchUp(ctx context.Context) { _ = f.pump(ctx) }

// pump delivers every change committed since the last one delivered. A
// revision missing from the table was pruned before this server read it:
// the watchers get a Resync in its place.
func (f *feed) pump(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var head int64
	if err := f.pool.QueryRow(ctx, `SELECT rev FROM feed_revision`).Scan(&head); err != nil {
		return fmt.Errorf("read change feed revision: %w", err)
	}
	type row struct {
		rev int64
		c   store.Change
	}
	for f.last < head {
		upTo := min(head, f.last+feedChunk)
		rows, err := collect(ctx, f.pool, `SELECT rev, kind, user_name, group_name, at FROM feed_changes WHERE rev > $1 AND rev <= $2 ORDER BY rev, n`,
			[]any{f.last, upTo}, func(r pgx.Row) (row, error) {
				var out row
				var kind int16
				var at int64
				err := r.Scan(&out.rev, &kind, &out.c.User, &out.c.Group, &at)
				out.c.Kind, out.c.At = store.ChangeKind(kind), fromNanos(at)
				return out, err
			})
		if err != nil {
			return fmt.Errorf("read change feed: %w", err)
		}
		if len(rows) == 0 || rows[0].rev != f.last+1 {
			f.local.Publish(store.Change{Kind: store.Resync})
		}
		changes := make([]store.Change, len(rows))
		for i, r := range rows {
			changes[i] = r.c
		}
		f.local.Publish(changes...)
		f.last = upTo
	}
	f.synced.Store(time.Now().UnixNano())
	return nil
}

// run listens for notifications and reads the feed until ctx ends. When
// the LISTEN connection breaks it reconnects, and tells the watchers to
// re-check everything once it is back: whatever happened meanwhile, the
// revision poll delivers, but a watcher that acted on a stale view while
// the database was unreachable should look again.
func (f *feed) run(ctx context.Context) {
	defer close(f.done)
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	lost := false
	var pruned time.Time
	for ctx.Err() == nil {
		if conn == nil {
			conn = f.listen(ctx)
			if conn != nil && lost {
				f.local.Publish(store.Change{Kind: store.Resync})
				lost = false
			}
		}
		if conn != nil {
			wait, cancel := context.WithTimeout(ctx, f.poll)
			n, err := conn.WaitForNotification(wait)
			cancel()
			if err == nil && n.Channel == cancelChannel {
				if fn := f.onCancel.Load(); fn != nil {
					go (*fn)(n.Payload)
				}
				continue
			}
			if err != nil && ctx.Err() == nil && !pgconn.Timeout(err) {
				conn.Close(ctx)
				conn, lost = nil, true
			}
		} else {
			lost = true
			select {
			case <-ctx.Done():
				return
			case <-time.After(f.poll):
			}
		}
		if ctx.Err() != nil {
			return
		}
		_ = f.pump(ctx)
		if time.Since(pruned) > pruneEvery {
			if _, err := f.pool.Exec(ctx, `DELETE FROM feed_changes WHERE stored < now() - make_interval(secs => $1)`, f.retention.Seconds()); err == nil {
				pruned = time.Now()
			}
		}
	}
}

// listen opens a connection of its own, outside the pool, that LISTENs;
// nil if it cannot.
func (f *feed) listen(ctx context.Context) *pgx.Conn {
	c, err := f.pool.Acquire(ctx)
	if err != nil {
		return nil
	}
	conn := c.Hijack()
	if _, err := conn.Exec(ctx, `LISTEN `+notifyChannel+`; LISTEN `+cancelChannel); err != nil {
		conn.Close(ctx)
		return nil
	}
	return conn
}
