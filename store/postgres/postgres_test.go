package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/internal/testenv"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// owner is the role that owns each test's database: a plain login role,
// to prove the store needs no superuser, no CREATEROLE and no extension.
const owner = "keygate_state"

var (
	ownerOnce     sync.Once
	ownerPassword = "state-password"
	databases     atomic.Int64
)

// newDatabase creates a fresh database owned by owner, dropped when the
// test ends, and returns the URL to reach it as owner.
func newDatabase(t *testing.T) string {
	t.Helper()
	p := testenv.StartPostgres(t)
	ctx := context.Background()
	ownerOnce.Do(func() {
		if err := p.Exec(ctx, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '%s'", owner, ownerPassword)); err != nil {
			t.Fatal(err)
		}
	})
	name := fmt.Sprintf("state_%d", databases.Add(1))
	if err := p.Exec(ctx, "postgres", fmt.Sprintf("CREATE DATABASE %s OWNER %s", name, owner)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Exec(context.Background(), "postgres", fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name))
	})
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", owner, ownerPassword, p.Address(), name)
}

func open(t *testing.T, url string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(context.Background(), url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, clock *storetest.Clock) store.Store {
		return open(t, newDatabase(t), WithClock(clock.Now))
	})
}

// Two servers on one database: each sees the other's writes, on its feed
// and in its reads.
func TestShared(t *testing.T) {
	storetest.RunShared(t, func(t *testing.T, clock *storetest.Clock) (store.Store, store.Store) {
		url := newDatabase(t)
		return open(t, url, WithClock(clock.Now)), open(t, url, WithClock(clock.Now))
	})
}

// The role the store runs as is an ordinary owner.
func TestRunsWithoutSuperuser(t *testing.T) {
	s := open(t, newDatabase(t))
	defer s.Close()
	var super, createRole, createDB bool
	err := s.pool.QueryRow(context.Background(), `SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user`).Scan(&super, &createRole, &createDB)
	if err != nil {
		t.Fatal(err)
	}
	if super || createRole || createDB {
		t.Fatalf("the store ran as a role with superuser %v, createrole %v, createdb %v", super, createRole, createDB)
	}
}

func TestAuditIsAppendOnly(t *testing.T) {
	ctx := context.Background()
	s := open(t, newDatabase(t))
	defer s.Close()
	if err := s.AppendAudit(ctx, []store.AuditEvent{{ChainSeq: 1, Type: "x", PrevHash: []byte{0}, Hash: []byte{1}}}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`UPDATE audit_events SET query = 'tampered'`, `DELETE FROM audit_events`, `TRUNCATE audit_events`} {
		if _, err := s.pool.Exec(ctx, q); err == nil {
			t.Errorf("%s succeeded", q)
		}
	}
}

// Whatever bytes an event carries come back as they went in: a client can
// put a NUL or invalid UTF-8 in its application name or its statement, and
// the hash covers them.
func TestAuditKeepsAnyBytes(t *testing.T) {
	ctx := context.Background()
	s := open(t, newDatabase(t))
	defer s.Close()
	odd := "a\x00b\xff\xfe\xc3"
	want := store.AuditEvent{ChainSeq: 1, Time: time.Unix(1, 5).UTC(), Type: "query", Actor: odd, User: "Ann\xff", Database: odd, Access: odd,
		Client: odd, SessionID: odd, Query: "select '" + odd + "'", Reason: odd, Detail: []byte(odd), PrevHash: []byte{0}, Hash: []byte{1}}
	if err := s.AppendAudit(ctx, []store.AuditEvent{want}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListAudit(ctx, store.AuditQuery{User: "aNN\xff", Database: odd})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("%d events for the user and database", len(got))
	}
	g := got[0]
	if g.Actor != want.Actor || g.User != want.User || g.Database != want.Database || g.Access != want.Access || g.Client != want.Client ||
		g.SessionID != want.SessionID || g.Query != want.Query || g.Reason != want.Reason || string(g.Detail) != string(want.Detail) || !g.Time.Equal(want.Time) {
		t.Fatalf("event came back as %#v", g)
	}
}

func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	url := newDatabase(t)
	s := open(t, url)
	g, err := s.CreateGroup(ctx, identity.Group{Name: "analysts"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, url)
	defer s.Close()
	if _, err := s.GetGroup(ctx, g.ID); err != nil {
		t.Fatalf("group lost across reopen: %v", err)
	}
}

// Servers starting together migrate once between them.
func TestOpenAtOnce(t *testing.T) {
	url := newDatabase(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := Open(context.Background(), url)
			if err == nil {
				s.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// A database a newer keygate migrated further is refused before anything
// runs.
func TestNewerSchemaIsRefused(t *testing.T) {
	ctx := context.Background()
	url := newDatabase(t)
	s := open(t, url)
	if _, err := s.pool.Exec(ctx, `INSERT INTO goose_db_version (version_id, is_applied) VALUES (999, true)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(ctx, url)
	var newer *NewerSchemaError
	if !errors.As(err, &newer) || newer.Schema != 999 {
		t.Fatalf("Open = %v, want a NewerSchemaError for 999", err)
	}
}

// A server that missed revisions (pruned before it read them) tells its
// watchers to re-check everything, then goes on with what follows.
func TestMissedRevisionsResync(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url := newDatabase(t)
	a, b := open(t, url), open(t, url)
	defer a.Close()
	defer b.Close()
	feed := b.Watch(ctx)
	// Revisions 1 to 5 as if written and pruned.
	if _, err := a.pool.Exec(ctx, `UPDATE feed_revision SET rev = rev + 5`); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateUser(ctx, identity.User{UserName: "alice", Active: true}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []store.Change{{Kind: store.Resync}, {Kind: store.UserChanged, User: "alice"}} {
		select {
		case got := <-feed:
			got.At = time.Time{}
			if got != want {
				t.Fatalf("change %d = %+v, want %+v", i, got, want)
			}
		case <-time.After(storetest.FeedBound):
			t.Fatalf("change %d (%+v) not delivered", i, want)
		}
	}
}

// Without notifications (a pooler that drops them, a LISTEN connection
// that broke unnoticed) the poll still delivers within its interval.
func TestFeedWithoutNotify(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url := newDatabase(t)
	a, b := open(t, url), open(t, url, WithPollInterval(200*time.Millisecond))
	defer a.Close()
	defer b.Close()
	feed := b.Watch(ctx)
	// Write as a would, but without the NOTIFY.
	began := time.Now()
	err := pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `WITH r AS (UPDATE feed_revision SET rev = rev + 1 RETURNING rev)
			INSERT INTO feed_changes (rev, n, kind, user_name, group_name, at) SELECT rev, 1, $1, 'alice', '', 1 FROM r`, int16(store.UserChanged))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-feed:
		if got.Kind != store.UserChanged || got.User != "alice" {
			t.Fatalf("change = %+v", got)
		}
		t.Logf("delivered by the poll after %s", time.Since(began))
	case <-time.After(2 * time.Second):
		t.Fatal("the poll did not deliver the change")
	}
}

// Servers sharing the store append to chains of their own at once: each
// chain keeps its order, the positions run without a gap in commit order,
// and a number used twice in a chain refuses the whole batch.
func TestAuditChains(t *testing.T) {
	ctx := context.Background()
	url := newDatabase(t)
	a, b := open(t, url), open(t, url)
	defer a.Close()
	defer b.Close()
	const batches, perBatch = 40, 5
	var wg sync.WaitGroup
	for _, w := range []struct {
		s     *Store
		chain string
	}{{a, "a"}, {b, "b"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range batches {
				var events []store.AuditEvent
				for j := range perBatch {
					n := int64(i*perBatch + j + 1)
					events = append(events, store.AuditEvent{Chain: w.chain, ChainSeq: n, Type: "x", PrevHash: []byte{0}, Hash: []byte{1}})
				}
				if err := w.s.AppendAudit(ctx, events); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got, err := b.ListAudit(ctx, store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2*batches*perBatch {
		t.Fatalf("%d events, want %d", len(got), 2*batches*perBatch)
	}
	next := map[string]int64{"a": 1, "b": 1}
	for i, e := range got {
		if e.Seq != int64(i+1) || e.ChainSeq != next[e.Chain] {
			t.Fatalf("event at %d: position %d, chain %q number %d (want %d)", i, e.Seq, e.Chain, e.ChainSeq, next[e.Chain])
		}
		next[e.Chain]++
	}
	for _, c := range []string{"a", "b"} {
		if h, err := a.ChainHead(ctx, c); err != nil || h.ChainSeq != batches*perBatch {
			t.Errorf("ChainHead(%s) = %d, %v", c, h.ChainSeq, err)
		}
	}
	dup := []store.AuditEvent{{Chain: "a", ChainSeq: batches*perBatch + 1, Type: "x"}, {Chain: "a", ChainSeq: 1, Type: "x"}}
	if err := a.AppendAudit(ctx, dup); err == nil {
		t.Fatal("AppendAudit accepted a chain number used before")
	}
	if h, _ := a.ChainHead(ctx, "a"); h.ChainSeq != batches*perBatch {
		t.Errorf("a refused batch left chain a at %d", h.ChainSeq)
	}
	// The refused batch took no positions: the next one continues the log.
	if err := a.AppendAudit(ctx, dup[:1]); err != nil {
		t.Fatal(err)
	}
	if last, err := b.LastAudit(ctx); err != nil || last.Seq != 2*batches*perBatch+1 {
		t.Errorf("LastAudit = position %d, %v", last.Seq, err)
	}
}

// One node name, one server: a second server under the name is refused
// until the first closes.
func TestHoldNode(t *testing.T) {
	ctx := context.Background()
	url := newDatabase(t)
	a, b := open(t, url), open(t, url)
	defer b.Close()
	if err := a.HoldNode(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := b.HoldNode(ctx, "a"); !errors.Is(err, ErrNodeTaken) {
		t.Fatalf("a second server as node a: %v", err)
	}
	if err := b.HoldNode(ctx, "b"); err != nil {
		t.Fatalf("node b beside node a: %v", err)
	}
	a.Close()
	c := open(t, url)
	defer c.Close()
	waitHeld := time.Now().Add(5 * time.Second)
	for {
		err := c.HoldNode(ctx, "a")
		if err == nil {
			break
		}
		if time.Now().After(waitHeld) {
			t.Fatalf("node a once its server closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLock: a lock one server holds makes another wait, and the two take
// it in turn: no two holders at once, with many goroutines on each.
func TestLock(t *testing.T) {
	ctx := context.Background()
	url := newDatabase(t)
	a, b := open(t, url), open(t, url)
	defer a.Close()
	defer b.Close()
	unlock, err := a.Lock(ctx, "window dave.rw")
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := b.Lock(short, "window dave.rw"); err == nil {
		t.Fatal("b took a lock a holds")
	}
	if u, err := b.Lock(ctx, "window erin.rw"); err != nil {
		t.Fatalf("another name: %v", err)
	} else {
		u()
	}
	unlock()
	again, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if u, err := b.Lock(again, "window dave.rw"); err != nil {
		t.Fatalf("b after a unlocked: %v", err)
	} else {
		u()
	}

	var inside, most, turns atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for range 10 {
				unlock, err := s.Lock(ctx, "window dave.rw")
				if err != nil {
					t.Error(err)
					return
				}
				n := inside.Add(1)
				if n > most.Load() {
					most.Store(n)
				}
				time.Sleep(200 * time.Microsecond)
				inside.Add(-1)
				turns.Add(1)
				unlock()
			}
		})
	}
	wg.Wait()
	if most.Load() != 1 || turns.Load() != 160 {
		t.Fatalf("%d holders at once at most, %d turns; want 1 and 160", most.Load(), turns.Load())
	}
}

// TestNodeHeldAfterConnectionLoss: when the connection holding the node
// name breaks (as in a restart of the state database), NodeHeld takes the
// name back; if another server took it meanwhile, NodeHeld says so.
func TestNodeHeldAfterConnectionLoss(t *testing.T) {
	ctx := context.Background()
	url := newDatabase(t)
	a, b := open(t, url), open(t, url)
	defer a.Close()
	defer b.Close()
	if err := a.HoldNode(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	kill := func() {
		t.Helper()
		var n int
		if err := b.pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
			WHERE locktype = 'advisory' AND classid = $1 AND granted AND pid <> pg_backend_pid()`, nodeLockSpace).Scan(&n); err != nil || n != 1 {
			t.Fatalf("ending the node lock's connection: %d ended, %v", n, err)
		}
	}
	kill()
	waitHeld(t, a)
	if err := b.HoldNode(ctx, "a"); !errors.Is(err, ErrNodeTaken) {
		t.Fatalf("b as node a after a took its name back: %v", err)
	}
	kill()
	// b takes the name while a's connection is gone.
	deadline := time.Now().Add(5 * time.Second)
	for b.HoldNode(ctx, "a") != nil {
		if time.Now().After(deadline) {
			t.Fatal("b could not take node a's free name")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := a.NodeHeld(ctx); !errors.Is(err, ErrNodeTaken) {
		t.Fatalf("a after b took its name: %v, want ErrNodeTaken", err)
	}
}

// waitHeld waits for s to hold its node name again.
func waitHeld(t *testing.T, s *Store) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.NodeHeld(context.Background())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node name not taken back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
