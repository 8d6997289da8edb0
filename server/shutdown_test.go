package server

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/keygate/keygate/audit"
)

// A server whose audit store hangs, ignoring every deadline, still stops
// within shutdown_grace and stopBound, releases data_dir, and keeps the
// events it could not store in a spill file there.
func TestStopIsBoundedWhenTheAuditStoreHangs(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the audit step's deadline")
	}
	cfg := testConfig(t, "shutdown_grace: 200ms\n")
	dir := cfg.Resolve(cfg.DataDir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	app := &faultyAppender{hang: make(chan struct{})}
	defer close(app.hang)
	log := useAudit(t, srv, app)
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	for range 3 {
		log.Record(audit.Event{Type: audit.ConfigReload})
	}

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(200*time.Millisecond + stopBound + 2*time.Second):
		t.Fatal("Run did not return within shutdown_grace and stopBound")
	}
	t.Logf("stopped in %s", time.Since(start))
	if took := time.Since(start); took > 200*time.Millisecond+stopBound {
		t.Errorf("stopping took %s, over shutdown_grace+stopBound", took)
	}
	files, err := audit.SpillFiles(dir)
	if err != nil || len(files) != 1 {
		t.Fatalf("spill files %v, %v; want one", files, err)
	}
	// The three events, and the checkpoint that signs the chain's end
	// at shutdown, so that the spilled events are vouched for too.
	spilled, err := audit.ReadSpill(files[0])
	if err != nil || len(spilled) != 4 || spilled[3].Type != audit.Checkpoint {
		t.Errorf("spill file holds %d events (%v), want 3 and a checkpoint", len(spilled), err)
	}
	if _, running, _ := Running(dir); running {
		t.Error("data_dir is still locked after the server stopped")
	}
}
