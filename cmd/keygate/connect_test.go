package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/pki"
)

func TestSplitConnectArgs(t *testing.T) {
	tests := []struct {
		args       []string
		dash       int
		name       string
		clientArgs []string
		bad        bool
	}{
		{args: nil, dash: -1},
		{args: []string{"orders"}, dash: -1, name: "orders"},
		{args: []string{"orders", "-c", "select 1"}, dash: 1, name: "orders", clientArgs: []string{"-c", "select 1"}},
		{args: []string{"-c", "select 1"}, dash: 0, clientArgs: []string{"-c", "select 1"}},
		{args: []string{"orders", "billing"}, dash: -1, bad: true},
		{args: []string{"orders", "billing", "-x"}, dash: 2, bad: true},
	}
	for _, tt := range tests {
		name, clientArgs, err := splitConnectArgs(tt.args, tt.dash)
		var ue usageError
		if tt.bad {
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), "after --") {
				t.Errorf("%q: %v, want a usage error saying to use --", tt.args, err)
			}
			continue
		}
		if err != nil || name != tt.name || !slices.Equal(clientArgs, tt.clientArgs) {
			t.Errorf("%q at %d: %q %q %v, want %q %q", tt.args, tt.dash, name, clientArgs, err, tt.name, tt.clientArgs)
		}
	}
}

// The connection string reads back, through a libpq-compatible parser,
// as the gateway, database, person and CA it was made from, whatever
// characters the CA's path holds.
func TestPSQLConnInfo(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, `it's a \ CA dir=x`, "ca.pem")
	if err := os.MkdirAll(filepath.Dir(ca), 0o700); err != nil {
		t.Fatal(err)
	}
	authority, err := pki.Open(t.TempDir(), []string{"localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, authority.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	info := client.PSQLConnInfo("localhost:5433", "orders", "alice", ca)
	if strings.Contains(info, "password") {
		t.Errorf("connection string %q holds a password", info)
	}
	t.Setenv("PGPASSWORD", "")
	cfg, err := pgconn.ParseConfig(info)
	if err != nil {
		t.Fatalf("parse %q: %v", info, err)
	}
	if cfg.Host != "localhost" || cfg.Port != 5433 || cfg.Database != "orders" || cfg.User != "alice" {
		t.Errorf("%q parses as host %s port %d dbname %s user %s", info, cfg.Host, cfg.Port, cfg.Database, cfg.User)
	}
	if tc := cfg.TLSConfig; tc == nil || tc.InsecureSkipVerify || tc.RootCAs == nil || tc.ServerName != "localhost" || len(cfg.Fallbacks) != 0 {
		t.Errorf("%q does not verify the gateway's certificate and name: %+v", info, cfg.TLSConfig)
	}
	if !strings.Contains(info, "sslmode=verify-full") {
		t.Errorf("%q: want sslmode=verify-full", info)
	}
	if got := client.PSQLConnInfo("[::1]:5433", "orders", "alice", "/ca.pem"); !strings.HasPrefix(got, "host=::1 port=5433 ") {
		t.Errorf("IPv6 gateway: %q", got)
	}
}

func TestConnectable(t *testing.T) {
	for _, d := range []api.DatabaseAccess{
		{Database: "orders", Engine: "postgres", Gateway: "localhost:5433"},
		{Database: "orders_my", Engine: "mysql", Address: "10.0.0.1:3306", Gateway: "localhost:3307"},
	} {
		if err := connectable(d); err != nil {
			t.Errorf("%s: %v", d.Engine, err)
		}
	}
	if err := connectable(api.DatabaseAccess{}); err != nil {
		t.Errorf("a database the list lacks is the server's to refuse: %v", err)
	}
	for _, d := range []api.DatabaseAccess{
		{Database: "shop", Engine: "mysql", Address: "10.0.0.1:3306"},
		{Database: "orders", Engine: "postgres"},
		{Database: "x", Engine: "oracle", Gateway: "h:1"},
	} {
		if err := connectable(d); err == nil || !strings.Contains(err.Error(), "keygate db token "+d.Database) {
			t.Errorf("%+v: %v, want an error pointing at keygate db token", d, err)
		}
	}
	if err := connectable(api.DatabaseAccess{Database: "shop", Engine: "mysql"}); err == nil || !strings.Contains(err.Error(), "mariadb or mysql") {
		t.Errorf("mysql without a gateway: %v, want it to name the mysql clients", err)
	}
}

func TestWithPassword(t *testing.T) {
	got := withPassword([]string{"HOME=/h", "PGPASSWORD=old", "PGPASSWORDX=keep"}, "PGPASSWORD", "tok")
	if want := []string{"HOME=/h", "PGPASSWORDX=keep", "PGPASSWORD=tok"}; !slices.Equal(got, want) {
		t.Errorf("env = %q, want %q", got, want)
	}
	got = withPassword([]string{"MYSQL_PWD=old", "PGPASSWORD=pg"}, "MYSQL_PWD", "tok")
	if want := []string{"PGPASSWORD=pg", "MYSQL_PWD=tok"}; !slices.Equal(got, want) {
		t.Errorf("env = %q, want %q", got, want)
	}
}

// Each client flavour gets the flags with which it verifies the gateway's
// certificate and host name against keygate's CA; neither gets a password.
func TestMySQLArgs(t *testing.T) {
	common := []string{"--protocol=TCP", "--host=keygate.example.com", "--port=3307", "--user=alice", "--database=orders_my"}
	tests := []struct {
		flavour client.MySQLFlavour
		want    []string
	}{
		{client.MariaDBClient, append(slices.Clone(common), "--ssl-ca=/c/ca.pem", "--ssl-verify-server-cert")},
		{client.OracleMySQLClient, append(slices.Clone(common), "--ssl-mode=VERIFY_IDENTITY", "--ssl-ca=/c/ca.pem")},
	}
	for _, tt := range tests {
		got := client.MySQLArgs(tt.flavour, "keygate.example.com:3307", "orders_my", "alice", "/c/ca.pem")
		if !slices.Equal(got, tt.want) {
			t.Errorf("flavour %d: %q, want %q", tt.flavour, got, tt.want)
		}
		for _, a := range got {
			if strings.Contains(strings.ToLower(a), "password") || strings.HasPrefix(a, "-p") {
				t.Errorf("flavour %d: argument %q passes a password", tt.flavour, a)
			}
		}
	}
	if got := client.MySQLArgs(client.MariaDBClient, "[::1]:3307", "orders_my", "alice", "/ca.pem"); !slices.Equal(got[:3], []string{"--protocol=TCP", "--host=::1", "--port=3307"}) {
		t.Errorf("IPv6 gateway: %q", got)
	}
}

// MariaDB's own client reads the arguments as the gateway, person,
// database and a verified TLS connection: its --help prints the settings
// it parsed.
func TestMySQLArgsMariaDBClient(t *testing.T) {
	bin, err := exec.LookPath("mariadb")
	if err != nil {
		t.Fatalf("the tests need MariaDB's client (apt install mariadb-client): %v", err)
	}
	ca := filepath.Join(t.TempDir(), "a dir", "ca.pem")
	argv := append([]string{"--no-defaults"}, client.MySQLArgs(client.MariaDBClient, "localhost:3307", "orders_my", "alice", ca)...)
	out, err := exec.Command(bin, append(argv, "--help")...).Output()
	if err != nil {
		t.Fatalf("%s %q --help: %v", bin, argv, err)
	}
	settings := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			settings[f[0]] = strings.Join(f[1:], " ")
		}
	}
	want := map[string]string{"host": "localhost", "port": "3307", "protocol": "TCP", "user": "alice", "database": "orders_my",
		"ssl": "TRUE", "ssl-ca": ca, "ssl-verify-server-cert": "TRUE"}
	for k, v := range want {
		if settings[k] != v {
			t.Errorf("mariadb reads %s as %q, want %q", k, settings[k], v)
		}
	}
}

// fakeClient writes an executable script named name in dir that prints
// version for --version.
func fakeClient(t *testing.T, dir, name, version string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\necho '"+version+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestMySQLClientFlavour(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		version string
		want    client.MySQLFlavour
	}{
		{"mysql  Ver 15.1 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64) using  EditLine wrapper", client.MariaDBClient},
		{"mariadb from 11.4.2-MariaDB, client 15.2 for Linux (x86_64) using  EditLine wrapper", client.MariaDBClient},
		{"mysql  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)", client.OracleMySQLClient},
		{"mysql  Ver 8.4.0 for macos14 on arm64 (Homebrew)", client.OracleMySQLClient},
	}
	for i, tt := range tests {
		bin := fakeClient(t, dir, "client"+strconv.Itoa(i), tt.version)
		if got, err := mysqlClientFlavour(t.Context(), bin); err != nil || got != tt.want {
			t.Errorf("%q: %d, %v; want %d", tt.version, got, err, tt.want)
		}
	}
	if bin, err := exec.LookPath("mariadb"); err == nil {
		if got, err := mysqlClientFlavour(t.Context(), bin); err != nil || got != client.MariaDBClient {
			t.Errorf("%s: %d, %v; want MariaDB's", bin, got, err)
		}
	}
	if _, err := mysqlClientFlavour(t.Context(), "/bin/false"); err == nil || !strings.Contains(err.Error(), "--version") {
		t.Errorf("a client whose --version fails: %v", err)
	}
}

// mariadb is preferred to mysql on PATH; --client chooses another; none
// found names the packages to install.
func TestFindMySQLClient(t *testing.T) {
	both, onlyMySQL, none := t.TempDir(), t.TempDir(), t.TempDir()
	fakeClient(t, both, "mariadb", "MariaDB")
	fakeClient(t, both, "mysql", "MariaDB")
	fakeClient(t, onlyMySQL, "mysql", "MySQL")
	for dir, want := range map[string]string{both: filepath.Join(both, "mariadb"), onlyMySQL: filepath.Join(onlyMySQL, "mysql")} {
		t.Setenv("PATH", dir)
		if got, err := findMySQLClient(""); err != nil || got != want {
			t.Errorf("PATH %s: %q, %v; want %q", dir, got, err, want)
		}
	}
	t.Setenv("PATH", both)
	if got, err := findMySQLClient("mysql"); err != nil || got != filepath.Join(both, "mysql") {
		t.Errorf("--client mysql: %q, %v", got, err)
	}
	t.Setenv("PATH", none)
	for _, path := range []string{"", filepath.Join(none, "mysql")} {
		if _, err := findMySQLClient(path); err == nil || !strings.Contains(err.Error(), "apt install mariadb-client") || !strings.Contains(err.Error(), "--client PATH") {
			t.Errorf("--client %q with no client: %v, want the packages to install", path, err)
		}
	}
}

// connectMySQL hands the client the token in MYSQL_PWD alone, the
// arguments after -- last, and returns the client's exit code.
func TestConnectMySQLTokenInEnv(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "mysql")
	if err := os.WriteFile(bin, []byte(`#!/bin/sh
if [ "$1" = --version ]; then echo 'mysql  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)'; exit 0; fi
printf '%s\n' "$@" > "$OUT/argv"
printf '%s' "$MYSQL_PWD" > "$OUT/token"
exit 7
`), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OUT", dir)
	t.Setenv("MYSQL_PWD", "stale")
	tok := issuedToken{
		TokenResponse: api.TokenResponse{Token: "v4.public.secret-token", User: "alice", Database: "orders_my", Access: "ro"},
		listing:       api.DatabaseAccess{Database: "orders_my", Engine: "mysql", Gateway: "keygate.example.com:3307"},
	}
	cmd := &cobra.Command{}
	cmd.SetContext(t.Context())
	cmd.SetIn(strings.NewReader(""))
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	err := connectMySQL(cmd, bin, tok, "/c/ca.pem", []string{"-e", "select 1"})
	var code exitCode
	if !errors.As(err, &code) || code != 7 {
		t.Fatalf("connectMySQL: %v, want the client's exit code 7 (output %s)", err, out.String())
	}
	argv, err := os.ReadFile(filepath.Join(dir, "argv"))
	if err != nil {
		t.Fatal(err)
	}
	want := "--protocol=TCP\n--host=keygate.example.com\n--port=3307\n--user=alice\n--database=orders_my\n--ssl-mode=VERIFY_IDENTITY\n--ssl-ca=/c/ca.pem\n-e\nselect 1\n"
	if string(argv) != want {
		t.Errorf("argv:\n%s\nwant:\n%s", argv, want)
	}
	if token, _ := os.ReadFile(filepath.Join(dir, "token")); string(token) != tok.Token {
		t.Errorf("MYSQL_PWD = %q, want the token", token)
	}
}

// keygate exits as its client did: with its code, or 128 plus the signal
// that ended it, as a shell does.
func TestRunClientExitCode(t *testing.T) {
	run := func(script string) error {
		var out bytes.Buffer
		cmd := &cobra.Command{}
		cmd.SetIn(strings.NewReader(""))
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		return runClient(cmd, "/bin/sh", []string{"-c", script}, []string{"PGPASSWORD=tok"})
	}
	if err := run(`test "$PGPASSWORD" = tok`); err != nil {
		t.Errorf("client that succeeds, with the token in its environment: %v", err)
	}
	var code exitCode
	if err := run("exit 3"); !errors.As(err, &code) || code != 3 {
		t.Errorf("exit 3: %v", err)
	}
	if err := run("kill -TERM $$"); !errors.As(err, &code) || code != 128+15 {
		t.Errorf("killed by SIGTERM: %v, want exit code 143", err)
	}
	if _, err := findClient(filepath.Join(t.TempDir(), "psql")); err == nil || !strings.Contains(err.Error(), "--client PATH") {
		t.Errorf("missing client: %v", err)
	}
}
