package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/client"
)

// plural is "1 member" or "2 members".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// printableList shows names from outside, comma-separated, or "-".
func printableList(names []string) string {
	if len(names) == 0 {
		return "-"
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = printable(n)
	}
	return strings.Join(out, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return printable(s)
}

// adminRun is the body of an admin command: it gets the admin client.
func adminRun(g *globals, run func(cmd *cobra.Command, c *client.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := g.adminClient()
		if err != nil {
			return err
		}
		return run(cmd, c, args)
	}
}

// newUserCmds are the user commands that read, enable, delete and rename.
func newUserCmds(g *globals) []*cobra.Command {
	var listJSON, showJSON bool
	list := &cobra.Command{
		Use:   "list [--json]",
		Short: "List everyone: name, email, active, groups, who created them",
		Long: `List everyone keygate knows, by name. SOURCE is who created the person:
scim (the identity provider), sso (created at sign-in) or admin.`,
		Args: cobra.NoArgs,
		RunE: adminRun(g, func(cmd *cobra.Command, c *client.Client, _ []string) error {
			people, err := c.ListUsers(cmd.Context())
			if err != nil {
				return err
			}
			if listJSON {
				return printJSON(cmd.OutOrStdout(), people)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tEMAIL\tACTIVE\tGROUPS\tSOURCE\tCREATED")
			for _, p := range people {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", printable(p.Name), orDash(p.Email), yesNo(p.Active), printableList(p.Groups),
					orDash(p.Source), p.Created.Local().Format(time.DateTime))
			}
			return tw.Flush()
		}),
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print one JSON array")

	show := &cobra.Command{
		Use:   "show NAME [--json]",
		Short: "Show a person: every field, groups, tags, sign-in and live sessions",
		Args:  exactArgs(1, "NAME"),
		RunE: adminRun(g, func(cmd *cobra.Command, c *client.Client, args []string) error {
			p, err := c.ShowUser(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if showJSON {
				return printJSON(cmd.OutOrStdout(), p)
			}
			return printPerson(cmd.OutOrStdout(), p)
		}),
	}
	show.Flags().BoolVar(&showJSON, "json", false, "print one JSON object")

	enable := &cobra.Command{
		Use:   "enable NAME",
		Short: "Make a disabled person active again; they sign in again to get tokens",
		Long: `Make a disabled person active again. The sign-in sessions they had when
disabled stay revoked: they sign in again (keygate login), or an admin makes
them a session (keygate admin session create NAME).`,
		Args: exactArgs(1, "NAME"),
		RunE: adminRun(g, func(cmd *cobra.Command, c *client.Client, args []string) error {
			u, err := c.EnableUser(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if !u.Changed {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is already active\n", printable(u.Name))
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "enabled %s; they sign in again to get database tokens\n", printable(u.Name))
			return nil
		}),
	}

	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a person: their memberships end, their live sessions end within a second",
		Long: `Delete a person. Their group memberships end (the group history keeps them),
their sign-in sessions are removed, and their live gateway sessions end within
a second. The audit log keeps everything they did. A person the identity
provider provisions comes back on its next push unless it is removed there.`,
		Args: exactArgs(1, "NAME"),
		RunE: adminRun(g, func(cmd *cobra.Command, c *client.Client, args []string) error {
			u, err := c.DeleteUser(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %s (was in %s)\n", printable(u.Name), plural(len(u.Groups), "group", "groups"))
			return nil
		}),
	}

	rename := &cobra.Command{
		Use:   "rename OLD NEW",
		Short: "Give a person a new user name; groups, sessions and history stay",
		Long: `Give a person a new user name, the name they connect to databases with.
Their groups, sign-in sessions and membership history stay. Database tokens
issued under the old name stop working, and live sessions opened with them
end: the person asks for a new token.`,
		Args: exactArgs(2, "OLD NEW"),
		RunE: adminRun(g, func(cmd *cobra.Command, c *client.Client, args []string) error {
			u, err := c.RenameUser(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "renamed %s to %s\n", printable(u.Previous), printable(u.Name))
			return nil
		}),
	}
	return []*cobra.Command{list, show, enable, del, rename}
}

func printPerson(w io.Writer, p api.Person) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("name:", printable(p.Name))
	row("email:", orDash(p.Email))
	row("display name:", orDash(p.DisplayName))
	row("external id:", orDash(p.ExternalID))
	row("active:", yesNo(p.Active))
	row("source:", orDash(p.Source))
	row("created:", p.Created.Local().Format(time.DateTime))
	row("modified:", p.Modified.Local().Format(time.DateTime))
	row("groups:", printableList(p.Groups))
	tags := make([]string, 0, len(p.Tags))
	for _, k := range slices.Sorted(maps.Keys(p.Tags)) {
		tags = append(tags, printable(k)+"="+printable(p.Tags[k]))
	}
	row("tags:", printableList(tags))
	if p.SignInSessions != nil {
		row("sign-in sessions:", fmt.Sprintf("%d active (keygate admin session list --user %s)", *p.SignInSessions, printable(p.Name)))
	}
	if p.LiveSessions != nil {
		row("live sessions:", fmt.Sprintf("%d on the gateway", *p.LiveSessions))
	}
	return tw.Flush()
}

// newGroupCmds are the group commands that read, delete and rename.
func newGroupCmds(g *globals) []*cobra.Command {
	var listJSON, showJSON, membersJSON, force bool
	list := &cobra.Command{
		Use:   "list [--json]",
		Short: "List every group and how many members it has",
		Args:  cobra.NoArgs,
		RunE: adminRun(g, func(cmd *cobra.Command, c *client.Client, _ []string) error {
			groups, err := c.ListGroups(cmd.Context())
			if err != nil {
				return err
			}
			if listJSON {
				return printJSON(cmd.OutOrStdout(), groups)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tMEMBERS\tCREATED")
			for _, gr := range groups {
				fmt.Fprintf(tw, "%s\t%d\t%s\n", printable(gr.Name), len(gr.Members), gr.Created.Local().Format(time.DateTime))
			}
			return tw.Flush()
		}),
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print one JSON array")

	show := &cobra.Command{
		Use:   "show NAME [--json]",
		Short: "Show a group and its members",
		Args:  exactArgs(1, "NAME"),
		RunE: adminRun(g, func(cmd *cobra.Command, c *client.Client, args []string) error {
			gr, err := c.ShowGroup(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if showJSON {
				return printJSON(cmd.OutOrStdout(), gr)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "name:\t%s\n", printable(gr.Name))
			fmt.Fprintf(tw, "external id:\t%s\n", orDash(gr.ExternalID))
			fmt.Fprintf(tw, "created:\t%s\n", gr.Created.Local().Format(time.DateTime))
			fmt.Fprintf(tw, "modified:\t%s\n", gr.Modified.Local().Format(time.DateTime))
			fmt.Fprintf(tw, "members:\t%s: %s\n", plural(len(gr.Members), "member", "members"), printableList(gr.Members))
			return tw.Flush()
		}),
	}
	show.Flags().BoolVar(&showJSON, "json", false, "print one JSON object")

	members := &cobra.Command{
		Use:   "members NAME [--json]",
		Short: "List a group's members, one a line",
		Args:  exactArgs(1, "NAME"),
		RunE: adminRun(g, func(cmd *cobra.Command, c *client.Client, args []string) error {
			gr, err := c.ShowGroup(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if membersJSON {
				return printJSON(cmd.OutOrStdout(), gr.Members)
			}
			for _, m := range gr.Members {
				fmt.Fprintln(cmd.OutOrStdout(), printable(m))
			}
			return nil
		}),
	}
	members.Flags().BoolVar(&membersJSON, "json", false, "print one JSON array")

	del := &cobra.Command{
		Use:   "delete NAME [--force]",
		Short: "Delete a group; one with members only with --force",
		Long: `Delete a group. A group with members is refused unless --force, which first
removes every member (recorded in the group's history as by admin); access
granted through the group ends, and so do live sessions that depended on it.
The name can be used again at once.`,
		Args: exactArgs(1, "NAME"),
		RunE: adminRun(g, func(cmd *cobra.Command, c *client.Client, args []string) error {
			gr, err := c.DeleteGroup(cmd.Context(), args[0], force)
			if err != nil {
				return err
			}
			if len(gr.Removed) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "deleted group %s after removing %s: %s\n", printable(gr.Name),
					plural(len(gr.Removed), "member", "members"), printableList(gr.Removed))
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted group %s\n", printable(gr.Name))
			return nil
		}),
	}
	del.Flags().BoolVar(&force, "force", false, "remove the group's members first")

	rename := &cobra.Command{
		Use:   "rename OLD NEW",
		Short: "Give a group a new name; its members and history stay",
		Long: `Give a group a new name. Its members and history stay (keygate admin group
history NEW shows the memberships from before). Assignments name groups, so
access granted to the old name ends and access granted to the new one begins.`,
		Args: exactArgs(2, "OLD NEW"),
		RunE: adminRun(g, func(cmd *cobra.Command, c *client.Client, args []string) error {
			gr, err := c.RenameGroup(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "renamed group %s to %s\n", printable(gr.Previous), printable(gr.Name))
			return nil
		}),
	}
	return []*cobra.Command{list, show, members, del, rename}
}
