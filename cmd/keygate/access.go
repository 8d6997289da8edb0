package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/api"
)

func newAccessCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "access",
		Short: "Ask why someone has access, from the running server's rules and state",
	}
	g.addAdminEndpointFlags(cmd)
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
				return printJSON(out, ex)
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
	cmd.AddCommand(explain, newAccessWhoCmd(g), newAccessReviewCmd(g), newAccessFindingsCmd(g))
	return cmd
}

func newAccessFindingsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "findings [--json]",
		Short: "Groups the group naming rule cannot use, and why",
		Long: `List the groups that the config's group naming rule (group_naming.pattern)
cannot turn into assignments: groups whose names do not match it, and
groups whose names give a permission set that is not defined or tag values
that no database has. Groups that the config's own assignments or deny
rules name are not listed for not matching.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			f, err := c.AccessFindings(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, f)
			}
			if f.Pattern == "" {
				fmt.Fprintln(out, "no group naming rule is configured (group_naming.pattern): nothing to find")
				return nil
			}
			fmt.Fprintf(out, "group naming rule %s: %s, %d assigned, %s\n", printable(f.Pattern),
				plural(f.Groups, "group", "groups"), f.Assigned, plural(len(f.Findings), "finding", "findings"))
			if len(f.Findings) == 0 {
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "GROUP\tFINDING\tWHY")
			for _, x := range f.Findings {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", printable(x.Group), x.Kind, printable(x.Reason))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newAccessWhoCmd(g *globals) *cobra.Command {
	var db, at, since, until string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "who --db DB [--at TIME] [--since TIME] [--until TIME] [--json]",
		Short: "Who could reach a database, and at which level; and who did connect",
		Long: `List everyone who could reach a database at a moment (now, or --at), at
the highest level they could and through which group and permission set;
and beside it, from the audit log, who connected to it in a window
(--since/--until; by default the day before that moment).

Group memberships at a past moment come from the membership history, and
the access rules from the config history (every version the server ran
with); people's tags and status are those of now.

TIME is RFC 3339 (2026-11-23T10:00:00Z), a local date and time
(2026-11-23 10:00), a date (2026-11-23), or a duration ago (2h, 7d).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if db == "" {
				return usageError{errors.New("--db is required, as in keygate access who --db orders")}
			}
			var when [3]time.Time
			for i, s := range []string{at, since, until} {
				if s == "" {
					continue
				}
				t, err := parseWhen(s, time.Now())
				if err != nil {
					return usageError{err}
				}
				when[i] = t
			}
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			ans, err := c.WhoCan(cmd.Context(), db, when[0], when[1], when[2])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, ans)
			}
			fmt.Fprintf(out, "could reach %s at %s:\n", ans.Database, ans.At.Local().Format(time.DateTime))
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "USER\tACCESS\tGROUP\tPERMISSION SET\tNOTE")
			for _, h := range ans.Holders {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", printable(h.User), h.Access, printable(h.Group), printable(h.PermissionSet), holderNote(h))
			}
			tw.Flush()
			fmt.Fprintf(out, "\nconnected between %s and %s:\n", ans.Since.Local().Format(time.DateTime), ans.Until.Local().Format(time.DateTime))
			tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "USER\tSESSIONS\tACCESS\tFIRST\tLAST")
			for _, c := range ans.Connected {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", printable(c.User), c.Sessions, strings.Join(c.Access, ","),
					c.First.Local().Format(time.DateTime), c.Last.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&db, "db", "", "the database (required)")
	cmd.Flags().StringVar(&at, "at", "", "the moment to answer for (default now)")
	cmd.Flags().StringVar(&since, "since", "", "start of the connection window (default: a day before --until)")
	cmd.Flags().StringVar(&until, "until", "", "end of the connection window (default: --at)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// holderNote says what qualifies a holder's access.
func holderNote(h api.Holder) string {
	var notes []string
	if h.RequireMFA {
		notes = append(notes, "needs MFA")
	}
	if h.Deleted {
		notes = append(notes, "deleted since")
	}
	return strings.Join(notes, ", ")
}

func newAccessReviewCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "review [--format csv|json]",
		Short: "Export the whole grant matrix for an access review",
		Long: `Export, for every database, everyone who could reach it now: the level, and
the group and permission set that give it; one row per person and database.
CSV (the default) opens in a spreadsheet for a quarterly review; JSON suits
scripts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "csv" && format != "json" {
				return usageError{fmt.Errorf("--format %q: use csv or json", format)}
			}
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			rows, err := c.Review(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if format == "json" {
				return printJSON(out, rows)
			}
			w := csv.NewWriter(out)
			w.Write([]string{"database", "user", "access", "group", "permission_set", "require_mfa", "deleted"})
			for _, h := range rows {
				w.Write([]string{cell(h.Database), cell(h.User), h.Access, cell(h.Group), cell(h.PermissionSet), strconv.FormatBool(h.RequireMFA), strconv.FormatBool(h.Deleted)})
			}
			w.Flush()
			return w.Error()
		},
	}
	cmd.Flags().StringVar(&format, "format", "csv", "csv or json")
	return cmd
}

// cell keeps a name from being read as a formula by a spreadsheet: names
// come from identity providers, and a review file is opened in Excel.
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// printJSON writes v as indented JSON, for --json and -o json.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
