package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/keygate/keygate/bench/internal/proc"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/internal/throwaway"
	"github.com/keygate/keygate/pki"
)

// Who connects through keygate.
const (
	person      = "bench"
	personGroup = "analysts"
)

// The environment variables that pass the admin users' passwords to
// keygate.
const (
	pgPasswordEnv = "KEYGATE_BENCH_ADMIN_PASSWORD"
	myPasswordEnv = "KEYGATE_BENCH_MYSQL_ADMIN_PASSWORD"
)

// upstreamDB is one database keygate serves in the benchmark.
type upstreamDB struct {
	Name     string // keygate's name, which people connect to
	Engine   string // config's engine: postgres or mysql
	Address  string
	Database string // the upstream database
	// PasswordEnv is the environment variable that passes the admin
	// user's password to keygate.
	PasswordEnv string
	password    string
}

// keygateConfig is e2e's config cut down to the benchmark's databases:
// people in analysts get read-only tokens that live as long as keygate
// allows, so that long runs do not outlive them. Both gateways get free
// ports: keygate binds the PostgreSQL one even when it serves only MySQL,
// and the default ports may be taken.
var keygateConfig = template.Must(template.New("keygate.yaml").Parse(`data_dir: ./data
public_hostnames: [localhost, 127.0.0.1]
listen:
  api: 127.0.0.1:{{.APIPort}}
  postgres: 127.0.0.1:{{.PostgresPort}}
  mysql: 127.0.0.1:{{.MySQLPort}}
databases:
{{- range .Databases}}
  - name: {{.Name}}
    engine: {{.Engine}}
    address: {{.Address}}
    database: {{.Database}}
    tls: disable
    admin:
      user: ` + adminUser + `
      password_env: {{.PasswordEnv}}
{{- end}}
permission_sets:
  - name: db-readonly
    access: ro
    token_ttl: 1h
  - name: db-readwrite
    access: rw
assignments:
  - group: analysts
    permission_set: db-readonly
    databases: [{{.Names}}]
  - group: engineers
    permission_set: db-readwrite
    databases: [{{.Names}}]
shutdown_grace: 2s
`))

// keygate is a running `keygate server` and the person who uses it.
type keygate struct {
	*proc.Process
	bin     string
	cfgPath string
	caFile  string
	pgPort  int
	myPort  int
	session string
}

// startKeygate writes a config in dir and starts the keygate binary bin in
// front of dbs, then creates the benchmark's person and a sign-in session
// for them.
func startKeygate(ctx context.Context, bin, dir string, dbs []upstreamDB) (*keygate, error) {
	var ports [3]int
	for i := range ports {
		p, err := throwaway.FreePort()
		if err != nil {
			return nil, fmt.Errorf("start keygate: %w", err)
		}
		ports[i] = p
	}
	names := make([]string, len(dbs))
	env := os.Environ()
	for i, d := range dbs {
		names[i] = d.Name
		env = append(env, d.PasswordEnv+"="+d.password)
	}
	var text strings.Builder
	err := keygateConfig.Execute(&text, map[string]any{
		"APIPort": ports[0], "PostgresPort": ports[1], "MySQLPort": ports[2], "Databases": dbs, "Names": strings.Join(names, ", "),
	})
	if err != nil {
		return nil, fmt.Errorf("start keygate: config: %w", err)
	}
	cfgPath := filepath.Join(dir, "keygate.yaml")
	if err := os.WriteFile(cfgPath, []byte(text.String()), 0o600); err != nil {
		return nil, fmt.Errorf("start keygate: write config: %w", err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("start keygate: %w", err)
	}
	cmd := exec.Command(bin, "server", "--config", cfgPath)
	cmd.Env = env
	p, err := proc.Start("keygate", cmd, filepath.Join(dir, "keygate.log"), nil)
	if err != nil {
		return nil, err
	}
	k := &keygate{Process: p, bin: bin, cfgPath: cfgPath, caFile: cfg.DataPath(pki.CAFile), pgPort: ports[1], myPort: ports[2]}
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

// tokenFor returns a function that gets a fresh token for the person on
// keygate's database db, as they would with `keygate db token DB`.
func (k *keygate) tokenFor(db string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) { return k.token(ctx, db) }
}

// token runs `keygate db token DB` as the person.
func (k *keygate) token(ctx context.Context, db string) (string, error) {
	out, err := k.cli(ctx, []string{"KEYGATE_SESSION=" + k.session}, "db", "token", db)
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
