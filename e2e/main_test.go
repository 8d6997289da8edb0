// Package e2e drives the built keygate binary the way a person does: the
// CLI, psql, pgbench and pgx against a real PostgreSQL through a real
// gateway.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/internal/testenv"
	"github.com/keygate/keygate/internal/throwaway"
)

// keygateBin is the binary under test, built once by TestMain.
var keygateBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keygate-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	keygateBin = filepath.Join(dir, "keygate")
	build := exec.Command("go", "build", "-o", keygateBin, "../cmd/keygate")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build keygate:", err)
		os.Exit(1)
	}
	testenv.Main(m, stopShared, stopSSO, func() { os.RemoveAll(dir) }, removeTempDirs)
}

// tempDirs are the directories made by tempDir, which hold keys and
// credentials: they are removed once every server is stopped, unless
// KEYGATE_E2E_KEEP is set, for a look at a failure.
var (
	tempDirsMu sync.Mutex
	tempDirs   []string
)

// tempDir makes a directory that outlives the test that made it (a shared
// server's), and is removed when the suite ends.
func tempDir(prefix string) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	tempDirsMu.Lock()
	tempDirs = append(tempDirs, dir)
	tempDirsMu.Unlock()
	return dir, nil
}

func removeTempDirs() {
	if os.Getenv("KEYGATE_E2E_KEEP") != "" {
		fmt.Fprintln(os.Stderr, "KEYGATE_E2E_KEEP is set: keeping", strings.Join(tempDirs, " "))
		return
	}
	tempDirsMu.Lock()
	defer tempDirsMu.Unlock()
	for _, dir := range tempDirs {
		os.RemoveAll(dir)
	}
}

// upstreamSchema is the sample schema every test database starts with.
const upstreamSchema = `
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers, amount numeric(10,2) NOT NULL);
INSERT INTO customers (name) VALUES ('Ada'), ('Grace');
INSERT INTO orders (customer_id, amount) VALUES (1, 10.00), (2, 20.00);
`

// configTemplate is the config, with the ports and upstream filled
// in and the groups the tests need.
const configTemplate = `data_dir: ./data
public_hostnames: [localhost, 127.0.0.1]
listen:
  api: 127.0.0.1:%[1]d
  postgres: 127.0.0.1:%[2]d
databases:
  - name: orders
    engine: postgres
    address: %[3]s
    database: %[4]s
    schemas: [public]
    tags: {environment: prod, project: alpha}
    tls: disable
    admin:
      user: keygate_admin
      password_env: ORDERS_ADMIN_PASSWORD
  - name: billing
    engine: postgres
    address: %[3]s
    database: %[5]s
    tls: disable
    admin:
      user: keygate_admin
      password_env: ORDERS_ADMIN_PASSWORD
permission_sets:
  - name: db-readonly
    access: ro
    token_ttl: 15m
  - name: db-readwrite
    access: rw
  - name: db-admin
    access: admin
  - name: db-blink
    access: ro
    token_ttl: 1s
assignments:
  - group: analysts
    permission_set: db-readonly
    databases: [orders]
  - group: engineers
    permission_set: db-readwrite
    databases: [orders]
  - group: dbadmins
    permission_set: db-admin
    databases: ["*"]
  - group: blinkers
    permission_set: db-blink
    databases: [orders]
shutdown_grace: 2s
`

// kgServer is a running `keygate server`.
type kgServer struct {
	dir     string
	cfgPath string
	caFile  string
	pgPort  int
	apiURL  string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	pg      *testenv.Postgres
	// my is the MariaDB behind orders_my, myDB its database there, and
	// myPort the MySQL gateway's port; all zero unless serverOptions.mysql.
	my     *testenv.MariaDB
	myDB   string
	myPort int
	// env is added to the server process's environment.
	env []string

	mu       sync.Mutex
	sessions map[string]string
	tokens   []string
}

// startServer creates two fresh upstream databases and starts a keygate
// server in front of them; extraConfig is appended to the config file.
func startServer(t testing.TB, dbPrefix, extraConfig string, stopWithTest bool) *kgServer {
	t.Helper()
	return startServerWith(t, dbPrefix, serverOptions{extraConfig: extraConfig, stopWithTest: stopWithTest})
}

// serverOptions are what a test's own server adds to the common config.
type serverOptions struct {
	// extraConfig is appended to the config file.
	extraConfig string
	// permissionSets and assignments are YAML list items appended to
	// those lists.
	permissionSets, assignments string
	// billingTags is a YAML flow map of tags for billing, which the
	// template leaves untagged, for a test that needs a database in each
	// of two environments.
	billingTags string
	// apiPort is the API's port, for a test that must name the API's URL
	// before the server starts (as an identity provider's redirect URI);
	// 0 picks a free one.
	apiPort int
	// env is added to the server's environment.
	env []string
	// ordersSetup runs as the superuser in the orders database, after the
	// sample schema; ordersConfig is added to orders' config entry.
	ordersSetup, ordersConfig string
	// mysql adds orders_my, a MariaDB database (see startMySQL), granted
	// as orders is, and the MySQL gateway; mysqlConfig is added to its
	// config entry.
	mysql        bool
	mysqlConfig  string
	stopWithTest bool
}

// startServerWith is startServer with more choices.
func startServerWith(t testing.TB, dbPrefix string, o serverOptions) *kgServer {
	t.Helper()
	pg := testenv.StartPostgres(t)
	ctx := context.Background()
	ordersDB, billingDB := dbPrefix+"_orders", dbPrefix+"_billing"
	for _, db := range []string{ordersDB, billingDB} {
		// The PostgreSQL outlives each test, so a test run again by
		// -count finds the databases its previous run made.
		if err := pg.Exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)"); err != nil {
			t.Fatal(err)
		}
		if err := pg.Exec(ctx, "postgres", fmt.Sprintf("CREATE DATABASE %s OWNER %s", db, pg.AdminUser)); err != nil {
			t.Fatal(err)
		}
		if err := pg.Exec(ctx, db, "SET ROLE "+pg.AdminUser+";"+upstreamSchema); err != nil {
			t.Fatal(err)
		}
	}
	if o.ordersSetup != "" {
		if err := pg.Exec(ctx, ordersDB, o.ordersSetup); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := tempDir("keygate-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	s := &kgServer{dir: dir, pg: pg, env: o.env, sessions: map[string]string{}}
	if o.mysql {
		s.my, s.myDB = startMySQL(t, dbPrefix)
	}
	s.cfgPath = filepath.Join(dir, "keygate.yaml")
	s.logPath = filepath.Join(dir, "server.log")
	// A port picked free can be taken (by another package's test server)
	// before keygate binds it: then pick others and start again.
	err = throwaway.OnFreePort(func() error {
		apiPort, pgPort := o.apiPort, freePort(t)
		if apiPort == 0 {
			apiPort = freePort(t)
		}
		s.pgPort = pgPort
		s.apiURL = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
		cfg := fmt.Sprintf(configTemplate, apiPort, pgPort, pg.Address(), ordersDB, billingDB)
		if s.my != nil {
			s.myPort = freePort(t)
			cfg = withMySQL(cfg, s.myPort, s.my, s.myDB, o.mysqlConfig)
		}
		if o.billingTags != "" {
			billing := "    database: " + billingDB + "\n"
			cfg = strings.Replace(cfg, billing, billing+"    tags: "+o.billingTags+"\n", 1)
		}
		if o.ordersConfig != "" {
			orders := "    database: " + ordersDB + "\n"
			cfg = strings.Replace(cfg, orders, orders+o.ordersConfig, 1)
		}
		cfg = strings.Replace(cfg, "\nassignments:\n", "\n"+o.permissionSets+"assignments:\n", 1)
		cfg = strings.Replace(cfg, "\nshutdown_grace:", "\n"+o.assignments+"shutdown_grace:", 1)
		cfg += o.extraConfig
		if err := os.WriteFile(s.cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return s.tryLaunch()
	}, "address already in use")
	if err != nil {
		t.Fatal(err)
	}
	if o.stopWithTest {
		t.Cleanup(func() { s.stop(t) })
	}
	s.caFile = filepath.Join(dir, "ca.pem")
	out := s.kg(t, 0, "ca")
	if err := os.WriteFile(s.caFile, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// launch starts the server process on the existing config and data_dir,
// appending to its log, and waits until it serves.
func (s *kgServer) launch(t testing.TB) {
	t.Helper()
	if err := s.tryLaunch(); err != nil {
		t.Fatal(err)
	}
}

// launchRefusing starts the server and waits until /healthz answers 503
// with why in its body: a server that runs, and refuses to serve.
func (s *kgServer) launchRefusing(t testing.TB, why string) {
	t.Helper()
	if err := s.start(func(status int, body string) bool {
		return status == http.StatusServiceUnavailable && strings.Contains(body, why)
	}); err != nil {
		t.Fatal(err)
	}
}

// tryLaunch is launch, saying why the server did not come up.
func (s *kgServer) tryLaunch() error {
	return s.start(func(status int, _ string) bool { return status == http.StatusOK })
}

// start starts the server and waits until its /healthz answer passes
// healthy.
func (s *kgServer) start(healthy func(status int, body string) bool) error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	s.cmd = exec.Command(keygateBin, "server", "--config", s.cfgPath)
	s.cmd.Env = append(os.Environ(), "ORDERS_ADMIN_PASSWORD="+s.pg.AdminPassword)
	if s.my != nil {
		s.cmd.Env = append(s.cmd.Env, mysqlPasswordEnv+"="+s.my.AdminPassword)
	}
	s.cmd.Env = append(s.cmd.Env, s.env...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	s.done = done
	cmd := s.cmd
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	return s.ready(healthy)
}

// ready waits until the server's /healthz answer passes healthy, or says
// why it will not.
func (s *kgServer) ready(healthy func(status int, body string) bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			log, _ := os.ReadFile(s.logPath)
			return fmt.Errorf("keygate server exited during start-up:\n%s", log)
		default:
		}
		if pem, err := os.ReadFile(filepath.Join(s.dir, "data", "ca.pem")); err == nil {
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(pem)
			c := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
			if resp, err := c.Get(s.apiURL + "/healthz"); err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if healthy(resp.StatusCode, string(body)) {
					return nil
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	log, _ := os.ReadFile(s.logPath)
	return fmt.Errorf("keygate server not ready after 30s:\n%s", log)
}

// stop sends SIGTERM and waits for the server to drain and exit.
func (s *kgServer) stop(t testing.TB) {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		t.Errorf("keygate server did not exit within 20s of SIGTERM")
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	port, err := throwaway.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// result is what a command printed and how it exited.
type result struct {
	stdout, stderr string
	code           int
}

// run runs the keygate binary with extra environment.
func (s *kgServer) run(t testing.TB, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(keygateBin, append(args, "--config", s.cfgPath)...)
	cmd.Env = append(os.Environ(), env...)
	return runCmd(t, cmd)
}

// runCmd runs cmd and collects what it printed and its exit code.
func runCmd(t testing.TB, cmd *exec.Cmd) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", cmd.Path, err)
	}
	return r
}

// kg runs the keygate binary and fails the test unless it exits with code.
func (s *kgServer) kg(t testing.TB, code int, args ...string) string {
	t.Helper()
	r := s.run(t, nil, args...)
	if r.code != code {
		t.Fatalf("keygate %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	return r.stdout
}

// addUser creates a user in groups.
func (s *kgServer) addUser(t testing.TB, name string, groups ...string) {
	t.Helper()
	args := []string{"admin", "user", "add", name, "--email", name + "@example.com"}
	for _, g := range groups {
		args = append(args, "--group", g)
	}
	s.kg(t, 0, args...)
}

// session returns the user's session credential, creating it once.
func (s *kgServer) session(t testing.TB, user string) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.sessions[user]; ok {
		return c
	}
	out := s.kg(t, 0, "admin", "session", "create", user, "--ttl", "2h")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	c := lines[len(lines)-1]
	s.sessions[user] = c
	return c
}

// forgetSession drops user's cached sign-in session, so that the next
// token comes through a new one.
func (s *kgServer) forgetSession(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, user)
}

// tokenResult runs `keygate db token` as user.
func (s *kgServer) tokenResult(t testing.TB, user, db string, extra ...string) result {
	t.Helper()
	r := s.run(t, []string{"KEYGATE_SESSION=" + s.session(t, user)}, append([]string{"db", "token", db}, extra...)...)
	if r.code == 0 {
		s.mu.Lock()
		s.tokens = append(s.tokens, strings.TrimSpace(r.stdout))
		s.mu.Unlock()
	}
	return r
}

// token gets a token for user on db, failing the test if refused.
func (s *kgServer) token(t testing.TB, user, db string, extra ...string) string {
	t.Helper()
	r := s.tokenResult(t, user, db, extra...)
	if r.code != 0 {
		t.Fatalf("keygate db token %s as %s: exit %d: %s", db, user, r.code, r.stderr)
	}
	tok := strings.TrimSpace(r.stdout)
	if strings.Contains(tok, "\n") || !strings.HasPrefix(tok, "v4.public.") {
		t.Fatalf("keygate db token printed more than a token: %q", r.stdout)
	}
	return tok
}

// connString is the libpq connection string a person uses.
func (s *kgServer) connString(user, db string, extra ...string) string {
	return strings.Join(append([]string{"host=127.0.0.1", fmt.Sprintf("port=%d", s.pgPort), "dbname=" + db, "user=" + user,
		"sslmode=verify-full", "sslrootcert=" + s.caFile}, extra...), " ")
}

// psql runs psql through the gateway with the token as password.
func (s *kgServer) psql(t testing.TB, conn, token, sql string) result {
	t.Helper()
	cmd := exec.Command("psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", conn, "-c", sql)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+token, "PGCONNECT_TIMEOUT=10")
	return runCmd(t, cmd)
}

// pgx connects through the gateway with pgconn.
func (s *kgServer) pgx(t testing.TB, user, db, token string, extra ...string) *pgconn.PgConn {
	t.Helper()
	cfg, err := pgconn.ParseConfig(s.connString(user, db, extra...))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = token
	c, err := pgconn.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("connect as %s to %s: %v", user, db, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// upstreamQuery runs sql directly on the upstream as superuser.
func (s *kgServer) upstreamQuery(t testing.TB, db, sql string) [][]string {
	t.Helper()
	return s.pg.Query(t, db, sql)
}

var (
	sharedOnce sync.Once
	shared     *kgServer
)

// sharedServer is one server for the tests that do not need their own.
func sharedServer(t testing.TB) *kgServer {
	t.Helper()
	sharedOnce.Do(func() { shared = startServer(t, "shared", "", false) })
	if shared == nil {
		t.Fatal("shared keygate server failed to start")
	}
	return shared
}

func itoa(n int) string { return strconv.Itoa(n) }

// sendCancel sends a plaintext CancelRequest, as libpq before 17 does.
func sendCancel(t testing.TB, port int, pid uint32, key []byte) {
	t.Helper()
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := binary.BigEndian.AppendUint32(nil, uint32(12+len(key)))
	msg = binary.BigEndian.AppendUint32(msg, 80877102)
	msg = binary.BigEndian.AppendUint32(msg, pid)
	msg = append(msg, key...)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, c)
}

// httpsGet fetches path from the API, trusting keygate's CA.
func httpsGet(t testing.TB, s *kgServer, path string) string {
	t.Helper()
	pem, err := os.ReadFile(s.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(s.apiURL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func stopShared() {
	if shared != nil {
		shared.terminate()
	}
}

// terminate stops a server that outlives the tests that use it, and
// removes its directory.
func (s *kgServer) terminate() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
	}
	os.RemoveAll(s.dir)
}

// sleeper is psql running a long pg_sleep through the gateway: a live
// session for the tests that end one.
type sleeper struct {
	app    string
	stderr bytes.Buffer
	exited chan time.Time
}

// startSleeper connects as user to db with token, under application_name
// app, and returns once the upstream runs the sleep.
func (s *kgServer) startSleeper(t testing.TB, user, db, token, app string) *sleeper {
	t.Helper()
	sl := s.startPsql(t, user, db, token, app, "SELECT pg_sleep(30)")
	waitFor(t, 10*time.Second, func() bool {
		rows := s.upstreamQuery(t, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE application_name = '"+app+"' AND query LIKE '%pg_sleep%'")
		return rows[0][0] == "1"
	})
	return sl
}

// startPsql runs sql through the gateway with psql as user, in the
// background, under application_name app.
func (s *kgServer) startPsql(t testing.TB, user, db, token, app, sql string) *sleeper {
	t.Helper()
	sl := &sleeper{app: app, exited: make(chan time.Time, 1)}
	cmd := exec.Command("psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", s.connString(user, db, "application_name="+app), "-c", sql)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+token, "PGCONNECT_TIMEOUT=10")
	cmd.Stderr = &sl.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		sl.exited <- time.Now()
	}()
	t.Cleanup(func() { cmd.Process.Kill() })
	return sl
}

// ended waits for psql to exit, after what, and returns when it did.
func (sl *sleeper) ended(t testing.TB, after string) time.Time {
	t.Helper()
	select {
	case at := <-sl.exited:
		return at
	case <-time.After(10 * time.Second):
		t.Fatalf("psql still running 10s after %s", after)
		return time.Time{}
	}
}

// endedWithin checks that psql exited within limit of since, with an
// error that says reason.
func (sl *sleeper) endedWithin(t testing.TB, what string, since time.Time, limit time.Duration, reason string) {
	t.Helper()
	took := sl.ended(t, what).Sub(since)
	t.Logf("live session ended %s after %s (negative: before it returned)", took, what)
	if took > limit {
		t.Fatalf("session ended %s after %s, want under %s", took, what, limit)
	}
	mustContain(t, "psql error", sl.stderr.String(), reason)
}
