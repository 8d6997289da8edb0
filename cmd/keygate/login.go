package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/client"
)

func newLoginCmd(g *globals) *cobra.Command {
	var noBrowser bool
	cmd := &cobra.Command{
		Use:   "login [--profile P] [--server URL --ca FILE] [--no-browser]",
		Short: "Sign in through your company identity provider, like aws sso login",
		Long: `Sign in through your company identity provider (SAML or OIDC, as the keygate
server is set up) and keep the session for later commands.

keygate login prints a link and a code, and opens the link in your browser
when there is one. Sign in there as you do for other company applications,
check that the page shows the same code, and the command finishes here. The
session lasts as long as the server's sso.session_duration (8h by default).

The session is kept in the config directory ($KEYGATE_CONFIG_DIR, or
keygate/ under your user config directory) as sessions/PROFILE.json, mode
0600. Profiles live beside it in the file config, in the format of
~/.aws/config:

  [default]
  server = https://keygate.example.com:8443
  ca = /home/me/keygate-ca.pem
  database = orders
  access = ro

  [profile staging]
  server = https://keygate.staging.example.com:8443

The first keygate login --server URL --ca FILE for a profile saves them
there, so later commands need no flags; keygate configure saves them without
signing in. On a server without sign-in set up, an administrator makes you a
profile file instead, which keygate configure --import installs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLogin(cmd, g, !noBrowser)
		},
	}
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "print the link without opening a browser (for remote shells)")
	g.addEndpointFlags(cmd)
	return cmd
}

func runLogin(cmd *cobra.Command, g *globals, openBrowser bool) error {
	ctx := cmd.Context()
	stderr := cmd.ErrOrStderr()
	name := g.profileName()
	profile, known, err := g.loadProfile()
	if err != nil {
		return err
	}
	serverURL, caFile, err := g.endpoint()
	if err != nil {
		return err
	}
	if caFile != "" {
		if caFile, err = filepath.Abs(caFile); err != nil {
			return err
		}
	}
	c, err := client.New(serverURL, caFile, "")
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	da, err := c.StartSignIn(ctx, "keygate CLI on "+host)
	if errors.Is(err, client.ErrNoSignIn) {
		return fmt.Errorf("%w: ask an administrator for a profile file, made with `keygate admin session create NAME --profile-out FILE`, and run `keygate configure --import FILE`", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "To sign in, open this link in a browser:\n\n    %s\n\nand check that the page shows the code %s.\n", da.VerificationURIComplete, da.UserCode)
	if openBrowser {
		if err := browse(da.VerificationURIComplete); err != nil {
			fmt.Fprintf(stderr, "(could not open a browser: %v; open the link yourself)\n", err)
		}
	}
	fmt.Fprintf(stderr, "Waiting for the sign-in (the code expires in %s)...\n", time.Until(da.Expiry).Round(time.Minute))
	s, err := c.FinishSignIn(ctx, da)
	if err != nil {
		return err
	}
	dir, err := client.ConfigDir()
	if err != nil {
		return err
	}
	err = client.SaveSession(dir, name, client.CachedSession{Server: serverURL, CA: caFile, Credential: s.Credential,
		ID: s.ID, User: s.User, Expires: s.Expires, MFA: s.MFA, Method: s.Method})
	if err != nil {
		return err
	}
	if !known {
		profile.Server, profile.CA = serverURL, caFile
		ps, err := client.LoadProfiles(dir)
		if err == nil {
			err = ps.Add(profile)
		}
		if err != nil {
			return fmt.Errorf("signed in, but %w", err)
		}
		fmt.Fprintf(stderr, "Saved profile %s (server %s) in %s.\n", name, serverURL, ps.Path())
	}
	fmt.Fprintf(stderr, "Signed in as %s through %s (MFA: %s) until %s; profile %s.\n",
		s.User, s.Method, yesNo(s.MFA), s.Expires.Local().Format("2006-01-02 15:04 MST"), name)
	return nil
}

// browse opens url in the person's browser, if one can be found: $BROWSER,
// or the desktop's opener when a display is there.
func browse(url string) error {
	var argv []string
	switch b := os.Getenv("BROWSER"); {
	case b != "":
		argv = append(strings.Fields(b), url)
	case runtime.GOOS == "darwin":
		argv = []string{"open", url}
	case runtime.GOOS == "windows":
		argv = []string{"rundll32", "url.dll,FileProtocolHandler", url}
	case os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != "":
		argv = []string{"xdg-open", url}
	default:
		return errors.New("no display")
	}
	c := exec.Command(argv[0], argv[1:]...)
	c.Stdout, c.Stderr = io.Discard, io.Discard
	if err := c.Start(); err != nil {
		return err
	}
	go c.Wait()
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func newLogoutCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "logout [--profile P]",
		Short: "End the profile's session: its tokens stop working and the cached session is removed",
		Long: `End the sign-in session keygate login cached for the profile. The server
revokes it, so database tokens it issued stop working and gateway sessions
opened with them end; the cached session file is removed even when the
server cannot be reached.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name := g.profileName()
			if err := client.CheckProfileName(name); err != nil {
				return usageError{err}
			}
			dir, err := client.ConfigDir()
			if err != nil {
				return err
			}
			cached, err := client.LoadSession(dir, name)
			if errors.Is(err, client.ErrNoSession) {
				fmt.Fprintf(cmd.ErrOrStderr(), "Not signed in (profile %s).\n", name)
				return nil
			}
			if err != nil {
				return err
			}
			var revokeErr error
			if time.Now().Before(cached.Expires) {
				c, err := g.sessionClient(cached)
				if err == nil {
					err = c.Logout(cmd.Context())
				}
				revokeErr = err
			}
			if err := client.RemoveSession(dir, name); err != nil {
				return err
			}
			if revokeErr != nil && !client.IsStatus(revokeErr, http.StatusUnauthorized) {
				return fmt.Errorf("removed the cached session, but the server did not revoke it: %w", revokeErr)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Signed out (profile %s).\n", name)
			return nil
		},
	}
	g.addEndpointFlags(cmd)
	return cmd
}

func newWhoAmICmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "whoami [--profile P] [-o text|json]",
		Short: "Show who you are signed in as: user, groups, tags, MFA and session expiry",
		Long: `Show the person keygate sees behind your session, like aws sts
get-caller-identity: the user, their groups (provisioned ones and those the
identity provider asserted at sign-in), their tags (principal tags that
drive attribute-based access), whether the sign-in used MFA, and when the
session expires.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return usageError{fmt.Errorf("--output %q: use text or json", output)}
			}
			c, err := g.personClient()
			if err != nil {
				return err
			}
			w, err := c.WhoAmI(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				return printJSON(out, w)
			}
			keys := make([]string, 0, len(w.Tags))
			for k := range w.Tags {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			tags := make([]string, len(keys))
			for i, k := range keys {
				tags[i] = printable(k) + "=" + printable(w.Tags[k])
			}
			groups := make([]string, len(w.Groups))
			for i, gr := range w.Groups {
				groups[i] = printable(gr)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "User:\t%s\n", printable(w.User))
			fmt.Fprintf(tw, "Groups:\t%s\n", orNone(strings.Join(groups, ", ")))
			fmt.Fprintf(tw, "Tags:\t%s\n", orNone(strings.Join(tags, ", ")))
			fmt.Fprintf(tw, "MFA:\t%s\n", yesNo(w.MFA))
			fmt.Fprintf(tw, "Administrator:\t%s\n", yesNo(w.Administrator))
			fmt.Fprintf(tw, "Session:\t%s (%s)\n", w.SessionID, printable(w.Method))
			fmt.Fprintf(tw, "Expires:\t%s (in %s)\n", w.ExpiresAt.Local().Format("2006-01-02 15:04:05 MST"), time.Until(w.ExpiresAt).Round(time.Minute))
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	g.addEndpointFlags(cmd)
	return cmd
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
