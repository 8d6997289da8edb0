package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/internal/testenv"
	"github.com/keygate/keygate/localpg"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/sqlite"
	"github.com/keygate/keygate/upstream"
)

// stateDatabases numbers the state databases the cluster tests make.
var stateDatabases atomic.Int64

// logText is what the server logged so far.
func (s *kgServer) logText(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// newStateDatabase makes an empty state database in state (nil: the
// upstream PostgreSQL), owned by a plain login role, and returns the
// environment that names it and a fresh secrets key.
func newStateDatabase(t *testing.T, state *localpg.Server, dbPrefix string) []string {
	t.Helper()
	pg := state
	if pg == nil {
		pg = testenv.StartPostgres(t).Server
	}
	n := stateDatabases.Add(1)
	role, db := fmt.Sprintf("keygate_state_%d", n), fmt.Sprintf("%s_state", dbPrefix)
	password := rand.Text()
	for _, q := range []string{
		"DROP DATABASE IF EXISTS " + db + " WITH (FORCE)",
		"DROP ROLE IF EXISTS " + role,
		fmt.Sprintf("CREATE ROLE %s LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '%s'", role, password),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", db, role),
	} {
		if err := pg.Exec(t.Context(), "postgres", q); err != nil {
			t.Fatal(err)
		}
	}
	key := make([]byte, 32)
	rand.Read(key)
	return []string{
		fmt.Sprintf("KEYGATE_STATE_URL=postgres://%s:%s@%s/%s?sslmode=disable", role, password, pg.Address(), db),
		"KEYGATE_SECRETS_KEY=" + base64.StdEncoding.EncodeToString(key),
	}
}

// stateConfig is the state section naming newStateDatabase's environment.
const stateConfig = "state:\n  postgres_url_env: KEYGATE_STATE_URL\n  secrets_key_env: KEYGATE_SECRETS_KEY\n  node: %s\n"

// startCluster starts two keygate servers, nodes a and b, on one state
// database in state (nil: the upstream PostgreSQL), owned by a plain login
// role, in front of the same upstream databases. Each has its own
// data_dir and ports.
func startCluster(t *testing.T, dbPrefix string, state *localpg.Server) (a, b *kgServer) {
	t.Helper()
	env := newStateDatabase(t, state, dbPrefix)
	a = startServerWith(t, dbPrefix, serverOptions{env: env, extraConfig: fmt.Sprintf(stateConfig, "a"), stopWithTest: true})
	b = a.sibling(t, "")
	b.editConfig(t, "node: a", "node: b")
	b.launch(t)
	t.Cleanup(func() { b.stop(t) })
	return a, b
}

// Two servers on one state: a person whose sign-in session was made
// through node a gets a token from node b and connects through b; a SCIM
// group removal sent to a ends her live session on b. Over 50 trials the
// time from the SCIM response to the session's end is printed, p99 under
// a second.
func TestClusterRevocationAcrossNodes(t *testing.T) {
	a, b := startCluster(t, "cluster", nil)

	// Both nodes hold the same CA, signing keys and admin credential, and
	// neither made a SQLite state.
	for _, name := range []string{"ca.pem", "ca.key", "token-keys.json", "admin.credential"} {
		fa, errA := os.ReadFile(filepath.Join(a.dir, "data", name))
		fb, errB := os.ReadFile(filepath.Join(b.dir, "data", name))
		if errA != nil || errB != nil || string(fa) != string(fb) {
			t.Fatalf("%s differs between the nodes (%v, %v)", name, errA, errB)
		}
	}
	for _, s := range []*kgServer{a, b} {
		if _, err := os.Stat(filepath.Join(s.dir, "data", "keygate.db")); err == nil {
			t.Fatalf("a node on a shared state made keygate.db in %s", s.dir)
		}
	}
	if ca := b.kg(t, 0, "ca"); ca != a.kg(t, 0, "ca") {
		t.Fatal("keygate ca differs between the nodes")
	}
	// A third server under node a's name is refused: two writers of one
	// chain would break it.
	if r := serverCmd(t, a.sibling(t, ""), 20*time.Second); r.code == 0 || !strings.Contains(r.stderr, "give each server its own state.node") {
		t.Fatalf("a second server as node a: exit %d\n%s", r.code, r.stderr)
	}

	c := a.scimClient(t, "azure-ad")
	user := c.must(201, "POST", "/Users", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "nadia", "active": true}`)
	uid := user["id"].(string)
	c.must(201, "POST", "/Groups", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "analysts"}`)
	analysts := groupID(t, c, "analysts")
	add := `{` + patchOp + `, "Operations": [{"op": "Add", "path": "members", "value": [{"value": "` + uid + `"}]}]}`
	remove := `{` + patchOp + `, "Operations": [{"op": "Remove", "path": "members[value eq \"` + uid + `\"]"}]}`

	// The sign-in session is made through node a and used on node b.
	b.sessions["nadia"] = a.session(t, "nadia")

	// One connection watches the upstream for every trial: each of
	// startSleeper's looks opens a connection held until the test ends.
	watch := a.pg.Connect(t, "postgres")
	running := func(app string) bool {
		res, err := watch.Exec(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE application_name = '"+app+"' AND query LIKE '%pg_sleep%'").ReadAll()
		return err == nil && len(res) == 1 && len(res[0].Rows) == 1 && string(res[0].Rows[0][0]) == "1"
	}
	const trials = 50
	var took []time.Duration
	for i := range trials {
		c.must(200, "PATCH", "/Groups/"+analysts, add)
		var tok string
		// b learns of the membership from the shared feed.
		waitFor(t, 5*time.Second, func() bool {
			r := b.tokenResult(t, "nadia", "orders")
			tok = strings.TrimSpace(r.stdout)
			return r.code == 0
		})
		app := fmt.Sprintf("cluster-%d", i)
		sl := b.startPsql(t, "nadia", "orders", tok, app, "SELECT pg_sleep(30)")
		waitFor(t, 10*time.Second, func() bool { return running(app) })
		c.must(200, "PATCH", "/Groups/"+analysts, remove)
		responded := time.Now()
		took = append(took, sl.ended(t, "the SCIM removal on node a").Sub(responded))
	}
	slices.Sort(took)
	p50, p99 := took[len(took)/2], took[len(took)*99/100]
	t.Logf("SCIM removal on node a to the session's end on node b, %d trials: p50 %s, p99 %s, max %s", trials, p50, p99, took[len(took)-1])
	if p99 > time.Second {
		t.Fatalf("p99 %s from the SCIM response on a to the session's end on b, want under 1s", p99)
	}
	if r := b.tokenResult(t, "nadia", "orders"); r.code == 0 {
		t.Fatal("node b issued a token after the removal")
	}

	// A plaintext cancel request that a load balancer sends to node b,
	// for a statement running through node a, cancels it.
	a.addUser(t, "cora", "analysts")
	slow := a.pgx(t, "cora", "orders", a.token(t, "cora", "orders"), "application_name=cancel-me")
	result := make(chan error, 1)
	go func() {
		_, err := slow.Exec(context.Background(), "SELECT pg_sleep(30)").ReadAll()
		result <- err
	}()
	waitFor(t, 10*time.Second, func() bool { return running("cancel-me") })
	packet := binary.BigEndian.AppendUint32(nil, 16)
	packet = binary.BigEndian.AppendUint32(packet, 80877102)
	packet = binary.BigEndian.AppendUint32(packet, slow.PID())
	packet = append(packet, slow.SecretKey()...)
	cancelConn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", b.pgPort))
	if err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	cancelConn.Write(packet)
	cancelConn.Close()
	select {
	case err := <-result:
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
			t.Fatalf("the statement after a cancel sent to node b: %v", err)
		}
		t.Logf("a cancel request sent to node b cancelled a statement on node a after %s", time.Since(sent).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("a cancel request sent to node b did not cancel the statement on node a within 5s")
	}

	// Each node wrote its own chain, and verify walks both.
	out := a.kg(t, 0, "audit", "verify")
	mustContain(t, "audit verify", out, "intact")
	// Node b ended the sessions itself, told by the shared feed: each
	// end is in b's chain with the revocation as its reason.
	revoked := 0
	for _, e := range a.audit(t, "--type", "session.end", "--user", "nadia") {
		if e.Node != "b" {
			t.Fatalf("a session on node b ended in chain %q", e.Node)
		}
		if strings.HasPrefix(e.Reason, "access revoked") {
			revoked++
		}
	}
	if revoked != trials {
		t.Fatalf("%d session.end events of node b say access revoked, want %d", revoked, trials)
	}
	for _, e := range a.audit(t, "--type", "scim") {
		if e.Node != "a" {
			t.Fatalf("SCIM event sent to node a in chain %q", e.Node)
		}
	}
}

// The state database restarted while people work: the nodes refuse new
// logins while it is down, with an error that says why, serve again within
// seconds of its return, and every statement run meanwhile is in the
// audit once it is back.
func TestClusterStateDatabaseRestart(t *testing.T) {
	state, err := localpg.Start(t.Context(), localpg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { state.Stop() })
	a, b := startCluster(t, "clusterdown", state)
	a.addUser(t, "omar", "analysts")
	tok := b.token(t, "omar", "orders")
	live := b.pgx(t, "omar", "orders", tok, "application_name=load")

	// Load: one statement after another on b until the test ends.
	var ran atomic.Int64
	var failed atomic.Pointer[error]
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := live.Exec(t.Context(), fmt.Sprintf("SELECT %d AS load", i)).ReadAll(); err != nil {
				failed.Store(&err)
				return
			}
			ran.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()

	state.Halt()
	halted := time.Now()
	// A new login with a valid token is refused from the start (access
	// cannot be read), and once the feed is stale, on both nodes, with
	// the cause in the refusal.
	for _, s := range []*kgServer{a, b} {
		var last string
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(last, "state database is not answering") || !strings.Contains(s.logText(t), "the state database has not answered") {
			if time.Now().After(deadline) {
				t.Fatalf("no refusal naming the state database within 15s; the last: %s", last)
			}
			r := s.psql(t, s.connString("omar", "orders"), tok, "SELECT 1")
			if r.code == 0 {
				t.Fatalf("a login %s after the state database stopped was let in", time.Since(halted))
			}
			last = r.stderr
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("new logins refused %s after the state database stopped", time.Since(halted).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	before := ran.Load()

	if err := state.Resume(t.Context()); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	for _, s := range []*kgServer{a, b} {
		waitFor(t, 15*time.Second, func() bool {
			return s.psql(t, s.connString("omar", "orders"), tok, "SELECT 1").code == 0
		})
	}
	t.Logf("both nodes serve new logins %s after the state database returned", time.Since(resumed).Round(time.Millisecond))
	if took := time.Since(resumed); took > 10*time.Second {
		t.Fatalf("nodes took %s to serve again", took)
	}
	close(stop)
	<-loadDone
	if err := failed.Load(); err != nil {
		t.Fatalf("a statement of the live session failed while the state database was down: %v", *err)
	}
	if ran.Load() <= before {
		t.Fatal("the live session ran no statement after the state database returned")
	}
	t.Logf("the live session ran %d statements, %d of them before the state database returned", ran.Load(), before)

	// Every statement the client saw answered is in b's chain.
	live.Close(t.Context())
	waitFor(t, 10*time.Second, func() bool {
		n := 0
		for _, e := range a.audit(t, "--type", "query", "--user", "omar") {
			if strings.HasPrefix(e.Query, "SELECT ") && strings.HasSuffix(e.Query, " AS load") && e.Node == "b" {
				n++
			}
		}
		return int64(n) == ran.Load()
	})
	mustContain(t, "audit verify", a.kg(t, 0, "audit", "verify"), "intact")

	// The restart let go of the node names; both servers took theirs
	// back, so a third server under b's name is refused.
	dup := a.sibling(t, "")
	dup.editConfig(t, "node: a", "node: b")
	if r := serverCmd(t, dup, 20*time.Second); r.code == 0 || !strings.Contains(r.stderr, "give each server its own state.node") {
		t.Fatalf("a server under node b's name after the restart: exit %d\n%s", r.code, r.stderr)
	}
}

// With two servers on one state each leaves the other's upstream
// backends alone, and a direct login around both is still ended: it is
// no server's, so once a peer has had time to claim it, it goes.
func TestClusterIntrusion(t *testing.T) {
	const prefix = "clusterintr"
	a, b := startCluster(t, prefix, nil)
	db := prefix + "_orders"
	bypassCreateItems(t, a, db)
	a.addUser(t, "ines", "engineers")
	tok := b.token(t, "ines", "orders", "--access", "rw")
	live := b.pgx(t, "ines", "orders", tok)
	bypassRestoreOnCleanup(t, a, "ines.rw")
	h := bypassUse(bypassIntrude(t, a, db, "ines.rw"), time.Now(), 10*time.Second, "INSERT INTO items (note) VALUES ('intruder')")
	t.Logf("direct backend pid %d lived %s", h.pid, h.lived.Round(time.Millisecond))
	if h.alive {
		t.Fatalf("a direct login around both servers still ran statements %s later", h.lived.Round(time.Millisecond))
	}
	if limit := upstream.PeerGrace + 3*time.Second; h.lived > limit {
		t.Errorf("the direct backend lived %s, want under %s", h.lived, limit)
	}
	bypassCheckIntrusion(t, a, h.pid, "ines.rw", "ines", "orders")
	// b's own session, open all along, still works.
	if _, err := live.Exec(t.Context(), "SELECT 1").ReadAll(); err != nil {
		t.Fatalf("node b's session was ended as an intrusion: %v", err)
	}
}

// Node a killed (SIGKILL) under traffic: sessions on b carry on, a's
// clients connect again through b with the tokens a issued, every change
// a acknowledged is in the audit, both chains verify, and a started again
// continues its chain.
func TestClusterNodeKilled(t *testing.T) {
	a, b := startCluster(t, "clusterkill", nil)
	a.addUser(t, "kira", "analysts")
	tokA, tokB := a.token(t, "kira", "orders"), b.token(t, "kira", "orders")
	onA, onB := a.pgx(t, "kira", "orders", tokA), b.pgx(t, "kira", "orders", tokB)
	for _, c := range []*pgconn.PgConn{onA, onB} {
		if _, err := c.Exec(t.Context(), "SELECT 1").ReadAll(); err != nil {
			t.Fatal(err)
		}
	}

	// Statements through a, each answered or not, until a dies.
	var answered []string
	statements := make(chan struct{})
	go func() {
		defer close(statements)
		for i := 0; ; i++ {
			q := fmt.Sprintf("SELECT %d AS answered", i)
			if _, err := onA.Exec(t.Context(), q).ReadAll(); err != nil {
				return
			}
			answered = append(answered, q)
		}
	}()
	// Changes through a, each acknowledged or not, until a dies.
	var acknowledged []string
	changes := make(chan struct{})
	go func() {
		defer close(changes)
		for i := 0; ; i++ {
			name := fmt.Sprintf("acked%d", i)
			if r := a.run(t, nil, "admin", "user", "add", name); r.code != 0 {
				return
			}
			acknowledged = append(acknowledged, name)
		}
	}()
	time.Sleep(1500 * time.Millisecond)
	a.cmd.Process.Kill()
	<-a.done
	<-changes
	<-statements
	if len(acknowledged) == 0 || len(answered) == 0 {
		t.Fatalf("%d changes acknowledged and %d statements answered before node a died; want some of each", len(acknowledged), len(answered))
	}
	for i := range 20 {
		if _, err := onB.Exec(t.Context(), fmt.Sprintf("SELECT %d", i)).ReadAll(); err != nil {
			t.Fatalf("node b's session broke when node a died: %v", err)
		}
	}
	// a's client connects again through b with the token a issued.
	again := b.pgx(t, "kira", "orders", tokA)
	if _, err := again.Exec(t.Context(), "SELECT 1").ReadAll(); err != nil {
		t.Fatalf("a's client through b: %v", err)
	}

	created := map[string]bool{}
	for _, e := range b.audit(t, "--type", "admin.user.create") {
		created[e.User] = e.Node == "a"
	}
	for _, name := range acknowledged {
		if !created[name] {
			t.Fatalf("node a acknowledged creating %s, and its audit event in a's chain is missing", name)
		}
	}
	recorded := map[string]bool{}
	for _, e := range b.audit(t, "--type", "query", "--user", "kira") {
		if e.Node == "a" {
			recorded[e.Query] = true
		}
	}
	for _, q := range answered {
		if !recorded[q] {
			t.Fatalf("the client saw %q answered through node a, and its audit event in a's chain is missing", q)
		}
	}
	mustContain(t, "audit verify after the kill", b.kg(t, 0, "audit", "verify"), "intact")
	t.Logf("node a acknowledged %d changes and answered %d statements before it died; all are in its chain", len(acknowledged), len(answered))

	// a starts again and continues its chain where the store has it.
	a.launch(t)
	a.addUser(t, "after-restart", "analysts")
	mustContain(t, "audit verify after a's restart", b.kg(t, 0, "audit", "verify"), "intact")
}

// A server on SQLite that ran a journey (SCIM people and groups, joins and
// leaves, a sign-in session, tokens, statements) is stopped and its state
// moved with keygate state migrate: every person, group, history row and
// audit event is in the state database, the session still works, and the
// audit chain verifies there.
func TestStateMigrate(t *testing.T) {
	s := startServerWith(t, "migrate", serverOptions{stopWithTest: true})
	c := s.scimClient(t, "okta")
	var ids []string
	for _, name := range []string{"mia", "max", "mo"} {
		u := c.must(201, "POST", "/Users", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "`+name+`", "active": true}`)
		ids = append(ids, u["id"].(string))
	}
	g := c.must(201, "POST", "/Groups", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "analysts", "members": [{"value": "`+ids[0]+`"}, {"value": "`+ids[1]+`"}]}`)
	gid := g["id"].(string)
	c.must(200, "PATCH", "/Groups/"+gid, `{`+patchOp+`, "Operations": [{"op": "Remove", "path": "members[value eq \"`+ids[1]+`\"]"}]}`)
	c.must(200, "PATCH", "/Groups/"+gid, `{`+patchOp+`, "Operations": [{"op": "Add", "path": "members", "value": [{"value": "`+ids[2]+`"}]}]}`)
	tok := s.token(t, "mia", "orders")
	if r := s.psql(t, s.connString("mia", "orders"), tok, "SELECT count(*) FROM customers"); r.code != 0 {
		t.Fatalf("psql before the migration: %s", r.stderr)
	}
	s.stop(t)

	// What data_dir holds, read directly.
	ro, err := sqlite.OpenReadOnly(t.Context(), filepath.Join(s.dir, "data", "keygate.db"))
	if err != nil {
		t.Fatal(err)
	}
	before, err := ro.ListAudit(t.Context(), store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var users []string
	rows := map[string]int{}
	for _, tb := range sqlite.StateTables {
		err := ro.Rows(t.Context(), tb, func(values []any) error {
			rows[tb.Name]++
			if tb.Name == "users" {
				users = append(users, values[1].(string))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	ro.Close()
	if len(users) < 3 || rows["membership_history"] != 3 || len(before) == 0 {
		t.Fatalf("the journey left %d people, %d history rows, %d audit events", len(users), rows["membership_history"], len(before))
	}

	// Without a state section the command says what to add.
	if r := s.run(t, nil, "state", "migrate", "--to", "postgres"); r.code == 0 || !strings.Contains(r.stderr, "state.postgres_url_env") {
		t.Fatalf("migrate without a state section: exit %d, %s", r.code, r.stderr)
	}
	s.env = newStateDatabase(t, nil, "migrate")
	raw, err := os.ReadFile(s.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.cfgPath, append(raw, fmt.Sprintf(stateConfig, "a")...), 0o600); err != nil {
		t.Fatal(err)
	}
	r := s.run(t, s.env, "state", "migrate", "--to", "postgres")
	if r.code != 0 {
		t.Fatalf("keygate state migrate: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("keygate state migrate:\n%s", r.stdout)
	mustContain(t, "state migrate", r.stdout, fmt.Sprintf("audit events         %d (chain verified)", len(before)))
	for table, n := range rows {
		mustContain(t, "state migrate", r.stdout, fmt.Sprintf("  %-20s %d\n", table, n))
	}
	// A second run finds the database no longer empty.
	if r := s.run(t, s.env, "state", "migrate", "--to", "postgres"); r.code == 0 || !strings.Contains(r.stderr, "not empty") {
		t.Fatalf("a second migration: exit %d, %s", r.code, r.stderr)
	}

	// The server on the state database: the same people, history, audit
	// and session; no new SQLite state.
	if err := os.Rename(filepath.Join(s.dir, "data", "keygate.db"), filepath.Join(s.dir, "data", "keygate.db.before-migration")); err != nil {
		t.Fatal(err)
	}
	s.launch(t)
	list := s.kg(t, 0, "admin", "user", "list")
	for _, u := range users {
		mustContain(t, "admin user list", list, u)
	}
	after := s.audit(t)
	if len(after) < len(before) {
		t.Fatalf("%d audit events after the migration, %d before", len(after), len(before))
	}
	for i, e := range before {
		if a := after[i]; a.Seq != e.Seq || a.Type != e.Type || a.User != e.User || !a.Time.Equal(e.Time) || a.Node != "" {
			t.Fatalf("audit event %d: %+v after the migration, %+v before", e.Seq, a, e)
		}
	}
	mustContain(t, "audit verify", s.kg(t, 0, "audit", "verify"), "intact")
	tok = s.token(t, "mia", "orders") // the session made on SQLite
	if r := s.psql(t, s.connString("mia", "orders"), tok, "SELECT 1"); r.code != 0 {
		t.Fatalf("psql after the migration: %s", r.stderr)
	}
	if r := s.tokenResult(t, "max", "orders"); r.code == 0 {
		t.Fatal("max, removed from analysts before the migration, got a token after it")
	}
	if _, err := os.Stat(filepath.Join(s.dir, "data", "keygate.db")); err == nil {
		t.Fatal("the server on the state database made a SQLite state")
	}
}

// The audit of two servers exported through one of them verifies offline
// with the public key alone, signed checkpoints included; a tampered
// export is refused with the line and event at fault.
func TestClusterAuditExport(t *testing.T) {
	a, b := startCluster(t, "clusterexport", nil)
	for _, s := range []*kgServer{a, b} {
		s.editConfig(t, "shutdown_grace: 2s\n", "shutdown_grace: 2s\naudit:\n  checkpoint_interval: 1s\n")
		s.stop(t)
		s.launch(t)
	}
	a.addUser(t, "ezra", "analysts")
	for _, s := range []*kgServer{a, b} {
		tok := s.token(t, "ezra", "orders")
		if r := s.psql(t, s.connString("ezra", "orders"), tok, "SELECT '\\xff'::bytea, 'é'"); r.code != 0 {
			t.Fatalf("psql: %s", r.stderr)
		}
	}
	// Each node signs its chain within a checkpoint interval.
	waitFor(t, 10*time.Second, func() bool {
		signed := map[string]bool{}
		for _, e := range a.audit(t, "--type", "audit.checkpoint") {
			signed[e.Node] = true
		}
		return signed["a"] && signed["b"]
	})
	dir := t.TempDir()
	export := filepath.Join(dir, "audit.jsonl")
	mustContain(t, "audit export", a.kg(t, 0, "audit", "export", export), "wrote "+export)
	pub := filepath.Join(b.dir, "data", "audit-signing.pub")
	out := runCmd(t, exec.Command(keygateBin, "audit", "verify", "--export", export, "--public-key", pub))
	if out.code != 0 || !strings.Contains(out.stdout, "export intact") || !strings.Contains(out.stdout, "in 2 chains") {
		t.Fatalf("offline verify of an untouched export: exit %d\n%s%s", out.code, out.stdout, out.stderr)
	}
	t.Logf("offline verify: %s", out.stdout)
	// The anchors each node logged, kept apart from the database: the
	// export holds the newest of each; one the export does not reach (a
	// cut chain) fails it.
	var anchors []string
	for _, s := range []*kgServer{a, b} {
		m := regexp.MustCompile(`msg="audit checkpoint".* anchor=(\S+)`).FindAllStringSubmatch(s.logText(t), -1)
		if len(m) == 0 {
			t.Fatalf("no audit checkpoint line in node %s's log", s.logPath)
		}
		anchors = append(anchors, "--checkpoint", m[len(m)-1][1])
	}
	args := append([]string{"audit", "verify", "--export", export, "--public-key", pub}, anchors...)
	if r := runCmd(t, exec.Command(keygateBin, args...)); r.code != 0 || !strings.Contains(r.stdout, "it holds the 2 checkpoints") {
		t.Fatalf("offline verify with the logged anchors: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	later := regexp.MustCompile(`:(\d+):`).ReplaceAllString(anchors[1], ":999999:")
	if r := runCmd(t, exec.Command(keygateBin, "audit", "verify", "--export", export, "--public-key", pub, "--checkpoint", later)); r.code == 0 || !strings.Contains(r.stderr, "removed from its end") {
		t.Fatalf("offline verify against a checkpoint past the export's end: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	raw, err := os.ReadFile(export)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(string(raw), "\n"), "\n")
	write := func(name string, lines []string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Join(lines, "")), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	edited := append([]string(nil), lines...)
	edited[3] = strings.Replace(edited[3], `"type":"`, `"type":"x`, 1)
	removed := append(append([]string(nil), lines[:3]...), lines[4:]...)
	otherPub := filepath.Join(dir, "other.pub")
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(otherKey.Public())
	os.WriteFile(otherPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	for _, tc := range []struct {
		name, file, key, want string
	}{
		{"one event edited", write("edited.jsonl", edited), pub, "line 4 (event 4): its content does not match its hash"},
		{"one event removed", write("removed.jsonl", removed), pub, "line 4: event 5 follows event 3"},
		{"another key", export, otherPub, "not the given public key"},
	} {
		r := runCmd(t, exec.Command(keygateBin, "audit", "verify", "--export", tc.file, "--public-key", tc.key))
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: exit %d, %s; want %q", tc.name, r.code, r.stderr, tc.want)
		}
	}
}

// A reload on one server carries its access rules to the other, whose
// config file holds them; a server whose file holds other rules starts no
// session until it agrees, and the config history does not alternate.
func TestClusterRulesAgree(t *testing.T) {
	a, b := startCluster(t, "clusterrules", nil)
	a.addUser(t, "rhea", "analysts")
	if r := b.tokenResult(t, "rhea", "billing"); r.code == 0 {
		t.Fatal("rhea got a billing token before any rule gave her one")
	}
	grant := "  - group: analysts\n    permission_set: db-readonly\n    databases: [billing]\n"
	a.editConfig(t, "\nshutdown_grace:", "\n"+grant+"shutdown_grace:")
	a.kg(t, 0, "admin", "reload")
	// b's file does not have the new rule: b refuses new sessions.
	tok := a.token(t, "rhea", "orders")
	waitFor(t, 15*time.Second, func() bool {
		r := b.psql(t, b.connString("rhea", "orders"), tok, "SELECT 1")
		return r.code != 0 && strings.Contains(r.stderr, "disagree on the access rules")
	})
	mustContain(t, "node b's log", b.logText(t), "access rules differ from the other servers'")
	// Its file gets the rule: b takes it up without a reload of its own.
	b.editConfig(t, "\nshutdown_grace:", "\n"+grant+"shutdown_grace:")
	waitFor(t, 15*time.Second, func() bool {
		return b.psql(t, b.connString("rhea", "orders"), tok, "SELECT 1").code == 0
	})
	billing := b.token(t, "rhea", "billing")
	if r := b.psql(t, b.connString("rhea", "billing"), billing, "SELECT 1"); r.code != 0 {
		t.Fatalf("billing through b after it took up the rule: %s", r.stderr)
	}
	// b applied the rules once, when its file held them, not on every
	// look while it did not.
	reloads := 0
	for _, e := range a.audit(t, "--type", "config.reload") {
		if e.Node == "b" {
			reloads++
		}
	}
	if reloads != 1 {
		t.Fatalf("node b reloaded %d times, want once", reloads)
	}

	// b restarted with its old file: a start joins the rules in force
	// rather than impose its own, so b refuses sessions and a serves on,
	// with nothing new in the config history.
	history := func() string {
		return a.upstreamQuery(t, "clusterrules_state", "SELECT count(*) FROM config_history")[0][0]
	}
	versions := history()
	b.stop(t)
	b.editConfig(t, "\n"+grant+"shutdown_grace:", "\nshutdown_grace:")
	b.launchRefusing(t, "access rules differ")
	waitFor(t, 15*time.Second, func() bool {
		r := b.psql(t, b.connString("rhea", "orders"), tok, "SELECT 1")
		return r.code != 0 && strings.Contains(r.stderr, "disagree on the access rules")
	})
	for range 3 {
		if r := a.psql(t, a.connString("rhea", "billing"), billing, "SELECT 1"); r.code != 0 {
			t.Fatalf("node a, after b started with an old config: %s", r.stderr)
		}
		time.Sleep(2 * time.Second)
	}
	if got := history(); got != versions {
		t.Fatalf("b's start with an old config changed the config history: %s versions, %s before", got, versions)
	}
}

// One person connecting through both servers at once, with pooling off so
// that every connection opens a login window upstream: the servers take
// the person's window in turn, so that neither sets a new password or
// closes the window under the other's login, and no connection fails.
func TestClusterLoginWindows(t *testing.T) {
	env := newStateDatabase(t, nil, "clwindow")
	a := startServerWith(t, "clwindow", serverOptions{env: env, extraConfig: fmt.Sprintf(stateConfig, "a"),
		ordersConfig: "    pool:\n      enabled: false\n", stopWithTest: true})
	b := a.sibling(t, "")
	b.editConfig(t, "node: a", "node: b")
	b.launch(t)
	t.Cleanup(func() { b.stop(t) })
	a.addUser(t, "wanda", "analysts")
	tokens := map[*kgServer]string{a: a.token(t, "wanda", "orders"), b: b.token(t, "wanda", "orders")}

	const rounds, perServer = 25, 3
	var failed atomic.Int32
	var firstErr atomic.Pointer[error]
	began := time.Now()
	for range rounds {
		var wg sync.WaitGroup
		for i := range 2 * perServer {
			srv := a
			if i%2 == 1 {
				srv = b
			}
			wg.Go(func() {
				cfg, err := pgconn.ParseConfig(srv.connString("wanda", "orders"))
				if err != nil {
					t.Error(err)
					return
				}
				cfg.Password = tokens[srv]
				c, err := pgconn.ConnectConfig(t.Context(), cfg)
				if err == nil {
					_, err = c.Exec(t.Context(), "SELECT 1").ReadAll()
					c.Close(t.Context())
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
				}
			})
		}
		wg.Wait()
	}
	logins := rounds * 2 * perServer
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d logins through two servers failed; the first: %v", n, logins, *firstErr.Load())
	}
	t.Logf("%d concurrent logins of one person through two servers in %s, none failed", logins, time.Since(began).Round(time.Millisecond))
	// Every window was closed: the role is at rest.
	if got := a.upstreamQuery(t, "clwindow_orders", `SELECT rolcanlogin FROM pg_roles WHERE rolname = 'wanda.ro'`); len(got) != 1 || got[0][0] != "f" {
		t.Fatalf("wanda's role after the logins: %v, want NOLOGIN", got)
	}
}
