package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/client"
)

func newReportCmd(g *globals) *cobra.Command {
	var since string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "report [--since 24h] [--json]",
		Short: "The measures of no standing credentials: standing logins, credential age, time to revoke, sprawl",
		Long: `Measure what keygate promises, each figure against its target:

standing credentials (target 0)
  Each database is scanned now for logins that reach it without keygate:
  roles or users that can log in with a password, or are superusers,
  other than keygate's own admin role; and keygate's person roles found
  able to log in (LOGIN, or a password at rest) while no login window is
  open. Each is listed with its database and why. A database that cannot
  be scanned within 10s is named with the error: its count is unknown,
  not zero.

credential age at use (target under 1h)
  How old the token was when each database session started, from the
  session.start audit events in the window: p50, p99 and the oldest.
  Tokens live 15 minutes unless a permission set says otherwise (at most
  1h), so an age near that means people keep tokens around.

time to revoke (target report.revocation_target, default 15m)
  For each live session a revocation ended (SCIM deactivate or group
  removal, keygate admin user disable, a reload that took access away),
  the time from the change to the session's upstream backend gone, from
  the session.end audit events in the window: p50, p99, the slowest, and
  how many took longer than the target.

permission-set sprawl
  Permission sets and assignments in the running config, and the
  distinct (person, database, level) grants they add up to; a warning
  when permission sets grew faster than active people over 30 days.

naming findings
  Groups the group naming rule (group_naming.pattern) cannot use, as
  keygate access findings lists them.

The window is the last 24h unless --since says otherwise: a duration ago
(7d, 2h) or an RFC 3339 time. Percentiles are nearest-rank over every
session in the window. The same figures are metrics: see the README's
Metrics section.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			r, err := c.Report(cmd.Context(), since)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), r)
			}
			return printReport(cmd.OutOrStdout(), r)
		},
	}
	g.addAdminEndpointFlags(cmd)
	cmd.Flags().StringVar(&since, "since", "", "start of the window for credential age and time to revoke: a duration ago (24h, 7d) or an RFC 3339 time (default 24h)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// reportTime is how a report writes a moment.
const reportTime = "2006-01-02 15:04"

// printReport writes a report for an auditor: each section with its
// figure and target.
func printReport(out io.Writer, r api.Report) error {
	fmt.Fprintf(out, "keygate report at %s; audit figures since %s (%s)\n\n", r.Generated.Local().Format(reportTime),
		r.Since.Local().Format(reportTime), client.HumanDuration(r.Generated.Sub(r.Since)))

	st := r.Standing
	managed := 0
	for _, c := range st.Credentials {
		if c.Managed {
			managed++
		}
	}
	fmt.Fprintf(out, "standing credentials: %d (target %d)", len(st.Credentials), st.Target)
	switch {
	case managed == 1:
		fmt.Fprint(out, ", 1 of them a keygate person role not at rest")
	case managed > 1:
		fmt.Fprintf(out, ", %d of them keygate person roles not at rest", managed)
	}
	fmt.Fprintln(out)
	if len(st.Credentials) > 0 {
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  DATABASE\tNAME\tWHY")
		for _, c := range st.Credentials {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", printable(c.Database), printable(c.Name), printable(c.Why))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, e := range st.ScanErrors {
		fmt.Fprintf(out, "  %s could not be scanned, so its count is unknown: %s\n", printable(e.Database), printable(e.Error))
	}

	fmt.Fprintf(out, "\ncredential age at use: %s\n", durationsLine(r.CredentialAge, r.Since, "session", "sessions"))
	fmt.Fprintf(out, "time to revoke: %s\n", durationsLine(r.TimeToRevoke, r.Since, "revoked session", "revoked sessions"))

	sp := r.Sprawl
	fmt.Fprintf(out, "\npermission-set sprawl: %s, %s, %s\n", plural(sp.PermissionSets, "permission set", "permission sets"),
		plural(sp.Assignments, "assignment", "assignments"), plural(sp.Grants, "grant", "grants"))
	if sp.Warning {
		fmt.Fprintln(out, "  warning: permission sets grew faster than active people over the last 30 days")
	}

	f := r.Findings
	if f.Pattern == "" {
		fmt.Fprintln(out, "naming findings: none to find, no group naming rule is configured")
		return nil
	}
	fmt.Fprintf(out, "naming findings: %d (target 0), group naming rule %s over %s\n", len(f.Findings), printable(f.Pattern), plural(f.Groups, "group", "groups"))
	if len(f.Findings) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  GROUP\tFINDING\tWHY")
	for _, x := range f.Findings {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", printable(x.Group), x.Kind, printable(x.Reason))
	}
	return tw.Flush()
}

// durationsLine writes measured durations and their target in one line:
// "p50 140ms, p99 3m12s, max 4m over 12 sessions since 2026-11-23 10:00
// (target under 1h): 0 over".
func durationsLine(d api.Durations, since time.Time, one, many string) string {
	target := client.HumanDuration(seconds(d.TargetSeconds))
	if d.Count == 0 {
		return fmt.Sprintf("no %s since %s (target under %s)", many, since.Local().Format(reportTime), target)
	}
	return fmt.Sprintf("p50 %s, p99 %s, max %s over %s since %s (target under %s): %d over the %s target",
		client.HumanDuration(seconds(d.P50Seconds)), client.HumanDuration(seconds(d.P99Seconds)), client.HumanDuration(seconds(d.MaxSeconds)),
		plural(d.Count, one, many), since.Local().Format(reportTime), target, d.OverTarget, target)
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
