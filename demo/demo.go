// Package demo runs keygate's whole journey on a throwaway PostgreSQL or
// MariaDB and narrates it: a person gets a token, connects through the
// gateway as their own role, is held to their access level, loses access
// while connected, and the audit log shows who did what. The journey is
// the same for both engines; what differs (the server, the client, the
// SQL) is an upstream's.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/internal/throwaway"
	"github.com/keygate/keygate/server"
)

// Options tune the demo.
type Options struct {
	// Keep leaves everything running until ctx ends and prints client lines.
	Keep bool
	// Engine is the upstream's: config.EnginePostgres (the default) or
	// config.EngineMySQL, on MariaDB.
	Engine string
}

// adminPasswordEnv is the variable the demo config names for the upstream
// admin password.
const adminPasswordEnv = "KEYGATE_DEMO_ADMIN_PASSWORD"

type run struct {
	w       io.Writer
	step    int
	dir     string
	up      upstream
	cfgPath string
	srv     *server.Server
	admin   *client.Client
	// gateway is the address of the gateway for the upstream's engine.
	gateway string
	caFile  string
}

// upstream is the engine's half of the demo: a throwaway server, prepared
// as a DBA would, the way a client connects, and the SQL of the journey.
type upstream interface {
	// start starts the server and prepares it, with adminPassword for
	// keygate's admin role, narrating through r; stop stops it.
	start(ctx context.Context, r *run, adminPassword string) error
	stop()
	// product names the server for people: "PostgreSQL", "MariaDB";
	// protocol names its gateway's: "PostgreSQL", "MySQL".
	product() string
	protocol() string
	// database is keygate's name of the demo database.
	database() string
	// config is the database's entry under databases:, its admin password
	// in the variable passwordEnv, and the listen: key of its gateway.
	config(passwordEnv string) (entry, listenKey string)
	// gatewayAddr is where srv's gateway for the engine listens.
	gatewayAddr(srv *server.Server) string
	// connect opens a session through the gateway at addr as user, with
	// the token as the password, verifying the gateway against caFile.
	connect(ctx context.Context, addr, caFile, user, token string) (session, error)
	// sql is what the journey runs.
	sql() journeySQL
	// message says what a client was told when a statement failed.
	message(err error) string
	// client is the command line of the engine's usual client that
	// connects through the gateway at addr as user, verifying it against
	// caFile, and the environment variable it takes the password from.
	client(addr, caFile, user string) (passwordVar, command string)
}

// session is one client connection through the gateway.
type session interface {
	// queryRow runs sql and returns the first row's values as text.
	queryRow(ctx context.Context, sql string) ([]string, error)
	Close(ctx context.Context) error
}

// journeySQL is the SQL the journey runs, in the engine's dialect.
type journeySQL struct {
	// whoAndCount returns the upstream user and the number of orders.
	whoAndCount string
	// insert is alice's attempt to write.
	insert string
	// escalate is alice's attempt to take the admin level's privileges.
	escalate string
	// write are bob's statements: the last returns the new order's id and
	// the upstream user that wrote it.
	write []string
	// sleep runs for 30 seconds.
	sleep string
	// activity says where the upstream shows who a session is.
	activity string
}

// newUpstream is the upstream for engine.
func newUpstream(engine string) (upstream, error) {
	switch engine {
	case "", config.EnginePostgres:
		return &postgres{}, nil
	case config.EngineMySQL:
		return &mariaDB{}, nil
	}
	return nil, fmt.Errorf("--engine %q: use postgres or mysql (MariaDB)", engine)
}

// Run runs the demo, writing the narration to w. It cleans up after itself,
// also when ctx is cancelled.
func Run(ctx context.Context, w io.Writer, opts Options) (err error) {
	up, err := newUpstream(opts.Engine)
	if err != nil {
		return err
	}
	r := &run{w: w, up: up}
	fmt.Fprintln(w, "keygate demo: company identity → 15-minute token → per-person database role → audit")
	fmt.Fprintln(w)

	password := credential.New("")
	os.Setenv(adminPasswordEnv, password)
	defer up.stop()
	if err := up.start(ctx, r, password); err != nil {
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
	fmt.Fprintf(w, "Cleaning up: stopping keygate and %s, removing their directories.\n", up.product())
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

func (r *run) startServer(ctx context.Context, done chan<- error) error {
	apiPort, err := throwaway.FreePort()
	if err != nil {
		return err
	}
	gwPort, err := throwaway.FreePort()
	if err != nil {
		return err
	}
	entry, listenKey := r.up.config(adminPasswordEnv)
	listen := fmt.Sprintf("  api: 127.0.0.1:%d\n  %s: 127.0.0.1:%d\n", apiPort, listenKey, gwPort)
	if listenKey != "postgres" {
		// The PostgreSQL gateway always listens: on any free port here,
		// so as not to take one a keygate on this machine may use.
		listen += "  postgres: 127.0.0.1:0\n"
	}
	cfgText := fmt.Sprintf(`data_dir: ./data
public_hostnames: [localhost, 127.0.0.1]
listen:
%[2]sdatabases:
%[3]spermission_sets:
  - name: db-readonly
    access: ro
    token_ttl: 15m
  - name: db-readwrite
    access: rw
assignments:
  - group: analysts
    permission_set: db-readonly
    databases: [%[1]s]
  - group: engineers
    permission_set: db-readwrite
    databases: [%[1]s]
shutdown_grace: 2s
`, r.up.database(), listen, entry)
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
	r.gateway, r.caFile = r.up.gatewayAddr(srv), srv.CAFile()
	cred, err := os.ReadFile(cfg.DataPath(server.AdminCredentialFile))
	if err != nil {
		return err
	}
	if r.admin, err = client.New(cfg.APIURL(), r.caFile, strings.TrimSpace(string(cred))); err != nil {
		return err
	}
	r.result("API https://%s, %s gateway %s (TLS only, certificate from keygate's own CA)", srv.APIAddr(), r.up.protocol(), r.gateway)
	r.detail("config: %s", r.cfgPath)
	return nil
}

// person is a demo user with a sign-in session.
type person struct {
	name   string
	client *client.Client
}

func (r *run) journey(ctx context.Context) error {
	db, q := r.up.database(), r.up.sql()
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

	r.say("alice asks for a token: keygate db token %s", db)
	tok, err := alice.client.Token(ctx, db, "")
	if err != nil {
		return err
	}
	r.result("%s token, %d characters, expires %s (in %s)", tok.Access, len(tok.Token), tok.ExpiresAt.Local().Format("15:04:05"), time.Until(tok.ExpiresAt).Round(time.Minute))
	r.detail("PASETO v4.public, signed by keygate, bound to alice, %s and ro", db)

	_, command := r.up.client(r.gateway, "ca.pem", "alice")
	r.say("alice connects: %s, token as password", command)
	conn, err := r.up.connect(ctx, r.gateway, r.caFile, "alice", tok.Token)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	row, err := conn.queryRow(ctx, q.whoAndCount)
	if err != nil {
		return err
	}
	r.result("upstream she is %s (%s); SELECT count(*) FROM orders → %s", row[0], q.activity, row[1])
	_, err = conn.queryRow(ctx, q.insert)
	r.result("INSERT INTO orders ... → %s", r.up.message(err))
	_, err = conn.queryRow(ctx, q.escalate)
	r.result("%s → %s", q.escalate, r.up.message(err))

	r.say("alice asks for read-write: keygate db token %s --access rw", db)
	_, err = alice.client.Token(ctx, db, "rw")
	r.result("refused: %s", messageOf(err))

	r.say("bob, in engineers (rw), asks for a token: keygate db token %s", db)
	btok, err := bob.client.Token(ctx, db, "")
	if err != nil {
		return err
	}
	r.result("%s token: without --access, keygate gives the least privilege he may use", btok.Access)
	r.say("bob asks for read-write to write: keygate db token %s --access rw", db)
	if btok, err = bob.client.Token(ctx, db, "rw"); err != nil {
		return err
	}
	bconn, err := r.up.connect(ctx, r.gateway, r.caFile, "bob", btok.Token)
	if err != nil {
		return err
	}
	defer bconn.Close(ctx)
	for _, stmt := range q.write {
		if row, err = bconn.queryRow(ctx, stmt); err != nil {
			return err
		}
	}
	r.result("%s → order %s, written as %s", strings.Join(q.write, "; "), row[0], row[1])

	r.say("alice runs a long query (%s); meanwhile she is removed from analysts", q.sleep)
	ended := make(chan error, 1)
	go func() {
		_, err := conn.queryRow(ctx, q.sleep)
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
	r.detail("she saw: %s", r.up.message(err))
	_, err = alice.client.Token(ctx, db, "")
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

func messageOf(err error) string {
	if err == nil {
		return "granted (unexpected)"
	}
	return err.Error()
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
		fmt.Fprintf(r.w, "      %s  %-27s %-5s %-*s %-5s %s\n", e.Time.Local().Format("15:04:05.000"), e.Type, e.User, len(r.up.database()), e.Database, e.Access, clip(what, 110))
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
	passwordVar, command := r.up.client(r.gateway, r.caFile, "bob")
	fmt.Fprintf(r.w, `Everything is still running. In another terminal:

  export KEYGATE_CONFIG=%s
  export KEYGATE_SESSION=$(%s admin session create bob | tail -n1)
  %s=$(%s db token %s) %s
  %s audit --user bob

keygate's log: %s
Press Ctrl-C to stop and clean up.
`, r.cfgPath, exe, passwordVar, exe, r.up.database(), command, exe, filepath.Join(r.dir, "keygate.log"))
	<-ctx.Done()
}
