package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/internal/testenv"
)

// These tests attack keygate the way a person holding nothing but their own
// token would, and check that every way around the gateway to the upstream
// PostgreSQL is closed: no backend of a keygate-managed role lives that
// keygate did not open, a person's role keeps no password or LOGIN, and
// ending a session ends its upstream backend even when the backend ignores
// cancels.

// bypassItemsTable is the table the attacks write to and lock. at is the
// commit-side clock of each row, to compare with the moment keygate
// confirmed a backend gone.
const bypassItemsTable = `CREATE TABLE items (id serial PRIMARY KEY, note text, at timestamptz NOT NULL DEFAULT clock_timestamp());
INSERT INTO items (note) VALUES ('a');`

// bypassCreateItems creates the items table in the upstream database db as
// keygate's admin role, before any keygate connection, so that the group
// roles' grants cover it.
func bypassCreateItems(t *testing.T, s *kgServer, db string) {
	t.Helper()
	if err := s.pg.Exec(context.Background(), db, "SET ROLE "+s.pg.AdminUser+";\n"+bypassItemsTable); err != nil {
		t.Fatal(err)
	}
}

// bypassRestoreOnCleanup terminates the backends of the roles matching the
// LIKE pattern and sets the roles back to NOLOGIN without a password when
// the test ends, so that an attack that worked leaves nothing behind for
// the tests after it (roles belong to the whole shared PostgreSQL).
func bypassRestoreOnCleanup(t *testing.T, s *kgServer, like string) {
	t.Helper()
	t.Cleanup(func() {
		sql := fmt.Sprintf(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename LIKE '%[1]s';
DO $$ DECLARE r text; BEGIN
  FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE '%[1]s' LOOP
    EXECUTE format('ALTER ROLE %%I NOLOGIN PASSWORD NULL', r);
  END LOOP;
END $$`, like)
		if err := s.pg.Exec(context.Background(), "postgres", sql); err != nil {
			t.Errorf("restore roles %s: %v", like, err)
		}
	})
}

// bypassBackends lists the upstream backends of the roles matching the
// LIKE pattern as "role pid=N app=A".
func bypassBackends(t *testing.T, s *kgServer, like string) []string {
	t.Helper()
	var out []string
	for _, r := range s.upstreamQuery(t, "postgres", "SELECT usename || ' pid=' || pid || ' app=' || application_name FROM pg_stat_activity WHERE usename LIKE '"+like+"' ORDER BY pid") {
		out = append(out, r[0])
	}
	return out
}

// bypassOpenRoles lists the roles matching the LIKE pattern that can log in
// or hold a password, as "role login=B password=B".
func bypassOpenRoles(t *testing.T, s *kgServer, like string) []string {
	t.Helper()
	var out []string
	for _, r := range s.upstreamQuery(t, "postgres", "SELECT rolname || ' login=' || rolcanlogin || ' password=' || (rolpassword IS NOT NULL) FROM pg_authid WHERE rolname LIKE '"+like+"' AND (rolcanlogin OR rolpassword IS NOT NULL) ORDER BY 1") {
		out = append(out, r[0])
	}
	return out
}

// bypassRowCount counts the rows of items in the upstream database db with
// the given note.
func bypassRowCount(t *testing.T, s *kgServer, db, note string) string {
	t.Helper()
	return s.upstreamQuery(t, db, "SELECT count(*) FROM items WHERE note = '"+note+"'")[0][0]
}

// bypassDirectConfig is a connection straight to the upstream database,
// around keygate, as role with password.
func bypassDirectConfig(t *testing.T, s *kgServer, db, role, password, app string) *pgconn.Config {
	t.Helper()
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%d dbname=%s sslmode=disable connect_timeout=5 application_name=%s", s.pg.Host, s.pg.Port, db, app))
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Password = role, password
	return cfg
}

// bypassHold is what an attacker got out of a direct login.
type bypassHold struct {
	pid   uint32
	at    time.Time
	lived time.Duration
	// statements counts the statements that succeeded on the backend.
	statements int
	// alive is whether the backend still answered when the attacker let go.
	alive bool
}

// bypassUse runs sql on c every 100 ms until it fails or limit has passed
// since the login at at, then closes c.
func bypassUse(c *pgconn.PgConn, at time.Time, limit time.Duration, sql string) bypassHold {
	h := bypassHold{pid: c.PID(), at: at}
	defer c.Close(context.Background())
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := c.Exec(ctx, sql).ReadAll()
		cancel()
		if err != nil {
			h.lived = time.Since(at)
			return h
		}
		h.statements++
		if time.Since(at) >= limit {
			h.lived, h.alive = time.Since(at), true
			return h
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// bypassNumber is a number from an audit event's detail, or -1.
func bypassNumber(v any) float64 {
	if f, ok := v.(float64); ok {
		return f
	}
	return -1
}

// bypassIntrusion waits up to d for the upstream.intrusion event about
// backend pid.
func bypassIntrusion(t *testing.T, s *kgServer, pid uint32, d time.Duration) (api.AuditEvent, bool) {
	t.Helper()
	var ev api.AuditEvent
	var ok bool
	holdsWithin(d, func() bool {
		ev, ok = findEvent(s.audit(t, "--type", "upstream.intrusion", "--since", "1h"), func(e api.AuditEvent) bool {
			return bypassNumber(e.Detail["pid"]) == float64(pid)
		})
		return ok
	})
	return ev, ok
}

// bypassCheckIntrusion checks that an attacker's backend pid, connected
// as role, was audited as an intrusion by user on database.
func bypassCheckIntrusion(t *testing.T, s *kgServer, pid uint32, role, user, database string) {
	t.Helper()
	e, ok := bypassIntrusion(t, s, pid, 5*time.Second)
	if !ok {
		t.Errorf("no upstream.intrusion event for the direct backend pid %d of %s: the attacker's login around keygate left no trace in the audit", pid, role)
		return
	}
	if e.Detail["role"] != role || e.User != user || e.Database != database {
		t.Errorf("upstream.intrusion for pid %d: role %v, user %q, database %q; want role %q, user %q, database %q", pid, e.Detail["role"], e.User, e.Database, role, user, database)
	}
	if addr, _ := e.Detail["client_addr"].(string); addr == "" {
		t.Errorf("upstream.intrusion for pid %d does not say where the attacker connected from: detail %v", pid, e.Detail)
	}
	if bypassNumber(e.Detail["client_port"]) <= 0 || e.Detail["terminated"] != true || e.Reason == "" {
		t.Errorf("upstream.intrusion for pid %d: detail %v, reason %q; want client_port, terminated true and a reason", pid, e.Detail, e.Reason)
	}
}

// The attack that a per-person role with a just-in-time password invites:
// while keygate's login window for dave.rw is open, dave sets the role's
// password himself from his own keygate session and logs in directly to
// the upstream with it, keeping a backend that no revocation reaches.
// keygate must terminate such a backend within 5 s, audit it, and leave
// the role without LOGIN or password once its windows close.
func TestAttackDirectLoginRace(t *testing.T) {
	const prefix = "bprace"
	db := prefix + "_orders"
	s := startServerWith(t, prefix, serverOptions{stopWithTest: true})
	bypassCreateItems(t, s, db)
	bypassRestoreOnCleanup(t, s, "dave.%")
	s.addUser(t, "dave", "engineers")
	tok := s.token(t, "dave", "orders", "--access", "rw")
	alter := s.pgx(t, "dave", "orders", tok, "application_name=race-alter")

	started := time.Now()
	ctx, stop := context.WithTimeout(context.Background(), 60*time.Second)
	defer stop()
	var loops, holders sync.WaitGroup
	var alters, connects, attempts atomic.Int64

	// dave keeps setting his own role's password from inside keygate.
	loops.Add(1)
	go func() {
		defer loops.Done()
		for ctx.Err() == nil && !alter.IsClosed() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := alter.Exec(sctx, `ALTER ROLE "dave.rw" PASSWORD 'i-know-this'`).ReadAll(); err == nil {
				alters.Add(1)
			}
			cancel()
		}
	}()
	// dave's own connections through keygate keep its login window opening.
	for range 3 {
		cfg, err := pgconn.ParseConfig(s.connString("dave", "orders", "application_name=race-connect"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Password = tok
		loops.Add(1)
		go func() {
			defer loops.Done()
			for ctx.Err() == nil {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				if c, err := pgconn.ConnectConfig(cctx, cfg); err == nil {
					connects.Add(1)
					c.Close(context.Background())
				}
				cancel()
			}
		}()
	}
	// Meanwhile dave logs in directly with the password he set, and uses
	// every backend he gets for as long as it lives.
	var mu sync.Mutex
	var got []*bypassHold
	direct := bypassDirectConfig(t, s, db, "dave.rw", "i-know-this", "race-direct")
	loops.Add(1)
	go func() {
		defer loops.Done()
		for ctx.Err() == nil {
			attempts.Add(1)
			c, err := pgconn.ConnectConfig(ctx, direct)
			if err != nil {
				continue
			}
			at := time.Now()
			h := &bypassHold{}
			mu.Lock()
			got = append(got, h)
			if len(got) == 3 {
				stop()
			}
			mu.Unlock()
			holders.Add(1)
			go func() {
				defer holders.Done()
				*h = bypassUse(c, at, 5*time.Second, "INSERT INTO items (note) VALUES ('direct')")
			}()
		}
	}()
	loops.Wait()
	ran := time.Since(started)

	// Once the loops have stopped, no login window is open: the role must
	// be closed again whatever dave set on it.
	var state [][]string
	if !holdsWithin(time.Second, func() bool {
		state = s.upstreamQuery(t, "postgres", "SELECT rolcanlogin, rolpassword IS NULL FROM pg_authid WHERE rolname = 'dave.rw'")
		return len(state) == 1 && state[0][0] == "f" && state[0][1] == "t"
	}) {
		t.Errorf("1 s after the attack stopped, dave.rw has (rolcanlogin, rolpassword IS NULL) = %v, want (f, t): the role keeps a LOGIN or the password dave set", state)
	}

	holders.Wait()
	t.Logf("in %s the attack made %d direct login attempts, %d keygate connections and %d successful ALTER ROLE ... PASSWORD by dave; %d direct logins succeeded", ran.Round(time.Millisecond), attempts.Load(), connects.Load(), alters.Load(), len(got))
	for _, h := range got {
		t.Logf("direct backend pid %d lived %s and committed %d rows", h.pid, h.lived.Round(time.Millisecond), h.statements)
		if h.alive {
			t.Errorf("dave logged in directly as dave.rw around keygate (backend pid %d) and still used it %s later: %d rows committed outside keygate's audit and revocation", h.pid, h.lived.Round(time.Millisecond), h.statements)
		}
	}
	for _, h := range got {
		bypassCheckIntrusion(t, s, h.pid, "dave.rw", "dave", "orders")
	}

	s.kg(t, 0, "admin", "user", "disable", "dave")
	var backends, open []string
	if !holdsWithin(2*time.Second, func() bool {
		backends, open = bypassBackends(t, s, "dave.%"), bypassOpenRoles(t, s, "dave.%")
		return len(backends) == 0 && len(open) == 0
	}) {
		t.Errorf("2 s after dave was disabled: backends of his roles %v, roles with LOGIN or a password %v; want none of either", backends, open)
	}
}

// A backend of a keygate-managed role that keygate did not open, whoever
// made the role loginable, is terminated within 5 s and audited, for a
// person role and for a group role alike.
func TestIntrusionTerminated(t *testing.T) {
	const prefix = "bpintr"
	db := prefix + "_orders"
	s := startServerWith(t, prefix, serverOptions{stopWithTest: true})
	bypassCreateItems(t, s, db)
	s.addUser(t, "ivan", "engineers")
	tok := s.token(t, "ivan", "orders", "--access", "rw")
	// The first connection makes keygate create ivan.rw and the group roles.
	if r := s.psql(t, s.connString("ivan", "orders"), tok, "SELECT 1"); r.code != 0 {
		t.Fatalf("ivan through keygate: %s", r.stderr)
	}

	for _, tc := range []struct {
		name, role, user, sql string
	}{
		{"person role", "ivan.rw", "ivan", "INSERT INTO items (note) VALUES ('intruder')"},
		{"group role", "keygate_orders_ro", "", "SELECT count(*) FROM items"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bypassRestoreOnCleanup(t, s, tc.role)
			h := bypassUse(bypassIntrude(t, s, db, tc.role), time.Now(), 5*time.Second, tc.sql)
			t.Logf("direct backend pid %d of %s lived %s", h.pid, tc.role, h.lived.Round(time.Millisecond))
			if h.alive {
				t.Errorf("a direct login as %s around keygate (backend pid %d) still ran statements %s later (%d of them)", tc.role, h.pid, h.lived.Round(time.Millisecond), h.statements)
			}
			bypassCheckIntrusion(t, s, h.pid, tc.role, tc.user, "orders")
		})
	}

	// keygate's next login window for ivan closes the role again, whatever
	// was set on it behind keygate's back.
	if r := s.psql(t, s.connString("ivan", "orders"), tok, "SELECT 1"); r.code != 0 {
		t.Errorf("ivan through keygate after the intrusion: %s", r.stderr)
	}
	var open []string
	if !holdsWithin(time.Second, func() bool {
		open = bypassOpenRoles(t, s, "ivan.rw")
		return len(open) == 0
	}) {
		t.Errorf("after ivan's next keygate login: %v, want ivan.rw NOLOGIN without a password", open)
	}
}

// A backend that swallows cancels keeps running after its session is
// ended unless keygate terminates it: ending a session must end the
// upstream backend, confirmed, before session.end is audited.
func TestAttackCancelSwallowingLoop(t *testing.T) {
	const prefix = "bpcancel"
	db := prefix + "_orders"
	s := startServerWith(t, prefix, serverOptions{stopWithTest: true})
	bypassCreateItems(t, s, db)

	t.Run("read-write loop that commits", func(t *testing.T) {
		bypassRestoreOnCleanup(t, s, "cyrus.%")
		s.addUser(t, "cyrus", "engineers")
		sl := s.startPsql(t, "cyrus", "orders", s.token(t, "cyrus", "orders", "--access", "rw"), "loop-cyrus",
			`DO $$ BEGIN LOOP BEGIN INSERT INTO items (note) VALUES ('loop'); PERFORM pg_sleep(0.02); EXCEPTION WHEN query_canceled THEN NULL; END; COMMIT; END LOOP; END $$`)
		waitFor(t, 10*time.Second, func() bool {
			var n int
			fmt.Sscan(bypassRowCount(t, s, db, "loop"), &n)
			return n >= 10
		})

		s.kg(t, 0, "admin", "user", "disable", "cyrus")
		returned := time.Now()
		var backends, open []string
		if !holdsWithin(2*time.Second, func() bool {
			backends, open = bypassBackends(t, s, "cyrus.%"), bypassOpenRoles(t, s, "cyrus.%")
			return len(backends) == 0 && len(open) == 0
		}) {
			t.Errorf("2 s after cyrus was disabled: backends of his roles %v, roles with LOGIN or a password %v; want none of either", backends, open)
		}
		time.Sleep(time.Until(returned.Add(2 * time.Second)))
		at2 := bypassRowCount(t, s, db, "loop")
		time.Sleep(time.Until(returned.Add(3 * time.Second)))
		if at3 := bypassRowCount(t, s, db, "loop"); at3 != at2 {
			t.Errorf("cyrus's loop kept committing after he was disabled: %s rows 2 s after, %s rows 3 s after", at2, at3)
		}

		sl.ended(t, "cyrus was disabled")
		mustContain(t, "psql error", sl.stderr.String(), "access revoked")
		var ends []api.AuditEvent
		waitFor(t, 5*time.Second, func() bool {
			ends = s.audit(t, "--user", "cyrus", "--type", "session.end")
			return len(ends) == 1
		})
		d := ends[0].Detail
		gone, err := time.Parse(time.RFC3339Nano, fmt.Sprint(d["upstream_gone_at"]))
		if err != nil || d["upstream_end"] != "terminated" || bypassNumber(d["upstream_pid"]) <= 0 {
			t.Fatalf("session.end detail %v: want upstream_pid, upstream_gone_at (RFC 3339) and upstream_end \"terminated\"", d)
		}
		t.Logf("keygate confirmed cyrus's backend gone %s after `keygate admin user disable` returned (negative: before it returned)", gone.Sub(returned).Round(time.Millisecond))
		late := s.upstreamQuery(t, db, "SELECT count(*), coalesce(max(at)::text, '') FROM items WHERE note = 'loop' AND at > '"+gone.Format(time.RFC3339Nano)+"'::timestamptz")
		if late[0][0] != "0" {
			t.Errorf("%s rows were committed after keygate said the backend was gone at %s, the last at %s", late[0][0], gone.Format(time.RFC3339Nano), late[0][1])
		}
	})

	t.Run("read-only loop that holds a lock", func(t *testing.T) {
		bypassRestoreOnCleanup(t, s, "reva.%")
		s.addUser(t, "reva", "analysts")
		app := "lock-reva"
		s.startPsql(t, "reva", "orders", s.token(t, "reva", "orders"), app,
			`BEGIN; LOCK TABLE items IN ACCESS SHARE MODE; DO $$ BEGIN LOOP BEGIN PERFORM count(*) FROM items; PERFORM pg_sleep(0.02); EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$`)
		waitFor(t, 10*time.Second, func() bool {
			rows := s.upstreamQuery(t, db, "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE a.application_name = '"+app+"' AND a.query LIKE '%DO $$%' AND l.relation = 'items'::regclass AND l.granted")
			return rows[0][0] != "0"
		})

		s.kg(t, 0, "admin", "group", "remove-member", "analysts", "reva")
		returned := time.Now()
		admin := s.pg.Connect(t, db)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := admin.Exec(ctx, "SET lock_timeout = '2s'; ALTER TABLE items ADD COLUMN x int").ReadAll()
		if err != nil {
			t.Errorf("ALTER TABLE items as superuser right after reva left analysts: %v: her backend still held its lock on items 2 s later", err)
		} else {
			t.Logf("ALTER TABLE items got its lock %s after remove-member returned", time.Since(returned).Round(time.Millisecond))
		}
		var backends []string
		if !holdsWithin(time.Until(returned.Add(2*time.Second)), func() bool {
			backends = bypassBackends(t, s, "reva.%")
			return len(backends) == 0
		}) {
			t.Errorf("2 s after reva left analysts her backends still run: %v", backends)
		}
	})
}

// bypassWeakAdmin is an admin role with CREATEROLE but without the
// predefined roles keygate needs to terminate backends and see where they
// come from.
const bypassWeakAdmin = "keygate_admin_weak"

// bypassStartWeakAdminServer starts a keygate server whose orders database
// is owned and administered by bypassWeakAdmin; billing keeps the usual
// admin role.
func bypassStartWeakAdminServer(t *testing.T, prefix string) *kgServer {
	t.Helper()
	pg := testenv.StartPostgres(t)
	ctx := context.Background()
	password := "weak-" + pg.SuperPassword
	role := fmt.Sprintf(`DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%[1]s') THEN CREATE ROLE %[1]s; END IF;
END $$;
ALTER ROLE %[1]s LOGIN CREATEROLE PASSWORD '%[2]s';
REVOKE pg_signal_backend, pg_read_all_stats FROM %[1]s;`, bypassWeakAdmin, password)
	if err := pg.Exec(ctx, "postgres", role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pg.Exec(context.Background(), "postgres", "REVOKE pg_signal_backend, pg_read_all_stats FROM "+bypassWeakAdmin)
	})
	ordersDB, billingDB := prefix+"_orders", prefix+"_billing"
	for db, owner := range map[string]string{ordersDB: bypassWeakAdmin, billingDB: pg.AdminUser} {
		for _, sql := range []string{"DROP DATABASE IF EXISTS " + db + " WITH (FORCE)", "CREATE DATABASE " + db + " OWNER " + owner} {
			if err := pg.Exec(ctx, "postgres", sql); err != nil {
				t.Fatal(err)
			}
		}
		if err := pg.Exec(ctx, db, "SET ROLE "+owner+";"+upstreamSchema); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	s := &kgServer{dir: dir, pg: pg, env: []string{"WEAK_ADMIN_PASSWORD=" + password}, sessions: map[string]string{}}
	apiPort := freePort(t)
	s.pgPort = freePort(t)
	s.cfgPath = filepath.Join(dir, "keygate.yaml")
	cfg := fmt.Sprintf(configTemplate, apiPort, s.pgPort, pg.Address(), ordersDB, billingDB)
	cfg = strings.Replace(cfg, "      user: keygate_admin\n      password_env: ORDERS_ADMIN_PASSWORD\n",
		"      user: "+bypassWeakAdmin+"\n      password_env: WEAK_ADMIN_PASSWORD\n", 1)
	if err := os.WriteFile(s.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s.logPath = filepath.Join(dir, "server.log")
	s.apiURL = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	s.launch(t)
	t.Cleanup(func() { s.stop(t) })
	s.caFile = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(s.caFile, []byte(s.kg(t, 0, "ca")), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// bypassIntrude makes role loginable with a password, as a superuser
// could behind keygate's back, and logs in as it directly. keygate may
// close the role again between the two steps, so it tries a few times.
func bypassIntrude(t *testing.T, s *kgServer, db, role string) *pgconn.PgConn {
	t.Helper()
	var err error
	for range 3 {
		// keygate may be putting the role at rest at this moment (a
		// session of it just ended): two ALTER ROLEs at once make one fail
		// with "tuple concurrently updated", so try again.
		alter := fmt.Sprintf(`ALTER ROLE %q LOGIN PASSWORD 'x' VALID UNTIL 'infinity'`, role)
		if err := s.pg.Exec(context.Background(), "postgres", alter); err != nil {
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "XX000" {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
			if err := s.pg.Exec(context.Background(), "postgres", alter); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var c *pgconn.PgConn
		c, err = pgconn.ConnectConfig(ctx, bypassDirectConfig(t, s, db, role, "x", "intruder"))
		cancel()
		if err == nil {
			return c
		}
	}
	t.Fatalf("a direct login as %s right after a superuser gave it LOGIN and a password failed 3 times, so the termination of an intruding backend could not be tested: %v", role, err)
	return nil
}

// An admin role that cannot terminate backends or see their addresses
// cannot keep the promises above: keygate says at start-up exactly what to
// grant, refuses connections to that database with the same advice, and
// serves it once the grants are made, without a restart.
func TestPrivilegeCheckAtStartup(t *testing.T) {
	s := bypassStartWeakAdminServer(t, "bpweak")
	s.addUser(t, "wren", "analysts", "dbadmins")
	grants := []string{"GRANT pg_signal_backend TO " + bypassWeakAdmin, "GRANT pg_read_all_stats TO " + bypassWeakAdmin}
	var log []byte
	if !holdsWithin(15*time.Second, func() bool {
		log, _ = os.ReadFile(s.logPath)
		return bytes.Contains(log, []byte(grants[0])) && bytes.Contains(log, []byte(grants[1]))
	}) {
		t.Errorf("the server log does not say to run %q: keygate started on an admin role that cannot terminate backends or see their addresses without a word:\n%s", grants, log)
	}
	if bytes.Contains(log, []byte("ALTER ROLE "+bypassWeakAdmin+" CREATEROLE")) {
		t.Errorf("the server log asks for CREATEROLE, which %s has", bypassWeakAdmin)
	}

	orders := s.token(t, "wren", "orders", "--access", "ro")
	r := s.psql(t, s.connString("wren", "orders"), orders, "SELECT 1")
	if r.code == 0 {
		t.Errorf("a connection to orders succeeded though its admin role %s cannot terminate backends: revocation could not end its upstream sessions", bypassWeakAdmin)
	} else {
		for _, g := range grants {
			mustContain(t, "refusal of orders", r.stderr, g)
		}
	}
	if r := s.psql(t, s.connString("wren", "billing"), s.token(t, "wren", "billing", "--access", "admin"), "SELECT 1"); r.code != 0 {
		t.Errorf("billing, whose admin role has every privilege, refused a connection: %s", r.stderr)
	}

	if err := s.pg.Exec(context.Background(), "postgres", "GRANT pg_signal_backend, pg_read_all_stats TO "+bypassWeakAdmin); err != nil {
		t.Fatal(err)
	}
	granted := time.Now()
	if !holdsWithin(35*time.Second, func() bool {
		r = s.psql(t, s.connString("wren", "orders"), orders, "SELECT 1")
		if r.code != 0 {
			time.Sleep(time.Second)
		}
		return r.code == 0
	}) {
		t.Fatalf("35 s after the grants, connections to orders are still refused: %s", r.stderr)
	}
	t.Logf("orders served %s after the grants", time.Since(granted).Round(100*time.Millisecond))
}
