package postgres

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/internal/testenv"
)

// newPooledUpstream is newUpstream with pooling on.
func newPooledUpstream(t *testing.T, db string) *Upstream {
	t.Helper()
	p := testenv.StartPostgres(t)
	p.CreateDatabase(t, db, setupSQL)
	cfg := Config{Name: db, Address: p.Address(), Database: db, Schemas: []string{"public"}, AdminUser: p.AdminUser, AdminPassword: p.AdminPassword,
		TLS: "disable", Pool: true, PoolIdleTimeout: time.Minute, QueueTimeout: time.Second}
	u, err := New(cfg, servers, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	return u
}

// A connection the pool cannot take (every reset slot is busy) is left to
// the caller, open and usable, so that the gateway can end it the way a
// client does; a connection it takes serves the next Acquire of the same
// owner, and only that.
func TestReleaseLeavesWhatItCannotKeep(t *testing.T) {
	u := newPooledUpstream(t, "up_keep")
	ctx := context.Background()
	params := map[string]string{"application_name": "keygate-test"}
	c, err := u.Acquire(ctx, "kim", access.ReadOnly, params)
	if err != nil {
		t.Fatal(err)
	}
	var held []func()
	for {
		done, ok := u.pool.Resetting()
		if !ok {
			break
		}
		held = append(held, done)
	}
	if u.Release(c, true) {
		t.Fatal("Release kept a connection with every reset slot busy")
	}
	s := newRawSession(t, u, c)
	if got := s.value("SELECT 1"); got != "1" {
		t.Fatalf("the connection left to the caller does not serve: %q", got)
	}
	for _, done := range held {
		done()
	}
	if !u.Release(c, true) {
		t.Fatal("Release did not keep an idle connection with reset slots free")
	}
	again, err := u.Acquire(ctx, "kim", access.ReadOnly, params)
	if err != nil {
		t.Fatal(err)
	}
	if again.PID != c.PID || !again.Reused {
		t.Errorf("next Acquire got backend %d (reused %v), want the pooled %d", again.PID, again.Reused, c.PID)
	}
	other, err := u.Acquire(ctx, "kim", access.ReadWrite, params)
	if err != nil {
		t.Fatal(err)
	}
	if other.PID == c.PID {
		t.Error("another level got the pooled backend")
	}
	u.Release(other, false)
	u.Release(again, false)
}
