package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newDBCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "db", Short: "Database access"}
	var level string
	tok := &cobra.Command{
		Use:   "token [DB] [--access ro|rw|admin]",
		Short: "Print a short-lived token to use as the database password",
		Long: `Print a database token, and nothing else, on stdout. Use it as the password
when connecting to the keygate gateway, as with aws rds generate-db-auth-token:

  PGPASSWORD=$(keygate db token orders) psql "host=HOST port=5433 dbname=orders \
      user=$USER sslmode=verify-full sslrootcert=keygate-ca.pem"

The token is bound to you, the database and the access level, and lives 15
minutes unless the permission set says otherwise. Without --access you get
the profile's access, or else the least privilege you may use: ro whenever
you may use ro, even when your groups grant rw or admin (a grant covers the
levels below it). Ask for more with --access rw or --access admin.
Without DB you get the profile's database.

The session is the one keygate login cached for the profile, or
KEYGATE_SESSION when set (for automation). The server comes from --server
or KEYGATE_SERVER, --config, or the profile; the CA likewise.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, _, err := g.loadProfile()
			if err != nil {
				return err
			}
			database := p.Database
			if len(args) == 1 {
				database = args[0]
			}
			if database == "" {
				return usageError{fmt.Errorf("no database: name one, as in keygate db token orders, or set database = NAME in profile %s", g.profileName())}
			}
			if level == "" {
				level = p.Access
			}
			c, err := g.personClient()
			if err != nil {
				return err
			}
			t, err := c.Token(cmd.Context(), database, level)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			return nil
		},
	}
	tok.Flags().StringVar(&level, "access", "", "access level: ro, rw or admin (default: the profile's, or the least you may use, usually ro)")
	g.addEndpointFlags(tok)
	cmd.AddCommand(tok, newDBListCmd(g))
	return cmd
}
