package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/client"
)

func newDBCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "db", Short: "Database access"}
	var level string
	tok := &cobra.Command{
		Use:   "token DB [--access ro|rw|admin]",
		Short: "Print a short-lived token to use as the database password",
		Long: `Print a database token, and nothing else, on stdout. Use it as the password
when connecting to the keygate gateway, as with aws rds generate-db-auth-token:

  PGPASSWORD=$(keygate db token orders) psql "host=HOST port=5433 dbname=orders \
      user=$USER sslmode=verify-full sslrootcert=keygate-ca.pem"

The token is bound to you, the database and the access level, and lives 15
minutes unless the permission set says otherwise. Without --access you get
the least privilege you hold on the database.

The session comes from KEYGATE_SESSION; the server from --server or
KEYGATE_SERVER; the CA from --ca or KEYGATE_CA (or both from --config).`,
		Args: exactArgs(1, "DB"),
		RunE: func(cmd *cobra.Command, args []string) error {
			session := os.Getenv("KEYGATE_SESSION")
			if session == "" {
				return usageError{errors.New("no session: set KEYGATE_SESSION to your session credential (an admin makes one with `keygate admin session create NAME`)")}
			}
			serverURL, caFile, err := g.endpoint()
			if err != nil {
				return err
			}
			c, err := client.New(serverURL, caFile, session)
			if err != nil {
				return err
			}
			t, err := c.Token(cmd.Context(), args[0], level)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			return nil
		},
	}
	tok.Flags().StringVar(&level, "access", "", "access level: ro, rw or admin (default: the least you hold)")
	g.addEndpointFlags(tok)
	cmd.AddCommand(tok)
	return cmd
}
