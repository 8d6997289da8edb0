package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/pki"
	"github.com/keygate/keygate/server"
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
	cmd.AddCommand(&cobra.Command{
		Use:   "check --config FILE",
		Short: "Check a config file: unknown keys, missing values, dangling references",
		Args:  cobra.NoArgs,
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
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d databases, %d permission sets, %d assignments)\n",
				cfg.Path(), len(cfg.Databases), len(cfg.PermissionSets), len(cfg.Assignments))
			return nil
		},
	})
	return cmd
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
