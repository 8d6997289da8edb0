package main

import (
	"context"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/bench/internal/proc"
	"github.com/keygate/keygate/localpg"
)

// defaultIdleConns is how many idle connections are held open through
// keygate to measure its memory per connection apart from load. Each of
// them also holds a PostgreSQL backend, which is what bounds the count on a
// small machine.
const defaultIdleConns = 2000

// holdParallel is how many connections are being opened at once: enough to
// open thousands in reasonable time, well under keygate's limit on
// handshakes from one address.
const holdParallel = 8

// holdConnectTimeout is how long one of the held connections may take to
// open. With thousands of backends on a small machine, PostgreSQL and the
// machine slow down, and one slow connection should not void the
// measurement.
const holdConnectTimeout = time.Minute

// heldMemory is a proxy's RSS before and while connections are held open
// and idle, in KiB.
type heldMemory struct {
	IdleConns         int     `json:"idle_conns"`
	BeforeRSSKiB      int64   `json:"before_rss_kib"`
	HeldRSSKiB        int64   `json:"held_rss_kib"`
	RSSPerIdleConnKiB float64 `json:"rss_per_idle_conn_kib"`
	// OpenSeconds is how long opening all of them took.
	OpenSeconds float64 `json:"open_seconds"`
}

// holdConnections opens n TLS connections to e, runs one query on each,
// and reads the proxy's RSS while all of them are open. It runs before any
// load, while the proxy's heap is still small, so that the growth is the
// connections' own state.
func holdConnections(ctx context.Context, e endpoint, n int) (_ *heldMemory, err error) {
	password, err := e.password(ctx)
	if err != nil {
		return nil, fmt.Errorf("hold connections to %s: password: %w", e.name, err)
	}
	before, _, err := proc.Memory(e.proc.Pid())
	if err != nil {
		return nil, fmt.Errorf("hold connections to %s: %w", e.name, err)
	}
	conns := make([]*pgconn.PgConn, n)
	defer func() {
		for _, c := range conns {
			if c == nil {
				continue
			}
			if cerr := c.Close(ctx); cerr != nil && err == nil {
				err = fmt.Errorf("hold connections to %s: close: %w", e.name, cerr)
			}
		}
	}()
	start := time.Now()
	if err := openAll(ctx, e, password, conns); err != nil {
		return nil, fmt.Errorf("hold %d connections to %s: %w", n, e.name, err)
	}
	opened := time.Since(start)
	// Let the proxy finish what the last connection started.
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Second):
	}
	held, _, err := proc.Memory(e.proc.Pid())
	if err != nil {
		return nil, fmt.Errorf("hold connections to %s: %w", e.name, err)
	}
	return &heldMemory{IdleConns: n, BeforeRSSKiB: before, HeldRSSKiB: held, RSSPerIdleConnKiB: float64(held-before) / float64(n),
		OpenSeconds: opened.Seconds()}, nil
}

// openAll fills conns with connections to e, holdParallel at a time, each
// having run one query.
func openAll(ctx context.Context, e endpoint, password string, conns []*pgconn.PgConn) error {
	if err := parallel(ctx, len(conns), holdParallel, func(ctx context.Context, i int) error {
		c, err := connectWithin(ctx, e, password, holdConnectTimeout)
		if err == nil {
			conns[i] = c
			_, err = c.Exec(ctx, "SELECT 1").ReadAll()
		}
		if err != nil {
			return fmt.Errorf("connection %d: %w", i+1, err)
		}
		return nil
	}); err != nil {
		return err
	}
	return ctx.Err()
}

// raiseFileLimit raises this process's open-file limit so that it can hold
// n connections, and keygate, which inherits the limit and holds two
// descriptors per session, twice that: the hard limit too when it is short
// and the process may raise it (as root), else the soft limit to the hard
// one, with a warning when that is short.
func raiseFileLimit(w io.Writer, n int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("open-file limit: %w", err)
	}
	need := uint64(2*n + 1024)
	if lim.Max < need {
		raised := syscall.Rlimit{Cur: need, Max: need}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			return nil
		}
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("open-file limit: %w", err)
	}
	if lim.Cur < need {
		fmt.Fprintf(w, "WARNING: the open-file limit is %d, and holding %d idle connections through keygate needs about %d\n", lim.Cur, n, need)
	}
	return nil
}

// waitPersonBackendsGone waits, up to a limit, until the backends that
// keygate opened for the held connections are gone, so that thousands of
// backends exiting at once do not slow the runs that follow.
func waitPersonBackendsGone(ctx context.Context, w io.Writer, pg *localpg.Server) error {
	c, err := pgconn.Connect(ctx, pg.ConnString("postgres"))
	if err != nil {
		return fmt.Errorf("wait for the held connections' backends: %w", err)
	}
	defer c.Close(ctx)
	query := fmt.Sprintf("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND datname = %s AND usename NOT IN (%s, current_user)",
		literal(benchDB), literal(adminUser))
	deadline := time.Now().Add(2 * time.Minute)
	for {
		res := c.ExecParams(ctx, query, nil, nil, nil, nil).Read()
		if res.Err != nil {
			return fmt.Errorf("wait for the held connections' backends: %w", res.Err)
		}
		left := string(res.Rows[0][0])
		if left == "0" {
			return nil
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(w, "WARNING: %s backends of the held connections are still there after 2 minutes\n", left)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
