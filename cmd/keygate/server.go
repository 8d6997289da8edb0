package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/pki"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/upstream"
)

func newServerCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "server --config FILE",
		Short: "Run the keygate server: the HTTPS API and the PostgreSQL gateway",
		Long: `Run the keygate server until SIGTERM or SIGINT, then drain: stop accepting,
let live sessions finish for shutdown_grace (default 30s), end the rest.

SIGHUP (or keygate admin reload) reads the config file again and applies
its access rules at once: permission sets, assignments, database tags and
removed databases. Live sessions are decided again; those whose access is
gone end. A config with errors changes nothing. Other settings take a
restart; the log names them.

On first start it creates data_dir with the state database, an internal CA
and gateway certificate for public_hostnames, the token signing key, and the
admin credential (data_dir/admin.credential, mode 0600) that admin commands
use. Each database's admin password is read from the environment variable
its password_env names.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			log := newLogger(cfg)
			srv, err := server.New(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					// Reload logs and audits its outcome itself.
					srv.Reload(cmd.Context())
				}
			}()
			return srv.Run(cmd.Context())
		},
	}
}

func newLogger(cfg *config.Config) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with the config file",
	}
	var upstream bool
	check := &cobra.Command{
		Use:   "check --config FILE [--upstream]",
		Short: "Check a config file: unknown keys, missing values, dangling references",
		Long: `Check a config file: unknown keys, missing values, dangling references.

With --upstream, also connect to every database as its admin role (the
password from admin.password_env, as the server would) and check what
keygate needs there: the admin role's privileges (CREATEROLE,
pg_signal_backend, pg_read_all_stats), printing the statements that grant
what is missing; and whether pg_hba.conf lets keygate-managed roles log in
only from keygate's address. It exits with status 1 when a database is not
ready.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			for _, d := range cfg.Databases {
				if _, ok := os.LookupEnv(d.Admin.PasswordEnv); !ok {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: database %s: %s is not set in this environment; the server needs it\n", d.Name, d.Admin.PasswordEnv)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%s, %s, %s)\n", cfg.Path(), plural(len(cfg.Databases), "database", "databases"),
				plural(len(cfg.PermissionSets), "permission set", "permission sets"), plural(len(cfg.Assignments), "assignment", "assignments"))
			if upstream {
				return checkUpstreams(cmd.Context(), cmd.OutOrStdout(), cfg)
			}
			return nil
		},
	}
	check.Flags().BoolVar(&upstream, "upstream", false, "also check each database's admin role and pg_hba.conf")
	cmd.AddCommand(check)
	return cmd
}

// checkUpstreams checks every database as the server does at start-up and
// prints what it finds, one database at a time.
func checkUpstreams(ctx context.Context, w io.Writer, cfg *config.Config) error {
	ups, err := server.OpenUpstreams(cfg, upstream.Options{})
	if err != nil {
		return err
	}
	defer ups.Close()
	notReady := 0
	for _, d := range cfg.Databases {
		u := ups.Databases[d.Name]
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err = u.Check(cctx)
		cancel()
		if err != nil {
			notReady++
			fmt.Fprintf(w, "database %s: not ready: %v\n", d.Name, err)
		} else {
			fmt.Fprintf(w, "database %s: ready: %s has every privilege keygate needs\n", d.Name, d.Admin.User)
			_, report := u.Restriction()
			fmt.Fprintf(w, "database %s: %s\n", d.Name, report)
		}
	}
	if notReady > 0 {
		return fmt.Errorf("%d of %s not ready", notReady, plural(len(cfg.Databases), "database is", "databases are"))
	}
	return nil
}

func newCACmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ca --config FILE",
		Short: "Print keygate's CA bundle (use it as sslrootcert)",
		Long: `Print the CA bundle that signs keygate's gateway and API certificate.
Clients verify keygate with it, as RDS clients do with rds-ca-bundle.pem:

  keygate ca --config keygate.yaml > keygate-ca.pem
  psql "host=... sslmode=verify-full sslrootcert=keygate-ca.pem ..."

The server also serves it at https://HOST:PORT/v1/ca.pem.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			pem, err := os.ReadFile(cfg.DataPath(pki.CAFile))
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("no CA in %s yet: it is created when `keygate server --config %s` first starts", cfg.Resolve(cfg.DataDir), g.configPath)
			}
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(pem)
			return err
		},
	}
}
