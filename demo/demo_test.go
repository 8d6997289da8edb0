package demo

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/keygate/keygate/localmysql"
	"github.com/keygate/keygate/localpg"
)

// The demo runs the whole journey on each engine, against a real server
// of that engine and a real keygate, and cleans up.
func TestDemo(t *testing.T) {
	for _, tt := range []struct {
		engine string
		find   func() error
		want   []string
	}{
		{"postgres", func() error { _, err := localpg.FindBinaries(); return err }, []string{
			"upstream she is alice.ro (pg_stat_activity shows this role)",
			"SET ROLE keygate_admin → ERROR: permission denied to set role",
			"written as bob.rw",
			"she saw: FATAL: keygate: access revoked",
			"stopping keygate and PostgreSQL",
		}},
		{"mysql", func() error { _, err := localmysql.FindBinaries(); return err }, []string{
			"MySQL gateway 127.0.0.1:",
			"upstream she is alice.ro@% (information_schema.PROCESSLIST shows this user)",
			"INSERT INTO orders ... → ERROR 1142 (42000): INSERT command denied",
			"SET ROLE keygate_orders_my_admin → ERROR",
			"written as bob.rw@%",
			"she saw: ERROR 1927 (70100): keygate: access revoked",
			"her next token request: access denied: orders_my at ro",
			"stopping keygate and MariaDB",
		}},
	} {
		t.Run(tt.engine, func(t *testing.T) {
			if err := tt.find(); err != nil {
				t.Skip(err)
			}
			var out bytes.Buffer
			if err := Run(context.Background(), &out, Options{Engine: tt.engine}); err != nil {
				t.Fatalf("demo: %v\n%s", err, out.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("the narration lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

// Without MariaDB's server, --engine mysql says what to install before it
// starts anything.
func TestMySQLDemoNamesThePackage(t *testing.T) {
	t.Setenv("KEYGATE_MYSQL_BINDIR", t.TempDir())
	var out bytes.Buffer
	err := Run(context.Background(), &out, Options{Engine: "mysql"})
	if !errors.Is(err, localmysql.ErrNoBinaries) || !strings.Contains(err.Error(), "apt-get install mariadb-server") {
		t.Fatalf("err = %v, want one naming apt-get install mariadb-server", err)
	}
	if strings.Contains(out.String(), " 1. ") {
		t.Errorf("the demo narrated a step before failing:\n%s", out.String())
	}
}

func TestUnknownEngine(t *testing.T) {
	err := Run(context.Background(), &bytes.Buffer{}, Options{Engine: "oracle"})
	if err == nil || !strings.Contains(err.Error(), "use postgres or mysql") {
		t.Fatalf("err = %v", err)
	}
}
