package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/api"
)

// one runs sql on c and returns the first column of its first row.
func one(t testing.TB, c *pgconn.PgConn, sql string) string {
	t.Helper()
	res, err := c.Exec(context.Background(), sql).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if len(res) == 0 || len(res[0].Rows) == 0 {
		return ""
	}
	return string(res[0].Rows[0][0])
}

// sessionEvent is the latest audit event of type typ of user's sessions
// on db whose upstream backend (or MySQL thread) was pid.
func sessionEvent(t testing.TB, s *kgServer, user, db, typ, pid string) *api.AuditEvent {
	t.Helper()
	events := s.audit(t, "--user", user, "--db", db, "--type", typ)
	for i := len(events) - 1; i >= 0; i-- {
		if toString(events[i].Detail["upstream_pid"]) == pid {
			return &events[i]
		}
	}
	return nil
}

func toString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return itoa(int(v))
	}
	return ""
}

// A person's upstream connection serves her next session at the same
// level and with the same start-up parameters, reset with DISCARD ALL: no
// setting, temporary table, prepared statement, cursor, LISTEN or advisory
// lock of the first session reaches the second. It never serves another
// person, another level or other parameters, a session that ended inside a
// transaction gives it up, and the person's revocation ends it.
func TestPoolReusesResetsAndRevokes(t *testing.T) {
	s := startServerWith(t, "pool", serverOptions{stopWithTest: true})
	s.addUser(t, "pia", "engineers")
	s.addUser(t, "pete", "engineers")
	tok := s.token(t, "pia", "orders", "--access", "rw")
	ctx := context.Background()

	c1 := s.pgx(t, "pia", "orders", tok)
	pid := one(t, c1, "SELECT pg_backend_pid()")
	app := one(t, c1, "SHOW application_name")
	for _, q := range []string{
		"SET work_mem = '77MB'",
		"SELECT set_config('application_name', 'leaky', false)",
		"CREATE TEMP TABLE leak (x int)",
		"PREPARE leakstmt AS SELECT 1",
		"BEGIN; DECLARE leakcur CURSOR WITH HOLD FOR SELECT 1; COMMIT",
		"LISTEN leakchan",
		"SELECT pg_advisory_lock(4242)",
	} {
		one(t, c1, q)
	}
	c1.Close(ctx)
	waitFor(t, 5*time.Second, func() bool { return sessionEvent(t, s, "pia", "orders", "session.end", pid) != nil })
	if end := sessionEvent(t, s, "pia", "orders", "session.end", pid); end.Detail["upstream_end"] != "pooled" {
		t.Fatalf("first session's end: upstream_end %v, want pooled", end.Detail["upstream_end"])
	}

	c2 := s.pgx(t, "pia", "orders", tok)
	if got := one(t, c2, "SELECT pg_backend_pid()"); got != pid {
		t.Fatalf("second session got backend %s, want the pooled %s", got, pid)
	}
	start := sessionEvent(t, s, "pia", "orders", "session.start", pid)
	if start == nil || start.Detail["upstream_reused"] != true {
		t.Fatalf("second session's start does not say its backend was reused: %+v", start)
	}
	for q, want := range map[string]string{
		"SHOW work_mem":                                "4MB",
		"SHOW application_name":                        app,
		"SELECT to_regclass('pg_temp.leak') IS NULL":   "t",
		"SELECT count(*) FROM pg_prepared_statements":  "0",
		"SELECT count(*) FROM pg_cursors":              "0",
		"SELECT count(*) FROM pg_listening_channels()": "0",
		"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()": "0",
		"SELECT current_user": "pia.rw",
	} {
		if got := one(t, c2, q); got != want {
			t.Errorf("after reuse, %s = %q, want %q", q, got, want)
		}
	}

	// While c2 holds pia's backend, others get their own; once it is
	// pooled, it serves none of them.
	c2.Close(ctx)
	waitFor(t, 5*time.Second, func() bool { return countEnds(t, s, "pia", pid) == 2 })
	for _, other := range []struct {
		user, access, extra string
	}{
		{"pete", "rw", ""},
		{"pia", "ro", ""},
		{"pia", "rw", "application_name=other"},
	} {
		var extra []string
		if other.extra != "" {
			extra = append(extra, other.extra)
		}
		c := s.pgx(t, other.user, "orders", s.token(t, other.user, "orders", "--access", other.access), extra...)
		if got := one(t, c, "SELECT pg_backend_pid()"); got == pid {
			t.Errorf("%s at %s (%q) was handed pia's pooled rw backend", other.user, other.access, other.extra)
		}
		c.Close(ctx)
	}

	// A session that ends inside a transaction does not pool its backend.
	c3 := s.pgx(t, "pia", "orders", tok)
	if got := one(t, c3, "SELECT pg_backend_pid()"); got != pid {
		t.Fatalf("third session got backend %s, want the pooled %s", got, pid)
	}
	one(t, c3, "BEGIN")
	c3.Conn().Close()
	waitFor(t, 5*time.Second, func() bool {
		return len(s.upstreamQuery(t, "postgres", "SELECT 1 FROM pg_stat_activity WHERE pid = "+pid)) == 0
	})
	c4 := s.pgx(t, "pia", "orders", tok)
	pid4 := one(t, c4, "SELECT pg_backend_pid()")
	if pid4 == pid {
		t.Fatal("a backend whose session ended inside a transaction was reused")
	}
	c4.Close(ctx)
	waitFor(t, 5*time.Second, func() bool { return sessionEvent(t, s, "pia", "orders", "session.end", pid4) != nil })

	// Revocation ends the pooled backend too, with her live session,
	// whose end records how long its backend outlived the change.
	if rows := s.upstreamQuery(t, "postgres", "SELECT 1 FROM pg_stat_activity WHERE pid = "+pid4); len(rows) != 1 {
		t.Fatalf("pia's pooled backend %s is not there before her revocation", pid4)
	}
	live := s.startSleeper(t, "pia", "orders", s.token(t, "pia", "orders", "--access", "ro"), "pool-revoked")
	disabled := time.Now()
	s.kg(t, 0, "admin", "user", "disable", "pia")
	live.endedWithin(t, "keygate admin user disable returned", disabled, 3*time.Second, "access revoked")
	if !holdsWithin(3*time.Second, func() bool {
		return len(s.upstreamQuery(t, "postgres", "SELECT 1 FROM pg_stat_activity WHERE pid = "+pid4)) == 0
	}) {
		t.Fatal("pia's pooled backend outlived her revocation by 3s")
	}
	t.Logf("pooled backend gone %s after keygate admin user disable", time.Since(disabled).Round(time.Millisecond))
	var revokedAfter float64 = -1
	waitFor(t, 5*time.Second, func() bool {
		for _, e := range s.audit(t, "--user", "pia", "--type", "session.end") {
			if ms, ok := e.Detail["revoked_after_ms"].(float64); ok {
				revokedAfter = ms
				return true
			}
		}
		return false
	})
	if revokedAfter < 0 || revokedAfter > 3000 {
		t.Errorf("revoked_after_ms = %v, want the time from the change to the backend gone, under 3s", revokedAfter)
	}
}

// countEnds counts the session.end events of user's sessions on backend pid.
func countEnds(t testing.TB, s *kgServer, user, pid string) int {
	n := 0
	for _, e := range s.audit(t, "--user", user, "--type", "session.end") {
		if toString(e.Detail["upstream_pid"]) == pid {
			n++
		}
	}
	return n
}

// max_connections is a budget of upstream connections for everyone: a
// session past it waits in line for queue_timeout, gets in when a
// connection frees up (or the slot of an idle pooled one), and is refused
// with the budget named when none does; max_connections_per_person bounds
// one person while others still get in.
func TestConnectionBudget(t *testing.T) {
	s := startServerWith(t, "budget", serverOptions{stopWithTest: true,
		ordersConfig: "    max_connections: 2\n    max_connections_per_person: 1\n    queue_timeout: 1500ms\n"})
	for _, u := range []string{"bo", "bea", "bill"} {
		s.addUser(t, u, "analysts")
	}
	tok := map[string]string{}
	for _, u := range []string{"bo", "bea", "bill"} {
		tok[u] = s.token(t, u, "orders")
	}
	ctx := context.Background()
	connect := func(user string) (*pgconn.PgConn, time.Duration, error) {
		cfg, err := pgconn.ParseConfig(s.connString(user, "orders"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Password = tok[user]
		start := time.Now()
		c, err := pgconn.ConnectConfig(ctx, cfg)
		return c, time.Since(start), err
	}
	bo, _, err := connect("bo")
	if err != nil {
		t.Fatal(err)
	}
	defer bo.Close(ctx)

	// Per person: bo's second session waits out the queue and is refused.
	_, waited, err := connect("bo")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Message, "you already hold 1 connection(s), the most that max_connections_per_person allows") || waited < time.Second {
		t.Fatalf("bo's second session: %v after %s; want a refusal naming max_connections_per_person after the 1.5s queue", err, waited)
	}

	bea, _, err := connect("bea")
	if err != nil {
		t.Fatalf("bea, within both budgets: %v", err)
	}
	// The whole budget is spent: bill waits, and gets in once bea leaves.
	type result struct {
		c      *pgconn.PgConn
		waited time.Duration
		err    error
	}
	done := make(chan result, 1)
	go func() {
		c, w, err := connect("bill")
		done <- result{c, w, err}
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("bill got in past a spent budget: %v", r.err)
	default:
	}
	if _, err := bea.Exec(ctx, "BEGIN").ReadAll(); err != nil {
		t.Fatal(err)
	}
	bea.Close(ctx) // ends inside a transaction: its backend goes, freeing the slot
	r := <-done
	if r.err != nil {
		t.Fatalf("bill, after bea left: %v", r.err)
	}
	if r.waited < 250*time.Millisecond {
		t.Errorf("bill waited %s, want the time until bea left", r.waited)
	}
	t.Logf("bill waited %s in line", r.waited.Round(time.Millisecond))

	// Spent, and nobody leaves: refused after queue_timeout, in words.
	_, waited, err = connect("bea")
	if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Message, "all 2 connections that max_connections allows are in use") || waited < time.Second {
		t.Fatalf("bea past a spent budget: %v after %s; want a refusal naming max_connections", err, waited)
	}

	// bill's session ends idle and its backend is pooled: that idle
	// connection's slot goes to bea at once.
	r.c.Close(ctx)
	time.Sleep(200 * time.Millisecond)
	c, waited, err := connect("bea")
	if err != nil {
		t.Fatalf("bea with an idle pooled connection of bill's to take the place of: %v", err)
	}
	c.Close(ctx)
	if waited > time.Second {
		t.Errorf("bea waited %s although an idle connection could be evicted", waited)
	}
}
