package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newAccessCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "access",
		Short: "Ask why someone has access, from the running server's rules and state",
	}
	var user, db, level string
	var mfa, asJSON bool
	explain := &cobra.Command{
		Use:   "explain --user NAME --db DB [--access ro|rw|admin] [--mfa] [--json]",
		Short: "Allow or deny, and what decided it: group, permission set and rule, or the nearest miss",
		Long: `Decide, as the token endpoint and the gateway would right now, whether a
person may reach a database, and say what decided it: the group, permission
set and rule that allows it, or the nearest miss, as in

  rw  deny  alice is in analysts → db-readonly (ro); no assignment grants rw on orders

Without --access every level is shown. Decisions assume a sign-in without
MFA unless --mfa is given, so that permission sets with require_mfa show
what they need. Needs --config FILE (the server's config) like the other
admin commands.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if user == "" || db == "" {
				return usageError{errors.New("--user and --db are required, as in keygate access explain --user alice --db orders")}
			}
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			ex, err := c.ExplainAccess(cmd.Context(), user, db, level, mfa)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(ex)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			for _, d := range ex.Decisions {
				verdict := "deny"
				if d.Allowed {
					verdict = "allow"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", d.Access, verdict, printable(d.Reason))
			}
			return tw.Flush()
		},
	}
	explain.Flags().StringVar(&user, "user", "", "the person (required)")
	explain.Flags().StringVar(&db, "db", "", "the database (required)")
	explain.Flags().StringVar(&level, "access", "", "one level: ro, rw or admin (default: every level)")
	explain.Flags().BoolVar(&mfa, "mfa", false, "decide as for a sign-in with MFA")
	explain.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(explain)
	return cmd
}
