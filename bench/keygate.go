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
)

// Who connects through keygate.
const (
	person      = "bench"
	personGroup = "analysts"
	passwordEnv = "KEYGATE_BENCH_ADMIN_PASSWORD"
)

// keygateConfig is e2e's config cut down to one database: people in
// analysts get read-only tokens that live as long as keygate allows, so
// that long runs do not outlive them.
const keygateConfig = `data_dir: ./data
public_hostnames: [localhost, 127.0.0.1]
listen:
  api: 127.0.0.1:%[1]d
  postgres: 127.0.0.1:%[2]d
databases:
  - name: %[3]s
    engine: postgres
    address: %[4]s
    database: %[3]s
    schemas: [public]
    tls: disable
    admin:
      user: %[5]s
      password_env: %[6]s
permission_sets:
  - name: db-readonly
    access: ro
    token_ttl: 1h
  - name: db-readwrite
    access: rw
assignments:
  - group: analysts
    permission_set: db-readonly
    databases: [%[3]s]
  - group: engineers
    permission_set: db-readwrite
    databases: [%[3]s]
shutdown_grace: 2s
`

// keygate is a running `keygate server` and the person who uses it.
type keygate struct {
	*proc.Process
	bin     string
	cfgPath string
	caFile  string
	pgPort  int
	session string
}

// startKeygate writes a config in dir and starts the keygate binary bin in
// front of the upstream at pgAddr, then creates the benchmark's person and
// a sign-in session for them.
func startKeygate(ctx context.Context, bin, dir, pgAddr, adminPassword string) (*keygate, error) {
	apiPort, err := throwaway.FreePort()
	if err != nil {
		return nil, fmt.Errorf("start keygate: %w", err)
	}
	pgPort, err := throwaway.FreePort()
	if err != nil {
		return nil, fmt.Errorf("start keygate: %w", err)
	}
	cfgPath := filepath.Join(dir, "keygate.yaml")
	text := fmt.Sprintf(keygateConfig, apiPort, pgPort, benchDB, pgAddr, adminUser, passwordEnv)
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		return nil, fmt.Errorf("start keygate: write config: %w", err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("start keygate: %w", err)
	}
	cmd := exec.Command(bin, "server", "--config", cfgPath)
	cmd.Env = append(os.Environ(), passwordEnv+"="+adminPassword)
	p, err := proc.Start("keygate", cmd, filepath.Join(dir, "keygate.log"), nil)
	if err != nil {
		return nil, err
	}
	k := &keygate{Process: p, bin: bin, cfgPath: cfgPath, caFile: cfg.DataPath(pki.CAFile), pgPort: pgPort}
	if err := k.WaitHealthy(ctx, k.caFile, cfg.APIURL()+"/healthz"); err != nil {
		k.Stop(stopGrace)
		return nil, err
	}
	if _, err := k.cli(ctx, nil, "admin", "user", "add", person, "--group", personGroup); err != nil {
		k.Stop(stopGrace)
		return nil, err
	}
	out, err := k.cli(ctx, nil, "admin", "session", "create", person, "--ttl", "24h")
	if err != nil {
		k.Stop(stopGrace)
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	k.session = lines[len(lines)-1]
	return k, nil
}

// cli runs the keygate CLI against this server and returns its stdout.
func (k *keygate) cli(ctx context.Context, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, k.bin, append(args, "--config", k.cfgPath)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("keygate %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// token gets a fresh database token for the person, as they would with
// `keygate db token`.
func (k *keygate) token(ctx context.Context) (string, error) {
	out, err := k.cli(ctx, []string{"KEYGATE_SESSION=" + k.session}, "db", "token", benchDB)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}

// version is what `keygate version` prints.
func (k *keygate) version(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, k.bin, "version").Output()
	if err != nil {
		return "unknown: " + err.Error()
	}
	return strings.TrimSpace(string(out))
}
