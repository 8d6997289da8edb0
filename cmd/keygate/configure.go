package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/config"
)

// A server without sign-in (no sso section) still serves people: an
// administrator creates a session for them and hands it over as a profile
// file, which keygate configure --import installs the way keygate login
// would have. Both ends of that file live here.

// newSessionCreateCmd is keygate admin session create.
func newSessionCreateCmd(g *globals) *cobra.Command {
	var (
		ttl, profileOut string
		force           bool
	)
	cmd := &cobra.Command{
		Use:   "create NAME [--ttl 8h] [--profile-out FILE [--force]]",
		Short: "Create a sign-in session for a person; prints the credential alone on the last line",
		Long: `Create a sign-in session for a person and print its credential, alone on the
last line of stdout, shown this once. Automation uses it as KEYGATE_SESSION:

  export KEYGATE_SESSION=$(keygate admin session create alice --config keygate.yaml | tail -n1)
  keygate db token orders --config keygate.yaml

For a person on a server without sign-in (no sso section in its config),
--profile-out FILE also writes a ready profile to send them, as a secret:

  keygate admin session create alice --config keygate.yaml --profile-out alice.keygate.json

and they install it with keygate configure --import alice.keygate.json, after
which keygate whoami and keygate db token need no flags. FILE is written with
mode 0600 and never replaced unless --force. It is a JSON object:

  keygate_profile  the format's version, 1; keygate refuses versions newer
                   than it knows
  profile          a suggested profile name: the server's host name
  server           the API URL: public_url, or else the listen.api URL
  ca_pem           keygate's CA bundle, PEM; absent when server is public_url,
                   whose certificate the system's roots verify
  user             the person
  session_id       the session, as keygate admin session list shows it
  credential       the session credential: a secret
  expires_at       when the session ends, RFC 3339`,
		Args: exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if profileOut != "" && !force {
				if _, err := os.Lstat(profileOut); err == nil {
					return usageError{fmt.Errorf("%s already exists: choose another file, or pass --force to replace it", profileOut)}
				}
			}
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			var doc client.ProfileFile
			if profileOut != "" {
				if doc, err = g.profileFileFor(); err != nil {
					return err
				}
			}
			s, err := c.CreateSession(cmd.Context(), args[0], ttl)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "session %s for %s, expires %s\n%s\n", s.ID, s.User, s.ExpiresAt.Local().Format("2006-01-02 15:04:05 MST"), s.Credential)
			if profileOut == "" {
				return nil
			}
			doc.User, doc.SessionID, doc.Credential, doc.Expires = s.User, s.ID, s.Credential, s.ExpiresAt
			if err := client.WriteProfileFile(profileOut, doc, force); err != nil {
				return fmt.Errorf("created session %s, but %w (revoke it with keygate admin session revoke %s)", s.ID, err, s.ID)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Wrote %s for %s (mode 0600; it holds the session credential). Send it to them as a secret; they run:\n  keygate configure --import %s\n",
				profileOut, s.User, filepath.Base(profileOut))
			return nil
		},
	}
	cmd.Flags().StringVar(&ttl, "ttl", "8h", "how long the session lasts (at most 7d)")
	cmd.Flags().StringVar(&profileOut, "profile-out", "", "also write a profile file for the person to install with keygate configure --import (see above)")
	cmd.Flags().BoolVar(&force, "force", false, "replace the --profile-out file if it exists")
	return cmd
}

// profileFileFor is a profile file without its session: where people reach
// the server as the config says, and the CA bundle when they need it.
func (g *globals) profileFileFor() (client.ProfileFile, error) {
	cfg, err := g.readConfig(config.LoadLocation)
	if err != nil {
		return client.ProfileFile{}, err
	}
	serverURL, caFile := g.endpointFrom(cfg)
	doc := client.ProfileFile{Version: client.ProfileFileVersion, Server: serverURL, Profile: client.SuggestedProfileName(serverURL)}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return client.ProfileFile{}, fmt.Errorf("read keygate's CA bundle for the profile file: %w", err)
		}
		doc.CAPEM = string(pem)
	}
	return doc, nil
}

func newConfigureCmd(g *globals) *cobra.Command {
	var importFile string
	var replaceCA bool
	cmd := &cobra.Command{
		Use:   "configure (--server URL [--ca FILE] | --import FILE) [--profile P]",
		Short: "Save a profile without signing in: a server and its CA, or a profile file from an administrator",
		Long: `Save a profile without signing in, like aws configure.

  keygate configure --server https://keygate.example.com:8443 --ca keygate-ca.pem

checks that the server answers and that the CA bundle verifies its
certificate, then saves both in the profile (see keygate login --help for
the profiles file), so keygate login and KEYGATE_SESSION need no flags.

  keygate configure --import alice.keygate.json

installs a profile file an administrator made for you with
keygate admin session create NAME --profile-out FILE, for a server without
sign-in: the CA bundle goes to ca-PROFILE.pem in the config directory (use
it as psql's sslrootcert), the server and CA into the profile, and the
session into the profile's session cache, as keygate login would. Then
keygate whoami and keygate db token DB work with no flags.

Without --profile (or KEYGATE_PROFILE), --import uses the default profile,
unless that one is for another server; then it uses the name the file
suggests. The file's CA bundle is saved only once the server answered
through it; a profile that already trusts another CA for the server keeps
it unless --replace-ca says the server's CA really changed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case importFile != "" && (cmd.Flags().Changed("server") || cmd.Flags().Changed("ca")):
				return usageError{errors.New("--import takes the server and CA from the file: pass either --import FILE or --server URL --ca FILE")}
			case importFile != "":
				return runImport(cmd, g, importFile, replaceCA)
			case g.server != "":
				return runConfigure(cmd, g)
			}
			return usageError{errors.New("nothing to configure: pass --server URL --ca FILE, or --import FILE with a profile file from an administrator")}
		},
	}
	cmd.Flags().StringVar(&importFile, "import", "", "install a profile file from keygate admin session create --profile-out")
	cmd.Flags().BoolVar(&replaceCA, "replace-ca", false, "with --import: let the file replace the CA bundle the profile trusts for its server")
	g.addEndpointFlags(cmd)
	return cmd
}

// runConfigure saves --server and --ca in the profile once the server has
// shown it answers with a certificate the CA verifies.
func runConfigure(cmd *cobra.Command, g *globals) error {
	name := g.profileName()
	if err := client.CheckProfileName(name); err != nil {
		return usageError{err}
	}
	caFile := g.ca
	if caFile != "" {
		abs, err := filepath.Abs(caFile)
		if err != nil {
			return err
		}
		caFile = abs
	}
	if err := checkServer(cmd.Context(), g.server, caFile); err != nil {
		return err
	}
	dir, err := client.ConfigDir()
	if err != nil {
		return err
	}
	ps, err := client.LoadProfiles(dir)
	if err != nil {
		return err
	}
	if err := ps.Set(client.Profile{Name: name, Server: g.server, CA: caFile}); err != nil {
		return err
	}
	out := cmd.ErrOrStderr()
	fmt.Fprintf(out, "Saved profile %s in %s: server %s, CA %s.\n", name, ps.Path(), g.server, orSystemRoots(caFile))
	fmt.Fprintf(out, "Next: keygate login%s (or, on a server without sign-in, keygate configure --import FILE with a profile file from an administrator).\n", profileFlag(name))
	return nil
}

// checkServer fetches the server's CA bundle through a client that trusts
// caFile: it fails, saying what to do, unless a keygate server answers at
// serverURL with a certificate caFile verifies.
func checkServer(ctx context.Context, serverURL, caFile string) error {
	c, err := client.New(serverURL, caFile, "")
	if err != nil {
		return usageError{err}
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	_, err = c.CABundle(ctx)
	return err
}

// runImport installs a profile file: CA bundle, profile and session.
func runImport(cmd *cobra.Command, g *globals, path string, replaceCA bool) error {
	f, err := client.ReadProfileFile(path)
	if err != nil {
		return err
	}
	if !time.Now().Before(f.Expires) {
		return fmt.Errorf("the session in %s expired at %s: ask an administrator for a new profile file (keygate admin session create %s --profile-out FILE)",
			path, f.Expires.Local().Format(time.DateTime), f.User)
	}
	dir, err := client.ConfigDir()
	if err != nil {
		return err
	}
	ps, err := client.LoadProfiles(dir)
	if err != nil {
		return err
	}
	name, err := importProfileName(g, ps, f)
	if err != nil {
		return err
	}
	caFile, checkCA := "", ""
	if f.CAPEM != "" {
		caFile = filepath.Join(dir, "ca-"+name+".pem")
		if err := keepTrustedCA(caFile, f.CAPEM, path, replaceCA); err != nil {
			return err
		}
		// The server is checked through the file's CA before it replaces
		// anything the profile trusts.
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("save the CA bundle: %w", err)
		}
		tmp, err := os.CreateTemp(dir, ".ca-import-*.pem")
		if err != nil {
			return fmt.Errorf("save the CA bundle: %w", err)
		}
		tmp.Close()
		defer os.Remove(tmp.Name())
		checkCA = tmp.Name()
		if err := writeCA(checkCA, f.CAPEM); err != nil {
			return err
		}
	}
	c, err := client.New(f.Server, checkCA, f.Credential)
	if err != nil {
		return err
	}
	w, err := c.WhoAmI(cmd.Context())
	if client.IsStatus(err, http.StatusUnauthorized) {
		return fmt.Errorf("%s refuses the session in %s (%w): it was revoked or its person disabled; ask an administrator for a new profile file", f.Server, path, err)
	}
	if err != nil {
		return fmt.Errorf("check the session in %s: %w", path, err)
	}
	if checkCA != "" {
		if err := os.Rename(checkCA, caFile); err != nil {
			return fmt.Errorf("save the CA bundle: %w", err)
		}
	}
	if err := ps.Set(client.Profile{Name: name, Server: f.Server, CA: caFile}); err != nil {
		return err
	}
	err = client.SaveSession(dir, name, client.CachedSession{Server: f.Server, CA: caFile, Credential: f.Credential,
		ID: w.SessionID, User: w.User, Expires: w.ExpiresAt, MFA: w.MFA, Method: w.Method})
	if err != nil {
		return err
	}
	printImported(cmd.ErrOrStderr(), importSummary{file: path, profile: name, profiles: ps.Path(), server: f.Server, ca: caFile,
		session: client.SessionCachePath(dir, name), user: w.User, expires: w.ExpiresAt})
	return nil
}

// importProfileName is the profile an import goes to: the one named by
// --profile or KEYGATE_PROFILE; else default, unless default is for
// another server, when the file's suggested name. An existing profile for
// another server is never repointed by an import.
func importProfileName(g *globals, ps *client.Profiles, f client.ProfileFile) (string, error) {
	name := g.profile
	if name == "" {
		name = client.DefaultProfile
		if p, ok := ps.Get(name); ok && p.Server != "" && !sameServer(p.Server, f.Server) {
			name = f.Profile
		}
	}
	if err := client.CheckProfileName(name); err != nil {
		return "", usageError{err}
	}
	if p, ok := ps.Get(name); ok && p.Server != "" && !sameServer(p.Server, f.Server) {
		return "", usageError{fmt.Errorf("profile %s in %s is for %s, not %s: import into another profile with --profile NAME", name, ps.Path(), p.Server, f.Server)}
	}
	return name, nil
}

// keepTrustedCA refuses a profile file whose CA bundle differs from the one
// the profile already trusts at caFile, unless replace: a file that
// swapped the CA would have keygate and psql trust whoever holds its key.
func keepTrustedCA(caFile, pem, path string, replace bool) error {
	old, err := os.ReadFile(caFile)
	if errors.Is(err, fs.ErrNotExist) || replace {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the CA bundle the profile trusts: %w", err)
	}
	if bytes.Equal(bytes.TrimSpace(old), bytes.TrimSpace([]byte(pem))) {
		return nil
	}
	return usageError{fmt.Errorf("%s brings a CA bundle (SHA-256 %s) other than the one this profile trusts in %s (SHA-256 %s): if your administrator replaced keygate's CA, import with --replace-ca; otherwise do not use this file",
		path, fingerprint([]byte(pem)), caFile, fingerprint(old))}
}

// fingerprint is a short SHA-256 of a CA bundle, for a person to compare.
func fingerprint(pem []byte) string {
	sum := sha256.Sum256(bytes.TrimSpace(pem))
	return hex.EncodeToString(sum[:8])
}

// writeCA saves a CA bundle where keygate and psql can read it; it is
// public, so 0644 like keygate's own ca.pem.
func writeCA(path, pem string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save the CA bundle: %w", err)
	}
	if err := os.WriteFile(path, []byte(pem), 0o644); err != nil {
		return fmt.Errorf("save the CA bundle: %w", err)
	}
	// WriteFile keeps the mode of a file that was there.
	if err := os.Chmod(path, 0o644); err != nil {
		return fmt.Errorf("save the CA bundle: %w", err)
	}
	return nil
}

// importSummary is what an import did, for the person.
type importSummary struct {
	file, profile, profiles, server, ca, session, user string
	expires                                            time.Time
}

func printImported(out io.Writer, s importSummary) {
	fmt.Fprintf(out, "Imported %s: signed in as %s until %s, in profile %s.\n", s.file, s.user, s.expires.Local().Format("2006-01-02 15:04 MST"), s.profile)
	fmt.Fprintf(out, "  server   %s (saved in %s)\n", s.server, s.profiles)
	fmt.Fprintf(out, "  CA       %s\n", orSystemRoots(s.ca))
	fmt.Fprintf(out, "  session  %s (mode 0600)\n", s.session)
	if s.ca != "" {
		fmt.Fprintf(out, "Use %s as sslrootcert when you connect to the gateway.\n", s.ca)
	}
	fmt.Fprintf(out, "You may delete %s now. Next: keygate db token DATABASE%s\n", s.file, profileFlag(s.profile))
}

func orSystemRoots(caFile string) string {
	if caFile == "" {
		return "(the system's roots)"
	}
	return caFile
}
