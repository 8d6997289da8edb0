package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/config"
)

func newDBConnectCmd(g *globals) *cobra.Command {
	var (
		f          tokenFlags
		clientPath string
	)
	cmd := &cobra.Command{
		Use:   "connect [NAME] [--access ro|rw|admin] [--client PATH] [-- CLIENT ARGS]",
		Short: "Open psql, or mariadb or mysql, on a database through keygate, signed in as you",
		Long: `Get a token for database NAME, as keygate db token does, and run the
database's client on it through keygate's gateway: psql for PostgreSQL,
mariadb or mysql for MySQL and MariaDB. The client connects with TLS that
verifies the gateway's certificate against keygate's CA, as you, at the
level you asked for. The token goes to the client in its environment
(PGPASSWORD for psql, MYSQL_PWD for mariadb and mysql), never on a command
line that ps shows. Arguments after -- go to the client. keygate exits
with the client's exit code.

Examples:
  keygate db connect orders                      an interactive psql, at the least level you may use
  keygate db connect orders --access rw          read-write
  keygate db connect orders -- -c 'select 1'     run one statement and exit
  keygate db connect orders -- -f migrate.sql -v ON_ERROR_STOP=1
  keygate db connect --client /usr/lib/postgresql/15/bin/psql orders
  keygate db connect orders_my                   a MySQL or MariaDB database: mariadb, or mysql
  keygate db connect orders_my -- -e 'select 1'  run one statement and exit
  keygate db connect orders_my --access rw < migrate.sql
  keygate db connect --client /usr/local/mysql/bin/mysql orders_my

For MySQL and MariaDB, keygate runs mariadb when it is on PATH, else mysql;
--client chooses another. keygate asks the client for its --version to
give it the right TLS flags: --ssl-ca and --ssl-verify-server-cert for
MariaDB's client (Debian's mysql is MariaDB's), --ssl-mode=VERIFY_IDENTITY
and --ssl-ca for Oracle's. The database is keygate's name for it
(orders_my), which the gateway maps to the upstream schema.

Without NAME you get the profile's database, and without --access the
profile's access, or else the least you may use. The gateway's address
comes from the server; the CA is the profile's (or --ca's), or else the one
the server publishes, saved in keygate's config directory.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, clientArgs, err := splitConnectArgs(args, cmd.ArgsLenAtDash())
			if err != nil {
				return err
			}
			t, err := g.dbToken(cmd.Context(), name, f, connectable)
			if err != nil {
				return err
			}
			dir, err := client.ConfigDir()
			if err != nil {
				return err
			}
			ca, err := t.client.GatewayCA(cmd.Context(), dir, g.profileName())
			if err != nil {
				return err
			}
			if t.listing.Engine == config.EngineMySQL {
				return connectMySQL(cmd, clientPath, t, ca, clientArgs)
			}
			bin, err := findClient(clientPath)
			if err != nil {
				return err
			}
			argv := append([]string{"--dbname", client.PSQLConnInfo(t.listing.Gateway, t.Database, t.User, ca)}, clientArgs...)
			return runClient(cmd, bin, argv, withPassword(os.Environ(), "PGPASSWORD", t.Token))
		},
	}
	addTokenFlags(cmd, &f)
	cmd.Flags().StringVar(&clientPath, "client", "", "the client to run: a path, or a name looked up on PATH (default psql; for MySQL and MariaDB, mariadb or else mysql)")
	g.addEndpointFlags(cmd)
	return cmd
}

// splitConnectArgs parts the command line into the database's name, if
// given, and the arguments after -- that go to the client.
func splitConnectArgs(args []string, dash int) (name string, clientArgs []string, err error) {
	own := args
	if dash >= 0 {
		own, clientArgs = args[:dash], args[dash:]
	}
	if len(own) > 1 {
		return "", nil, usageError{fmt.Errorf("unexpected %q: put the client's arguments after --, as in keygate db connect %s -- -c 'select 1'", own[1], own[0])}
	}
	if len(own) == 1 {
		name = own[0]
	}
	return name, clientArgs, nil
}

// connectable refuses a database that keygate db connect cannot open a
// client on, before a token is asked for it.
func connectable(d api.DatabaseAccess) error {
	switch {
	case d.Database == "":
		return nil
	case d.Engine != "" && d.Engine != config.EnginePostgres && d.Engine != config.EngineMySQL:
		return fmt.Errorf("database %s runs %s, which keygate db connect does not support: use keygate db token %s as the password of your client", d.Database, d.Engine, d.Database)
	case d.Gateway == "" && d.Engine == config.EngineMySQL:
		return fmt.Errorf("the keygate server does not say where its MySQL gateway for %s listens (it is older than this CLI, or runs no MySQL gateway): use keygate db token %s as the password of mariadb or mysql", d.Database, d.Database)
	case d.Gateway == "":
		return fmt.Errorf("the keygate server does not say where its gateway for %s listens (it is older than this CLI): use keygate db token %s as the password of psql, as keygate db token --help shows", d.Database, d.Database)
	}
	return nil
}

// findClient finds the psql to run.
func findClient(path string) (string, error) {
	if path == "" {
		path = "psql"
	}
	bin, err := exec.LookPath(path)
	if err != nil {
		return "", fmt.Errorf("find %s: %w: install PostgreSQL's client (Debian/Ubuntu: apt install postgresql-client; macOS: brew install libpq) or pass --client PATH", path, err)
	}
	return bin, nil
}

// connectMySQL runs a MySQL or MariaDB client on t's database through
// the gateway, with the token in MYSQL_PWD, which both clients read.
func connectMySQL(cmd *cobra.Command, clientPath string, t issuedToken, ca string, clientArgs []string) error {
	bin, err := findMySQLClient(clientPath)
	if err != nil {
		return err
	}
	flavour, err := mysqlClientFlavour(cmd.Context(), bin)
	if err != nil {
		return err
	}
	argv := append(client.MySQLArgs(flavour, t.listing.Gateway, t.Database, t.User, ca), clientArgs...)
	return runClient(cmd, bin, argv, withPassword(os.Environ(), "MYSQL_PWD", t.Token))
}

// installMySQLClient says where a MySQL or MariaDB client comes from.
const installMySQLClient = "install MariaDB's client (Debian/Ubuntu: apt install mariadb-client; macOS: brew install mariadb) or MySQL's (macOS: brew install mysql-client), or pass --client PATH"

// findMySQLClient finds the MySQL or MariaDB client to run: path, else
// mariadb on PATH, else mysql. MariaDB's comes first: where both are
// installed, mysql is often a link to it or an older client beside it.
func findMySQLClient(path string) (string, error) {
	if path != "" {
		bin, err := exec.LookPath(path)
		if err != nil {
			return "", fmt.Errorf("find %s: %w: %s", path, err, installMySQLClient)
		}
		return bin, nil
	}
	for _, name := range []string{"mariadb", "mysql"} {
		if bin, err := exec.LookPath(name); err == nil {
			return bin, nil
		}
	}
	return "", fmt.Errorf("find mariadb or mysql: neither is on PATH: %s", installMySQLClient)
}

// mysqlClientFlavour tells MariaDB's client from Oracle's by what
// bin --version says.
func mysqlClientFlavour(ctx context.Context, bin string) (client.MySQLFlavour, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("run %s --version, to tell MariaDB's client from MySQL's: %w", bin, err)
	}
	if strings.Contains(string(out), "MariaDB") {
		return client.MariaDBClient, nil
	}
	return client.OracleMySQLClient, nil
}

// withPassword is env with the variable name set to token, and no other
// value of it.
func withPassword(env []string, name, token string) []string {
	out := make([]string, 0, len(env)+1)
	for _, e := range env {
		if !strings.HasPrefix(e, name+"=") {
			out = append(out, e)
		}
	}
	return append(out, name+"="+token)
}

// exitCode is a client's non-zero exit status, for keygate to exit with.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// runClient runs bin in the foreground and returns its exit status. The
// terminal sends Ctrl-C to the client itself, which cancels its query;
// keygate outlives it and passes on SIGTERM and SIGHUP, which are sent to
// keygate alone.
func runClient(cmd *cobra.Command, bin string, argv, env []string) error {
	c := exec.Command(bin, argv...)
	c.Env = env
	c.Stdin, c.Stdout, c.Stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(signals)
	if err := c.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case s := <-signals:
				if s != os.Interrupt {
					c.Process.Signal(s)
				}
			case <-done:
				return
			}
		}
	}()
	err := c.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		if err != nil {
			return fmt.Errorf("run %s: %w", bin, err)
		}
		return nil
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exitCode(128 + int(ws.Signal()))
	}
	return exitCode(ee.ExitCode())
}
