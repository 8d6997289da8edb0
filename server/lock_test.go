package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/config"
)

// testConfig is a server config on a data_dir of its own, with no
// databases, and extra appended.
func testConfig(t *testing.T, extra string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	raw := fmt.Sprintf("data_dir: %s\nlisten:\n  api: 127.0.0.1:0\n  postgres: 127.0.0.1:0\n%s", filepath.Join(dir, "data"), extra)
	cfg, err := config.Parse(filepath.Join(dir, "keygate.yaml"), []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// A second lock on a held data_dir is refused with the holder's pid and
// addresses; once released, the directory can be locked again.
func TestLockNamesTheHolder(t *testing.T) {
	dir := t.TempDir()
	first, err := AcquireLock(dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	if err := first.SetAddrs(Holder{API: "127.0.0.1:8443", Postgres: "127.0.0.1:5433"}); err != nil {
		t.Fatal(err)
	}
	_, err = AcquireLock(dir, "server")
	var inUse *InUseError
	if !errors.As(err, &inUse) {
		t.Fatalf("second lock: %v, want an InUseError", err)
	}
	want := fmt.Sprintf("data_dir %s is in use by keygate server pid %d (api 127.0.0.1:8443, postgres 127.0.0.1:5433, since ", dir, os.Getpid())
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q\ndoes not start %q", err, want)
	}
	h, running, err := Running(dir)
	if err != nil || !running || h.PID != os.Getpid() || h.What != "server" {
		t.Errorf("Running = %+v, %v, %v", h, running, err)
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	if _, running, _ := Running(dir); running {
		t.Error("Running reports a holder after Release")
	}
	again, err := AcquireLock(dir, "state restore")
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again.Release()
	if fi, err := os.Stat(filepath.Join(dir, LockFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("lock file: %v, %v", fi, err)
	}
}

// A server on a data_dir another process holds refuses before it opens,
// creates or binds anything, naming the holder and saying what to do.
func TestSecondServerRefusesBeforeOpening(t *testing.T) {
	cfg := testConfig(t, "")
	dir := cfg.Resolve(cfg.DataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	held, err := AcquireLock(dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	_, err = New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	var inUse *InUseError
	if !errors.As(err, &inUse) || inUse.Holder.PID != os.Getpid() {
		t.Fatalf("New on a held data_dir: %v", err)
	}
	if !strings.Contains(err.Error(), "stop that one first, or give this one a data_dir of its own") {
		t.Errorf("error %q does not say what to do", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != LockFile {
		t.Errorf("data_dir holds %v after a refused start, want only %s", entries, LockFile)
	}
}

// A running server holds the lock with its addresses; once stopped, the
// lock is free.
func TestServerHoldsLockWhileRunning(t *testing.T) {
	cfg := testConfig(t, "shutdown_grace: 1s\n")
	dir := cfg.Resolve(cfg.DataDir)
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	h, running, err := Running(dir)
	if err != nil || !running || h.API != srv.APIAddr() || h.Postgres != srv.PostgresAddr() || h.PID != os.Getpid() {
		t.Errorf("while running: Running = %+v, %v, %v", h, running, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, running, _ := Running(dir); running {
		t.Error("the lock is still held after Run returned")
	}
	// Closing again, as a caller may, is harmless.
	srv.close()
}
