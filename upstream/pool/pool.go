// Package pool keeps a database's upstream connections between sessions and
// holds them to its connection budget, whatever the engine.
//
// A connection belongs to one owner (a person, an access level and the
// client's start-up parameters) for its whole life: it is only ever handed
// to a later session of the same owner, after the engine has reset it.
// Every connection, live or idle, and every login under way takes a slot
// of the budget; a session that finds the budget spent takes the slot of
// the longest-idle connection, or waits in line for one.
package pool

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Key is the owner of a connection.
type Key struct {
	Person string
	Level  string
	// Params stands for the start-up parameters the connection was
	// opened with, which a reset restores and the next session expects.
	Params string
}

// Options are a pool's bounds. Zero values mean no bound, except
// QueueTimeout.
type Options struct {
	// Enabled keeps connections between sessions; off, the pool only
	// holds connections to the budget.
	Enabled bool
	// IdleTimeout is how long an idle connection is kept.
	IdleTimeout time.Duration
	// MaxIdle bounds the idle connections; past it the longest idle goes.
	MaxIdle int
	// Max bounds all connections, live and idle, and logins under way.
	Max int
	// MaxPerPerson bounds one person's, at every level together.
	MaxPerPerson int
	// QueueTimeout is how long Get waits for a slot of the budget.
	QueueTimeout time.Duration
}

// DefaultQueueTimeout is Options.QueueTimeout when none is given.
const DefaultQueueTimeout = 30 * time.Second

// ErrBudget means the budget stayed spent for the whole QueueTimeout.
var ErrBudget = errors.New("connection budget spent")

// BudgetError says which budget was spent and for how long Get waited.
type BudgetError struct {
	PerPerson bool
	Max       int
	Waited    time.Duration
}

func (e *BudgetError) Error() string {
	waited := e.Waited.Round(time.Millisecond)
	if e.PerPerson {
		return fmt.Sprintf("%s: you already hold %d connection(s), the most that max_connections_per_person allows (waited %s); end one of your sessions, or ask whoever runs keygate to raise max_connections_per_person", ErrBudget, e.Max, waited)
	}
	return fmt.Sprintf("%s: all %d connections that max_connections allows are in use (waited %s); try again shortly, or ask whoever runs keygate to raise max_connections", ErrBudget, e.Max, waited)
}

func (e *BudgetError) Unwrap() error { return ErrBudget }

// Stats are a pool's counts, for metrics.
type Stats struct {
	Open    int // connections live or idle, and logins under way
	Idle    int
	Waiting int // sessions waiting for a slot now
	Max     int // Options.Max

	Reused   uint64 // sessions served by an idle connection
	Dialed   uint64 // slots handed out for a new login
	Waits    uint64 // sessions that had to wait
	WaitTime time.Duration
	Timeouts uint64 // sessions refused after QueueTimeout
	Evicted  uint64 // idle connections closed to free a slot or keep MaxIdle
	Expired  uint64 // idle connections closed after IdleTimeout
	Drained  uint64 // idle connections closed because their owner lost access
}

// Lease is one connection's hold on a slot, from its login until it is
// closed. Every lease is ended once, with Pool.Put or Lease.Close.
type Lease struct {
	key Key
	// epochs are the drain counts of the person, and of the person at
	// the level, when the lease was taken.
	epochs [2]uint64
	done   bool
}

// Key is the owner the lease was given for.
func (l *Lease) Key() Key { return l.key }

type idle[C any] struct {
	c     C
	lease *Lease
	since time.Time
	elem  *list.Element // in Pool.order
}

// Pool holds one database's connections of type C.
type Pool[C any] struct {
	o Options
	// closeIdle ends a connection that leaves the pool idle; it must not
	// block for long, as it may run with the pool's lock released but on
	// the path of a session that waits for the slot.
	closeIdle func(C)
	now       func() time.Time

	mu        sync.Mutex
	idle      map[Key][]*idle[C] // most recently idle last
	order     *list.List         // of *idle[C], longest idle first
	open      int
	perPerson map[string]int
	// epochs count the drains of each person (by name) and of each
	// person at a level (by epochKey): a lease taken before a drain of
	// its owner may not come back to the pool.
	epochs  map[string]uint64
	owners  map[Key]int // leases per owner, live or idle
	changed chan struct{}
	waiting int
	stats   Stats
	closed  bool
	stop    chan struct{}
	janitor bool
	// configuredIdle is Options.MaxIdle as configured; 0 leaves it to
	// SizeIdle.
	configuredIdle int
	// resets holds a token per reset under way (see Resetting).
	resets chan struct{}
}

// New makes a pool; closeIdle ends an idle connection it lets go.
func New[C any](o Options, closeIdle func(C)) *Pool[C] {
	if o.QueueTimeout <= 0 {
		o.QueueTimeout = DefaultQueueTimeout
	}
	return &Pool[C]{o: o, configuredIdle: o.MaxIdle, resets: make(chan struct{}, maxResets), closeIdle: closeIdle, now: time.Now, idle: map[Key][]*idle[C]{}, order: list.New(),
		perPerson: map[string]int{}, epochs: map[string]uint64{}, owners: map[Key]int{}, changed: make(chan struct{}), stop: make(chan struct{})}
}

// Get returns an idle connection of key's (ok true, with its lease), or a
// lease for a new one, which the caller logs in and ends with Put or
// Close. When the budget is spent it frees the slot of the longest-idle
// connection, or waits up to QueueTimeout for one, returning a
// *BudgetError when none came.
func (p *Pool[C]) Get(ctx context.Context, key Key) (c C, l *Lease, ok bool, err error) {
	var deadline <-chan time.Time
	var start time.Time
	for {
		p.mu.Lock()
		if p.closed {
			p.doneWaiting(start)
			p.mu.Unlock()
			return c, nil, false, errors.New("pool closed")
		}
		if c, l, ok := p.takeIdle(key); ok {
			p.stats.Reused++
			p.doneWaiting(start)
			p.mu.Unlock()
			return c, l, true, nil
		}
		victims, full := p.makeRoom(key.Person)
		if full == nil {
			l := p.lease(key)
			p.stats.Dialed++
			p.doneWaiting(start)
			p.mu.Unlock()
			p.closeAll(victims)
			return c, l, false, nil
		}
		if start.IsZero() {
			start = p.now()
			p.waiting++
			p.stats.Waits++
			t := time.NewTimer(p.o.QueueTimeout)
			defer t.Stop()
			deadline = t.C
		}
		changed := p.changed
		p.mu.Unlock()
		p.closeAll(victims)
		select {
		case <-changed:
		case <-deadline:
			p.mu.Lock()
			p.stats.Timeouts++
			full.Waited = p.doneWaiting(start)
			p.mu.Unlock()
			return c, nil, false, full
		case <-ctx.Done():
			p.mu.Lock()
			p.doneWaiting(start)
			p.mu.Unlock()
			return c, nil, false, ctx.Err()
		}
	}
}

// doneWaiting counts the end of a wait that began at start, if Get waited,
// and returns how long it was. p.mu is held.
func (p *Pool[C]) doneWaiting(start time.Time) time.Duration {
	if start.IsZero() {
		return 0
	}
	waited := p.now().Sub(start)
	p.waiting--
	p.stats.WaitTime += waited
	return waited
}

// takeIdle pops key's most recently idle connection. p.mu is held.
func (p *Pool[C]) takeIdle(key Key) (C, *Lease, bool) {
	var zero C
	conns := p.idle[key]
	if len(conns) == 0 {
		return zero, nil, false
	}
	e := conns[len(conns)-1]
	p.removeIdle(e)
	return e.c, e.lease, true
}

// makeRoom checks the budget for a new connection of person's, freeing the
// slots of idle connections where that makes room: the longest idle of the
// person's own for the per-person budget, of anyone's for the whole. It
// returns the connections it took out, for the caller to close, and the
// budget that stays spent, if any. p.mu is held.
func (p *Pool[C]) makeRoom(person string) ([]C, *BudgetError) {
	var victims []C
	if max := p.o.MaxPerPerson; max > 0 && p.perPerson[person] >= max {
		e := p.oldestIdle(func(k Key) bool { return k.Person == person })
		if e == nil {
			return nil, &BudgetError{PerPerson: true, Max: max}
		}
		p.evict(e)
		victims = append(victims, e.c)
	}
	if max := p.o.Max; max > 0 && p.open >= max {
		e := p.oldestIdle(nil)
		if e == nil {
			return victims, &BudgetError{Max: max}
		}
		p.evict(e)
		victims = append(victims, e.c)
	}
	return victims, nil
}

// oldestIdle is the longest-idle connection whose owner match accepts
// (any, when match is nil). p.mu is held.
func (p *Pool[C]) oldestIdle(match func(Key) bool) *idle[C] {
	for el := p.order.Front(); el != nil; el = el.Next() {
		e := el.Value.(*idle[C])
		if match == nil || match(e.lease.key) {
			return e
		}
	}
	return nil
}

// evict takes an idle connection out and ends its lease. p.mu is held.
func (p *Pool[C]) evict(e *idle[C]) {
	p.removeIdle(e)
	p.endLease(e.lease)
	p.stats.Evicted++
}

func (p *Pool[C]) lease(key Key) *Lease {
	p.open++
	p.perPerson[key.Person]++
	p.owners[key]++
	return &Lease{key: key, epochs: p.epochsOf(key)}
}

// epochKey names a person at a level among the epochs.
func epochKey(person, level string) string { return person + "\x00" + level }

func (p *Pool[C]) epochsOf(k Key) [2]uint64 {
	return [2]uint64{p.epochs[k.Person], p.epochs[epochKey(k.Person, k.Level)]}
}

// endLease frees a lease's slot and wakes those waiting. p.mu is held.
func (p *Pool[C]) endLease(l *Lease) {
	if l.done {
		return
	}
	l.done = true
	p.open--
	if p.perPerson[l.key.Person]--; p.perPerson[l.key.Person] <= 0 {
		delete(p.perPerson, l.key.Person)
	}
	if p.owners[l.key]--; p.owners[l.key] <= 0 {
		delete(p.owners, l.key)
	}
	p.wake()
}

// wake tells every waiting Get that a slot may be free. p.mu is held.
func (p *Pool[C]) wake() {
	if p.waiting > 0 {
		close(p.changed)
		p.changed = make(chan struct{})
	}
}

func (p *Pool[C]) removeIdle(e *idle[C]) {
	conns := p.idle[e.lease.key]
	for i, x := range conns {
		if x == e {
			conns = append(conns[:i], conns[i+1:]...)
			break
		}
	}
	if len(conns) == 0 {
		delete(p.idle, e.lease.key)
	} else {
		p.idle[e.lease.key] = conns
	}
	p.order.Remove(e.elem)
}

// maxResets bounds the resets under way on one database. When thousands
// of sessions end at once, thousands of resets at once would crowd the
// upstream until they time out; past the bound a connection is closed
// instead, which costs the upstream less than its reset.
const maxResets = 16

// Resetting reserves one of the resets that may run at once, for a
// connection about to be reset and Put; ok is false when none is free and
// the connection should be closed instead. done gives it back.
func (p *Pool[C]) Resetting() (done func(), ok bool) {
	select {
	case p.resets <- struct{}{}:
		return func() { <-p.resets }, true
	default:
		return nil, false
	}
}

// Close ends a lease whose connection is gone or being closed by its
// holder, freeing its slot.
func (p *Pool[C]) Close(l *Lease) {
	p.mu.Lock()
	p.endLease(l)
	p.mu.Unlock()
}

// Put keeps c, which the caller has reset, for its owner's next session.
// It returns false, ending nothing, when c may not stay: pooling is off,
// the pool is closed, or its owner lost access since the lease was taken
// (see Drain). The caller then closes c and the lease.
func (p *Pool[C]) Put(l *Lease, c C) bool {
	p.mu.Lock()
	if !p.o.Enabled || p.closed || l.done || p.epochsOf(l.key) != l.epochs {
		p.mu.Unlock()
		return false
	}
	var victims []C
	for p.o.MaxIdle > 0 && p.order.Len() >= p.o.MaxIdle {
		e := p.order.Front().Value.(*idle[C])
		p.evict(e)
		victims = append(victims, e.c)
	}
	e := &idle[C]{c: c, lease: l, since: p.now()}
	e.elem = p.order.PushBack(e)
	p.idle[l.key] = append(p.idle[l.key], e)
	p.wake()
	if !p.janitor && p.o.IdleTimeout > 0 {
		p.janitor = true
		go p.sweep()
	}
	p.mu.Unlock()
	p.closeAll(victims)
	return true
}

// sweep closes connections idle longer than IdleTimeout, until Close.
func (p *Pool[C]) sweep() {
	t := time.NewTicker(max(p.o.IdleTimeout/4, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		var victims []C
		cutoff := p.now().Add(-p.o.IdleTimeout)
		for el := p.order.Front(); el != nil; el = p.order.Front() {
			e := el.Value.(*idle[C])
			if e.since.After(cutoff) {
				break
			}
			p.removeIdle(e)
			p.endLease(e.lease)
			p.stats.Expired++
			victims = append(victims, e.c)
		}
		p.mu.Unlock()
		p.closeAll(victims)
	}
}

// SetMaxIdle changes MaxIdle, for a bound that is known only once the
// upstream was reached (half its max_connections).
func (p *Pool[C]) SetMaxIdle(n int) {
	p.mu.Lock()
	p.o.MaxIdle = n
	var victims []C
	for n > 0 && p.order.Len() > n {
		e := p.order.Front().Value.(*idle[C])
		p.evict(e)
		victims = append(victims, e.c)
	}
	p.mu.Unlock()
	p.closeAll(victims)
}

// Owners lists the owners holding connections, live or idle, for the
// gateway to check that each may still have them.
func (p *Pool[C]) Owners() []Key {
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := make([]Key, 0, len(p.owners))
	for k := range p.owners {
		keys = append(keys, k)
	}
	return keys
}

// Drain closes the idle connections of person at level (every level when
// level is empty) and keeps the person's connections now in use from
// coming back to the pool: the owner lost access. It returns how many it
// closed.
func (p *Pool[C]) Drain(person, level string) int {
	p.mu.Lock()
	if level == "" {
		p.epochs[person]++
	} else {
		p.epochs[epochKey(person, level)]++
	}
	var victims []C
	for el := p.order.Front(); el != nil; {
		next := el.Next()
		e := el.Value.(*idle[C])
		if e.lease.key.Person == person && (level == "" || e.lease.key.Level == level) {
			p.removeIdle(e)
			p.endLease(e.lease)
			p.stats.Drained++
			victims = append(victims, e.c)
		}
		el = next
	}
	p.mu.Unlock()
	p.closeAll(victims)
	return len(victims)
}

func (p *Pool[C]) closeAll(cs []C) {
	for _, c := range cs {
		p.closeIdle(c)
	}
}

// Stats returns the pool's counts.
func (p *Pool[C]) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Open, s.Idle, s.Waiting, s.Max = p.open, p.order.Len(), p.waiting, p.o.Max
	return s
}

// Shutdown closes every idle connection; later Puts are refused, and Gets
// fail.
func (p *Pool[C]) Shutdown() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.stop)
	p.wake()
	var victims []C
	for el := p.order.Front(); el != nil; el = p.order.Front() {
		e := el.Value.(*idle[C])
		p.removeIdle(e)
		p.endLease(e.lease)
		victims = append(victims, e.c)
	}
	p.mu.Unlock()
	p.closeAll(victims)
}
