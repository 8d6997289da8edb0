package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/bench/internal/proc"
	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/internal/throwaway"
	"github.com/keygate/keygate/pki"
	"github.com/keygate/keygate/server"
)

// personGroup is the group of the people who connect through keygate.
const personGroup = "analysts"

// personName is who connects through a keygate with or without per-person
// upstream pools; the connect-per-txn-people runs' people are this name
// with a number. The two keygates share the upstreams, and each ends the
// connections of the person roles and users it manages that it did not
// open itself, so their people must differ.
func personName(pooled bool) string {
	if pooled {
		return "bench"
	}
	return "unpooled"
}

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
// allows, so that long runs do not outlive them. Pooled is false for the
// keygate that logs in upstream for every session. Both gateways get free
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
{{- if not $.Pooled}}
    pool:
      enabled: false
{{- end}}
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
{{- with .State}}
state:
  postgres_url_env: ` + stateURLEnv + `
  secrets_key_env: ` + secretsKeyEnv + `
  node: {{.Node}}
{{- end}}
`))

// The environment variables that name a keygate's state database and its
// secrets key, with -state postgres.
const (
	stateURLEnv   = "KEYGATE_BENCH_STATE_URL"
	secretsKeyEnv = "KEYGATE_BENCH_SECRETS_KEY"
)

// stateDB is a keygate's state database, with -state postgres.
type stateDB struct {
	Node string
	url  string
	key  string // the secrets key, base64
}

// keygate is a running `keygate server` and the people who use it.
type keygate struct {
	*proc.Process
	// name is the benchmark's target: keygate, or keygate-unpooled.
	name string
	// person is who connects in the runs with one person.
	person  string
	bin     string
	cfgPath string
	caFile  string
	apiURL  string
	// adminCredential is the file keygate writes its admin credential to.
	adminCredential string
	pgPort          int
	myPort          int
	session         string
	// people are API clients signed in as each of the
	// connect-per-txn-people runs' people, and names their names, once
	// provisionPeople has made them.
	people []*client.Client
	names  []string
}

// keygateName is the target name of a keygate with or without per-person
// upstream pools.
func keygateName(pooled bool) string {
	if pooled {
		return "keygate"
	}
	return "keygate-unpooled"
}

// startKeygate makes dir, writes a config there and starts the keygate
// binary bin in front of dbs, with per-person upstream pools if pooled and
// its state in state (nil: SQLite in its data_dir), then creates the benchmark's person and a sign-in session for them. Each
// keygate has its own data directory and ports.
func startKeygate(ctx context.Context, bin, dir, name string, pooled bool, dbs []upstreamDB, state *stateDB) (*keygate, error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	var ports [3]int
	for i := range ports {
		p, err := throwaway.FreePort()
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		ports[i] = p
	}
	names := make([]string, len(dbs))
	env := os.Environ()
	for i, d := range dbs {
		names[i] = d.Name
		env = append(env, d.PasswordEnv+"="+d.password)
	}
	if state != nil {
		env = append(env, stateURLEnv+"="+state.url, secretsKeyEnv+"="+state.key)
	}
	var text strings.Builder
	err := keygateConfig.Execute(&text, map[string]any{
		"APIPort": ports[0], "PostgresPort": ports[1], "MySQLPort": ports[2], "Databases": dbs, "Names": strings.Join(names, ", "), "Pooled": pooled,
		"State": state,
	})
	if err != nil {
		return nil, fmt.Errorf("start %s: config: %w", name, err)
	}
	cfgPath := filepath.Join(dir, "keygate.yaml")
	if err := os.WriteFile(cfgPath, []byte(text.String()), 0o600); err != nil {
		return nil, fmt.Errorf("start %s: write config: %w", name, err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(bin, "server", "--config", cfgPath)
	cmd.Env = env
	p, err := proc.Start(name, cmd, filepath.Join(dir, "keygate.log"), nil)
	if err != nil {
		return nil, err
	}
	k := &keygate{Process: p, name: name, person: personName(pooled), bin: bin, cfgPath: cfgPath, caFile: cfg.DataPath(pki.CAFile), apiURL: cfg.APIURL(),
		adminCredential: cfg.DataPath(server.AdminCredentialFile), pgPort: ports[1], myPort: ports[2]}
	if err := k.WaitHealthy(ctx, k.caFile, k.apiURL+"/healthz"); err != nil {
		k.Stop(stopGrace)
		return nil, err
	}
	if _, err := k.cli(ctx, nil, "admin", "user", "add", k.person, "--group", personGroup); err != nil {
		k.Stop(stopGrace)
		return nil, err
	}
	out, err := k.cli(ctx, nil, "admin", "session", "create", k.person, "--ttl", "24h")
	if err != nil {
		k.Stop(stopGrace)
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	k.session = lines[len(lines)-1]
	return k, nil
}

// provisionParallel is how many API calls provisionPeople and mintTokens
// make at once.
const provisionParallel = 8

// provisionPeople creates n people, the person's name followed by 0 to
// n-1, in the
// benchmark's group, and a sign-in session for each. It calls the API in
// this process rather than running the CLI for each of them, which would
// take a process start per call.
func (k *keygate) provisionPeople(ctx context.Context, n int) error {
	cred, err := os.ReadFile(k.adminCredential)
	if err != nil {
		return fmt.Errorf("provision people on %s: %w", k.name, err)
	}
	admin, err := client.New(k.apiURL, k.caFile, strings.TrimSpace(string(cred)))
	if err != nil {
		return fmt.Errorf("provision people on %s: %w", k.name, err)
	}
	k.names = make([]string, n)
	k.people = make([]*client.Client, n)
	return parallel(ctx, n, provisionParallel, func(ctx context.Context, i int) error {
		name := k.person + strconv.Itoa(i)
		if _, err := admin.CreateUser(ctx, api.UserRequest{Name: name, Groups: []string{personGroup}}); err != nil {
			return fmt.Errorf("provision %s on %s: %w", name, k.name, err)
		}
		s, err := admin.CreateSession(ctx, name, "24h")
		if err != nil {
			return fmt.Errorf("provision %s on %s: session: %w", name, k.name, err)
		}
		c, err := client.New(k.apiURL, k.caFile, s.Credential)
		if err != nil {
			return fmt.Errorf("provision %s on %s: %w", name, k.name, err)
		}
		k.names[i], k.people[i] = name, c
		return nil
	})
}

// mintTokens gets a fresh token on db for each of the provisioned people,
// as each of them would with `keygate db token DB`, and returns them with
// the time the first of them expires.
func (k *keygate) mintTokens(ctx context.Context, db string) ([]login, time.Time, error) {
	logins := make([]login, len(k.people))
	expires := make([]time.Time, len(k.people))
	err := parallel(ctx, len(k.people), provisionParallel, func(ctx context.Context, i int) error {
		t, err := k.people[i].Token(ctx, db, "")
		if err != nil {
			return fmt.Errorf("token on %s for %s: %w", k.name, k.names[i], err)
		}
		logins[i], expires[i] = login{user: k.names[i], password: t.Token}, t.ExpiresAt
		return nil
	})
	if err != nil {
		return nil, time.Time{}, err
	}
	return logins, slices.MinFunc(expires, time.Time.Compare), nil
}

// peopleFor returns a function that gets the provisioned people's fresh
// tokens on keygate's database db.
func (k *keygate) peopleFor(db string) func(context.Context) (*loginSet, error) {
	return func(ctx context.Context) (*loginSet, error) {
		return newLoginSet(ctx, func(ctx context.Context) ([]login, time.Time, error) { return k.mintTokens(ctx, db) })
	}
}

// parallel calls f for 0 to n-1, workers at a time, and returns the first
// error; after one, no further call starts.
func parallel(ctx context.Context, n, workers int, f func(context.Context, int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := f(ctx, i); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	return <-errs
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
