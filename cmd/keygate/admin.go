package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/config"
)

func newAdminCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Manage people, groups and sessions on a running server",
		Long: `Manage people, groups and sessions on a running server, through its API.

Administrators run admin commands as themselves: the members of the groups
the server's config names in administrators.groups, signed in with keygate
login (or with KEYGATE_SESSION and --server/--ca). Their actions are audited
under their own names; anyone else is refused (403).

With --config FILE (or KEYGATE_CONFIG), the server's config, the commands use
the server's admin credential in data_dir instead: the way in before any
administrator is signed in, and the break-glass one after. Its actions are
audited as "admin (data_dir credential)".`,
	}
	g.addAdminEndpointFlags(cmd)
	group := &cobra.Command{Use: "group", Short: "Manage groups"}
	group.AddCommand(
		&cobra.Command{
			Use:   "add NAME",
			Short: "Create a group",
			Args:  exactArgs(1, "NAME"),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := g.adminClient()
				if err != nil {
					return err
				}
				gr, err := c.CreateGroup(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "created group %s\n", gr.Name)
				return nil
			},
		},
		&cobra.Command{
			Use:   "add-member GROUP NAME",
			Short: "Add a person to a group",
			Args:  exactArgs(2, "GROUP NAME"),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := g.adminClient()
				if err != nil {
					return err
				}
				gr, err := c.AddMember(cmd.Context(), args[0], args[1])
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s is a member of %s (%s)\n", printable(args[1]), printable(gr.Name), plural(len(gr.Members), "member", "members"))
				return nil
			},
		},
		&cobra.Command{
			Use:   "remove-member GROUP NAME",
			Short: "Remove a person from a group; their live sessions that depended on it end",
			Args:  exactArgs(2, "GROUP NAME"),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := g.adminClient()
				if err != nil {
					return err
				}
				gr, err := c.RemoveMember(cmd.Context(), args[0], args[1])
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s removed from %s (%s)\n", printable(args[1]), printable(gr.Name), plural(len(gr.Members), "member", "members"))
				return nil
			},
		},
	)

	var at string
	history := &cobra.Command{
		Use:   "history GROUP [--at TIME]",
		Short: "Who joined and left a group, and when; or who was in it at a moment",
		Long: `Show every membership of a group, past and present, with when it began,
when it ended and who made the change (the administrator's name, "admin
(data_dir credential)", or scim:<token name>). With
--at, show who was a member at that moment.

TIME is RFC 3339 (2026-11-23T10:00:00Z), a local date and time
(2026-11-23 10:00), a date (2026-11-23), or a duration ago (2h, 7d).`,
		Args: exactArgs(1, "GROUP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var when time.Time
			if at != "" {
				t, err := parseWhen(at, time.Now())
				if err != nil {
					return usageError{err}
				}
				when = t
			}
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			h, err := c.GroupHistory(cmd.Context(), args[0], when)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if h.At != nil {
				fmt.Fprintf(out, "members of %s at %s:\n", h.Group, h.At.Local().Format(time.DateTime))
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "USER\tJOINED\tLEFT\tBY")
			for _, m := range h.Memberships {
				left := "-"
				if m.Left != nil {
					left = m.Left.Local().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", printable(m.User), m.Joined.Local().Format(time.DateTime), left, printable(m.Source))
			}
			return tw.Flush()
		},
	}
	history.Flags().StringVar(&at, "at", "", "show the members at this moment instead of the whole history")
	group.AddCommand(history)
	group.AddCommand(newGroupCmds(g)...)

	user := &cobra.Command{Use: "user", Short: "Manage people"}
	var email string
	var groups []string
	add := &cobra.Command{
		Use:   "add NAME [--email E] [--group G]...",
		Short: "Create a person, optionally in groups (a group named for the first time is created)",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			u, err := c.CreateUser(cmd.Context(), api.UserRequest{Name: args[0], Email: email, Groups: groups})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created user %s in groups %v\n", u.Name, u.Groups)
			return nil
		},
	}
	add.Flags().StringVar(&email, "email", "", "the person's email address")
	add.Flags().StringArrayVar(&groups, "group", nil, "a group to put the person in (repeatable)")
	user.AddCommand(add, &cobra.Command{
		Use:   "disable NAME",
		Short: "Disable a person: their sign-in sessions are revoked, live sessions end within a second, new tokens are refused",
		Long: `Disable a person. Every sign-in session they hold is revoked (recorded in
the audit log), so database tokens they have stop working, their live gateway
sessions end within a second, and new tokens are refused. Enabling them again
(keygate admin user enable NAME) brings no session back: they sign in again.`,
		Args: exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			u, err := c.DisableUser(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if !u.Changed {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is already disabled\n", printable(u.Name))
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "disabled %s; revoked %s\n", printable(u.Name), plural(len(u.RevokedSessions), "sign-in session", "sign-in sessions"))
			return nil
		},
	})
	user.AddCommand(newUserCmds(g)...)

	session := &cobra.Command{Use: "session", Short: "Manage sign-in sessions"}
	session.AddCommand(newSessionCreateCmd(g), newSessionListCmd(g), newSessionRevokeCmd(g))

	cmd.AddCommand(group, user, session, newLiveCmd(g), newSCIMTokenCmd(g), newReloadCmd(g))
	return cmd
}

func newSCIMTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scim-token",
		Short: "Manage the bearer tokens identity providers provision people with (SCIM)",
	}
	var name, ttl string
	create := &cobra.Command{
		Use:   "create --name NAME [--ttl 365d]",
		Short: "Make a SCIM token; prints it alone on the last line, this once",
		Long: `Make a bearer token for an identity provider's SCIM provisioning. Paste it
as the Secret Token in Azure AD (Entra ID) or as the API token in Okta, with
https://HOST:PORT/scim/v2 as the Tenant URL / base URL. It is shown once;
keygate keeps only its hash. Changes made with it are audited under its name.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return usageError{errors.New("--name is required: what the token is for, such as azure-ad")}
			}
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			t, err := c.CreateProvisioningToken(cmd.Context(), name, ttl)
			if err != nil {
				return err
			}
			expires := "never expires"
			if t.ExpiresAt != nil {
				expires = "expires " + t.ExpiresAt.Local().Format(time.DateTime)
			}
			// The config's public_url is what an identity provider
			// reaches; an administrator signed in reaches the same.
			tenant := c.Server()
			if g.configPath != "" {
				tenant = g.serverURL()
			}
			fmt.Fprintf(cmd.OutOrStdout(), "SCIM token %s, %s. Tenant URL: %s/scim/v2\n%s\n", t.Name, expires, tenant, t.Token)
			return nil
		},
	}
	create.Flags().StringVar(&name, "name", "", "what the token is for, such as azure-ad or okta (required)")
	create.Flags().StringVar(&ttl, "ttl", "", "how long it lasts, such as 365d (default: until revoked)")
	list := &cobra.Command{
		Use:   "list",
		Short: "List SCIM tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			tokens, err := c.ListProvisioningTokens(cmd.Context())
			if err != nil {
				return err
			}
			when := func(t *time.Time) string {
				if t == nil {
					return "-"
				}
				return t.Local().Format(time.DateTime)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tCREATED\tEXPIRES\tREVOKED\tLAST USED")
			for _, t := range tokens {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", printable(t.Name), when(&t.Created), when(t.ExpiresAt), when(t.RevokedAt), when(t.LastUsed))
			}
			return tw.Flush()
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a SCIM token: the identity provider's next request is refused",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			if err := c.RevokeProvisioningToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked SCIM token %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

// parseWhen reads a moment: RFC 3339, a local date and time, a local date,
// or a duration before now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	if d, err := config.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("cannot read time %q: use 2026-11-23T10:00:00Z, 2026-11-23 10:00, 2026-11-23, or a duration ago such as 2h", s)
}

// exactArgs is cobra.ExactArgs with a message that names the arguments.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s needs %s (got %d arguments); see --help", cmd.CommandPath(), names, len(args))}
		}
		return nil
	}
}

func newSessionListCmd(g *globals) *cobra.Command {
	var user string
	var all bool
	cmd := &cobra.Command{
		Use:   "list [--user NAME] [--all]",
		Short: "List sign-in sessions: who, how they signed in, MFA, expiry",
		Long: `List sign-in sessions (from keygate login, or admin session create), active
ones only unless --all. SOURCE is how the person signed in: saml, oidc or
admin. Revoke one with keygate admin session revoke ID.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			sessions, err := c.ListSessions(cmd.Context(), user, all)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tUSER\tSOURCE\tMFA\tCREATED\tEXPIRES\tSTATUS")
			for _, s := range sessions {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, printable(s.User), printable(s.Source), yesNo(s.MFA),
					s.Created.Local().Format(time.DateTime), s.Expires.Local().Format(time.DateTime), s.Status)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "only this person's sessions")
	cmd.Flags().BoolVar(&all, "all", false, "include expired and revoked sessions")
	return cmd
}

func newSessionRevokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a sign-in session: its tokens stop working and its gateway sessions end",
		Long: `Revoke a sign-in session. Database tokens it issued are refused from now on,
and gateway sessions opened with them end within a second. The person keeps
their other sessions; to cut off a person entirely, disable them (keygate
admin user disable NAME, or deactivate them in the identity provider).`,
		Args: exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			s, err := c.RevokeSession(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked session %s of %s\n", s.ID, printable(s.User))
			return nil
		},
	}
}

func newReloadCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Make the server read its config again and apply its access rules now",
		Long: `Make the running server read its config file again, as SIGHUP does, and
apply permission sets, assignments, database tags and removed databases at
once. Live sessions are decided again; those whose access is gone end, and
their number is printed. A config with errors is refused with its file and
line, and the running rules stay. Settings that need a restart (listeners,
data_dir, sso, a database's address, a new database) are named.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			res, err := c.Reload(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			named := ""
			if res.NamedAssignments > 0 {
				named = fmt.Sprintf(" (and %d from the group naming rule)", res.NamedAssignments)
			}
			fmt.Fprintf(out, "reloaded %s: %s, %s%s, %s; %s ended\n", res.Path,
				plural(res.PermissionSets, "permission set", "permission sets"), plural(res.Assignments, "assignment", "assignments"), named,
				plural(res.Databases, "database", "databases"), plural(res.SessionsEnded, "live session", "live sessions"))
			if len(res.RestartNeeded) > 0 {
				fmt.Fprintf(out, "changed but applied only on restart: %s\n", strings.Join(res.RestartNeeded, ", "))
			}
			return nil
		},
	}
}
