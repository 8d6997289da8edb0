package postgres

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// goneWaits are the backends keygate is ending on one upstream, and the
// waits for them to leave the server. One statement a tick signals all
// the backends asked for since the last, and one query a tick answers
// every wait: when hundreds of sessions end at once, statements of their
// own would queue hundreds deep on the admin pool, and the waits would run
// out before their turn came.
type goneWaits struct {
	mu      sync.Mutex
	waiting map[uint32][]chan struct{}
	// signal are the backends to send pg_terminate_backend next tick.
	signal  []int32
	polling bool
	// err is why the last poll failed, nil after one that worked.
	err error
}

// goneTick is how often the poll asks which backends are still there.
const goneTick = 2 * time.Millisecond

// endBackend signals backend pid to end and returns once the server no
// longer lists it in pg_stat_activity or pg_locks, or when ctx ends.
func (u *Upstream) endBackend(ctx context.Context, pid uint32) error {
	g := &u.gone
	ch := make(chan struct{})
	g.mu.Lock()
	if g.waiting == nil {
		g.waiting = map[uint32][]chan struct{}{}
	}
	g.waiting[pid] = append(g.waiting[pid], ch)
	g.signal = append(g.signal, int32(pid))
	if !g.polling {
		g.polling = true
		go u.pollGone()
	}
	g.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-ch:
		return nil
	default:
	}
	if g.waiting[pid] = slices.DeleteFunc(g.waiting[pid], func(c chan struct{}) bool { return c == ch }); len(g.waiting[pid]) == 0 {
		delete(g.waiting, pid)
	}
	if g.err != nil {
		return fmt.Errorf("still running as far as keygate could tell: %w", g.err)
	}
	return fmt.Errorf("still running: %w", ctx.Err())
}

// pollGone asks, each tick, which of the backends waited for are still
// there, and ends the waits of those that are not, until none is left.
func (u *Upstream) pollGone() {
	g := &u.gone
	for {
		g.mu.Lock()
		if len(g.waiting) == 0 {
			g.polling = false
			g.mu.Unlock()
			return
		}
		pids := make([]int32, 0, len(g.waiting))
		for pid := range g.waiting {
			pids = append(pids, int32(pid))
		}
		signal := g.signal
		g.signal = nil
		g.mu.Unlock()
		var alive map[uint32]bool
		err := u.signalEnd(signal)
		if err == nil {
			signal = nil
			alive, err = u.listed(pids)
		}
		g.mu.Lock()
		g.err = err
		if err != nil {
			// Signal them again next tick.
			g.signal = append(g.signal, signal...)
		} else {
			for _, pid := range pids {
				if !alive[uint32(pid)] {
					for _, ch := range g.waiting[uint32(pid)] {
						close(ch)
					}
					delete(g.waiting, uint32(pid))
				}
			}
		}
		g.mu.Unlock()
		time.Sleep(goneTick)
	}
}

// signalEnd sends pg_terminate_backend to pids. A backend that has
// already gone is skipped: the server would warn of a pid that is not one
// of its backends.
func (u *Upstream) signalEnd(pids []int32) error {
	if len(pids) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := u.admin.Query(ctx, `SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE pid = ANY($1)`, pids)
	if err != nil {
		return u.adminErr("end backends", err)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return u.adminErr("end backends", err)
	}
	return nil
}

// listed says which of pids the server still lists.
func (u *Upstream) listed(pids []int32) (map[uint32]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := u.admin.Query(ctx, `SELECT pid FROM pg_catalog.pg_stat_activity WHERE pid = ANY($1)
		UNION SELECT pid FROM pg_catalog.pg_locks WHERE pid = ANY($1)`, pids)
	if err != nil {
		return nil, u.adminErr("list ended backends", err)
	}
	defer rows.Close()
	alive := map[uint32]bool{}
	for rows.Next() {
		var pid int32
		if err := rows.Scan(&pid); err != nil {
			return nil, u.adminErr("list ended backends", err)
		}
		alive[uint32(pid)] = true
	}
	if err := rows.Err(); err != nil {
		return nil, u.adminErr("list ended backends", err)
	}
	return alive, nil
}
