package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newDBListCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: "List the databases you may use, at which levels, and what grants each",
		Long: `List every database and access level you may get a token for now, through
your sign-in session, with the permission set and group that grant it and how
long its tokens live. Each line is the decision keygate db token would get.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.personClient()
			if err != nil {
				return err
			}
			dbs, err := c.Databases(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), dbs)
			}
			if len(dbs) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "you may use no database; an admin sees why with keygate access explain --user YOU --db DB")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DATABASE\tACCESS\tPERMISSION SET\tGROUP\tTOKEN TTL")
			for _, d := range dbs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", printable(d.Database), d.Access, printable(d.PermissionSet), orDash(d.Group), d.TokenTTL)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON array")
	g.addEndpointFlags(cmd)
	return cmd
}
