package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/server"
)

func newStateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Back up and restore keygate's state: people, groups, sessions, keys and the audit log",
	}
	cmd.AddCommand(newStateBackupCmd(g), newStateRestoreCmd(g), newStateMigrateCmd(g))
	return cmd
}

func newStateMigrateCmd(g *globals) *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "migrate --to postgres --config FILE",
		Short: "Copy the SQLite state in data_dir into a PostgreSQL state database, for several servers",
		Long: `Copy the keygate state in data_dir (SQLite) into the PostgreSQL database
that the config's state section names, so that several keygate servers
can share it (see the README, "Running several keygate servers").

Add the state section to the config first and set its variables:

  state:
    postgres_url_env: KEYGATE_STATE_URL
    secrets_key_env: KEYGATE_SECRETS_KEY

Stop the server: the copy takes data_dir's lock, as a server does. The
database must be empty. Copied: people, groups, memberships and their
history, sign-in sessions (they keep working), SCIM tokens, the config
history and the audit log, its hash chain intact and checked in the
database before the command ends; the CA, token signing keys, admin
credential and SAML key are sealed into the database with the secrets key.
data_dir is not changed: to go back, remove the state section.

Then start the server with the same config and data_dir, and the others
with the same state section and secrets key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if to != "postgres" {
				return usageError{fmt.Errorf("--to %q: the one target is postgres", to)}
			}
			cfg, err := g.readConfig(config.LoadLocation)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			res, err := server.MigrateToPostgres(cmd.Context(), cfg, slog.New(slog.DiscardHandler), func(step string) { fmt.Fprintln(out, step) })
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "migrated %s into the state database in %s:\n", cfg.Resolve(cfg.DataDir), cfg.State.PostgresURLEnv)
			for _, t := range res.Tables {
				fmt.Fprintf(out, "  %-20s %d\n", t.Table, t.Rows)
			}
			fmt.Fprintf(out, "  %-20s %d (chain verified)\n", "audit events", res.AuditEvents)
			fmt.Fprintf(out, "  %-20s %s\n", "secrets", strings.Join(res.Secrets, ", "))
			fmt.Fprintln(out, "Start keygate server with this config; data_dir keeps the SQLite state, unused from now on.")
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "where to move the state: postgres")
	cmd.MarkFlagRequired("to")
	return cmd
}

func newStateBackupCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "backup FILE --config FILE",
		Short: "Write a backup of data_dir to FILE, while the server runs or not",
		Long: `Write a backup of the keygate state in data_dir to FILE, a gzipped tar.

It holds a consistent copy of the state database and of the audit log
(taken with SQLite's VACUUM INTO: a running server keeps serving, and the
copy is of one moment), data_dir's token signing keys, CA and gateway
certificate and keys, the admin credential, and manifest.json: the keygate
version, the time, the schema versions, what the databases hold and the
SHA-256 of every file.

FILE holds every secret keygate has: it is written with mode 0600, beside
itself first and then renamed, so a reader never sees half a backup. Run it
as the user the server runs as, so that it can read data_dir.

Restore it with keygate state restore.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.readConfig(config.LoadLocation)
			if err != nil {
				return err
			}
			if cfg.State.Shared() {
				return fmt.Errorf("the state is in the PostgreSQL database that %s names, not in data_dir: back that database up with pg_dump (or your database's backups), and keep the key in %s apart from it, since it opens the secrets inside", cfg.State.PostgresURLEnv, cfg.State.SecretsKeyEnv)
			}
			dataDir := cfg.Resolve(cfg.DataDir)
			m, err := server.Backup(cmd.Context(), dataDir, args[0], version)
			if err != nil {
				return err
			}
			fi, err := os.Stat(args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "wrote %s (%s, mode 0600): backup of %s\n", args[0], byteSize(fi.Size()), dataDir)
			fmt.Fprintf(out, "  %s (schema: state %d, audit %d)\n", counts(m),
				m.Schemas.State, m.Schemas.Audit)
			fmt.Fprintf(out, "  %d files: %s\n", len(m.Files), fileNames(m))
			fmt.Fprintln(out, "It holds keygate's keys and admin credential: keep it as safe as data_dir.")
			return nil
		},
	}
}

func newStateRestoreCmd(g *globals) *cobra.Command {
	var dataDir string
	var force bool
	cmd := &cobra.Command{
		Use:   "restore FILE --data-dir DIR [--force]",
		Short: "Restore a backup into the data_dir of a stopped server",
		Long: `Restore a backup written by keygate state backup into DIR.

No server may run on DIR: the restore takes DIR's lock, as a server does,
and names the server that holds it. DIR must be empty, or --force replaces
the keygate state in it (the databases with their journals, keys,
certificates, credential and audit spill files; other files stay).

Before anything in DIR changes, every file is checked against the SHA-256
in the backup's manifest, the schemas against what this keygate knows (a
backup from a newer keygate is refused), and the audit log's hash chain as
keygate audit verify checks it. Then the files are moved into place, keys
and databases mode 0600, certificates 0644.

Without --data-dir, DIR is data_dir of the --config file.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := dataDir
			if dir == "" {
				if g.configPath == "" {
					return usageError{errors.New("where to restore to: pass --data-dir DIR, or --config FILE to restore into its data_dir")}
				}
				cfg, err := g.readConfig(config.LoadLocation)
				if err != nil {
					return err
				}
				dir = cfg.Resolve(cfg.DataDir)
			}
			if _, err := os.Stat(args[0]); err != nil {
				return fmt.Errorf("read backup: %w", err)
			}
			res, err := server.Restore(cmd.Context(), args[0], dir, force)
			if err != nil {
				return err
			}
			printRestored(cmd.OutOrStdout(), args[0], dir, res)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the directory to restore into (default: data_dir of --config)")
	cmd.Flags().BoolVar(&force, "force", false, "replace the keygate state DIR holds")
	return cmd
}

func printRestored(w io.Writer, src, dir string, res server.RestoreResult) {
	m := res.Manifest
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	fmt.Fprintf(w, "restored %s into %s\n", src, abs)
	fmt.Fprintf(w, "  backup of %s by keygate %s\n", m.Created.UTC().Format("2006-01-02 15:04:05 UTC"), m.Version)
	fmt.Fprintf(w, "  %s (audit chain intact)\n", counts(m))
	if len(res.Replaced) > 0 {
		fmt.Fprintf(w, "  replaced: %s\n", strings.Join(res.Replaced, ", "))
	}
	fmt.Fprintf(w, `Next:
  1. Set data_dir in the server's config to %s (unless it is already).
  2. Start the server: keygate server --config FILE
     (with each database's admin password in its password_env, as before).
  3. Check it: keygate audit verify --config FILE
`, abs)
}

// counts is what a backup's databases hold, for a person.
func counts(m server.Manifest) string {
	return fmt.Sprintf("%s, %s, %s", plural(int(m.People), "person", "people"), plural(int(m.Groups), "group", "groups"),
		plural(int(m.AuditLastSeq), "audit event", "audit events"))
}

func fileNames(m server.Manifest) string {
	names := make([]string, len(m.Files))
	for i, f := range m.Files {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}

// byteSize is n in the largest unit that keeps it at least 1.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
