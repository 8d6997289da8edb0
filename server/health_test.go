package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/store"
)

// faultyAppender is an audit store that fails while fail is set, and
// hangs, whatever its context says, while hang is open.
type faultyAppender struct {
	fail atomic.Bool
	hang chan struct{}

	mu     sync.Mutex
	stored []store.AuditEvent
}

func (a *faultyAppender) AppendAudit(_ context.Context, events []store.AuditEvent) error {
	if a.hang != nil {
		<-a.hang
	}
	if a.fail.Load() {
		return errors.New("disk I/O error")
	}
	a.mu.Lock()
	a.stored = append(a.stored, events...)
	a.mu.Unlock()
	return nil
}

func (a *faultyAppender) ChainHead(context.Context, string) (store.AuditEvent, error) {
	return store.AuditEvent{}, store.ErrNotFound
}

// useAudit makes srv record to a log over app instead of its store.
func useAudit(t *testing.T, srv *Server, app audit.Appender) *audit.Log {
	t.Helper()
	srv.audit.Close()
	l, err := audit.Open(context.Background(), app, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.audit = l
	return l
}

// While the audit store refuses writes, /healthz answers 503 with the
// reason; once writes succeed again, 200.
func TestHealthzFailsWhileAuditFails(t *testing.T) {
	cfg := testConfig(t, "shutdown_grace: 1s\n")
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	app := &faultyAppender{}
	app.fail.Store(true)
	log := useAudit(t, srv, app)
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		app.fail.Store(false)
		cancel()
		<-done
	}()

	pem, err := os.ReadFile(filepath.Join(cfg.Resolve(cfg.DataDir), "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func() (int, string) {
		resp, err := c.Get("https://" + srv.APIAddr() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get(); code != http.StatusOK {
		t.Fatalf("healthz before any write: %d %s", code, body)
	}
	log.Record(audit.Event{Type: audit.ConfigReload})
	waitFor(t, "the audit write to fail", func() bool { return srv.health() != nil })
	code, body := get()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "audit log cannot be written: disk I/O error") ||
		!strings.Contains(body, "keygate starts no new session until it can") {
		t.Errorf("healthz while audit writes fail: %d %q", code, body)
	}
	app.fail.Store(false)
	waitFor(t, "the audit write to succeed", func() bool { return srv.health() == nil })
	if code, body := get(); code != http.StatusOK {
		t.Errorf("healthz once audit writes succeed: %d %s", code, body)
	}
}
