package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/client"
)

// newLiveCmd is keygate admin live: the gateway's live sessions, listed
// and ended by an administrator.
func newLiveCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "live",
		Short: "List and end live gateway sessions (clients connected to a database now)",
		Long: `List and end live gateway sessions: the clients connected through keygate's
gateway to a database right now, whoever they are.

A person ends their own from the portal; an administrator ends anyone's
here. Ending one ends its upstream backend too, the client is told who
ended it, and the audit records admin.live.end with the administrator as
actor, followed by the session's session.end.

Ending a live session does not stop the person connecting again while
their token and access last: to cut them off, revoke their sign-in
session (keygate admin session revoke ID) or disable them (keygate admin
user disable NAME).`,
	}
	var user, db string
	var asJSON bool
	list := &cobra.Command{
		Use:   "list [--user NAME] [--db DB] [--json]",
		Short: "List live gateway sessions: who, which database, level, client, since when, statements",
		Long: `List live gateway sessions, oldest first. ID is what keygate admin live end
takes, and what session.start and session.end record as session_id;
SIGN-IN is the sign-in session whose token opened it; STATEMENTS counts the
statements it sent upstream so far.`,
		Example: `  keygate admin live list
  keygate admin live list --user alice --db orders
  keygate admin live list --json`,
		Args: cobra.NoArgs,
		RunE: adminRun(g, func(cmd *cobra.Command, c *client.Client, _ []string) error {
			sessions, err := c.ListLive(cmd.Context(), user, db)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), sessions)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tUSER\tDATABASE\tACCESS\tENGINE\tCLIENT\tSTARTED\tSTATEMENTS\tSIGN-IN")
			for _, s := range sessions {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", printable(s.ID), printable(s.User), printable(s.Database), s.Access, s.Engine,
					printable(s.Client), s.Started.Local().Format(time.DateTime), s.Statements, orDash(printable(s.SignIn)))
			}
			return tw.Flush()
		}),
	}
	list.Flags().StringVar(&user, "user", "", "only this person's sessions")
	list.Flags().StringVar(&db, "db", "", "only the sessions on this database")
	list.Flags().BoolVar(&asJSON, "json", false, "print one JSON array")

	end := &cobra.Command{
		Use:   "end ID",
		Short: "End a live gateway session and its upstream backend",
		Long: `End a live gateway session (an ID from keygate admin live list). Its client
is told "ended by administrator NAME", its upstream backend is ended, and
the audit records admin.live.end under your name and then session.end.
The person may connect again while their token and access last.`,
		Example: `  keygate admin live list --user alice
  keygate admin live end 3f1c9a52-8d0e-4b6a-9c1e-2a7d5e8f4b10`,
		Args: exactArgs(1, "ID"),
		RunE: adminRun(g, func(cmd *cobra.Command, c *client.Client, args []string) error {
			s, err := c.EndLiveAdmin(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ended live session %s of %s on %s\n", printable(s.ID), printable(s.User), printable(s.Database))
			return nil
		}),
	}
	cmd.AddCommand(list, end)
	return cmd
}
