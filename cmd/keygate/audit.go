package main

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/internal/suggest"
)

func newAuditCmd(g *globals) *cobra.Command {
	var f client.AuditFilter
	var since, until string
	var asJSON, follow bool
	cmd := &cobra.Command{
		Use:   "audit [--user U] [--db D] [--type T] [--since 1h] [--until T] [--follow] [--json]",
		Short: "Show the audit log: sessions, statements, refusals, admin changes",
		Long: `Show the audit log, oldest first.

--since and --until take a duration before now (2h, 7d), a date, which is
that day's start in UTC (2026-12-04), or an RFC 3339 time
(2026-12-04T09:30:00+01:00). --since is 24h unless given (0 for
everything); --until is open unless given, and excludes its moment.

--type takes an event type or a dotted prefix of one (session, admin,
admin.group, query, scim). The types:
  ` + strings.Join(audit.Types(), "\n  ") + `

--follow (-f) prints events as they are recorded, like tail -f, until
Ctrl-C. Without --since it starts with the next event; with --since it
shows those first.

When the server is not answering (nothing listens at its address), keygate
reads the audit log in data_dir directly, read-only, and says so on stderr;
keygate audit verify does the same.

With --json, one JSON object a line with seq, time, type, user, database,
access, query, client, reason and detail.

Examples:
  keygate audit --config keygate.yaml --since 2h --user alice
  keygate audit --since 2026-12-01 --until 2026-12-04 --type admin
  keygate audit --type session --db orders --json
  keygate audit -f --type query.refused`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkAuditType(f.Type); err != nil {
				return err
			}
			now := time.Now()
			var err error
			if !follow || cmd.Flags().Changed("since") {
				if f.Since, err = parseSince(since, now); err != nil {
					return err
				}
			}
			if until != "" {
				if follow {
					return usageError{errors.New("--follow shows events as they come: it takes --since, not --until")}
				}
				if f.Until, err = parseAuditTime(until, now); err != nil {
					return usageError{fmt.Errorf("--until: %w", err)}
				}
				if !f.Since.IsZero() && f.Until.Before(f.Since) {
					return usageError{fmt.Errorf("--until %s is before --since %s", f.Until.UTC().Format(time.RFC3339), f.Since.UTC().Format(time.RFC3339))}
				}
			}
			src, err := openAuditSource(g, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer src.close()
			out := cmd.OutOrStdout()
			var show func(api.AuditEvent) error
			finish := func() error { return nil }
			switch {
			case asJSON:
				enc := json.NewEncoder(out)
				show = func(e api.AuditEvent) error { return enc.Encode(e) }
			case follow:
				// Columns of fixed width, each line written as it comes:
				// a table aligned over all lines would wait for the last.
				fmt.Fprintf(out, followRow, "TIME", "TYPE", "USER", "DATABASE", "ACCESS", "CLIENT", "WHAT")
				show = func(e api.AuditEvent) error {
					_, err := fmt.Fprintf(out, followRow, auditRow(e)...)
					return err
				}
			default:
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME\tTYPE\tUSER\tDATABASE\tACCESS\tCLIENT\tWHAT")
				show = func(e api.AuditEvent) error {
					_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", auditRow(e)...)
					return err
				}
				finish = tw.Flush
			}
			if follow {
				err = src.follow(cmd.Context(), f, show)
			} else {
				err = src.list(cmd.Context(), f, show)
			}
			if err != nil {
				return err
			}
			return finish()
		},
	}
	var exportFile, publicKeyFile string
	var anchors []string
	verify := &cobra.Command{
		Use:   "verify [--export FILE --public-key FILE]",
		Short: "Check the audit log's hash chains: no event removed, changed or reordered",
		Long: `Check the audit log's hash chains: no event removed, changed or reordered.
Every server sharing a state writes a chain of its own; all are checked.
When the server is not answering, keygate checks the audit log in data_dir
directly, read-only.

With --export and --public-key, check a file written by keygate audit
export instead, offline, without keygate's server or database: every
chain's links and hashes, no position missing, and every signed
checkpoint against the public key (data_dir/audit-signing.pub, handed to
the auditor apart from the export). The first fault is named with its line
and event.

A chain cut after its last checkpoint is intact by itself. Each server
logs every checkpoint it stores ("audit checkpoint", with its anchor
NODE:NUMBER:HASH); give the newest anchor of each server from a copy of
the logs kept apart from the database with --checkpoint, and the export
must hold it.`,
		Example: `  keygate audit export audit.jsonl --config keygate.yaml
  keygate audit verify --export audit.jsonl --public-key audit-signing.pub
  keygate audit verify --export audit.jsonl --public-key audit-signing.pub --checkpoint a:8123:9f2c…`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(anchors) > 0 && exportFile == "" {
				return usageError{errors.New("--checkpoint checks an export: add --export FILE --public-key FILE")}
			}
			if exportFile != "" || publicKeyFile != "" {
				return verifyExport(cmd.OutOrStdout(), exportFile, publicKeyFile, anchors)
			}
			src, err := openAuditSource(g, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer src.close()
			v, err := src.verify(cmd.Context())
			if err != nil {
				return err
			}
			if !v.Intact {
				return fmt.Errorf("%s (%d events checked before it)", v.Error, v.Events)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "audit log intact: %d events, each linked to the one before\n", v.Events)
			return nil
		},
	}
	verify.Flags().StringVar(&exportFile, "export", "", "check this export file offline, with --public-key")
	verify.Flags().StringVar(&publicKeyFile, "public-key", "", "the checkpoint public key (data_dir/audit-signing.pub)")
	verify.MarkFlagsRequiredTogether("export", "public-key")
	verify.Flags().StringArrayVar(&anchors, "checkpoint", nil, "NODE:NUMBER:HASH of a checkpoint the server logged, which the export must hold (repeat for each server)")
	cmd.AddCommand(verify, &cobra.Command{
		Use:   "export FILE",
		Short: "Write the whole audit log to FILE, for keygate audit verify --export to check offline",
		Long: `Write the whole audit log to FILE (one JSON object a line, every field
its hash covers), through the server, as an administrator. Give it to an
auditor with data_dir/audit-signing.pub; keygate audit verify --export FILE
--public-key audit-signing.pub checks it without keygate's database.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			dst := args[0]
			tmp := dst + ".partial"
			f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return fmt.Errorf("export: %w", err)
			}
			err = c.ExportAudit(cmd.Context(), f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(tmp)
				return fmt.Errorf("export: %w", err)
			}
			if err := os.Rename(tmp, dst); err != nil {
				return fmt.Errorf("export: %w", err)
			}
			fi, err := os.Stat(dst)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%s): the whole audit log; check it with keygate audit verify --export %s --public-key audit-signing.pub\n", dst, byteSize(fi.Size()), dst)
			return nil
		},
	})
	cmd.Flags().StringVar(&f.User, "user", "", "only events about this person")
	cmd.Flags().StringVar(&f.Database, "db", "", "only events on this database")
	cmd.Flags().StringVar(&f.Type, "type", "", "only events of this type or type prefix, such as session or admin.group (see --help)")
	cmd.Flags().StringVar(&since, "since", "24h", "from this moment: a duration ago (2h, 7d), a UTC date (2026-12-04) or an RFC 3339 time; 0 for everything")
	cmd.Flags().StringVar(&until, "until", "", "up to this moment (excluded), in the forms of --since")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "print events as they are recorded, until Ctrl-C")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object a line")
	g.addAdminEndpointFlags(cmd)
	return cmd
}

// followRow lays out a line of the table in --follow mode.
const followRow = "%-23s  %-18s  %-12s  %-10s  %-6s  %-21s  %s\n"

// auditRow is an event's table cells, made safe to print.
func auditRow(e api.AuditEvent) []any {
	return []any{e.Time.Local().Format("2006-01-02 15:04:05.000"), printable(e.Type),
		dash(e.User), dash(e.Database), dash(e.Access), dash(e.Client), printable(what(e))}
}

// parseSince reads --since, where a zero duration means no lower bound.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := config.ParseDuration(s); err == nil && d == 0 {
		return time.Time{}, nil
	}
	t, err := parseAuditTime(s, now)
	if err != nil {
		return t, usageError{fmt.Errorf("--since: %w", err)}
	}
	return t, nil
}

// parseAuditTime reads a moment for --since and --until: a date, which is
// that day's start in UTC (an audit spans time zones, and the log keeps
// UTC), an RFC 3339 time, or a duration before now.
func parseAuditTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.ParseInLocation(time.DateOnly, s, time.UTC); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := config.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("cannot read %q: use a duration ago (2h, 7d), a UTC date (2026-12-04) or an RFC 3339 time (2026-12-04T09:30:00Z)", s)
}

// checkAuditType refuses a --type that matches no event type, which would
// otherwise print an empty log as if nothing had happened.
func checkAuditType(t string) error {
	if t == "" || audit.KnownType(t) {
		return nil
	}
	types := audit.Types()
	hint := ""
	if best := suggest.Closest(t, typeNames(types)); best != "" {
		hint = " did you mean " + best + "?"
	}
	return usageError{fmt.Errorf("--type %q matches no event type.%s Use a type or a dotted prefix of one (session, admin, query); the types are: %s",
		t, hint, strings.Join(types, ", "))}
}

// typeNames is the types and every dotted prefix of them: what --type
// accepts.
func typeNames(types []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range types {
		for i := range len(t) + 1 {
			if (i == len(t) || t[i] == '.') && !seen[t[:i]] {
				seen[t[:i]] = true
				out = append(out, t[:i])
			}
		}
	}
	return out
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
		q := strings.Join(strings.Fields(e.Query), " ")
		if o := e.Outcome(); o != "" {
			q += " → " + o
		}
		parts = append(parts, q)
	}
	if e.Reason != "" {
		parts = append(parts, e.Reason)
	}
	if g, ok := e.Detail["group"].(string); ok && strings.HasPrefix(e.Type, "admin.") {
		parts = append(parts, "group "+g)
	}
	// Who made an admin change: an administrator's name, or the data_dir
	// credential's actor.
	if e.Actor != "" && strings.HasPrefix(e.Type, "admin.") {
		parts = append(parts, "by "+e.Actor)
	}
	if ms, ok := e.Detail["duration_ms"].(float64); ok {
		verb := "after" // a session's length
		if e.Type == "query" {
			verb = "took"
		}
		parts = append(parts, fmt.Sprintf("%s %s", verb, time.Duration(ms*float64(time.Millisecond)).Round(time.Microsecond)))
	}
	return strings.Join(parts, "; ")
}

// verifyExport checks an export file offline against a public key.
func verifyExport(out io.Writer, exportFile, publicKeyFile string, anchorArgs []string) error {
	var anchors []audit.Anchor
	for _, s := range anchorArgs {
		a, err := audit.ParseAnchor(s)
		if err != nil {
			return usageError{err}
		}
		anchors = append(anchors, a)
	}
	raw, err := os.ReadFile(publicKeyFile)
	if err != nil {
		return fmt.Errorf("read the public key: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return fmt.Errorf("%s is not a PEM public key: use data_dir/audit-signing.pub", publicKeyFile)
	}
	parsed, err := x509.ParsePKIXPublicKey(block.Bytes)
	pub, ok := parsed.(ed25519.PublicKey)
	if err != nil || !ok {
		return fmt.Errorf("%s is not an Ed25519 public key: use data_dir/audit-signing.pub", publicKeyFile)
	}
	f, err := os.Open(exportFile)
	if err != nil {
		return fmt.Errorf("read the export: %w", err)
	}
	defer f.Close()
	sum, err := audit.VerifyExport(f, pub, anchors...)
	if err != nil {
		return fmt.Errorf("the export does not verify: %w", err)
	}
	fmt.Fprintf(out, "export intact: %d events in %d chains, %d signed checkpoints (key %s)\n", sum.Events, sum.Chains, sum.Checkpoints, audit.KeyID(pub))
	if len(anchors) > 0 {
		fmt.Fprintf(out, "  it holds the %d checkpoints given with --checkpoint\n", len(anchors))
	}
	for _, a := range sum.Last {
		fmt.Fprintf(out, "  last checkpoint %s: compare with the newest \"audit checkpoint\" line that server logged\n", a)
	}
	for chain, n := range sum.Unsigned {
		if n > 0 {
			name := chain
			if name == "" {
				name = "the chain"
			}
			fmt.Fprintf(out, "  %s: %d events after its last checkpoint, linked but not yet signed\n", name, n)
		}
	}
	return nil
}
