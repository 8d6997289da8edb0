package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/pki"
	"github.com/keygate/keygate/server"
)

// globals are the flags every command shares.
type globals struct {
	configPath string
	server     string
	ca         string
}

func (g *globals) loadConfig() (*config.Config, error) {
	if g.configPath == "" {
		return nil, usageError{errors.New("no config: pass --config FILE (the server's keygate.yaml) or set KEYGATE_CONFIG")}
	}
	return config.Load(g.configPath)
}

// addEndpointFlags adds --server and --ca to commands that talk to the
// server as a person.
func (g *globals) addEndpointFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&g.server, "server", os.Getenv("KEYGATE_SERVER"), "keygate API URL, https://HOST:PORT (default $KEYGATE_SERVER, or from --config)")
	cmd.Flags().StringVar(&g.ca, "ca", os.Getenv("KEYGATE_CA"), "keygate's CA bundle (default $KEYGATE_CA, or from --config)")
}

// endpoint finds the server URL and CA bundle: flags, then environment,
// then the config file.
func (g *globals) endpoint() (serverURL, caFile string, err error) {
	var cfg *config.Config
	if (g.server == "" || g.ca == "") && g.configPath != "" {
		if cfg, err = config.Load(g.configPath); err != nil {
			return "", "", err
		}
	}
	serverURL, caFile = g.endpointFrom(cfg)
	if serverURL == "" {
		return "", "", usageError{errors.New("no keygate server: pass --server https://HOST:PORT, set KEYGATE_SERVER, or pass --config FILE")}
	}
	return serverURL, caFile, nil
}

// endpointFrom fills what the flags left empty from cfg, which may be nil.
func (g *globals) endpointFrom(cfg *config.Config) (serverURL, caFile string) {
	serverURL, caFile = g.server, g.ca
	if cfg != nil {
		if serverURL == "" {
			serverURL = cfg.APIURL()
		}
		if caFile == "" {
			caFile = cfg.DataPath(pki.CAFile)
		}
	}
	return serverURL, caFile
}

// serverURL is the API URL as the config gives it, for messages.
func (g *globals) serverURL() string {
	if cfg, err := g.loadConfig(); err == nil {
		return cfg.APIURL()
	}
	return g.server
}

// adminClient is a client with the admin credential from data_dir.
func (g *globals) adminClient() (*client.Client, error) {
	cfg, err := g.loadConfig()
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
