package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/client"
)

func newDBCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "db", Short: "Database access"}
	var f tokenFlags
	tok := &cobra.Command{
		Use:   "token [DB] [--access ro|rw|admin] [--hostname HOST --port PORT] [--username NAME]",
		Short: "Print a short-lived token to use as the database password",
		Long: `Print a database token, and nothing else, on stdout. Use it as the password
when connecting to the keygate gateway, as with aws rds generate-db-auth-token:

  PGPASSWORD=$(keygate db token orders) psql "host=HOST port=5433 dbname=orders \
      user=$USER sslmode=verify-full sslrootcert=keygate-ca.pem"

or, for a MySQL or MariaDB database, through the gateway's MySQL port:

  MYSQL_PWD=$(keygate db token orders_my) mariadb -h HOST -P 3307 -u $USER \
      --ssl-ca=keygate-ca.pem --ssl-verify-server-cert orders_my

keygate db connect orders (or orders_my) does all of that for you.

The token is bound to you, the database and the access level, and lives 15
minutes unless the permission set says otherwise. Without --access you get
the profile's access, or else the least privilege you may use: ro whenever
you may use ro, even when your groups grant rw or admin (a grant covers the
levels below it). Ask for more with --access rw or --access admin.
Without DB you get the profile's database.

The flags of aws rds generate-db-auth-token work too, so a script written
for RDS carries over by changing only the command name:

  keygate db token --hostname orders.internal --port 5432 \
      --username alice.ro --region us-east-1

--hostname and --port name the database by its upstream address, as
keygate's config gives it (keygate db list --json shows each address),
PostgreSQL or MySQL alike. Naming keygate's gateway instead needs the
database named too, or the profile's database behind that gateway.
--username is you (alice), or your upstream role, whose suffix chooses the
level: alice.ro, alice.rw or alice.admin. --region is accepted and ignored.

The session is the one keygate login cached for the profile, or
KEYGATE_SESSION when set (for automation). The server comes from --server
or KEYGATE_SERVER, --config, or the profile; the CA likewise.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var arg string
			if len(args) == 1 {
				arg = args[0]
			}
			t, err := g.dbToken(cmd.Context(), arg, f, nil)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			return nil
		},
	}
	addTokenFlags(tok, &f)
	tok.Flags().StringVar(&f.hostname, "hostname", "", "the database's upstream host, as keygate's config gives its address (as aws rds generate-db-auth-token)")
	tok.Flags().IntVar(&f.port, "port", 0, "the database's upstream port, with --hostname")
	tok.Flags().StringVar(&f.username, "username", "", "you, or your upstream role: NAME.ro, NAME.rw or NAME.admin chooses the level")
	tok.Flags().StringVar(&f.region, "region", "", "accepted and ignored, for scripts written for aws rds generate-db-auth-token")
	g.addEndpointFlags(tok)
	cmd.AddCommand(tok, newDBListCmd(g), newDBConnectCmd(g))
	return cmd
}

// addTokenFlags adds the flags every command that gets a token has.
func addTokenFlags(cmd *cobra.Command, f *tokenFlags) {
	cmd.Flags().StringVar(&f.access, "access", "", "access level: ro, rw or admin (default: the profile's, or the least you may use, usually ro)")
}

// issuedToken is a database token and what a database client needs
// besides to use it.
type issuedToken struct {
	api.TokenResponse
	// listing is the database's entry in the person's db list, when it
	// was asked for and has it: its engine and the gateway's address.
	listing api.DatabaseAccess
	client  *client.Client
}

// dbToken gets a database token for the DB argument arg and the flags,
// with the profile, session and KEYGATE_SESSION rules of every person
// command. Mistakes in the command line are reported before the server is
// asked anything. A non-nil check has the person's db list fetched, and
// is given the database's entry before a token is asked for, to refuse a
// database the caller cannot use; the entry is zero when the list lacks
// the database, which the server then refuses with its reason.
func (g *globals) dbToken(ctx context.Context, arg string, f tokenFlags, check func(api.DatabaseAccess) error) (issuedToken, error) {
	p, _, err := g.loadProfile()
	if err != nil {
		return issuedToken{}, err
	}
	in := targetInput{arg: arg, flags: f, profile: g.profileName(), profileDB: p.Database, profileAccess: p.Access}
	if err := checkOffline(in); err != nil {
		return issuedToken{}, err
	}
	c, err := g.personClient()
	if err != nil {
		return issuedToken{}, err
	}
	if f.username != "" {
		who, err := c.WhoAmI(ctx)
		if err != nil {
			return issuedToken{}, fmt.Errorf("find who is signed in, to check --username: %w", err)
		}
		in.user = who.User
	}
	if f.hostname != "" || check != nil {
		if in.dbs, err = c.Databases(ctx); err != nil {
			return issuedToken{}, fmt.Errorf("list your databases: %w", err)
		}
	}
	tg, err := resolveTarget(in)
	if err != nil {
		return issuedToken{}, err
	}
	var listing api.DatabaseAccess
	for _, d := range in.dbs {
		if d.Database == tg.database {
			listing = d
			break
		}
	}
	if check != nil {
		if err := check(listing); err != nil {
			return issuedToken{}, err
		}
	}
	t, err := c.Token(ctx, tg.database, tg.level)
	if err != nil {
		return issuedToken{}, err
	}
	return issuedToken{TokenResponse: t, listing: listing, client: c}, nil
}

// checkOffline reports the mistakes in the command line that need no
// answer from the server to see.
func checkOffline(in targetInput) error {
	if err := checkAddressFlags(in.flags); err != nil || in.flags.hostname != "" {
		return err
	}
	_, err := namedDatabase(in)
	return err
}
