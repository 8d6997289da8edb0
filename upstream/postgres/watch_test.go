package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/internal/testenv"
)

// watched is an Upstream with a watcher of its own, whose reports the
// test reads.
type watched struct {
	*Upstream
	mu         sync.Mutex
	intrusions []Intrusion
}

// newWatched makes an Upstream for db on its own Servers and runs the
// watcher every interval until the test ends.
func newWatched(t *testing.T, p *testenv.Postgres, db string, interval time.Duration) *watched {
	t.Helper()
	w := &watched{}
	ss := NewServers(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ss.OnIntrusion = func(in Intrusion) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.intrusions = append(w.intrusions, in)
	}
	u, err := New(Config{Name: db, Address: p.Address(), Database: db, Schemas: []string{"public"},
		AdminUser: p.AdminUser, AdminPassword: p.AdminPassword, TLS: "disable"}, ss, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	if err := u.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go ss.Watch(ctx, interval)
	w.Upstream = u
	return w
}

// intrusion waits for the report of a backend of role.
func (w *watched) intrusion(t *testing.T, role string, within time.Duration) Intrusion {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		for _, in := range w.intrusions {
			if in.Role == role {
				w.mu.Unlock()
				return in
			}
		}
		w.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no intrusion reported for %s within %s", role, within)
	return Intrusion{}
}

func (w *watched) reported(role string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, in := range w.intrusions {
		if in.Role == role {
			n++
		}
	}
	return n
}

// direct logs in to the upstream as role, bypassing keygate.
func direct(t *testing.T, p *testenv.Postgres, db, role, password string) *pgconn.PgConn {
	t.Helper()
	host, port, _ := net.SplitHostPort(p.Address())
	c, err := pgconn.Connect(context.Background(), fmt.Sprintf("host=%s port=%s dbname=%s user=%s password=%s sslmode=disable", host, port, db, role, password))
	if err != nil {
		t.Fatalf("direct login as %s: %v", role, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// waitClosed waits until the server closes c, and says when.
func waitClosed(t *testing.T, c *pgconn.PgConn, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		err := c.Exec(ctx, "SELECT 1").Close()
		cancel()
		if err != nil {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("direct connection still open after %s", within)
	return 0
}

func TestWatcherEndsBackendsKeygateDidNotOpen(t *testing.T) {
	p := testenv.StartPostgres(t)
	p.CreateDatabase(t, "up_watch", setupSQL)
	w := newWatched(t, p, "up_watch", 200*time.Millisecond)
	mine := connect(t, w.Upstream, "ivan", access.ReadWrite)

	for _, role := range []string{"ivan.rw", GroupRole("up_watch", access.ReadOnly)} {
		t.Run(role, func(t *testing.T) {
			// keygate leaves its roles with a password expiry in the past,
			// which a person cannot change: only a superuser's change makes
			// this login possible.
			if err := p.Exec(context.Background(), "postgres", fmt.Sprintf("ALTER ROLE %s LOGIN PASSWORD 'direct-secret' VALID UNTIL 'infinity'", ident(role))); err != nil {
				t.Fatal(err)
			}
			c := direct(t, p, "up_watch", role, "direct-secret")
			pid := c.PID()
			took := waitClosed(t, c, 5*time.Second)
			t.Logf("direct backend of %s ended %s after login", role, took)
			in := w.intrusion(t, role, time.Second)
			if in.PID != pid || !in.Terminated || in.ClientAddr != "127.0.0.1" || in.ClientPort <= 0 || in.Database != "up_watch" {
				t.Errorf("intrusion = %+v, want pid %d terminated from 127.0.0.1 on up_watch", in, pid)
			}
			wantPerson := ""
			if role == "ivan.rw" {
				wantPerson = "ivan"
			}
			if in.Person != wantPerson {
				t.Errorf("intrusion names person %q, want %q", in.Person, wantPerson)
			}
		})
	}
	// keygate's own backend of the same role was left alone.
	if got := mine.value("SELECT 1"); got != "1" {
		t.Errorf("keygate's own session: %q", got)
	}
}

// Many logins of one role while the watcher sweeps as often as it can: none
// of keygate's own backends is ever taken for someone else's.
func TestWatcherLeavesKeygateBackendsAlone(t *testing.T) {
	p := testenv.StartPostgres(t)
	p.CreateDatabase(t, "up_watch_own", setupSQL)
	w := newWatched(t, p, "up_watch_own", time.Millisecond)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 15; i++ {
				c, err := w.Acquire(context.Background(), "olga", access.ReadOnly, nil)
				if err != nil {
					errs <- err
					return
				}
				fe := pgproto3.NewFrontend(c, c)
				fe.Send(&pgproto3.Query{String: "SELECT pg_sleep(0.01)"})
				if err := fe.Flush(); err != nil {
					errs <- err
				}
				for {
					msg, err := fe.Receive()
					if err != nil {
						errs <- fmt.Errorf("keygate's own backend was ended: %w", err)
						break
					}
					if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
						break
					}
				}
				w.Release(c, false)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := w.reported("olga.ro"); n != 0 {
		t.Errorf("%d of keygate's own backends were reported as intrusions: %+v", n, w.intrusions)
	}
	wantAtRest(t, p, "olga.ro")
}

// A backend that keeps committing in a loop that swallows cancels stops
// for good when Terminate returns.
func TestTerminateEndsCancelSwallowingLoop(t *testing.T) {
	p, u := newDatabase(t, "up_terminate")
	if err := p.Exec(context.Background(), "up_terminate", "SET ROLE keygate_admin; CREATE TABLE ticks (at timestamptz NOT NULL DEFAULT clock_timestamp())"); err != nil {
		t.Fatal(err)
	}
	s := connect(t, u, "tess", access.ReadWrite)
	s.fe.Send(&pgproto3.Query{String: `DO $$ BEGIN LOOP
		BEGIN INSERT INTO ticks DEFAULT VALUES; PERFORM pg_sleep(0.005); EXCEPTION WHEN query_canceled THEN NULL; END;
		COMMIT; END LOOP; END $$`})
	if err := s.fe.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for value(t, p, "up_terminate", "SELECT count(*) >= 5 FROM ticks") != "t" {
		if time.Now().After(deadline) {
			t.Fatal("the loop did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A cancel alone does not stop it.
	if err := u.Cancel(ctx, s.conn); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	gone, err := u.Terminate(ctx, s.conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("backend gone %s after Terminate was called", gone.Sub(start))
	s.u.Release(s.conn, false)
	time.Sleep(200 * time.Millisecond)
	later := value(t, p, "up_terminate", fmt.Sprintf("SELECT count(*) FROM ticks WHERE at > '%s'", gone.UTC().Format(time.RFC3339Nano)))
	if later != "0" {
		t.Errorf("%s rows committed after the backend was reported gone", later)
	}
	if n := value(t, p, "postgres", fmt.Sprintf("SELECT count(*) FROM pg_stat_activity WHERE pid = %d", s.conn.PID)); n != "0" {
		t.Errorf("backend %d still in pg_stat_activity", s.conn.PID)
	}
	wantAtRest(t, p, "tess.rw")
}

// A person can set their role's password from inside a session; when
// their last session ends, the password goes.
func TestReleaseClearsPasswordSetInSession(t *testing.T) {
	p, u := newDatabase(t, "up_selfpw")
	s := connect(t, u, "sara", access.ReadOnly)
	s.ok("ALTER ROLE CURRENT_USER PASSWORD 'i-know-this'")
	if got := value(t, p, "postgres", "SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = 'sara.ro'"); got != "f" {
		t.Fatalf("the password set in the session did not take (rolpassword IS NULL = %s)", got)
	}
	s.u.Release(s.conn, false)
	wantAtRest(t, p, "sara.ro")
}

// The person races keygate's reset of their role by changing its password
// in a loop; keygate's reset retries until it takes.
func TestResetWinsAgainstConcurrentPasswordChanges(t *testing.T) {
	p, u := newDatabase(t, "up_race")
	s := connect(t, u, "rick", access.ReadOnly)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.fe.Send(&pgproto3.Query{String: "ALTER ROLE CURRENT_USER PASSWORD 'i-know-this'"})
			s.fe.Flush()
			for {
				msg, err := s.fe.Receive()
				if err != nil {
					return
				}
				if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
					break
				}
			}
		}
	}()
	for i := 0; i < 30; i++ {
		c, err := u.Acquire(context.Background(), "rick", access.ReadOnly, nil)
		if err != nil && !strings.Contains(err.Error(), "28P01") {
			t.Fatalf("Connect %d: %v", i, err)
		}
		if c != nil {
			u.Release(c, false)
		}
	}
	close(stop)
	<-done
	canLogin := value(t, p, "postgres", "SELECT rolcanlogin FROM pg_authid WHERE rolname = 'rick.ro'")
	if canLogin != "f" {
		t.Errorf("rick.ro is LOGIN after the race")
	}
	s.u.Release(s.conn, false)
	wantAtRest(t, p, "rick.ro")
}

func TestPrivilegesGateConnections(t *testing.T) {
	p := testenv.StartPostgres(t)
	// No tables: the weak role owns nothing to grant on.
	p.CreateDatabase(t, "up_priv", "")
	ctx := context.Background()
	if err := p.Exec(ctx, "postgres", "CREATE ROLE keygate_weak LOGIN CREATEROLE PASSWORD 'weak-password'"); err != nil {
		t.Fatal(err)
	}
	dropRole(t, p, "keygate_weak")
	u, err := New(Config{Name: "up_priv", Address: p.Address(), Database: "up_priv", Schemas: []string{"public"},
		AdminUser: "keygate_weak", AdminPassword: "weak-password", TLS: "disable"}, servers, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	_, err = u.Acquire(ctx, "una", access.ReadOnly, nil)
	want := `GRANT pg_signal_backend TO keygate_weak; GRANT pg_read_all_stats TO keygate_weak;`
	if !errors.Is(err, ErrPrivileges) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Connect with an admin role lacking privileges: %v, want ErrPrivileges naming %s", err, want)
	}
	if err := p.Exec(ctx, "postgres", "GRANT pg_signal_backend, pg_read_all_stats TO keygate_weak"); err != nil {
		t.Fatal(err)
	}
	saved := recheckPrivileges
	recheckPrivileges = 0
	defer func() { recheckPrivileges = saved }()
	c, err := u.Acquire(ctx, "una", access.ReadOnly, nil)
	if err != nil {
		t.Fatalf("Connect once the privileges are granted: %v", err)
	}
	u.Release(c, false)
}

func TestHBAOpen(t *testing.T) {
	self := net.ParseIP("10.0.0.5")
	rule := func(line int, typ, db, user, addr, mask, method string) hbaRule {
		return hbaRule{line: line, typ: typ, databases: []string{db}, users: []string{user}, address: addr, netmask: mask, method: method}
	}
	for _, tc := range []struct {
		name  string
		rules []hbaRule
		open  int // the line that opens, or 0
	}{
		{"recommended", []hbaRule{
			rule(1, "local", "all", "all", "", "", "peer"),
			rule(2, "host", "all", "+keygate_people", "10.0.0.5", "255.255.255.255", "scram-sha-256"),
			rule(3, "host", "all", "+keygate_people", "all", "", "reject"),
			rule(4, "host", "all", "all", "0.0.0.0", "0.0.0.0", "scram-sha-256"),
		}, 0},
		{"everyone from anywhere", []hbaRule{rule(7, "host", "all", "all", "0.0.0.0", "0.0.0.0", "scram-sha-256")}, 7},
		{"allow before reject", []hbaRule{
			rule(1, "hostssl", "all", "all", "10.0.0.0", "255.0.0.0", "scram-sha-256"),
			rule(2, "host", "all", "+keygate_people", "all", "", "reject"),
		}, 1},
		{"v4 closed, v6 open", []hbaRule{
			rule(1, "host", "all", "+keygate_people", "0.0.0.0", "0.0.0.0", "reject"),
			rule(2, "host", "all", "all", "::", "::", "scram-sha-256"),
		}, 2},
		{"other database only", []hbaRule{rule(1, "host", "analytics", "all", "0.0.0.0", "0.0.0.0", "trust")}, 0},
		{"other users only", []hbaRule{rule(1, "host", "all", "app", "0.0.0.0", "0.0.0.0", "trust")}, 0},
		{"a person role by name", []hbaRule{rule(3, "host", "orders", "dave.rw", "192.168.1.9", "255.255.255.255", "trust")}, 3},
		{"host name", []hbaRule{rule(5, "host", "all", "all", "db-clients.example.com", "", "scram-sha-256")}, 5},
		{"no rules", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			open, r := hbaOpen(tc.rules, "orders", self)
			if open != (tc.open != 0) || (open && r.line != tc.open) {
				t.Errorf("hbaOpen = %v (line %d), want open at line %d", open, r.line, tc.open)
			}
		})
	}
}

// A parallel query's workers run as the person's role under pids keygate
// did not open: the watcher judges them by their leader and leaves them
// alone, or the query fails ("terminating background worker").
func TestWatcherLeavesParallelWorkersAlone(t *testing.T) {
	p := testenv.StartPostgres(t)
	p.CreateDatabase(t, "up_watch_parallel", setupSQL+"CREATE TABLE big AS SELECT g FROM generate_series(1, 2000000) g; ANALYZE big;")
	w := newWatched(t, p, "up_watch_parallel", time.Millisecond)
	c, err := w.Acquire(context.Background(), "pia", access.ReadOnly, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Release(c, false)
	fe := pgproto3.NewFrontend(c, c)
	const parallel = `SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
		SET min_parallel_table_scan_size = 0; SELECT sum(g) FROM big`
	for range 3 {
		fe.Send(&pgproto3.Query{String: parallel})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		for done := false; !done; {
			msg, err := fe.Receive()
			if err != nil {
				t.Fatalf("keygate's own backend was ended: %v", err)
			}
			switch m := msg.(type) {
			case *pgproto3.ErrorResponse:
				t.Fatalf("parallel query failed: %s %s", m.Code, m.Message)
			case *pgproto3.ReadyForQuery:
				done = true
			}
		}
	}
	if n := w.reported("pia.ro"); n != 0 {
		t.Errorf("%d parallel workers were reported as intrusions: %+v", n, w.intrusions)
	}
}

// Many sessions ending at once are all confirmed gone: one query a tick
// answers every wait, so the admin pool is not the queue they wait in.
func TestTerminateManyAtOnce(t *testing.T) {
	p, u := newDatabase(t, "up_many")
	const n = 40
	sessions := make([]*rawSession, n)
	for i := range sessions {
		sessions[i] = connect(t, u, fmt.Sprintf("many%d", i), access.ReadOnly)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	errs := make(chan error, n)
	for _, s := range sessions {
		go func() {
			_, err := u.Terminate(ctx, s.conn)
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d backends ended and confirmed gone in %s", n, time.Since(start))
	if left := value(t, p, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE usename LIKE 'many%'"); left != "0" {
		t.Fatalf("%s backends still listed", left)
	}
	u.gone.mu.Lock()
	defer u.gone.mu.Unlock()
	if len(u.gone.waiting) != 0 {
		t.Fatalf("%d waits left behind", len(u.gone.waiting))
	}
}
