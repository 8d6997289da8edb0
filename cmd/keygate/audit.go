package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/config"
)

func newAuditCmd(g *globals) *cobra.Command {
	var f client.AuditFilter
	var since string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "audit [--user U] [--db D] [--type T] [--since 1h] [--json]",
		Short: "Show the audit log: sessions, statements, refusals, admin changes",
		Long: `Show the audit log, oldest first. Types: session.start, session.end, query,
query.cancel, connect.refused, token.issued, token.refused, admin.*; --type
matches a type or a dotted prefix (--type session).

With --json, one JSON object a line with time, type, user, database, access,
query, client and reason.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := config.ParseDuration(since)
			if err != nil {
				return usageError{fmt.Errorf("--since: %w", err)}
			}
			if d > 0 {
				f.Since = time.Now().Add(-d)
			}
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				return c.Audit(cmd.Context(), f, func(e api.AuditEvent) error { return enc.Encode(e) })
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tTYPE\tUSER\tDATABASE\tACCESS\tCLIENT\tWHAT")
			err = c.Audit(cmd.Context(), f, func(e api.AuditEvent) error {
				_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format("2006-01-02 15:04:05.000"), printable(e.Type),
					dash(e.User), dash(e.Database), dash(e.Access), dash(e.Client), printable(what(e)))
				return err
			})
			if err != nil {
				return err
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "verify",
		Short: "Check the audit log's hash chain: no event removed, changed or reordered",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			v, err := c.VerifyAudit(cmd.Context())
			if err != nil {
				return err
			}
			if !v.Intact {
				return fmt.Errorf("%s (%d events checked before it)", v.Error, v.Events)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "audit log intact: %d events, each linked to the one before\n", v.Events)
			return nil
		},
	})
	cmd.Flags().StringVar(&f.User, "user", "", "only events about this person")
	cmd.Flags().StringVar(&f.Database, "db", "", "only events on this database")
	cmd.Flags().StringVar(&f.Type, "type", "", "only events of this type or type prefix")
	cmd.Flags().StringVar(&since, "since", "24h", "how far back to look, such as 1h or 7d (0 for everything)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object a line")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return printable(s)
}

// printable escapes what a terminal would act on. Audit fields hold what
// clients sent, some before authenticating: an escape sequence in a user
// name must show as text, not move the cursor or set the clipboard.
func printable(s string) string {
	if utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			// A lone byte such as 0x9b is a control to 8-bit terminals.
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case unicode.IsPrint(r):
			b.WriteRune(r)
		default:
			fmt.Fprintf(&b, "\\u%04x", r)
		}
		i += size
	}
	return b.String()
}

// what is the one-line summary of an event for the table.
func what(e api.AuditEvent) string {
	var parts []string
	if e.Query != "" {
		parts = append(parts, strings.Join(strings.Fields(e.Query), " "))
	}
	if e.Reason != "" {
		parts = append(parts, e.Reason)
	}
	if g, ok := e.Detail["group"].(string); ok && strings.HasPrefix(e.Type, "admin.") {
		parts = append(parts, "group "+g)
	}
	if ms, ok := e.Detail["duration_ms"].(float64); ok {
		parts = append(parts, fmt.Sprintf("after %s", time.Duration(ms)*time.Millisecond))
	}
	return strings.Join(parts, "; ")
}
