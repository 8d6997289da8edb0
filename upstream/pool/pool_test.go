package pool

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeConn stands for an upstream connection. closes counts the calls of
// the pool's closeIdle on it; inUse is set while a session holds it.
type fakeConn struct {
	id     int64
	key    Key
	closes atomic.Int32
	inUse  atomic.Bool
}

func (c *fakeConn) closed() bool { return c.closes.Load() > 0 }

// fixture is a pool of fakeConns that records what closeIdle closed.
type fixture struct {
	t    *testing.T
	p    *Pool[*fakeConn]
	next atomic.Int64

	mu     sync.Mutex
	closed []*fakeConn // in the order closeIdle saw them
}

func newFixture(t *testing.T, o Options) *fixture {
	t.Helper()
	f := &fixture{t: t}
	f.p = New(o, f.closeIdle)
	t.Cleanup(f.p.Shutdown)
	return f
}

// closeIdle fails the test when a connection is closed twice or while a
// session holds it.
func (f *fixture) closeIdle(c *fakeConn) {
	if n := c.closes.Add(1); n > 1 {
		f.t.Errorf("connection %d closed %d times", c.id, n)
	}
	if c.inUse.Load() {
		f.t.Errorf("connection %d closed while a session holds it", c.id)
	}
	f.mu.Lock()
	f.closed = append(f.closed, c)
	f.mu.Unlock()
}

func (f *fixture) closedConns() []*fakeConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.closed)
}

func (f *fixture) conn(key Key) *fakeConn {
	return &fakeConn{id: f.next.Add(1), key: key}
}

// dial takes a lease for a new connection of key's, which must be given
// at once, and makes the connection.
func (f *fixture) dial(key Key) (*fakeConn, *Lease) {
	f.t.Helper()
	c, l, ok, err := f.p.Get(context.Background(), key)
	if err != nil {
		f.t.Fatalf("Get(%v): %v", key, err)
	}
	if ok {
		f.t.Fatalf("Get(%v) reused connection %d, want a lease for a new one", key, c.id)
	}
	if l == nil || l.Key() != key {
		f.t.Fatalf("Get(%v) gave lease %+v", key, l)
	}
	return f.conn(key), l
}

// idle dials a connection of key's and puts it back idle.
func (f *fixture) idle(key Key) *fakeConn {
	f.t.Helper()
	c, l := f.dial(key)
	if !f.p.Put(l, c) {
		f.t.Fatalf("Put(%v) refused", key)
	}
	return c
}

// idleAll dials a connection for each key, all at once, then puts them
// back idle in order, so that the first is the longest idle.
func (f *fixture) idleAll(keys ...Key) []*fakeConn {
	f.t.Helper()
	conns := make([]*fakeConn, len(keys))
	leases := make([]*Lease, len(keys))
	for i, k := range keys {
		conns[i], leases[i] = f.dial(k)
	}
	for i := range keys {
		if !f.p.Put(leases[i], conns[i]) {
			f.t.Fatalf("Put(%v) refused", keys[i])
		}
	}
	return conns
}

type result struct {
	c   *fakeConn
	l   *Lease
	ok  bool
	err error
	at  time.Time
}

// getAsync calls Get in its own goroutine and delivers what it returned.
func (f *fixture) getAsync(ctx context.Context, key Key) <-chan result {
	ch := make(chan result, 1)
	go func() {
		c, l, ok, err := f.p.Get(ctx, key)
		ch <- result{c, l, ok, err, time.Now()}
	}()
	return ch
}

// waitUntil polls cond until it holds, failing the test after 2s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitingGet starts a Get for key and returns once the pool counts it as
// waiting; it fails the test if the Get returned instead.
func (f *fixture) waitingGet(ctx context.Context, key Key) <-chan result {
	f.t.Helper()
	before := f.p.Stats().Waiting
	ch := f.getAsync(ctx, key)
	waitUntil(f.t, "Get waits", func() bool { return f.p.Stats().Waiting > before })
	select {
	case r := <-ch:
		f.t.Fatalf("Get(%v) returned (%v, %v) instead of waiting", key, r.ok, r.err)
	default:
	}
	return ch
}

// receive waits up to 2s for the result of a Get.
func receive(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(2 * time.Second):
		t.Fatal("Get still waiting after 2s")
		return result{}
	}
}

func sortedKeys(keys []Key) []Key {
	keys = slices.Clone(keys)
	slices.SortFunc(keys, func(a, b Key) int {
		return cmp.Or(cmp.Compare(a.Person, b.Person), cmp.Compare(a.Level, b.Level), cmp.Compare(a.Params, b.Params))
	})
	return keys
}

var (
	aliceRead  = Key{Person: "alice", Level: "read", Params: "db=app"}
	aliceWrite = Key{Person: "alice", Level: "write", Params: "db=app"}
	bobRead    = Key{Person: "bob", Level: "read", Params: "db=app"}
)

func TestReuse(t *testing.T) {
	f := newFixture(t, Options{Enabled: true})
	c := f.idle(aliceRead)
	if s := f.p.Stats(); s.Open != 1 || s.Idle != 1 || s.Dialed != 1 || s.Reused != 0 {
		t.Fatalf("after Put: %+v, want Open 1, Idle 1, Dialed 1", s)
	}
	got, l, ok, err := f.p.Get(context.Background(), aliceRead)
	if err != nil || !ok {
		t.Fatalf("Get = ok %v, err %v; want the idle connection", ok, err)
	}
	if got != c {
		t.Fatalf("Get gave connection %d, want %d", got.id, c.id)
	}
	if l == nil || l.Key() != aliceRead {
		t.Fatalf("Get gave lease %+v", l)
	}
	if c.closed() {
		t.Error("reused connection was closed")
	}
	if s := f.p.Stats(); s.Open != 1 || s.Idle != 0 || s.Reused != 1 || s.Dialed != 1 {
		t.Errorf("after reuse: %+v, want Open 1, Idle 0, Reused 1, Dialed 1", s)
	}
	// Back and out again: the lease goes round with its connection.
	if !f.p.Put(l, got) {
		t.Fatal("second Put refused")
	}
	if again, _, ok, _ := f.p.Get(context.Background(), aliceRead); !ok || again != c {
		t.Errorf("second reuse: ok %v", ok)
	}
	if s := f.p.Stats(); s.Reused != 2 || s.Dialed != 1 {
		t.Errorf("after second reuse: %+v, want Reused 2, Dialed 1", s)
	}
}

// TestReuseMostRecentlyIdle: of an owner's idle connections the most
// recently idle is reused, so that a surplus left by a burst of sessions
// stays unused and ages out with IdleTimeout.
func TestReuseMostRecentlyIdle(t *testing.T) {
	f := newFixture(t, Options{Enabled: true})
	conns := f.idleAll(aliceRead, aliceRead)
	if got, _, ok, _ := f.p.Get(context.Background(), aliceRead); !ok || got != conns[1] {
		t.Errorf("Get reused %v, want the most recently idle connection", ok)
	}
}

// TestIsolation protects the rule that a connection only ever serves its
// own owner: a session of another person, at another level or with other
// start-up parameters gets a lease for a new connection, and the idle one
// stays for its owner.
func TestIsolation(t *testing.T) {
	for _, tc := range []struct {
		name  string
		other Key
	}{
		{"other person", Key{Person: "bob", Level: "read", Params: "db=app"}},
		{"other level", Key{Person: "alice", Level: "write", Params: "db=app"}},
		{"other params", Key{Person: "alice", Level: "read", Params: "db=other"}},
		{"empty key", Key{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Options{Enabled: true})
			c := f.idle(aliceRead)
			f.dial(tc.other) // fails unless a new lease
			if c.closed() {
				t.Error("idle connection closed with no budget to free")
			}
			got, _, ok, err := f.p.Get(context.Background(), aliceRead)
			if err != nil || !ok || got != c {
				t.Errorf("owner's Get = ok %v, err %v; want its idle connection back", ok, err)
			}
		})
	}
}

// TestIsolationConcurrent runs many sessions of random owners through a
// small pool and checks that each connection handed out belongs to the
// session's owner, is not closed, and is not held by another session, and
// that the budget holds throughout.
func TestIsolationConcurrent(t *testing.T) {
	const max = 6
	f := newFixture(t, Options{Enabled: true, Max: max, MaxPerPerson: 4, MaxIdle: 4, QueueTimeout: 5 * time.Second})
	var keys []Key
	for _, person := range []string{"alice", "bob", "carol"} {
		for _, level := range []string{"read", "write"} {
			for _, params := range []string{"db=a", "db=b"} {
				keys = append(keys, Key{person, level, params})
			}
		}
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for range 200 {
				key := keys[r.IntN(len(keys))]
				c, l, ok, err := f.p.Get(context.Background(), key)
				if err != nil {
					t.Errorf("Get(%v): %v", key, err)
					return
				}
				if l.Key() != key {
					t.Errorf("Get(%v) gave a lease of %v", key, l.Key())
					return
				}
				if ok {
					if c.key != key {
						t.Errorf("Get(%v) gave connection %d of %v", key, c.id, c.key)
						return
					}
					if c.closed() {
						t.Errorf("Get(%v) gave closed connection %d", key, c.id)
						return
					}
				} else {
					c = f.conn(key)
				}
				if !c.inUse.CompareAndSwap(false, true) {
					t.Errorf("connection %d handed to two sessions", c.id)
					return
				}
				if s := f.p.Stats(); s.Open > max {
					t.Errorf("Open %d over Max %d", s.Open, max)
				}
				c.inUse.Store(false)
				if r.IntN(4) == 0 || !f.p.Put(l, c) {
					f.p.Close(l)
				}
			}
		})
	}
	wg.Wait()
	s := f.p.Stats()
	if s.Waiting != 0 || s.Timeouts != 0 || s.Open != s.Idle {
		t.Errorf("after all sessions: %+v, want no waiting, no timeouts, only idle connections open", s)
	}
	if s.Reused == 0 {
		t.Errorf("no connection reused: %+v", s)
	}
}

// TestBudgetWait: with the budget spent by live connections a Get waits,
// and is served as soon as a slot comes free.
func TestBudgetWait(t *testing.T) {
	c1Key := Key{Person: "p1", Level: "read"}
	c2Key := Key{Person: "p2", Level: "read"}
	for _, tc := range []struct {
		name   string
		waiter Key
		free   func(f *fixture, c1 *fakeConn, l1 *Lease)
		reuse  bool // the waiter gets c1 back
		closed bool // c1 is closed to free its slot
	}{
		{
			name:   "lease closed",
			waiter: Key{Person: "p3", Level: "read"},
			free:   func(f *fixture, _ *fakeConn, l1 *Lease) { f.p.Close(l1) },
		},
		{
			name:   "connection put, evicted for the waiter",
			waiter: Key{Person: "p3", Level: "read"},
			free: func(f *fixture, c1 *fakeConn, l1 *Lease) {
				if !f.p.Put(l1, c1) {
					f.t.Error("Put refused")
				}
			},
			closed: true,
		},
		{
			name:   "connection put, of the waiter's owner",
			waiter: c1Key,
			free: func(f *fixture, c1 *fakeConn, l1 *Lease) {
				if !f.p.Put(l1, c1) {
					f.t.Error("Put refused")
				}
			},
			reuse: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Options{Enabled: true, Max: 2, QueueTimeout: 5 * time.Second})
			c1, l1 := f.dial(c1Key)
			f.dial(c2Key)
			ch := f.waitingGet(context.Background(), tc.waiter)
			tc.free(f, c1, l1)
			r := receive(t, ch)
			if r.err != nil {
				t.Fatalf("waiting Get: %v", r.err)
			}
			if r.l == nil || r.l.Key() != tc.waiter {
				t.Fatalf("waiting Get gave lease %+v", r.l)
			}
			if r.ok != tc.reuse || (tc.reuse && r.c != c1) {
				t.Errorf("waiting Get reused %v, want %v", r.ok, tc.reuse)
			}
			if c1.closed() != tc.closed {
				t.Errorf("c1 closed %v, want %v", c1.closed(), tc.closed)
			}
			if got := f.closedConns(); len(got) > 1 {
				t.Errorf("%d connections closed, want at most c1", len(got))
			}
			s := f.p.Stats()
			if s.Open != 2 || s.Idle != 0 || s.Waiting != 0 || s.Waits != 1 || s.Timeouts != 0 {
				t.Errorf("stats %+v, want Open 2, Idle 0, Waiting 0, Waits 1, Timeouts 0", s)
			}
			if tc.closed && s.Evicted != 1 {
				t.Errorf("Evicted %d, want 1", s.Evicted)
			}
		})
	}
}

// TestBudgetEvictsLongestIdle: a Get that finds the budget spent, partly
// by idle connections, takes the slot of the longest idle at once instead
// of waiting.
func TestBudgetEvictsLongestIdle(t *testing.T) {
	f := newFixture(t, Options{Enabled: true, Max: 2, QueueTimeout: 5 * time.Second})
	older := f.idle(aliceRead)
	newer := f.idle(bobRead)
	f.dial(Key{Person: "carol", Level: "read"})
	if !older.closed() || newer.closed() {
		t.Errorf("closed: older %v, newer %v; want only the older", older.closed(), newer.closed())
	}
	s := f.p.Stats()
	if s.Open != 2 || s.Idle != 1 || s.Evicted != 1 || s.Waits != 0 {
		t.Errorf("stats %+v, want Open 2, Idle 1, Evicted 1, Waits 0", s)
	}
}

// TestBudgetTimeout: a Get that finds nothing freed within QueueTimeout is
// refused with a *BudgetError naming the budget that was spent.
func TestBudgetTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 150 * time.Millisecond
	for _, tc := range []struct {
		name      string
		o         Options
		held      []Key
		key       Key
		perPerson bool
		max       int
	}{
		{
			name: "max",
			o:    Options{Enabled: true, Max: 2, QueueTimeout: timeout},
			held: []Key{aliceRead, bobRead},
			key:  Key{Person: "carol", Level: "read"},
			max:  2,
		},
		{
			name:      "per person",
			o:         Options{Enabled: true, MaxPerPerson: 1, QueueTimeout: timeout},
			held:      []Key{aliceRead},
			key:       aliceWrite,
			perPerson: true,
			max:       1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tc.o)
			for _, k := range tc.held {
				f.dial(k)
			}
			start := time.Now()
			_, l, ok, err := f.p.Get(context.Background(), tc.key)
			elapsed := time.Since(start)
			if l != nil || ok {
				t.Fatalf("Get gave lease %+v, ok %v; want a refusal", l, ok)
			}
			if !errors.Is(err, ErrBudget) {
				t.Fatalf("Get: %v, want ErrBudget", err)
			}
			var be *BudgetError
			if !errors.As(err, &be) {
				t.Fatalf("Get: %T, want *BudgetError", err)
			}
			if be.PerPerson != tc.perPerson || be.Max != tc.max {
				t.Errorf("BudgetError %+v, want PerPerson %v, Max %d", be, tc.perPerson, tc.max)
			}
			if be.Waited < timeout || be.Waited > timeout+time.Second {
				t.Errorf("Waited %v, want about %v", be.Waited, timeout)
			}
			if elapsed < timeout {
				t.Errorf("refused after %v, before QueueTimeout %v", elapsed, timeout)
			}
			// The message names the setting to raise and its value.
			setting := "max_connections"
			if tc.perPerson {
				setting = "max_connections_per_person"
			}
			msg := err.Error()
			if !strings.Contains(msg, setting) || (!tc.perPerson && strings.Contains(msg, "per_person")) ||
				!strings.Contains(msg, " "+strconv.Itoa(tc.max)+" ") {
				t.Errorf("message %q, want it to name %s and %d", msg, setting, tc.max)
			}
			s := f.p.Stats()
			if s.Waits != 1 || s.Timeouts != 1 || s.Waiting != 0 || s.WaitTime < timeout || s.Open != len(tc.held) {
				t.Errorf("stats %+v, want Waits 1, Timeouts 1, Waiting 0, WaitTime >= %v, Open %d", s, timeout, len(tc.held))
			}
		})
	}
}

// TestPerPerson: a person at MaxPerPerson does not hold up another
// person's session.
func TestPerPerson(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{Enabled: true, MaxPerPerson: 1, QueueTimeout: 2 * time.Second})
	f.dial(aliceRead)
	ch := f.waitingGet(context.Background(), aliceWrite)
	f.dial(bobRead) // at once, while alice's second session waits
	select {
	case r := <-ch:
		t.Fatalf("alice's second Get returned (%v, %v) with her budget spent", r.ok, r.err)
	default:
	}
	if s := f.p.Stats(); s.Open != 2 || s.Waiting != 1 {
		t.Errorf("stats %+v, want Open 2, Waiting 1", s)
	}
}

// TestPerPersonEvictsOwnIdle: a person at MaxPerPerson whose connection at
// another level is idle gets a slot at once by closing that connection,
// not another person's, even one idle longer.
func TestPerPersonEvictsOwnIdle(t *testing.T) {
	f := newFixture(t, Options{Enabled: true, MaxPerPerson: 1, QueueTimeout: 5 * time.Second})
	bobs := f.idle(bobRead)
	alices := f.idle(aliceRead)
	f.dial(aliceWrite)
	if !alices.closed() || bobs.closed() {
		t.Errorf("closed: alice's %v, bob's %v; want only alice's", alices.closed(), bobs.closed())
	}
	s := f.p.Stats()
	if s.Open != 2 || s.Idle != 1 || s.Evicted != 1 || s.Waits != 0 {
		t.Errorf("stats %+v, want Open 2, Idle 1, Evicted 1, Waits 0", s)
	}
}

// TestCancelWhileWaiting: a session that gives up while waiting gets its
// context's error and is no longer counted as waiting.
func TestCancelWhileWaiting(t *testing.T) {
	f := newFixture(t, Options{Enabled: true, Max: 1, QueueTimeout: 5 * time.Second})
	_, held := f.dial(aliceRead)
	ctx, cancel := context.WithCancel(context.Background())
	ch := f.waitingGet(ctx, bobRead)
	cancel()
	r := receive(t, ch)
	if !errors.Is(r.err, context.Canceled) || r.l != nil {
		t.Fatalf("Get = lease %+v, err %v; want context.Canceled", r.l, r.err)
	}
	if s := f.p.Stats(); s.Waiting != 0 || s.Timeouts != 0 || s.Waits != 1 || s.Open != 1 {
		t.Errorf("stats %+v, want Waiting 0, Timeouts 0, Waits 1, Open 1", s)
	}
	// The slot the cancelled session waited for goes to the next one.
	f.p.Close(held)
	f.dial(bobRead)
}

func TestMaxIdle(t *testing.T) {
	f := newFixture(t, Options{Enabled: true, MaxIdle: 2})
	conns := f.idleAll(aliceRead, aliceRead, bobRead)
	first, second, third := conns[0], conns[1], conns[2]
	if !first.closed() || second.closed() || third.closed() {
		t.Errorf("closed: %v %v %v; want only the first", first.closed(), second.closed(), third.closed())
	}
	s := f.p.Stats()
	if s.Open != 2 || s.Idle != 2 || s.Evicted != 1 {
		t.Errorf("stats %+v, want Open 2, Idle 2, Evicted 1", s)
	}
	if got, _, ok, _ := f.p.Get(context.Background(), aliceRead); !ok || got != second {
		t.Errorf("Get(alice) reused %v, want the second connection", ok)
	}
}

// TestSetMaxIdle: a bound set after the pool was made applies to the
// following Puts.
func TestSetMaxIdle(t *testing.T) {
	f := newFixture(t, Options{Enabled: true})
	f.p.SetMaxIdle(2)
	conns := f.idleAll(aliceRead, aliceRead, aliceRead)
	if !conns[0].closed() || conns[1].closed() || conns[2].closed() {
		t.Error("past MaxIdle, the longest idle and only it should be closed")
	}
	if s := f.p.Stats(); s.Idle != 2 || s.Evicted != 1 {
		t.Errorf("stats %+v, want Idle 2, Evicted 1", s)
	}
}

// TestSetMaxIdleLowered protects the bound after SetMaxIdle lowers it
// below the idle connections already kept: the next Put must bring the
// idle connections down to the new bound, not just trade one for one.
func TestSetMaxIdleLowered(t *testing.T) {
	f := newFixture(t, Options{Enabled: true})
	f.idleAll(aliceRead, aliceRead, aliceRead, aliceRead)
	f.p.SetMaxIdle(2)
	f.idle(bobRead)
	if s := f.p.Stats(); s.Idle > 2 {
		t.Errorf("Idle %d after SetMaxIdle(2) and a Put, want at most 2", s.Idle)
	}
}

// TestIdleTimeout: the sweep closes a connection left idle past
// IdleTimeout, not before, and leaves alone one taken back meanwhile.
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	f := newFixture(t, Options{Enabled: true, IdleTimeout: timeout})
	put := time.Now()
	left := f.idle(aliceRead)
	taken := f.idle(bobRead)
	if got, _, ok, _ := f.p.Get(context.Background(), bobRead); !ok || got != taken {
		t.Fatal("Get(bob) did not reuse")
	}
	waitUntil(t, "the idle connection expires", left.closed)
	if waited := time.Since(put); waited < timeout {
		t.Errorf("closed after %v, before IdleTimeout %v", waited, timeout)
	}
	if taken.closed() {
		t.Error("connection in use closed by the sweep")
	}
	s := f.p.Stats()
	if s.Expired != 1 || s.Idle != 0 || s.Open != 1 {
		t.Errorf("stats %+v, want Expired 1, Idle 0, Open 1", s)
	}
	if got := f.p.Owners(); len(got) != 1 || got[0] != bobRead {
		t.Errorf("Owners %v, want only bob's", got)
	}
}

func TestDrainIdle(t *testing.T) {
	for _, tc := range []struct {
		name   string
		level  string
		closed []Key
		kept   []Key
	}{
		{"every level", "", []Key{aliceRead, aliceWrite}, []Key{bobRead}},
		{"one level", "read", []Key{aliceRead}, []Key{aliceWrite, bobRead}},
		{"level with nothing idle", "admin", nil, []Key{aliceRead, aliceWrite, bobRead}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Options{Enabled: true})
			conns := map[Key]*fakeConn{}
			for _, k := range []Key{aliceRead, aliceWrite, bobRead} {
				conns[k] = f.idle(k)
			}
			if n := f.p.Drain("alice", tc.level); n != len(tc.closed) {
				t.Errorf("Drain = %d, want %d", n, len(tc.closed))
			}
			for _, k := range tc.closed {
				if !conns[k].closed() {
					t.Errorf("%v not closed", k)
				}
			}
			for _, k := range tc.kept {
				if conns[k].closed() {
					t.Errorf("%v closed", k)
				}
			}
			s := f.p.Stats()
			if s.Drained != uint64(len(tc.closed)) || s.Idle != len(tc.kept) || s.Open != len(tc.kept) {
				t.Errorf("stats %+v, want Drained %d, Idle and Open %d", s, len(tc.closed), len(tc.kept))
			}
			if got, want := sortedKeys(f.p.Owners()), sortedKeys(tc.kept); !slices.Equal(got, want) {
				t.Errorf("Owners %v, want %v", got, want)
			}
		})
	}
}

// TestDrainRefusesEarlierLeases protects a revocation against sessions
// under way: a connection whose lease was taken before its person was
// drained may not come back to the pool, while one taken after may, and
// other people's are not touched.
func TestDrainRefusesEarlierLeases(t *testing.T) {
	for _, level := range []string{"", "read"} {
		t.Run("level="+level, func(t *testing.T) {
			f := newFixture(t, Options{Enabled: true})
			before, lb := f.dial(aliceRead)
			bobs, lbob := f.dial(bobRead)
			if n := f.p.Drain("alice", level); n != 0 {
				t.Errorf("Drain = %d with nothing idle", n)
			}
			after, la := f.dial(aliceRead)
			if f.p.Put(lb, before) {
				t.Error("Put of a lease taken before the Drain accepted")
			}
			if s := f.p.Stats(); s.Idle != 0 || s.Open != 3 {
				t.Errorf("after refused Put: %+v, want Idle 0, Open 3 (the lease still held)", s)
			}
			f.p.Close(lb)
			if !f.p.Put(la, after) {
				t.Error("Put of a lease taken after the Drain refused")
			}
			if !f.p.Put(lbob, bobs) {
				t.Error("Put of another person's lease refused")
			}
			if got, _, ok, _ := f.p.Get(context.Background(), aliceRead); !ok || got != after {
				t.Error("Get(alice) did not reuse the connection taken after the Drain")
			}
			if s := f.p.Stats(); s.Open != 2 || s.Idle != 1 {
				t.Errorf("stats %+v, want Open 2, Idle 1", s)
			}
		})
	}
}

// TestDisabled: without pooling, Put keeps nothing and ends nothing; the
// caller closes the connection and the lease.
func TestDisabled(t *testing.T) {
	f := newFixture(t, Options{Max: 1, QueueTimeout: time.Millisecond})
	c, l := f.dial(aliceRead)
	if f.p.Put(l, c) {
		t.Fatal("Put accepted with pooling off")
	}
	if s := f.p.Stats(); s.Idle != 0 || s.Open != 1 {
		t.Errorf("after Put: %+v, want Idle 0, Open 1", s)
	}
	if c.closed() {
		t.Error("refused connection closed by the pool")
	}
	if _, _, _, err := f.p.Get(context.Background(), aliceRead); !errors.Is(err, ErrBudget) {
		t.Errorf("Get with the lease still held: %v, want ErrBudget", err)
	}
	f.p.Close(l)
	f.dial(aliceRead)
}

func TestShutdown(t *testing.T) {
	f := newFixture(t, Options{Enabled: true, IdleTimeout: time.Hour})
	idle1 := f.idle(aliceRead)
	idle2 := f.idle(bobRead)
	live, l := f.dial(aliceWrite)
	f.p.Shutdown()
	if !idle1.closed() || !idle2.closed() || live.closed() {
		t.Errorf("closed: idle %v %v, live %v; want the idle ones only", idle1.closed(), idle2.closed(), live.closed())
	}
	if f.p.Put(l, live) {
		t.Error("Put accepted after Shutdown")
	}
	if _, l2, _, err := f.p.Get(context.Background(), aliceWrite); err == nil || l2 != nil {
		t.Errorf("Get after Shutdown = lease %+v, err %v; want an error", l2, err)
	}
	f.p.Close(l)
	if s := f.p.Stats(); s.Open != 0 || s.Idle != 0 {
		t.Errorf("stats %+v, want nothing open", s)
	}
	f.p.Shutdown() // a second time is harmless
}

// TestShutdownWakesWaiters protects a shutdown from being held up by
// sessions waiting for a slot: a Get waiting when the pool shuts down
// fails then, without waiting out QueueTimeout.
func TestShutdownWakesWaiters(t *testing.T) {
	t.Parallel()
	const timeout = 600 * time.Millisecond
	f := newFixture(t, Options{Enabled: true, Max: 1, QueueTimeout: timeout})
	f.dial(aliceRead)
	ch := f.waitingGet(context.Background(), bobRead)
	f.p.Shutdown()
	select {
	case r := <-ch:
		if r.err == nil || errors.Is(r.err, ErrBudget) || r.l != nil {
			t.Errorf("waiting Get = lease %+v, err %v; want the pool-closed error", r.l, r.err)
		}
	case <-time.After(timeout / 2):
		t.Error("Get still waiting after Shutdown")
		<-ch
	}
	if s := f.p.Stats(); s.Waiting != 0 {
		t.Errorf("Waiting %d after the Get returned", s.Waiting)
	}
}

// TestShutdownWhileWaitingCountsWaitEnd protects Stats.Waiting from a
// waiting Get that ends because the pool was shut down meanwhile (here
// woken by the slot of an idle connection Shutdown closed).
func TestShutdownWhileWaitingCountsWaitEnd(t *testing.T) {
	f := newFixture(t, Options{Enabled: true, MaxPerPerson: 1, QueueTimeout: 5 * time.Second})
	f.idle(bobRead)
	f.dial(aliceRead)
	ch := f.waitingGet(context.Background(), aliceWrite)
	f.p.Shutdown()
	r := receive(t, ch)
	if r.err == nil || r.l != nil {
		t.Errorf("waiting Get = lease %+v, err %v; want the pool-closed error", r.l, r.err)
	}
	if s := f.p.Stats(); s.Waiting != 0 {
		t.Errorf("Waiting %d after the only waiting Get returned", s.Waiting)
	}
}

// TestOwners: the owners listed are those holding a lease, live or idle,
// each until its last lease ends, whichever way it ends.
func TestOwners(t *testing.T) {
	f := newFixture(t, Options{Enabled: true, MaxPerPerson: 2, QueueTimeout: time.Millisecond})
	owners := func(want ...Key) {
		t.Helper()
		if got, want := sortedKeys(f.p.Owners()), sortedKeys(want); !slices.Equal(got, want) {
			t.Errorf("Owners %v, want %v", got, want)
		}
	}
	owners()
	_, l1 := f.dial(aliceRead)
	c2, l2 := f.dial(aliceRead)
	f.idle(bobRead)
	owners(aliceRead, bobRead)

	f.p.Close(l1)
	owners(aliceRead, bobRead) // alice still has l2
	if !f.p.Put(l2, c2) {
		t.Fatal("Put refused")
	}
	owners(aliceRead, bobRead) // idle counts

	// Evicted: alice's idle read connection makes room for her second
	// write one.
	f.dial(aliceWrite)
	f.dial(aliceWrite)
	owners(aliceWrite, bobRead)

	f.p.Drain("bob", "")
	owners(aliceWrite)
}
