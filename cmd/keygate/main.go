// Command keygate gives people database access through their company
// identity: short-lived tokens instead of shared passwords, a gateway that
// logs in upstream as a per-person role, and an audit of every statement.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		// A client keygate ran has said what went wrong itself.
		var code exitCode
		if errors.As(err, &code) {
			os.Exit(int(code))
		}
		fmt.Fprintln(os.Stderr, "keygate:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError marks a mistake in how the command was called.
type usageError struct{ error }

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "keygate",
		Short: "Database access through your company identity, with no standing passwords",
		Long: `keygate gives people access to PostgreSQL, MySQL and MariaDB through their
company identity.
A person asks for a 15-minute token and uses it as the database password; the
keygate gateway checks it, logs in upstream as a per-person role, and records
every statement. Losing access ends live sessions within a second.

Start with:
  keygate demo                           the whole journey on a throwaway PostgreSQL
  keygate demo --engine mysql            the same on a throwaway MariaDB
  keygate server --config keygate.yaml   run the server
  keygate login --server https://HOST:PORT --ca keygate-ca.pem
                                         sign in through your company identity provider
  keygate db token orders                a token for database orders
  keygate db connect orders              psql (or mariadb) on it, as you`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().StringVar(&g.configPath, "config", os.Getenv("KEYGATE_CONFIG"), "the server's config file (default $KEYGATE_CONFIG); locates the server, the CA and the admin credential")
	root.PersistentFlags().StringVar(&g.profile, "profile", os.Getenv("KEYGATE_PROFILE"), "the CLI profile to use (default $KEYGATE_PROFILE, or default); see keygate login --help")
	root.AddCommand(
		newLoginCmd(g),
		newLogoutCmd(g),
		newWhoAmICmd(g),
		newConfigureCmd(g),
		newServerCmd(g),
		newConfigCmd(g),
		newCACmd(g),
		newAdminCmd(g),
		newAccessCmd(g),
		newDBCmd(g),
		newAuditCmd(g),
		newReportCmd(g),
		newStateCmd(g),
		newDemoCmd(),
		newVersionCmd(),
	)
	setVersion(root)
	rejectUnknownCommands(root)
	return root
}
