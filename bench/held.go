package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/bench/internal/proc"
)

// heldConnections is how many idle connections are held open through
// keygate to measure its memory per connection apart from load.
const heldConnections = 100

// heldMemory is a proxy's RSS before and while connections are held open
// and idle, in KiB.
type heldMemory struct {
	Connections      int     `json:"connections"`
	BeforeRSSKiB     int64   `json:"before_rss_kib"`
	HeldRSSKiB       int64   `json:"held_rss_kib"`
	PerConnectionKiB float64 `json:"per_connection_kib"`
}

// holdConnections opens n connections to e one after another, runs one
// query on each, and reads the proxy's RSS while all of them are open.
// It runs before any load, while the proxy's heap is still small, so that
// the growth is the connections' own state.
func holdConnections(ctx context.Context, e endpoint, n int) (_ *heldMemory, err error) {
	password, err := e.password(ctx)
	if err != nil {
		return nil, fmt.Errorf("hold connections to %s: password: %w", e.name, err)
	}
	before, _, err := proc.Memory(e.proc.Pid())
	if err != nil {
		return nil, fmt.Errorf("hold connections to %s: %w", e.name, err)
	}
	conns := make([]*pgconn.PgConn, 0, n)
	defer func() {
		for _, c := range conns {
			if cerr := c.Close(ctx); cerr != nil && err == nil {
				err = fmt.Errorf("hold connections to %s: close: %w", e.name, cerr)
			}
		}
	}()
	for i := range n {
		c, err := connect(ctx, e, password)
		if err != nil {
			return nil, fmt.Errorf("hold %d connections to %s: connection %d: %w", n, e.name, i+1, err)
		}
		conns = append(conns, c)
		if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
			return nil, fmt.Errorf("hold %d connections to %s: connection %d: %w", n, e.name, i+1, err)
		}
	}
	// Let the proxy finish what the last connection started.
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(500 * time.Millisecond):
	}
	held, _, err := proc.Memory(e.proc.Pid())
	if err != nil {
		return nil, fmt.Errorf("hold connections to %s: %w", e.name, err)
	}
	return &heldMemory{Connections: n, BeforeRSSKiB: before, HeldRSSKiB: held, PerConnectionKiB: float64(held-before) / float64(n)}, nil
}
