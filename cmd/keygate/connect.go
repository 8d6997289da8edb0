package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

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
		Short: "Open psql on a database through keygate, signed in as you",
		Long: `Get a token for database NAME, as keygate db token does, and run psql on it
through keygate's gateway: with TLS that verifies the gateway's certificate
against keygate's CA, as you, at the level you asked for. The token goes to
psql in its environment (PGPASSWORD), never on a command line that ps shows.
Arguments after -- go to psql. keygate exits with psql's exit code.

Examples:
  keygate db connect orders                      an interactive psql, at the least level you may use
  keygate db connect orders --access rw          read-write
  keygate db connect orders -- -c 'select 1'     run one statement and exit
  keygate db connect orders -- -f migrate.sql -v ON_ERROR_STOP=1
  keygate db connect --client /usr/lib/postgresql/15/bin/psql orders

Without NAME you get the profile's database, and without --access the
profile's access, or else the least you may use. The gateway's address
comes from the server; the CA is the profile's (or --ca's), or else the one
the server publishes, saved in keygate's config directory.

Only PostgreSQL databases for now: for a MySQL or MariaDB database, use
keygate db token as the password of your mysql client.`,
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
			bin, err := findClient(clientPath)
			if err != nil {
				return err
			}
			argv := append([]string{"--dbname", psqlConnInfo(t.listing.Gateway, t.Database, t.User, ca)}, clientArgs...)
			return runClient(cmd, bin, argv, withPassword(os.Environ(), t.Token))
		},
	}
	addTokenFlags(cmd, &f)
	cmd.Flags().StringVar(&clientPath, "client", "", "the psql to run: a path, or a name looked up on PATH (default psql)")
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
		return "", nil, usageError{fmt.Errorf("unexpected %q: put psql's arguments after --, as in keygate db connect %s -- -c 'select 1'", own[1], own[0])}
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
	case d.Engine == "mysql":
		return fmt.Errorf("database %s is MySQL/MariaDB, which keygate db connect does not yet support: use keygate db token %s as the password of your mysql client", d.Database, d.Database)
	case d.Engine != "" && d.Engine != config.EnginePostgres:
		return fmt.Errorf("database %s runs %s, which keygate db connect does not support: use keygate db token %s as the password of your client", d.Database, d.Engine, d.Database)
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

// psqlConnInfo is the libpq connection string for db through the gateway
// at gateway (host:port), as user, verifying the gateway's certificate
// and host name against the CA bundle in ca. It holds no secret.
func psqlConnInfo(gateway, db, user, ca string) string {
	host, port, err := net.SplitHostPort(gateway)
	if err != nil {
		host, port = gateway, ""
	}
	kv := [][2]string{{"host", host}, {"port", port}, {"dbname", db}, {"user", user}, {"sslmode", "verify-full"}, {"sslrootcert", ca}}
	parts := make([]string, 0, len(kv))
	for _, p := range kv {
		if p[1] != "" {
			parts = append(parts, p[0]+"="+connInfoValue(p[1]))
		}
	}
	return strings.Join(parts, " ")
}

// connInfoValue quotes v for a libpq connection string when it needs it:
// single quotes, with backslash before a quote or a backslash.
func connInfoValue(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n\r'\\=") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// withPassword is env with PGPASSWORD set to token, and no other value of
// it.
func withPassword(env []string, token string) []string {
	out := make([]string, 0, len(env)+1)
	for _, e := range env {
		if !strings.HasPrefix(e, "PGPASSWORD=") {
			out = append(out, e)
		}
	}
	return append(out, "PGPASSWORD="+token)
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
