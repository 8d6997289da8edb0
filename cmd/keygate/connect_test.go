package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"

	"github.com/keygate/keygate/api"
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
	info := psqlConnInfo("localhost:5433", "orders", "alice", ca)
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
	if got := psqlConnInfo("[::1]:5433", "orders", "alice", "/ca.pem"); !strings.HasPrefix(got, "host=::1 port=5433 ") {
		t.Errorf("IPv6 gateway: %q", got)
	}
}

func TestConnectable(t *testing.T) {
	pg := api.DatabaseAccess{Database: "orders", Engine: "postgres", Gateway: "localhost:5433"}
	if err := connectable(pg); err != nil {
		t.Errorf("postgres: %v", err)
	}
	if err := connectable(api.DatabaseAccess{}); err != nil {
		t.Errorf("a database the list lacks is the server's to refuse: %v", err)
	}
	for _, d := range []api.DatabaseAccess{
		{Database: "shop", Engine: "mysql", Address: "10.0.0.1:3306"},
		{Database: "orders", Engine: "postgres"},
		{Database: "x", Engine: "oracle", Gateway: "h:1"},
	} {
		if err := connectable(d); err == nil || !strings.Contains(err.Error(), "keygate db token") {
			t.Errorf("%+v: %v, want an error pointing at keygate db token", d, err)
		}
	}
	if err := connectable(api.DatabaseAccess{Database: "shop", Engine: "mysql"}); err == nil || !strings.Contains(err.Error(), "not yet support") {
		t.Errorf("mysql: %v", err)
	}
}

func TestWithPassword(t *testing.T) {
	got := withPassword([]string{"HOME=/h", "PGPASSWORD=old", "PGPASSWORDX=keep"}, "tok")
	if want := []string{"HOME=/h", "PGPASSWORDX=keep", "PGPASSWORD=tok"}; !slices.Equal(got, want) {
		t.Errorf("env = %q, want %q", got, want)
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
