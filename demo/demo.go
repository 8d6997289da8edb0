// Package demo runs keygate's whole journey on a throwaway PostgreSQL and
// narrates it: a person gets a token, connects through the gateway as their
// own role, is held to their access level, loses access while connected, and
// the audit log shows who did what.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/internal/throwaway"
	"github.com/keygate/keygate/localpg"
	"github.com/keygate/keygate/server"
)

// Options tune the demo.
type Options struct {
	// Keep leaves everything running until ctx ends and prints psql lines.
	Keep bool
}

// adminPasswordEnv is the variable the demo config names for the upstream
// admin password.
const adminPasswordEnv = "KEYGATE_DEMO_ADMIN_PASSWORD"

const sampleSchema = `
SET ROLE keygate_admin;
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, country text NOT NULL);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers, amount numeric(10,2) NOT NULL, placed_at timestamptz NOT NULL DEFAULT now());
INSERT INTO customers (name, country) VALUES ('Ada Lovelace', 'GB'), ('Grace Hopper', 'US'), ('Edsger Dijkstra', 'NL');
INSERT INTO orders (customer_id, amount) VALUES (1, 120.00), (2, 75.50), (3, 310.25), (1, 42.00);
`

type run struct {
	w       io.Writer
	step    int
	dir     string
	pg      *localpg.Server
	cfgPath string
	srv     *server.Server
	admin   *client.Client
	pgAddr  string
	caFile  string
}

// Run runs the demo, writing the narration to w. It cleans up after itself,
// also when ctx is cancelled.
func Run(ctx context.Context, w io.Writer, opts Options) (err error) {
	r := &run{w: w}
	fmt.Fprintln(w, "keygate demo: company identity → 15-minute token → per-person database role → audit")
	fmt.Fprintln(w)

	r.say("Starting a throwaway PostgreSQL from this machine's binaries")
	start := time.Now()
	if r.pg, err = localpg.Start(ctx, localpg.Options{}); err != nil {
		return err
	}
	defer r.pg.Stop()
	r.result("%s on %s (initdb into a temporary directory, %.1fs)", r.pg.Version, r.pg.Address(), time.Since(start).Seconds())
	if err := r.prepareUpstream(ctx); err != nil {
		return err
	}

	if r.dir, err = os.MkdirTemp("", "keygate-demo-"); err != nil {
		return err
	}
	defer os.RemoveAll(r.dir)
	srvCtx, stopServer := context.WithCancel(context.WithoutCancel(ctx))
	serverDone := make(chan error, 1)
	defer func() {
		stopServer()
		if serr := <-serverDone; serr != nil && err == nil {
			err = serr
		}
	}()
	if err := r.startServer(srvCtx, serverDone); err != nil {
		serverDone <- nil
		return err
	}

	if err := r.journey(ctx); err != nil {
		return err
	}
	if opts.Keep {
		r.keep(ctx)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Cleaning up: stopping keygate and PostgreSQL, removing their directories.")
	return nil
}

func (r *run) say(format string, args ...any) {
	r.step++
	fmt.Fprintf(r.w, "%2d. %s\n", r.step, fmt.Sprintf(format, args...))
}

func (r *run) result(format string, args ...any) {
	fmt.Fprintf(r.w, "    → %s\n", fmt.Sprintf(format, args...))
}

func (r *run) detail(format string, args ...any) {
	fmt.Fprintf(r.w, "      %s\n", fmt.Sprintf(format, args...))
}

// prepareUpstream creates what a DBA would: the role keygate manages people
// with, and a database with some data in it.
func (r *run) prepareUpstream(ctx context.Context) error {
	r.say("Preparing the upstream: role keygate_admin (LOGIN CREATEROLE, pg_signal_backend, pg_read_all_stats), database orders, sample tables")
	password := credential.New("")
	os.Setenv(adminPasswordEnv, password)
	for _, sql := range []string{
		fmt.Sprintf(`CREATE ROLE keygate_admin LOGIN CREATEROLE PASSWORD '%s'`, password),
		`GRANT pg_signal_backend, pg_read_all_stats TO keygate_admin`,
		`CREATE DATABASE orders OWNER keygate_admin`,
	} {
		if err := r.pg.Exec(ctx, "postgres", sql); err != nil {
			return err
		}
	}
	if err := r.pg.Exec(ctx, "orders", sampleSchema); err != nil {
		return err
	}
	r.result("tables customers (3 rows) and orders (4 rows), owned by keygate_admin")
	return nil
}

func (r *run) startServer(ctx context.Context, done chan<- error) error {
	apiPort, err := throwaway.FreePort()
	if err != nil {
		return err
	}
	pgPort, err := throwaway.FreePort()
	if err != nil {
		return err
	}
	cfgText := fmt.Sprintf(`data_dir: ./data
public_hostnames: [localhost, 127.0.0.1]
listen:
  api: 127.0.0.1:%d
  postgres: 127.0.0.1:%d
databases:
  - name: orders
    engine: postgres
    address: %s
    database: orders
    schemas: [public]
    tags: {environment: demo}
    tls: disable
    admin:
      user: keygate_admin
      password_env: %s
permission_sets:
  - name: db-readonly
    access: ro
    token_ttl: 15m
  - name: db-readwrite
    access: rw
assignments:
  - group: analysts
    permission_set: db-readonly
    databases: [orders]
  - group: engineers
    permission_set: db-readwrite
    databases: [orders]
shutdown_grace: 2s
`, apiPort, pgPort, r.pg.Address(), adminPasswordEnv)
	r.cfgPath = filepath.Join(r.dir, "keygate.yaml")
	if err := os.WriteFile(r.cfgPath, []byte(cfgText), 0o600); err != nil {
		return err
	}
	cfg, err := config.Load(r.cfgPath)
	if err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(r.dir, "keygate.log"))
	if err != nil {
		return err
	}
	r.say("Starting keygate with SQLite state in %s", filepath.Join(r.dir, "data"))
	srv, err := server.New(ctx, cfg, slog.New(slog.NewTextHandler(logFile, nil)))
	if err != nil {
		logFile.Close()
		return err
	}
	r.srv = srv
	go func() {
		err := srv.Run(ctx)
		logFile.Close()
		done <- err
	}()
	r.pgAddr, r.caFile = srv.PostgresAddr(), srv.CAFile()
	cred, err := os.ReadFile(cfg.DataPath(server.AdminCredentialFile))
	if err != nil {
		return err
	}
	if r.admin, err = client.New(cfg.APIURL(), r.caFile, strings.TrimSpace(string(cred))); err != nil {
		return err
	}
	r.result("API https://%s, PostgreSQL gateway %s (TLS only, certificate from keygate's own CA)", srv.APIAddr(), r.pgAddr)
	r.detail("config: %s", r.cfgPath)
	return nil
}

// person is a demo user with a sign-in session.
type person struct {
	name   string
	client *client.Client
}

func (r *run) journey(ctx context.Context) error {
	r.say("People: alice in analysts → db-readonly (ro); bob in engineers → db-readwrite (rw)")
	alice, err := r.person(ctx, "alice", "analysts")
	if err != nil {
		return err
	}
	bob, err := r.person(ctx, "bob", "engineers")
	if err != nil {
		return err
	}
	r.result("created with `keygate admin user add`, each given a sign-in session")

	r.say("alice asks for a token: keygate db token orders")
	tok, err := alice.client.Token(ctx, "orders", "")
	if err != nil {
		return err
	}
	r.result("%s token, %d characters, expires %s (in %s)", tok.Access, len(tok.Token), tok.ExpiresAt.Local().Format("15:04:05"), time.Until(tok.ExpiresAt).Round(time.Minute))
	r.detail("PASETO v4.public, signed by keygate, bound to alice, orders and ro")

	r.say(`alice connects: psql "host=127.0.0.1 port=%s dbname=orders user=alice sslmode=verify-full sslrootcert=ca.pem", token as password`, portOf(r.pgAddr))
	conn, err := r.connect(ctx, "alice", tok.Token)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	row, err := queryRow(ctx, conn, "SELECT session_user, (SELECT count(*) FROM orders)")
	if err != nil {
		return err
	}
	r.result("upstream she is %s (pg_stat_activity shows this role); SELECT count(*) FROM orders → %s", row[0], row[1])
	_, err = queryRow(ctx, conn, "INSERT INTO orders (customer_id, amount) VALUES (2, 9.99)")
	r.result("INSERT INTO orders ... → %s", pgMessage(err))
	_, err = queryRow(ctx, conn, `SET ROLE keygate_admin`)
	r.result("SET ROLE keygate_admin → %s", pgMessage(err))

	r.say("alice asks for read-write: keygate db token orders --access rw")
	_, err = alice.client.Token(ctx, "orders", "rw")
	r.result("refused: %s", messageOf(err))

	r.say("bob, in engineers (rw), asks for a token: keygate db token orders")
	btok, err := bob.client.Token(ctx, "orders", "")
	if err != nil {
		return err
	}
	r.result("%s token: without --access, keygate gives the least privilege he may use", btok.Access)
	r.say("bob asks for read-write to write: keygate db token orders --access rw")
	if btok, err = bob.client.Token(ctx, "orders", "rw"); err != nil {
		return err
	}
	bconn, err := r.connect(ctx, "bob", btok.Token)
	if err != nil {
		return err
	}
	defer bconn.Close(ctx)
	row, err = queryRow(ctx, bconn, "INSERT INTO orders (customer_id, amount) VALUES (3, 18.50) RETURNING id, session_user")
	if err != nil {
		return err
	}
	r.result("INSERT ... RETURNING id → order %s, written as %s", row[0], row[1])

	r.say("alice runs a long query (SELECT pg_sleep(30)); meanwhile she is removed from analysts")
	ended := make(chan error, 1)
	go func() {
		_, err := queryRow(ctx, conn, "SELECT pg_sleep(30)")
		ended <- err
	}()
	time.Sleep(300 * time.Millisecond)
	requested := time.Now()
	if _, err := r.admin.RemoveMember(ctx, "analysts", "alice"); err != nil {
		return err
	}
	call := time.Since(requested)
	select {
	case err = <-ended:
	case <-time.After(10 * time.Second):
		return errors.New("alice's session was still alive 10s after she lost access")
	}
	r.result("her live session ended %s after `keygate admin group remove-member analysts alice` was sent (the call took %s)",
		time.Since(requested).Round(10*time.Microsecond), call.Round(10*time.Microsecond))
	r.detail("she saw: %s", pgMessage(err))
	_, err = alice.client.Token(ctx, "orders", "")
	r.result("her next token request: %s", messageOf(err))

	r.say("The audit log: keygate audit --since 10m")
	return r.showAudit(ctx)
}

func (r *run) person(ctx context.Context, name, group string) (*person, error) {
	if _, err := r.admin.CreateUser(ctx, api.UserRequest{Name: name, Email: name + "@example.com", Groups: []string{group}}); err != nil {
		return nil, err
	}
	s, err := r.admin.CreateSession(ctx, name, "1h")
	if err != nil {
		return nil, err
	}
	c, err := client.New(r.srvURL(), r.caFile, s.Credential)
	if err != nil {
		return nil, err
	}
	return &person{name: name, client: c}, nil
}

func (r *run) srvURL() string { return "https://" + r.srv.APIAddr() }

func (r *run) connect(ctx context.Context, user, tok string) (*pgconn.PgConn, error) {
	host, port, _ := net.SplitHostPort(r.pgAddr)
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%s dbname=orders user=%s sslmode=verify-full sslrootcert=%s", host, port, user, r.caFile))
	if err != nil {
		return nil, err
	}
	cfg.Password = tok
	return pgconn.ConnectConfig(ctx, cfg)
}

// queryRow runs sql and returns the first row's values as text.
func queryRow(ctx context.Context, c *pgconn.PgConn, sql string) ([]string, error) {
	res := c.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, res.Err
	}
	var out []string
	if len(res.Rows) > 0 {
		for _, v := range res.Rows[0] {
			out = append(out, string(v))
		}
	}
	return out, nil
}

func pgMessage(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return fmt.Sprintf("%s: %s (SQLSTATE %s)", pgErr.Severity, pgErr.Message, pgErr.Code)
	}
	if err == nil {
		return "succeeded"
	}
	return err.Error()
}

func messageOf(err error) string {
	if err == nil {
		return "granted (unexpected)"
	}
	return err.Error()
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

func (r *run) showAudit(ctx context.Context) error {
	fmt.Fprintln(r.w)
	err := r.admin.Audit(ctx, client.AuditFilter{}, func(e api.AuditEvent) error {
		what := e.Query
		if o := e.Outcome(); o != "" {
			what = clip(what, 56) + " → " + o
		}
		switch {
		case e.Type == "session.start":
			what = fmt.Sprintf("as %v from %s", e.Detail["upstream_role"], e.Client)
		case e.Reason != "":
			what = e.Reason
		case e.Detail["group"] != nil:
			what = fmt.Sprintf("group %v", e.Detail["group"])
		}
		fmt.Fprintf(r.w, "      %s  %-27s %-5s %-6s %-5s %s\n", e.Time.Local().Format("15:04:05.000"), e.Type, e.User, e.Database, e.Access, clip(what, 110))
		return nil
	})
	fmt.Fprintln(r.w)
	return err
}

func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}

// keep leaves everything running until ctx ends, with lines to paste.
func (r *run) keep(ctx context.Context) {
	exe, err := os.Executable()
	if err != nil || strings.Contains(exe, "go-build") {
		exe = "go run ./cmd/keygate"
	}
	host, port, _ := net.SplitHostPort(r.pgAddr)
	fmt.Fprintf(r.w, `Everything is still running. In another terminal:

  export KEYGATE_CONFIG=%s
  export KEYGATE_SESSION=$(%s admin session create bob | tail -n1)
  PGPASSWORD=$(%s db token orders) psql "host=%s port=%s dbname=orders user=bob sslmode=verify-full sslrootcert=%s"
  %s audit --user bob

keygate's log: %s
Press Ctrl-C to stop and clean up.
`, r.cfgPath, exe, exe, host, port, r.caFile, exe, filepath.Join(r.dir, "keygate.log"))
	<-ctx.Done()
}
