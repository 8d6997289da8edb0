package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/pki"
)

func (s *kgServer) audit(t testing.TB, args ...string) []api.AuditEvent {
	t.Helper()
	out := s.kg(t, 0, append([]string{"audit", "--json"}, args...)...)
	var events []api.AuditEvent
	sc := bufio.NewScanner(strings.NewReader(out))
	// A statement is kept whole up to 16 MiB, and its JSON line may be
	// longer still.
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var raw map[string]any
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			t.Fatalf("audit line is not JSON: %q", sc.Text())
		}
		for _, k := range []string{"time", "type", "user", "database", "access", "query", "client", "reason"} {
			if _, ok := raw[k]; !ok {
				t.Fatalf("audit line lacks %q: %s", k, sc.Text())
			}
		}
		var e api.AuditEvent
		json.Unmarshal(sc.Bytes(), &e)
		events = append(events, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading keygate audit --json: %v", err)
	}
	return events
}

func findEvent(events []api.AuditEvent, match func(api.AuditEvent) bool) (api.AuditEvent, bool) {
	for _, e := range events {
		if match(e) {
			return e, true
		}
	}
	return api.AuditEvent{}, false
}

func mustContain(t testing.TB, what, got, want string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Fatalf("%s = %q, want it to contain %q", what, got, want)
	}
}

// a. alice (analysts → ro) reads, cannot write, and cannot raise her
// privilege through any role switch.
func TestReadOnlyPerson(t *testing.T) {
	s := sharedServer(t)
	s.addUser(t, "alice", "analysts")
	s.addUser(t, "bob", "engineers")
	tok := s.token(t, "alice", "orders")
	conn := s.connString("alice", "orders")

	r := s.psql(t, conn, tok, "SELECT count(*) FROM orders")
	if r.code != 0 || strings.TrimSpace(r.stdout) == "" {
		t.Fatalf("SELECT: exit %d, %s %s", r.code, r.stdout, r.stderr)
	}
	r = s.psql(t, conn, tok, "INSERT INTO orders (customer_id, amount) VALUES (1, 1)")
	if r.code == 0 {
		t.Fatal("alice's INSERT succeeded")
	}
	mustContain(t, "INSERT error", r.stderr, "permission denied")

	// bob.rw must exist for SET ROLE to it to be a real attempt.
	if r := s.psql(t, s.connString("bob", "orders"), s.token(t, "bob", "orders", "--access", "rw"), "SELECT 1"); r.code != 0 {
		t.Fatalf("bob: %s", r.stderr)
	}
	for _, sql := range []string{
		`SET ROLE "bob.rw"`,
		`SET ROLE keygate_admin`,
		`SET ROLE keygate_orders_rw`,
		`SET SESSION AUTHORIZATION keygate_admin`,
		`SET SESSION AUTHORIZATION "bob.rw"`,
		`RESET ROLE; INSERT INTO orders (customer_id, amount) VALUES (1, 1)`,
		`SET ROLE keygate_orders_ro; RESET ROLE; INSERT INTO orders (customer_id, amount) VALUES (1, 1)`,
	} {
		r := s.psql(t, conn, tok, sql)
		if r.code == 0 {
			t.Errorf("%s: succeeded", sql)
			continue
		}
		if !strings.Contains(r.stderr, "permission denied") {
			t.Errorf("%s: %s, want permission denied", sql, r.stderr)
		}
	}
	r = s.psql(t, conn, tok, "SELECT current_user, session_user")
	mustContain(t, "identity after attempts", r.stdout, "alice.ro|alice.ro")
}

// a (continued). An ro session stays read-only by every SQL route even while
// the same person holds a live rw session.
func TestReadOnlyEvenWithLiveReadWriteSession(t *testing.T) {
	s := sharedServer(t)
	s.addUser(t, "carol", "analysts", "engineers")
	rw := s.pgx(t, "carol", "orders", s.token(t, "carol", "orders", "--access", "rw"))
	if res := rw.ExecParams(context.Background(), "INSERT INTO orders (customer_id, amount) VALUES (1, 3) RETURNING session_user", nil, nil, nil, nil).Read(); res.Err != nil || string(res.Rows[0][0]) != "carol.rw" {
		t.Fatalf("carol's rw session: %v %v", res.Err, res.Rows)
	}
	tok := s.token(t, "carol", "orders", "--access", "ro")
	conn := s.connString("carol", "orders")
	for _, sql := range []string{
		`INSERT INTO orders (customer_id, amount) VALUES (1, 1)`,
		`UPDATE orders SET amount = 0`,
		`DELETE FROM orders`,
		`CREATE TABLE carol_was_here (id int)`,
		`DROP TABLE orders`,
		`SET ROLE "carol.rw"`,
		`SET SESSION AUTHORIZATION "carol.rw"`,
		`SET default_transaction_read_only = off; INSERT INTO orders (customer_id, amount) VALUES (1, 1)`,
		`BEGIN READ WRITE; INSERT INTO orders (customer_id, amount) VALUES (1, 1); COMMIT`,
		`COPY orders (customer_id, amount) FROM STDIN`,
		`ALTER ROLE CURRENT_USER CREATEROLE`,
		`GRANT keygate_orders_rw TO CURRENT_USER`,
	} {
		r := s.psql(t, conn, tok, sql)
		if r.code == 0 {
			t.Errorf("ro session: %s succeeded", sql)
		}
	}
	got := s.upstreamQuery(t, "shared_orders", "SELECT count(*) FROM pg_class WHERE relname = 'carol_was_here'")
	if got[0][0] != "0" {
		t.Fatal("the ro session created a table")
	}
}

// b. bob (engineers → rw) writes; alice asking for rw is refused with what
// is missing.
func TestReadWritePersonAndRefusal(t *testing.T) {
	s := sharedServer(t)
	s.addUser(t, "bob-b", "engineers")
	s.addUser(t, "alice-b", "analysts")
	// Without --access, bob gets the least he may use: read-only.
	r := s.psql(t, s.connString("bob-b", "orders"), s.token(t, "bob-b", "orders"), "SELECT session_user")
	mustContain(t, "bob's default token", r.stdout, "bob-b.ro")
	r = s.psql(t, s.connString("bob-b", "orders"), s.token(t, "bob-b", "orders", "--access", "rw"),
		"INSERT INTO orders (customer_id, amount) VALUES (2, 42.42) RETURNING session_user")
	if r.code != 0 {
		t.Fatalf("bob's INSERT: %s", r.stderr)
	}
	mustContain(t, "INSERT as", r.stdout, "bob-b.rw")
	refused := s.tokenResult(t, "alice-b", "orders", "--access", "rw")
	if refused.code == 0 {
		t.Fatal("alice-b got an rw token")
	}
	if refused.stdout != "" {
		t.Fatalf("refusal printed to stdout: %q", refused.stdout)
	}
	mustContain(t, "refusal", refused.stderr, "orders at rw")
	mustContain(t, "refusal", refused.stderr, "alice-b is in analysts → db-readonly (ro)")
	mustContain(t, "refusal", refused.stderr, "no assignment grants rw on orders")
}

// c. plaintext, tampered, expired and mismatched tokens are refused, each
// audited with a reason.
func TestRefusals(t *testing.T) {
	s := sharedServer(t)
	s.addUser(t, "dan", "analysts")
	s.addUser(t, "dora", "blinkers")
	s.addUser(t, "erin", "analysts")
	tok := s.token(t, "dan", "orders")

	r := s.psql(t, strings.Replace(s.connString("dan", "orders"), "sslmode=verify-full", "sslmode=disable", 1), tok, "SELECT 1")
	if r.code == 0 {
		t.Fatal("sslmode=disable connected")
	}
	mustContain(t, "plaintext refusal", r.stderr, "FATAL:  keygate: TLS is required: connect with sslmode=verify-full and the keygate CA")

	// Flip one character in the signature, the end of the payload part
	// (v4.public.<payload>.<footer>).
	b := []byte(tok)
	i := strings.LastIndexByte(tok, '.') - 5
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	r = s.psql(t, s.connString("dan", "orders"), string(b), "SELECT 1")
	mustContain(t, "tampered token", r.stderr, "token signature is invalid")

	// blinkers get db-blink tokens, which live one second.
	short := s.token(t, "dora", "orders")
	time.Sleep(2100 * time.Millisecond)
	r = s.psql(t, s.connString("dora", "orders"), short, "SELECT 1")
	mustContain(t, "expired token", r.stderr, "token has expired")

	r = s.psql(t, s.connString("erin", "orders"), tok, "SELECT 1")
	mustContain(t, "token for another user", r.stderr, "the token was issued to dan, not erin")
	r = s.psql(t, s.connString("dan", "billing"), tok, "SELECT 1")
	mustContain(t, "token for another database", r.stderr, "the token is for database orders, not billing")

	events := s.audit(t, "--type", "connect.refused")
	for _, want := range []struct{ user, reason string }{
		{"dan", "TLS is required"},
		{"dan", "token signature is invalid"},
		{"dora", "token has expired"},
		{"erin", "the token was issued to dan, not erin"},
		{"dan", "the token is for database orders, not billing"},
	} {
		if _, ok := findEvent(events, func(e api.AuditEvent) bool {
			return e.User == want.user && strings.Contains(e.Reason, want.reason) && e.Client != ""
		}); !ok {
			t.Errorf("no connect.refused event for %s with reason %q", want.user, want.reason)
		}
	}
}

// d. upstream, pg_stat_activity names the person.
func TestUpstreamNamesThePerson(t *testing.T) {
	s := sharedServer(t)
	s.addUser(t, "fay", "analysts")
	c := s.pgx(t, "fay", "orders", s.token(t, "fay", "orders"), "application_name=accept-d")
	rows := s.upstreamQuery(t, "postgres", "SELECT usename, datname FROM pg_stat_activity WHERE application_name = 'accept-d'")
	if len(rows) != 1 || rows[0][0] != "fay.ro" || rows[0][1] != "shared_orders" {
		t.Fatalf("pg_stat_activity = %v, want one row for fay.ro on shared_orders", rows)
	}
	_ = c
}

// e. the audit shows her statement, her session start and its end.
func TestAuditShowsSessionAndStatements(t *testing.T) {
	s := sharedServer(t)
	s.addUser(t, "gus", "analysts")
	r := s.psql(t, s.connString("gus", "orders"), s.token(t, "gus", "orders"), "SELECT 'audit-marker-e', count(*) FROM customers")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	events := s.audit(t, "--user", "gus")
	start, ok := findEvent(events, func(e api.AuditEvent) bool { return e.Type == "session.start" })
	if !ok {
		t.Fatal("no session.start for gus")
	}
	if start.Database != "orders" || start.Access != "ro" || start.Client == "" || start.Detail["upstream_role"] != "gus.ro" {
		t.Fatalf("session.start = %+v", start)
	}
	q, ok := findEvent(events, func(e api.AuditEvent) bool {
		return e.Type == "query" && strings.Contains(e.Query, "audit-marker-e")
	})
	if !ok || q.SessionID != start.SessionID {
		t.Fatalf("statement not audited in gus's session: %+v", q)
	}
	end, ok := findEvent(events, func(e api.AuditEvent) bool { return e.Type == "session.end" && e.SessionID == start.SessionID })
	if !ok {
		t.Fatal("no session.end for gus")
	}
	if _, ok := end.Detail["duration_ms"]; !ok || end.Detail["bytes_to_client"].(float64) <= 0 {
		t.Fatalf("session.end lacks duration or bytes: %+v", end.Detail)
	}
	// The table view works too.
	out := s.kg(t, 0, "audit", "--user", "gus", "--db", "orders", "--since", "1h")
	mustContain(t, "audit table", out, "audit-marker-e")
}

// f. disabling a person ends her live session in under a second and
// refuses her next token and connection; so does leaving the group.
func TestRevocationEndsLiveSessions(t *testing.T) {
	s := sharedServer(t)
	for _, tc := range []struct {
		name   string
		user   string
		revoke []string
	}{
		{"disable", "hank", []string{"admin", "user", "disable", "hank"}},
		{"remove-member", "ivy", []string{"admin", "group", "remove-member", "analysts", "ivy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.addUser(t, tc.user, "analysts")
			tok := s.token(t, tc.user, "orders")
			spare := s.token(t, tc.user, "orders")
			app := "revoke-" + tc.user
			sl := s.startSleeper(t, tc.user, "orders", tok, app)
			s.kg(t, 0, tc.revoke...)
			sl.endedWithin(t, "keygate "+strings.Join(tc.revoke, " ")+" returned", time.Now(), time.Second, "access revoked")
			// The end is on record by the time the client hears of it.
			ends := s.audit(t, "--user", tc.user, "--type", "session.end")
			if len(ends) != 1 || !strings.Contains(ends[0].Reason, "access revoked") {
				t.Fatalf("session.end events after the client saw the revocation: %+v", ends)
			}
			if r := s.tokenResult(t, tc.user, "orders"); r.code == 0 {
				t.Fatal("a token was issued after revocation")
			}
			r := s.psql(t, s.connString(tc.user, "orders"), spare, "SELECT 1")
			if r.code == 0 {
				t.Fatal("a connection with an earlier token succeeded after revocation")
			}
			mustContain(t, "connection after revocation", r.stderr, "access denied")
			// The upstream backend is gone too, not just the client side.
			waitFor(t, 5*time.Second, func() bool {
				rows := s.upstreamQuery(t, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE application_name = '"+app+"'")
				return rows[0][0] == "0"
			})
		})
	}
}

func waitFor(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	if !holdsWithin(d, cond) {
		t.Fatalf("condition not met within %s", d)
	}
}

// holdsWithin polls cond until it holds or d has passed, and reports whether it
// held, for a check that can say better than waitFor what failed.
func holdsWithin(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// g. pgbench -S, with and without a new connection per transaction.
func TestPgbench(t *testing.T) {
	if _, err := exec.LookPath("pgbench"); err != nil {
		t.Fatal("pgbench not installed: apt-get install postgresql-client")
	}
	s := sharedServer(t)
	s.addUser(t, "pgb", "dbadmins")
	pgbench := func(token string, args ...string) string {
		t.Helper()
		cmd := exec.Command("pgbench", append(args, "-h", "127.0.0.1", "-p", itoa(s.pgPort), "-U", "pgb", "orders")...)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+token, "PGSSLMODE=verify-full", "PGSSLROOTCERT="+s.caFile)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("pgbench %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	// Initialise through the gateway with an admin token: tables, COPY in,
	// VACUUM, all as the person's admin role.
	pgbench(s.token(t, "pgb", "orders", "--access", "admin"), "-i", "-s", "1", "-q")
	ro := s.token(t, "pgb", "orders", "--access", "ro")
	for _, args := range [][]string{{"-S", "-n", "-c", "4", "-j", "2", "-T", "3"}, {"-S", "-n", "-C", "-c", "4", "-j", "2", "-T", "3"}} {
		out := pgbench(ro, args...)
		t.Logf("pgbench %v:\n%s", args, out)
		mustContain(t, "pgbench output", out, "number of failed transactions: 0")
		if !strings.Contains(out, "tps = ") {
			t.Fatalf("pgbench printed no tps:\n%s", out)
		}
	}
}

// j. keygate demo runs to completion with no arguments.
func TestDemo(t *testing.T) {
	cmd := exec.Command(keygateBin, "demo")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("keygate demo: %v\n%s", err, out.String())
		}
	case <-time.After(2 * time.Minute):
		cmd.Process.Signal(syscall.SIGINT)
		t.Fatalf("keygate demo did not finish in 2 minutes:\n%s", out.String())
	}
	for _, want := range []string{"upstream she is alice.ro", "permission denied for table orders", "her live session ended", "access revoked", "session.end", "Cleaning up"} {
		mustContain(t, "demo output", out.String(), want)
	}
}

// Cancelling a running statement with Ctrl-C in psql: libpq sends a
// plaintext CancelRequest with the key keygate handed out; keygate cancels
// the right upstream backend.
func TestCancelFromPsql(t *testing.T) {
	s := sharedServer(t)
	s.addUser(t, "kim", "analysts")
	app := "cancel-kim"
	cmd := exec.Command("psql", "-X", "-A", "-t", s.connString("kim", "orders", "application_name="+app), "-c", "SELECT pg_sleep(30)")
	cmd.Env = append(os.Environ(), "PGPASSWORD="+s.token(t, "kim", "orders"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool {
		rows := s.upstreamQuery(t, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE application_name = '"+app+"' AND query LIKE '%pg_sleep%'")
		return rows[0][0] == "1"
	})
	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("psql did not return 10s after Ctrl-C")
	}
	t.Logf("statement cancelled %s after Ctrl-C", time.Since(start))
	mustContain(t, "psql after Ctrl-C", stderr.String(), "canceling statement due to user request")
	events := s.audit(t, "--user", "kim", "--type", "query.cancel")
	if len(events) != 1 {
		t.Fatalf("query.cancel events = %d, want 1", len(events))
	}
}

// A cancel request with a wrong key, or for another session, cancels
// nothing.
func TestCancelWithWrongKeyIsIgnored(t *testing.T) {
	s := sharedServer(t)
	s.addUser(t, "lou", "analysts")
	c := s.pgx(t, "lou", "orders", s.token(t, "lou", "orders"), "application_name=cancel-lou")
	pid, key := c.PID(), c.SecretKey()
	done := make(chan error, 1)
	go func() {
		done <- c.ExecParams(context.Background(), "SELECT pg_sleep(1.5), 1", nil, nil, nil, nil).Read().Err
	}()
	waitFor(t, 10*time.Second, func() bool {
		rows := s.upstreamQuery(t, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cancel-lou' AND query LIKE '%pg_sleep%'")
		return rows[0][0] == "1"
	})
	bad := append([]byte(nil), key...)
	bad[0] ^= 0xff
	sendCancel(t, s.pgPort, pid, bad)
	sendCancel(t, s.pgPort, pid^1, key)
	if err := <-done; err != nil {
		t.Fatalf("statement was cancelled by a forged request: %v", err)
	}
}

// Config mistakes are caught by `keygate config check` with the line.
func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/bad.yaml"
	os.WriteFile(path, []byte("data_dir: ./data\nlisten:\n  api: 127.0.0.1:8443\n  postgress: 127.0.0.1:5433\n"), 0o600)
	cmd := exec.Command(keygateBin, "config", "check", "--config", path)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("config check accepted an unknown key:\n%s", out)
	}
	mustContain(t, "config check", string(out), path+`:4: unknown key "postgress"; did you mean "postgres"?`)

	s := sharedServer(t)
	out2 := s.kg(t, 0, "config", "check")
	mustContain(t, "config check", out2, "ok (2 databases, 4 permission sets, 4 assignments)")
}

// The CA from `keygate ca` is the one the API serves.
func TestCAMatchesAPI(t *testing.T) {
	s := sharedServer(t)
	pem, err := os.ReadFile(s.caFile)
	if err != nil {
		t.Fatal(err)
	}
	r := s.run(t, nil, "ca")
	if r.stdout != string(pem) || !strings.HasPrefix(r.stdout, "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("keygate ca printed %q", r.stdout)
	}
	body := httpsGet(t, s, "/v1/ca.pem")
	if body != string(pem) {
		t.Fatal("/v1/ca.pem differs from `keygate ca`")
	}
}

// SIGTERM drains: new connections are refused, live sessions get
// shutdown_grace (2s here) and are then ended with a reason, and the server
// exits.
func TestGracefulShutdown(t *testing.T) {
	s := startServer(t, "drain", "", true)
	s.addUser(t, "quinn", "analysts")
	tok := s.token(t, "quinn", "orders")
	sl := s.startSleeper(t, "quinn", "orders", tok, "drain-quinn")
	start := time.Now()
	s.cmd.Process.Signal(syscall.SIGTERM)
	waitFor(t, 5*time.Second, func() bool {
		r := s.psql(t, s.connString("quinn", "orders"), tok, "SELECT 1")
		return r.code != 0
	})
	took := sl.ended(t, "SIGTERM").Sub(start)
	t.Logf("live session ended %s after SIGTERM", took)
	if took < 1500*time.Millisecond {
		t.Fatalf("session ended after %s, before shutdown_grace (2s)", took)
	}
	mustContain(t, "psql error", sl.stderr.String(), "keygate is shutting down")
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("server still running 10s after its last session ended")
	}
}

// `keygate db token` finds the server and CA from KEYGATE_SERVER and
// KEYGATE_CA, or from --server and --ca, without any config file.
func TestTokenWithoutConfig(t *testing.T) {
	s := sharedServer(t)
	s.addUser(t, "otto", "analysts")
	session := s.session(t, "otto")
	run := func(env []string, args ...string) result {
		cmd := exec.Command(keygateBin, append([]string{"db", "token", "orders"}, args...)...)
		cmd.Env = append(os.Environ(), append(env, "KEYGATE_SESSION="+session, "KEYGATE_CONFIG=")...)
		return runCmd(t, cmd)
	}
	for name, r := range map[string]result{
		"env":   run([]string{"KEYGATE_SERVER=" + s.apiURL, "KEYGATE_CA=" + s.caFile}),
		"flags": run(nil, "--server", s.apiURL, "--ca", s.caFile),
	} {
		if r.code != 0 || !strings.HasPrefix(r.stdout, "v4.public.") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", name, r.code, r.stdout, r.stderr)
		}
	}
	r := run(nil)
	if r.code != 2 || !strings.Contains(r.stderr, "KEYGATE_SERVER") {
		t.Errorf("without a server: exit %d, stderr %q; want a usage error naming KEYGATE_SERVER", r.code, r.stderr)
	}
	// A CA that did not sign keygate's certificate.
	otherDir := t.TempDir()
	if _, err := pki.Open(otherDir, []string{"localhost"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	r = run(nil, "--server", s.apiURL, "--ca", filepath.Join(otherDir, pki.CAFile))
	if r.code == 0 || !strings.Contains(r.stderr, "--ca") {
		t.Errorf("with the wrong CA: exit %d, stderr %q; want advice about --ca", r.code, r.stderr)
	}
}

// `keygate demo --keep` leaves everything running with lines to paste, and
// they work; Ctrl-C then cleans up.
func TestDemoKeep(t *testing.T) {
	cmd := exec.Command(keygateBin, "demo", "--keep")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var out strings.Builder
	var cfgPath string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "export KEYGATE_CONFIG="); ok {
			cfgPath = v
		}
		if strings.HasPrefix(line, "Press Ctrl-C") {
			break
		}
	}
	if cfgPath == "" {
		t.Fatalf("demo --keep printed no KEYGATE_CONFIG line:\n%s", out.String())
	}
	mustContain(t, "demo --keep", out.String(), "psql \"host=127.0.0.1")
	// The pasted lines work while the demo waits.
	env := append(os.Environ(), "KEYGATE_CONFIG="+cfgPath)
	session := exec.Command(keygateBin, "admin", "session", "create", "bob")
	session.Env = env
	sessOut, err := session.Output()
	if err != nil {
		t.Fatalf("admin session create: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(sessOut)), "\n")
	tok := exec.Command(keygateBin, "db", "token", "orders")
	tok.Env = append(env, "KEYGATE_SESSION="+lines[len(lines)-1])
	if b, err := tok.Output(); err != nil || !strings.HasPrefix(string(b), "v4.public.") {
		t.Fatalf("db token: %v %q", err, b)
	}
	cmd.Process.Signal(syscall.SIGINT)
	rest, _ := io.ReadAll(stdout)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("demo after Ctrl-C: %v\n%s", err, rest)
	}
	mustContain(t, "demo after Ctrl-C", string(rest), "Cleaning up")
	if _, err := os.Stat(cfgPath); !os.IsNotExist(err) {
		t.Fatalf("%s still exists after the demo ended", cfgPath)
	}
}

// A client that stops reading its results is still ended when its access
// goes: the gateway gives up writing to it after a grace period.
func TestRevocationOfAClientThatStopsReading(t *testing.T) {
	s := sharedServer(t)
	s.addUser(t, "sal", "analysts")
	cfg, err := pgconn.ParseConfig(s.connString("sal", "orders"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = s.token(t, "sal", "orders")
	c, err := pgconn.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := c.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Conn.Close()
	query, _ := (&pgproto3.Query{String: "SELECT repeat('x', 1000) FROM generate_series(1, 5000000)"}).Encode(nil)
	if _, err := raw.Conn.Write(query); err != nil {
		t.Fatal(err)
	}
	// Let the result fill every buffer between the upstream and us.
	time.Sleep(time.Second)
	s.kg(t, 0, "admin", "user", "disable", "sal")
	start := time.Now()
	waitFor(t, 20*time.Second, func() bool {
		return len(s.audit(t, "--user", "sal", "--type", "session.end")) == 1
	})
	t.Logf("session of a client that stopped reading ended %s after the revocation", time.Since(start))
}
