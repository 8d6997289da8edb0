package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/api"
)

func newAdminCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Manage people, groups and sessions on a running server",
		Long: `Manage people, groups and sessions on a running server, through its API.
Admin commands need --config FILE (or KEYGATE_CONFIG): the server's config,
which locates the API, the CA and the admin credential in data_dir.`,
	}
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
				fmt.Fprintf(cmd.OutOrStdout(), "%s is a member of %s (%d members)\n", args[1], gr.Name, len(gr.Members))
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
				fmt.Fprintf(cmd.OutOrStdout(), "%s removed from %s (%d members)\n", args[1], gr.Name, len(gr.Members))
				return nil
			},
		},
	)

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
		Short: "Disable a person: their live sessions end within a second and new tokens are refused",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			u, err := c.DisableUser(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "disabled %s\n", u.Name)
			return nil
		},
	})

	session := &cobra.Command{Use: "session", Short: "Manage sign-in sessions"}
	var ttl string
	create := &cobra.Command{
		Use:   "create NAME [--ttl 8h]",
		Short: "Create a sign-in session for a person; prints the credential alone on the last line",
		Long: `Create a sign-in session for a person and print its credential, alone on the
last line of stdout, shown this once. The person uses it as KEYGATE_SESSION:

  export KEYGATE_SESSION=$(keygate admin session create alice --config keygate.yaml | tail -n1)
  keygate db token orders --config keygate.yaml`,
		Args: exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			s, err := c.CreateSession(cmd.Context(), args[0], ttl)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "session %s for %s, expires %s\n%s\n", s.ID, s.User, s.ExpiresAt.Local().Format("2006-01-02 15:04:05 MST"), s.Credential)
			return nil
		},
	}
	create.Flags().StringVar(&ttl, "ttl", "8h", "how long the session lasts (at most 7d)")
	session.AddCommand(create)

	cmd.AddCommand(group, user, session)
	return cmd
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
