package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/keygate/keygate/bench/internal/proc"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/internal/throwaway"
	"github.com/keygate/keygate/pki"
	"github.com/keygate/keygate/scim"
)

// keygateConfig has no databases: SCIM only writes keygate's own store, and
// keygate starts without any upstream. The PostgreSQL gateway listens on
// a free port of its own and stays idle.
const keygateConfig = `data_dir: ./data
public_hostnames: [localhost, 127.0.0.1]
listen:
  api: 127.0.0.1:%d
  postgres: 127.0.0.1:%d
shutdown_grace: 2s
`

// keygate is a running `keygate server`.
type keygate struct {
	*proc.Process
	bin     string
	cfgPath string
	caFile  string
	dataDir string
	scimURL string
}

// startKeygate writes a config in dir and starts the keygate binary bin on
// free loopback ports, waiting until its API answers over TLS.
func startKeygate(ctx context.Context, bin, dir string) (*keygate, error) {
	apiPort, err := throwaway.FreePort()
	if err != nil {
		return nil, fmt.Errorf("start keygate: %w", err)
	}
	pgPort, err := throwaway.FreePort()
	if err != nil {
		return nil, fmt.Errorf("start keygate: %w", err)
	}
	cfgPath := filepath.Join(dir, "keygate.yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, keygateConfig, apiPort, pgPort), 0o600); err != nil {
		return nil, fmt.Errorf("start keygate: write config: %w", err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("start keygate: %w", err)
	}
	p, err := proc.Start("keygate", exec.Command(bin, "server", "--config", cfgPath), filepath.Join(dir, "keygate.log"), nil)
	if err != nil {
		return nil, err
	}
	k := &keygate{Process: p, bin: bin, cfgPath: cfgPath, caFile: cfg.DataPath(pki.CAFile),
		dataDir: cfg.Resolve(cfg.DataDir), scimURL: cfg.APIURL() + scim.Prefix}
	if err := k.WaitHealthy(ctx, k.caFile, cfg.APIURL()+"/healthz"); err != nil {
		k.Stop(stopGrace)
		return nil, err
	}
	return k, nil
}

// scimToken makes a provisioning token with the CLI, as an admin would for
// an identity provider.
func (k *keygate) scimToken(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, k.bin, "admin", "scim-token", "create", "--name", "bench", "--config", k.cfgPath)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("keygate admin scim-token create: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	// The token is alone on the last line.
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	token := strings.TrimSpace(lines[len(lines)-1])
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", fmt.Errorf("keygate admin scim-token create: no token on the last line of its output:\n%s", stdout.String())
	}
	return token, nil
}

// version is what `keygate version` prints.
func (k *keygate) version(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, k.bin, "version").Output()
	if err != nil {
		return "unknown: " + err.Error()
	}
	return strings.TrimSpace(string(out))
}
