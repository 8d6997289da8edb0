package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/api"
)

// connectRun runs keygate with args as user through KEYGATE_SESSION, with
// the config in the environment (so that nothing follows the arguments
// meant for psql after --) and a config directory of its own.
func (s *kgServer) connectRun(t *testing.T, user string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(keygateBin, args...)
	cmd.Env = append(os.Environ(), append([]string{"KEYGATE_SESSION=" + s.session(t, user), "KEYGATE_CONFIG=" + s.cfgPath,
		"KEYGATE_CONFIG_DIR=" + t.TempDir(), "PGCONNECT_TIMEOUT=10", "PGPASSWORD=", "PSQLRC=/dev/null"}, env...)...)
	return runCmd(t, cmd)
}

// keygate db connect opens psql through the gateway as the person's
// upstream role at the level asked for, and exits with psql's code.
func TestDBConnect(t *testing.T) {
	s := startServer(t, "dbconnect", "", true)
	s.addUser(t, "alice", "analysts")
	s.addUser(t, "erin", "engineers")

	r := s.connectRun(t, "alice", nil, "db", "connect", "orders", "--", "-c", "select current_user")
	if r.code != 0 || !strings.Contains(r.stdout, "alice.ro") {
		t.Fatalf("keygate db connect orders -- -c 'select current_user': exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	r = s.connectRun(t, "erin", nil, "db", "connect", "orders", "--access", "rw", "--", "-X", "-A", "-t", "-c", "select current_user")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "erin.rw" {
		t.Errorf("keygate db connect orders --access rw as erin: exit %d, %q %s", r.code, r.stdout, r.stderr)
	}
	// psql's own exit code comes back: 1 for a failed -c statement.
	r = s.connectRun(t, "alice", nil, "db", "connect", "orders", "--", "-X", "-c", "select 1/0")
	if r.code != 1 || !strings.Contains(r.stderr, "division by zero") {
		t.Errorf("a failing statement: exit %d, want psql's 1; stderr: %s", r.code, r.stderr)
	}
	// A database she may not use is refused before any client runs.
	r = s.connectRun(t, "alice", nil, "db", "connect", "billing", "--", "-c", "select 1")
	if r.code == 0 || r.stdout != "" {
		t.Errorf("connect to billing, which alice may not use: exit %d, stdout %q", r.code, r.stdout)
	}
	r = s.connectRun(t, "alice", nil, "db", "connect", "orders", "billing")
	if r.code != 2 || !strings.Contains(r.stderr, "after --") {
		t.Errorf("two names: exit %d, want 2 with advice to use --: %s", r.code, r.stderr)
	}
	r = s.connectRun(t, "alice", nil, "db", "connect", "orders", "--client", filepath.Join(t.TempDir(), "nopsql"))
	if r.code != 1 || !strings.Contains(r.stderr, "--client PATH") {
		t.Errorf("a client that is not there: exit %d: %s", r.code, r.stderr)
	}
	r = s.connectRun(t, "alice", nil, "db", "connect", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "keygate db connect orders -- -c 'select 1'") || !strings.Contains(r.stdout, "PGPASSWORD") {
		t.Errorf("keygate db connect --help does not teach by example: %s", r.stdout)
	}
}

// The token reaches the client in its environment and never in its
// arguments, which ps shows to every user of the machine; the arguments
// name keygate's gateway, verify-full TLS and keygate's CA.
func TestDBConnectTokenNotInArgv(t *testing.T) {
	s := startServer(t, "dbconnectargv", "", true)
	s.addUser(t, "alice", "analysts")
	out := t.TempDir()
	script := filepath.Join(t.TempDir(), "fake-psql")
	if err := os.WriteFile(script, []byte(`#!/bin/sh
printf '%s\n' "$@" > "$OUT/argv"
tr '\0' '\n' < /proc/$$/cmdline > "$OUT/cmdline"
printf '%s' "$PGPASSWORD" > "$OUT/token"
exit 7
`), 0o755); err != nil {
		t.Fatal(err)
	}
	r := s.connectRun(t, "alice", []string{"OUT=" + out}, "db", "connect", "orders", "--client", script, "--", "-c", "select 1")
	if r.code != 7 {
		t.Fatalf("keygate exits with its client's code: got %d, want 7; stderr: %s", r.code, r.stderr)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	token, argv, cmdline := read("token"), read("argv"), read("cmdline")
	if !strings.HasPrefix(token, "v4.public.") {
		t.Fatalf("the client's PGPASSWORD is %q, want a token", token)
	}
	if strings.Contains(argv, token) || strings.Contains(cmdline, token) || strings.Contains(cmdline, "v4.public.") {
		t.Errorf("the token is on the client's command line:\n%s", cmdline)
	}
	args := strings.Split(strings.TrimSpace(argv), "\n")
	caFile := filepath.Join(s.dir, "data", "ca.pem")
	wantInfo := fmt.Sprintf("host=localhost port=%d dbname=orders user=alice sslmode=verify-full sslrootcert=%s", s.pgPort, caFile)
	if len(args) != 4 || args[0] != "--dbname" || args[1] != wantInfo || args[2] != "-c" || args[3] != "select 1" {
		t.Errorf("client arguments = %q, want --dbname %q -c 'select 1'", args, wantInfo)
	}
	// What the client got is what psql needs: the token from its
	// environment with the connection string from its arguments.
	if r := s.psql(t, args[1], token, "select current_user"); r.code != 0 || strings.TrimSpace(r.stdout) != "alice.ro" {
		t.Errorf("psql with the client's arguments and environment: exit %d, %q %s", r.code, r.stdout, r.stderr)
	}

	// Without a CA bundle of its own (the API behind a proxy whose
	// certificate the system trusts, here through SSL_CERT_FILE), the
	// client gets the CA the server publishes, saved in the config dir.
	configDir := t.TempDir()
	r = s.connectRun(t, "alice", []string{"OUT=" + out, "KEYGATE_CONFIG=", "KEYGATE_CONFIG_DIR=" + configDir, "SSL_CERT_FILE=" + s.caFile},
		"db", "connect", "orders", "--server", s.apiURL, "--client", script)
	saved := filepath.Join(configDir, "ca", "default.pem")
	if r.code != 7 || !strings.Contains(read("argv"), "sslrootcert="+saved+"\n") {
		t.Fatalf("without a CA bundle: exit %d, client arguments %q, want sslrootcert=%s; stderr: %s", r.code, read("argv"), saved, r.stderr)
	}
	if got, err := os.ReadFile(saved); err != nil || string(got) != httpsGet(t, s, "/v1/ca.pem") {
		t.Errorf("saved CA bundle: %v\n%s", err, got)
	}
}

// Scripts written for aws rds generate-db-auth-token carry over by
// changing the command name: --hostname and --port name the upstream as
// the config gives it, --username the person's upstream role.
func TestDBTokenAWSFlags(t *testing.T) {
	s := startServer(t, "dbtokenaws", "", true)
	s.addUser(t, "alice", "analysts")
	host, port, err := net.SplitHostPort(s.pg.Address())
	if err != nil {
		t.Fatal(err)
	}
	aws := func(extra ...string) result {
		t.Helper()
		return s.connectRun(t, "alice", nil, append([]string{"db", "token"}, extra...)...)
	}
	r := aws("--hostname", host, "--port", port, "--username", "alice.ro", "--region", "us-east-1")
	if r.code != 0 {
		t.Fatalf("keygate db token --hostname %s --port %s --username alice.ro --region us-east-1: exit %d: %s", host, port, r.code, r.stderr)
	}
	token := strings.TrimSpace(r.stdout)
	if res := s.psql(t, s.connString("alice", "orders"), token, "select current_user"); res.code != 0 || strings.TrimSpace(res.stdout) != "alice.ro" {
		t.Errorf("psql with the token: exit %d, %q %s", res.code, res.stdout, res.stderr)
	}

	// db list shows where each of her databases is, and only hers.
	r = s.connectRun(t, "alice", nil, "db", "list", "--json")
	var dbs []api.DatabaseAccess
	if err := json.Unmarshal([]byte(r.stdout), &dbs); err != nil || len(dbs) != 1 {
		t.Fatalf("db list --json: %v %s", err, r.stdout)
	}
	gateway := fmt.Sprintf("localhost:%d", s.pgPort)
	if d := dbs[0]; d.Database != "orders" || d.Engine != "postgres" || d.Address != s.pg.Address() || d.Gateway != gateway {
		t.Errorf("db list entry = %+v, want orders, postgres, %s, %s", d, s.pg.Address(), gateway)
	}

	usage := []struct {
		args []string
		says string
	}{
		{[]string{"--hostname", host, "--port", port, "--username", "bob.ro"}, "is not you"},
		{[]string{"--hostname", host, "--port", port, "--username", "alice.ro", "--access", "rw"}, "drop one of them"},
		{[]string{"--hostname", "localhost", "--port", fmt.Sprint(s.pgPort)}, "keygate's gateway"},
		{[]string{"--hostname", "nowhere.example.com", "--port", port}, "orders at " + s.pg.Address()},
		{[]string{"orders", "--port", port}, "--port needs --hostname"},
	}
	for _, u := range usage {
		if r := aws(u.args...); r.code != 2 || !strings.Contains(r.stderr, u.says) || r.stdout != "" {
			t.Errorf("keygate db token %s: exit %d, want 2 saying %q; stderr: %s", strings.Join(u.args, " "), r.code, u.says, r.stderr)
		}
	}
	// The gateway's address with the database named works, as does the
	// person's own name with the level left to the least she may use.
	r = aws("orders", "--hostname", "localhost", "--port", fmt.Sprint(s.pgPort), "--username", "alice")
	if res := s.psql(t, s.connString("alice", "orders"), strings.TrimSpace(r.stdout), "select current_user"); r.code != 0 || strings.TrimSpace(res.stdout) != "alice.ro" {
		t.Errorf("token for the gateway's address: exit %d %s; psql %q %s", r.code, r.stderr, res.stdout, res.stderr)
	}
	// A level her groups do not grant is the server's to refuse.
	if r := aws("--hostname", host, "--port", port, "--username", "alice.rw"); r.code != 1 || r.stdout != "" {
		t.Errorf("alice.rw, which she may not use: exit %d, stdout %q", r.code, r.stdout)
	}
	if r := aws("--help"); !strings.Contains(r.stdout, "--region") || !strings.Contains(r.stdout, "ignored") {
		t.Errorf("keygate db token --help does not say --region is ignored: %s", r.stdout)
	}
}
