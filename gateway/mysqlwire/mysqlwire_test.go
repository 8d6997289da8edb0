package mysqlwire

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	driver "github.com/go-sql-driver/mysql"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/audit/audittest"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/gateway"
	"github.com/keygate/keygate/internal/testenv"
	"github.com/keygate/keygate/mysqlproto"
	"github.com/keygate/keygate/pki"
	"github.com/keygate/keygate/token"
	"github.com/keygate/keygate/upstream"
	"github.com/keygate/keygate/upstream/mysql"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// switchable is an Authorizer whose answer a test can change.
type switchable struct {
	mu     sync.Mutex
	denied map[string]string // user → reason
	// limit is the session_duration of the grant it allows under.
	limit time.Duration
}

func (a *switchable) deny(user, reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.denied[user] = reason
}

func (a *switchable) Authorize(_ context.Context, r authz.Request) (access.Decision, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	reason, denied := a.denied[r.User]
	d := access.Decision{Allowed: !denied, User: r.User, Database: r.Database, Level: r.Level, Reason: reason}
	if !denied && a.limit > 0 {
		d.Grant = access.Grant{PermissionSet: access.PermissionSet{Name: "short", Level: r.Level, SessionDuration: a.limit}}
	}
	return d, nil
}

// fixture is a MySQL engine on a real gateway core in front of the shared
// MariaDB, serving database orders_my (upstream schema mw_<test>).
type fixture struct {
	gw     *gateway.Gateway
	srv    *Server
	addr   string
	caFile string
	pool   *x509.CertPool
	issuer *token.Issuer
	audit  *audittest.Recorder
	authz  *switchable
	maria  *testenv.MariaDB
	up     *mysql.Upstream
	schema string
}

// newFixture starts the engine. setup runs in the upstream schema.
func newFixture(t *testing.T, localInfile bool, setup string) *fixture {
	t.Helper()
	return newFixtureWith(t, setup, func(c *upstream.Config) { c.LocalInfile = localInfile })
}

// newFixtureWith is newFixture with the database's config as adjust
// leaves it.
func newFixtureWith(t *testing.T, setup string, adjust func(*upstream.Config)) *fixture {
	t.Helper()
	m := testenv.StartMariaDB(t)
	schema := fmt.Sprintf("mw_%d", time.Now().UnixNano()%1e9)
	m.CreateDatabase(t, schema, setup)
	prov, err := upstream.NewProvisioner(mysql.EngineName, upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := upstream.Config{Name: "orders_my", Address: m.Address(), Database: schema, AdminUser: m.AdminUser,
		AdminPassword: m.AdminPassword, TLS: "require"}
	adjust(&cfg)
	db, err := prov.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := db.Check(ctx); err != nil {
		t.Fatal(err)
	}
	go prov.Watch(ctx)

	dir := t.TempDir()
	ca, err := pki.Open(dir, []string{"localhost", "127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca-for-clients.pem")
	if err := os.WriteFile(caFile, ca.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	keys := token.NewMemoryKeys()
	rec := &audittest.Recorder{}
	az := &switchable{denied: map[string]string{}}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	gw := gateway.New(&token.Verifier{Keys: keys, Now: time.Now}, az, rec, log, nil)
	gw.HandshakeTimeout = 5 * time.Second
	up := db.(*mysql.Upstream)
	srv := New(gw, ca.ServerTLS, map[string]Upstream{"orders_my": up}, 0, false)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gw.Serve(ctx, ln, srv)
	t.Cleanup(func() {
		ln.Close()
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		gw.Drain(dctx)
	})
	return &fixture{gw: gw, srv: srv, addr: ln.Addr().String(), caFile: caFile, pool: ca.CAPool(), issuer: &token.Issuer{Keys: keys, Now: time.Now},
		audit: rec, authz: az, maria: m, up: up, schema: schema}
}

// token mints a token for user at level on orders_my.
func (f *fixture) token(t testing.TB, user string, level access.Level) string {
	t.Helper()
	tok, _, err := f.issuer.Mint(token.Claims{User: user, Database: "orders_my", Access: level, Expires: time.Now().Add(15 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

var tlsNames sync.Map

// config is a go-sql-driver configuration reaching the gateway as user
// with tok, verifying keygate's CA.
func (f *fixture) config(user, tok string) *driver.Config {
	name := "keygate-" + strconv.Itoa(int(time.Now().UnixNano()))
	if _, loaded := tlsNames.LoadOrStore(f.caFile, name); loaded {
		v, _ := tlsNames.Load(f.caFile)
		name = v.(string)
	} else {
		driver.RegisterTLSConfig(name, &tls.Config{RootCAs: f.pool, ServerName: "localhost"})
	}
	c := driver.NewConfig()
	c.User, c.Passwd, c.Net, c.Addr, c.DBName = user, tok, "tcp", f.addr, "orders_my"
	c.TLSConfig = name
	return c
}

// open opens a pool through the gateway, closed when the test ends.
func (f *fixture) open(t testing.TB, c *driver.Config) *sql.DB {
	t.Helper()
	conn, err := driver.NewConnector(c)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { db.Close() })
	return db
}

// outcomes are the outcome tags and errors of a query event.
func outcomes(e audit.Event) []string {
	var out []string
	list, _ := e.Detail["outcome"].([]gateway.Outcome)
	for _, o := range list {
		switch {
		case o.Tag != "":
			out = append(out, o.Tag)
		case o.Error != "":
			out = append(out, o.SQLState+" "+o.Error)
		default:
			out = append(out, "?"+o.Unknown+o.Skipped)
		}
	}
	return out
}

func hasQuery(text string) func(audit.Event) bool {
	return func(e audit.Event) bool { return e.Query == text }
}

func TestGoDriverBothWays(t *testing.T) {
	f := newFixture(t, false, "CREATE TABLE items (id INT PRIMARY KEY, name TEXT); INSERT INTO items VALUES (1, 'one')")
	for _, clear := range []bool{false, true} {
		t.Run(fmt.Sprintf("cleartext=%v", clear), func(t *testing.T) {
			c := f.config("alice", f.token(t, "alice", access.ReadOnly))
			c.AllowCleartextPasswords = clear
			db := f.open(t, c)
			var name string
			if err := db.QueryRow("SELECT name FROM items WHERE id = ?", 1).Scan(&name); err != nil {
				t.Fatal(err)
			}
			if name != "one" {
				t.Fatalf("name = %q", name)
			}
			// The driver names caching_sha2_password as the greeting
			// does, and keygate never asks for clear text: the flag
			// changes nothing.
			f.audit.WaitFor(t, audit.SessionStart, func(e audit.Event) bool { return e.Detail["auth"] == "caching_sha2_password" })
		})
	}
	e := f.audit.WaitFor(t, audit.Query, hasQuery("SELECT name FROM items WHERE id = ?"))
	if e.Detail["protocol"] != "prepare" {
		t.Errorf("first event of the statement: %+v", e)
	}
	exec := f.audit.WaitFor(t, audit.Query, func(e audit.Event) bool {
		return e.Query == "SELECT name FROM items WHERE id = ?" && e.Detail["protocol"] == "execute"
	})
	if got := fmt.Sprint(exec.Detail["params"]); got != "[1]" {
		t.Errorf("params = %s, want [1]", got)
	}
	if got := outcomes(exec); !slices.Equal(got, []string{"1 rows"}) {
		t.Errorf("outcome = %v", got)
	}
}

// mariadb runs the mariadb CLI against the gateway the way the README
// says, with the token in the environment, and returns its output.
func (f *fixture) mariadb(t *testing.T, user, tok string, extra []string, sqlText string) (string, error) {
	t.Helper()
	host, port, _ := net.SplitHostPort(f.addr)
	args := append([]string{"--no-defaults", "-h", host, "-P", port, "-u", user, "--ssl-ca=" + f.caFile, "--ssl-verify-server-cert",
		"--batch", "--skip-column-names"}, extra...)
	args = append(args, "-e", sqlText, "orders_my")
	cmd := exec.Command("mariadb", args...)
	cmd.Env = append(os.Environ(), "MYSQL_PWD="+tok)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestMariaDBClientReadOnly(t *testing.T) {
	if _, err := exec.LookPath("mariadb"); err != nil {
		t.Skip("the mariadb client is not installed (apt-get install mariadb-client)")
	}
	f := newFixture(t, false, "CREATE TABLE items (id INT PRIMARY KEY, name TEXT); INSERT INTO items VALUES (1, 'one'); "+
		"CREATE PROCEDURE add_item() SQL SECURITY DEFINER INSERT INTO items VALUES (99, 'by definer')")
	ways := map[string][]string{
		"caching_sha2_password":       nil,
		"enable-cleartext-plugin":     {"--enable-cleartext-plugin"},
		"default-auth=clear_password": {"--enable-cleartext-plugin", "--default-auth=mysql_clear_password"},
	}
	for name, extra := range ways {
		t.Run(name, func(t *testing.T) {
			out, err := f.mariadb(t, "alice", f.token(t, "alice", access.ReadOnly), extra, "SELECT name FROM items")
			if err != nil || !strings.HasSuffix(strings.TrimSpace(out), "\none") && strings.TrimSpace(out) != "one" {
				t.Fatalf("SELECT: %v\n%s", err, out)
			}
		})
	}
	f.audit.WaitFor(t, audit.SessionStart, func(e audit.Event) bool { return e.Detail["auth"] == "mysql_clear_password" })
	f.audit.WaitFor(t, audit.SessionStart, func(e audit.Event) bool { return e.Detail["auth"] == "caching_sha2_password" })

	tok := f.token(t, "alice", access.ReadOnly)
	for _, stmt := range []string{
		"INSERT INTO items VALUES (2, 'two')",
		"UPDATE items SET name = 'x'",
		"GRANT ALL ON *.* TO 'alice.ro'@'%'",
		"SET ROLE " + "`" + mysql.RoleName("orders_my", access.ReadWrite) + "`",
		"CREATE TABLE t2 (x INT)",
		"CREATE USER mallory IDENTIFIED BY 'x'",
		"SELECT name FROM items INTO OUTFILE '/tmp/keygate-outfile'",
		"DROP TABLE items",
		"CALL add_item()",
		"LOAD DATA INFILE '/etc/hostname' INTO TABLE items",
		"SET ROLE NONE; INSERT INTO items VALUES (3, 'three')",
	} {
		out, err := f.mariadb(t, "alice", tok, nil, stmt)
		if err == nil {
			t.Errorf("%s: allowed to an ro session:\n%s", stmt, out)
		}
	}
	// A password she sets from inside her session lets nobody in
	// directly: her account is locked between keygate's logins.
	for _, stmt := range []string{"SET PASSWORD = PASSWORD('chosen-by-alice')", "/*!ALTER USER CURRENT_USER() IDENTIFIED BY 'chosen-by-alice' */",
		"EXECUTE IMMEDIATE 'SET PASSWORD = PASSWORD(\\'chosen-by-alice\\')'"} {
		if out, err := f.mariadb(t, "alice", tok, nil, stmt); err == nil || !strings.Contains(out, "keygate manages the upstream accounts") {
			t.Errorf("%s: not refused by keygate: %v\n%s", stmt, err, out)
		}
	}
	// Were it not refused, the password would still open nothing.
	if err := f.up.WithLogin(context.Background(), "alice", access.ReadOnly, func(user, password string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := f.maria.Exec(context.Background(), "", "ALTER USER 'alice.ro'@'%' IDENTIFIED BY 'chosen-by-alice'"); err != nil {
		t.Fatal(err)
	}
	direct := exec.Command("mariadb", "--no-defaults", "-h", f.maria.Host, "-P", strconv.Itoa(f.maria.Port), "-u", mysql.UserName("alice", access.ReadOnly),
		"--ssl", "-e", "SELECT 1")
	direct.Env = append(os.Environ(), "MYSQL_PWD=chosen-by-alice")
	if out, err := direct.CombinedOutput(); err == nil {
		t.Fatalf("the password alice set logs her in upstream directly:\n%s", out)
	} else if !strings.Contains(string(out), "ERROR") {
		t.Fatalf("direct login: %v %s", err, out)
	}
	var n int
	if err := f.maria.Connect(t, f.schema).QueryRow("SELECT COUNT(*) FROM items").Scan(&n); err != nil || n != 1 {
		t.Fatalf("items has %d rows (%v), want 1", n, err)
	}
}

func TestLoadDataLocal(t *testing.T) {
	if _, err := exec.LookPath("mariadb"); err != nil {
		t.Skip("the mariadb client is not installed (apt-get install mariadb-client)")
	}
	file := filepath.Join(t.TempDir(), "items.tsv")
	if err := os.WriteFile(file, []byte("7\tseven\n8\teight\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	load := fmt.Sprintf("LOAD DATA LOCAL INFILE '%s' INTO TABLE items", file)
	count := func(f *fixture) int {
		var n int
		if err := f.maria.Connect(t, f.schema).QueryRow("SELECT COUNT(*) FROM items").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	setup := "CREATE TABLE items (id INT PRIMARY KEY, name TEXT)"
	t.Run("off by default", func(t *testing.T) {
		f := newFixture(t, false, setup)
		out, err := f.mariadb(t, "frank", f.token(t, "frank", access.ReadWrite), []string{"--local-infile=1"}, load+"; SELECT 'after'")
		if err == nil || !strings.Contains(out, "local_infile: true") {
			t.Fatalf("LOAD DATA LOCAL where the database does not allow it: %v\n%s", err, out)
		}
		if n := count(f); n != 0 {
			t.Fatalf("%d rows loaded", n)
		}
		f.audit.WaitFor(t, audit.QueryRefused, func(e audit.Event) bool { return strings.Contains(e.Reason, "LOAD DATA LOCAL") })
	})
	t.Run("allowed to writers where enabled", func(t *testing.T) {
		f := newFixture(t, true, setup)
		out, err := f.mariadb(t, "frank", f.token(t, "frank", access.ReadOnly), []string{"--local-infile=1"}, load)
		// The server refuses it first (no INSERT privilege); keygate
		// would refuse the file otherwise.
		if err == nil || !strings.Contains(out, "read-only") && !strings.Contains(out, "INSERT command denied") {
			t.Fatalf("LOAD DATA LOCAL at ro: %v\n%s", err, out)
		}
		if out, err := f.mariadb(t, "frank", f.token(t, "frank", access.ReadWrite), []string{"--local-infile=1"}, load); err != nil {
			t.Fatalf("LOAD DATA LOCAL at rw: %v\n%s", err, out)
		}
		if n := count(f); n != 2 {
			t.Fatalf("%d rows loaded, want 2", n)
		}
		e := f.audit.WaitFor(t, audit.Query, func(e audit.Event) bool { return e.Query == load && e.Access == "rw" })
		if got := strings.Join(outcomes(e), "|"); !strings.Contains(got, "sent, 16 bytes") || !strings.Contains(got, "2 rows affected") {
			t.Fatalf("outcomes = %s", got)
		}
	})
}

func TestUseAndResetStayInTheDatabase(t *testing.T) {
	f := newFixture(t, false, "CREATE TABLE items (id INT PRIMARY KEY); INSERT INTO items VALUES (1)")
	if err := f.maria.Exec(context.Background(), "", "CREATE DATABASE IF NOT EXISTS mw_other"); err != nil {
		t.Fatal(err)
	}
	c, p := f.dialRaw(t, "gina", "", f.token(t, "gina", access.ReadOnly), true)
	if p[0] != mysqlproto.HeaderOK {
		t.Fatalf("login without a database: %q", p)
	}
	if p := c.command(t, append([]byte{gomysql.COM_INIT_DB}, "mw_other"...)); p[0] != mysqlproto.HeaderErr || !strings.Contains(errMessage(t, p), "may use database orders_my only") {
		t.Fatalf("COM_INIT_DB to another database: %q", p)
	}
	if p := c.command(t, append([]byte{gomysql.COM_INIT_DB}, "orders_my"...)); p[0] != mysqlproto.HeaderOK {
		t.Fatalf("COM_INIT_DB orders_my: %q", p)
	}
	if p := c.command(t, []byte{gomysql.COM_PING}); p[0] != mysqlproto.HeaderOK {
		t.Fatalf("COM_PING: %q", p)
	}
	if p := c.command(t, []byte{gomysql.COM_RESET_CONNECTION}); p[0] != mysqlproto.HeaderOK {
		t.Fatalf("COM_RESET_CONNECTION: %q", p)
	}
	// keygate started the session again after the reset, so it still
	// reads its table.
	if p := c.command(t, append([]byte{gomysql.COM_QUERY}, "SELECT id FROM items"...)); p[0] == mysqlproto.HeaderErr {
		t.Fatalf("after COM_RESET_CONNECTION: %s", errMessage(t, p))
	}
	f.audit.WaitFor(t, audit.QueryRefused, func(e audit.Event) bool { return e.Query == "USE mw_other" })
}

func TestMariaDBClientWithoutTLS(t *testing.T) {
	if _, err := exec.LookPath("mariadb"); err != nil {
		t.Skip("the mariadb client is not installed (apt-get install mariadb-client)")
	}
	f := newFixture(t, false, "")
	host, port, _ := net.SplitHostPort(f.addr)
	cmd := exec.Command("mariadb", "--no-defaults", "-h", host, "-P", port, "-u", "alice", "--skip-ssl", "-e", "SELECT 1", "orders_my")
	cmd.Env = append(os.Environ(), "MYSQL_PWD="+f.token(t, "alice", access.ReadOnly))
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "TLS is required") || !strings.Contains(string(out), "--ssl-verify-server-cert") {
		t.Fatalf("a client without TLS: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

func TestOversizedStatements(t *testing.T) {
	f := newFixture(t, false, "CREATE TABLE items (id INT PRIMARY KEY)")
	f.srv.maxStatement = 64
	db := f.open(t, f.config("ivan", f.token(t, "ivan", access.ReadOnly)))
	db.SetMaxOpenConns(1)
	long := "SELECT COUNT(*) FROM items WHERE id IN (" + strings.Repeat("1, ", 40) + "1)"
	var n int
	if err := db.QueryRow(long).Scan(&n); err == nil || !strings.Contains(err.Error(), "audit.max_statement_size") {
		t.Fatalf("a %d-byte statement over a 64-byte limit: %v", len(long), err)
	}
	e := f.audit.WaitFor(t, audit.QueryRefused, func(e audit.Event) bool { return strings.Contains(e.Reason, "audit.max_statement_size") })
	if e.Detail["length"] != len(long) {
		t.Fatalf("refusal detail: %+v", e.Detail)
	}
	// The session goes on.
	if err := db.QueryRow("SELECT COUNT(*) FROM items").Scan(&n); err != nil {
		t.Fatal(err)
	}
	f.srv.truncate = true
	if err := db.QueryRow(long).Scan(&n); err != nil {
		t.Fatalf("with truncate: %v", err)
	}
	e = f.audit.WaitFor(t, audit.Query, func(e audit.Event) bool { return e.Detail["truncated"] == true })
	if e.Detail["sha256"] == nil || e.Detail["length"] != len(long) || !strings.Contains(e.Query, "bytes omitted") {
		t.Fatalf("truncated event: %q %+v", e.Query, e.Detail)
	}
}

func TestSessionDurationEndsSession(t *testing.T) {
	f := newFixture(t, false, "")
	f.authz.limit = 500 * time.Millisecond
	db := f.open(t, f.config("jane", f.token(t, "jane", access.ReadOnly)))
	start := time.Now()
	_, err := db.Exec("SELECT SLEEP(10)")
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("a statement outlived session_duration: %v after %s", err, time.Since(start))
	}
	end := f.audit.WaitFor(t, audit.SessionEnd, func(e audit.Event) bool { return e.User == "jane" })
	if !strings.Contains(end.Reason, "session_duration of short (500ms) reached") || end.Detail["upstream_end"] != "terminated" {
		t.Fatalf("session.end = %+v", end)
	}
}
