package localpg

import (
	"context"
	"os"
	"strings"
	"testing"
)

func TestStartStop(t *testing.T) {
	ctx := context.Background()
	s, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Exec(ctx, "postgres", "CREATE DATABASE orders"); err != nil {
		t.Fatal(err)
	}
	if err := s.Exec(ctx, "orders", "CREATE TABLE t (id int); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	dir := s.Dir
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s still exists after Stop", dir)
	}
}

func TestMissingBinariesNamesThePackage(t *testing.T) {
	t.Setenv("KEYGATE_PG_BINDIR", t.TempDir())
	_, err := Start(context.Background(), Options{})
	if err == nil || !strings.Contains(err.Error(), "apt-get install postgresql") {
		t.Fatalf("error = %v, want one naming the Debian package", err)
	}
}
