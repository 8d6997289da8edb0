package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/pki"
	"github.com/keygate/keygate/server"
)

// globals are the flags every command shares.
type globals struct {
	configPath string
	profile    string
	server     string
	ca         string
}

func (g *globals) loadConfig() (*config.Config, error) {
	return g.readConfig(config.Load)
}

// readConfig reads the --config file with load: config.Load for the whole
// of it, config.LoadLocation for where the server is.
func (g *globals) readConfig(load func(string) (*config.Config, error)) (*config.Config, error) {
	if g.configPath == "" {
		return nil, usageError{errors.New("no config: pass --config FILE (the server's keygate.yaml) or set KEYGATE_CONFIG")}
	}
	return load(g.configPath)
}

// addEndpointFlags adds --server and --ca to commands that talk to the
// server as a person.
func (g *globals) addEndpointFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&g.server, "server", os.Getenv("KEYGATE_SERVER"), "keygate API URL, https://HOST:PORT (default $KEYGATE_SERVER, or from --config)")
	cmd.Flags().StringVar(&g.ca, "ca", os.Getenv("KEYGATE_CA"), "keygate's CA bundle (default $KEYGATE_CA, or from --config)")
}

// endpoint finds the server URL and CA bundle: flags, then environment,
// then the server's config file, then the profile.
func (g *globals) endpoint() (serverURL, caFile string, err error) {
	var cfg *config.Config
	if (g.server == "" || g.ca == "") && g.configPath != "" {
		if cfg, err = config.LoadLocation(g.configPath); err != nil {
			return "", "", err
		}
	}
	serverURL, caFile = g.endpointFrom(cfg)
	if serverURL == "" {
		p, _, err := g.loadProfile()
		if err != nil {
			return "", "", err
		}
		serverURL, caFile = p.Server, p.CA
	}
	if serverURL == "" {
		return "", "", usageError{fmt.Errorf("no keygate server: pass --server https://HOST:PORT, set KEYGATE_SERVER, or pass --config FILE; or save it in profile %s once with keygate configure --server https://HOST:PORT --ca FILE%s (keygate login and keygate configure --import save it too)", g.profileName(), profileFlag(g.profileName()))}
	}
	return serverURL, caFile, nil
}

// profileName is the profile commands act on: --profile, then
// $KEYGATE_PROFILE, then default.
func (g *globals) profileName() string {
	if g.profile != "" {
		return g.profile
	}
	return client.DefaultProfile
}

// loadProfile reads the profile commands act on; ok is false when the
// profiles file does not have it.
func (g *globals) loadProfile() (p client.Profile, ok bool, err error) {
	name := g.profileName()
	if err := client.CheckProfileName(name); err != nil {
		return client.Profile{}, false, usageError{err}
	}
	dir, err := client.ConfigDir()
	if err != nil {
		return client.Profile{}, false, err
	}
	ps, err := client.LoadProfiles(dir)
	if err != nil {
		return client.Profile{}, false, err
	}
	p, ok = ps.Get(name)
	return p, ok, nil
}

// personClient is a client acting as the signed-in person: with
// KEYGATE_SESSION when set (for automation), else with the session
// `keygate login` cached for the profile. A cached session is only ever
// sent to the server that issued it.
func (g *globals) personClient() (*client.Client, error) {
	if env := os.Getenv("KEYGATE_SESSION"); env != "" {
		serverURL, caFile, err := g.endpoint()
		if err != nil {
			return nil, err
		}
		return client.New(serverURL, caFile, env)
	}
	cached, err := g.cachedSession()
	if err != nil {
		return nil, err
	}
	return g.sessionClient(cached)
}

// sessionClient is a client with a cached session, for the server it came
// from: --server and the like may name that server, never another.
func (g *globals) sessionClient(cached client.CachedSession) (*client.Client, error) {
	serverURL, caFile, err := g.endpoint()
	var ue usageError
	if errors.As(err, &ue) {
		serverURL, caFile, err = cached.Server, cached.CA, nil
	}
	if err != nil {
		return nil, err
	}
	if !sameServer(serverURL, cached.Server) {
		return nil, usageError{fmt.Errorf("profile %s is signed in to %s, not %s: run keygate login --server %s (with --profile NAME to keep both)", g.profileName(), cached.Server, serverURL, serverURL)}
	}
	if caFile == "" {
		caFile = cached.CA
	}
	return client.New(serverURL, caFile, cached.Credential)
}

// errNotSignedIn is the cause of the error when a profile holds no
// session, for callers with advice of their own.
var errNotSignedIn = errors.New("not signed in")

// cachedSession is the profile's session from keygate login, if it is
// still good.
func (g *globals) cachedSession() (client.CachedSession, error) {
	dir, err := client.ConfigDir()
	if err != nil {
		return client.CachedSession{}, err
	}
	name := g.profileName()
	if err := client.CheckProfileName(name); err != nil {
		return client.CachedSession{}, usageError{err}
	}
	s, err := client.LoadSession(dir, name)
	if errors.Is(err, client.ErrNoSession) {
		return s, usageError{fmt.Errorf("%w (profile %s): run keygate login%s (automation may set KEYGATE_SESSION instead)", errNotSignedIn, name, profileFlag(name))}
	}
	if err != nil {
		return s, err
	}
	if !time.Now().Before(s.Expires) {
		return s, fmt.Errorf("your session (profile %s) expired at %s: run keygate login%s", name, s.Expires.Local().Format(time.DateTime), profileFlag(name))
	}
	return s, nil
}

// profileFlag is what to add to a suggested command to name the profile.
func profileFlag(name string) string {
	if name == client.DefaultProfile {
		return ""
	}
	return " --profile " + name
}

// sameServer compares API URLs as a person writes them: case and a
// trailing slash do not matter.
func sameServer(a, b string) bool {
	norm := func(s string) string { return strings.ToLower(strings.TrimSuffix(s, "/")) }
	return norm(a) == norm(b)
}

// endpointFrom fills what the flags left empty from cfg, which may be nil.
// keygate's CA bundle is the default only for keygate's own listener: at
// public_url a proxy shows its own certificate, which the system's roots
// check.
func (g *globals) endpointFrom(cfg *config.Config) (serverURL, caFile string) {
	serverURL, caFile = g.server, g.ca
	if cfg != nil {
		if serverURL == "" {
			serverURL = cfg.APIURL()
		}
		if caFile == "" && (cfg.PublicURL == "" || !sameServer(serverURL, cfg.PublicURL)) {
			caFile = cfg.DataPath(pki.CAFile)
		}
	}
	return serverURL, caFile
}

// serverURL is the API URL as the config gives it, for messages.
func (g *globals) serverURL() string {
	if cfg, err := g.readConfig(config.LoadLocation); err == nil {
		return cfg.APIURL()
	}
	return g.server
}

// addAdminEndpointFlags adds --server and --ca to cmd and the commands
// under it, for an administrator who runs them as themselves.
func (g *globals) addAdminEndpointFlags(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&g.server, "server", os.Getenv("KEYGATE_SERVER"), "keygate API URL, https://HOST:PORT, with KEYGATE_SESSION (default $KEYGATE_SERVER, or from the profile)")
	cmd.PersistentFlags().StringVar(&g.ca, "ca", os.Getenv("KEYGATE_CA"), "keygate's CA bundle (default $KEYGATE_CA, or from the profile)")
}

// adminClient is a client for the admin API. With --config (or
// KEYGATE_CONFIG) it carries the server's admin credential from data_dir,
// for bootstrap and break-glass; it reads only the config's location keys,
// so that admin commands work while the rest of the file is mid-edit.
// Otherwise it carries the person's own session, as keygate db token does,
// and the server decides whether they are an administrator.
func (g *globals) adminClient() (*client.Client, error) {
	if g.configPath == "" {
		c, err := g.personClient()
		var ue usageError
		if errors.As(err, &ue) && errors.Is(ue.error, errNotSignedIn) {
			return nil, usageError{fmt.Errorf("not signed in (profile %s): run keygate login%s, or pass --config FILE (the server's config) to use the server's admin credential", g.profileName(), profileFlag(g.profileName()))}
		}
		return c, err
	}
	cfg, err := g.readConfig(config.LoadLocation)
	if err != nil {
		return nil, err
	}
	path := cfg.DataPath(server.AdminCredentialFile)
	cred, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read admin credential: %w (it is created when `keygate server --config %s` first starts)", err, g.configPath)
	}
	serverURL, caFile := g.endpointFrom(cfg)
	return client.New(serverURL, caFile, strings.TrimSpace(string(cred)))
}
