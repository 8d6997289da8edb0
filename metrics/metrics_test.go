package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/audit"
)

// fakeLog stands in for the audit log.
type fakeLog struct {
	recorded []audit.Event
	flushed  int
}

func (f *fakeLog) Record(e audit.Event) { f.recorded = append(f.recorded, e) }

func (f *fakeLog) Err() error { return nil }

func (f *fakeLog) Flush(context.Context) error {
	f.flushed++
	return errors.New("flushed")
}

// Every event reaches the audit log and is counted by its type; the types
// keygate knows are exported from the start, at zero.
func TestAuditCounter(t *testing.T) {
	next := &fakeLog{}
	a := NewAuditCounter(next)
	reg := NewRegistry()
	reg.MustRegister(a)
	h := Handler(reg, slog.New(slog.DiscardHandler))

	m := scrape(t, h)
	if v, ok := m[`keygate_audit_events_total{type="signin.refused"}`]; !ok || v != 0 {
		t.Fatalf("signin.refused = %v (present %v); want 0 before any event", v, ok)
	}
	for _, typ := range []string{audit.TokenIssued, audit.TokenIssued, audit.SessionEnd, "scim.user.create"} {
		a.Record(audit.Event{Type: typ, User: "alice"})
	}
	if len(next.recorded) != 4 || next.recorded[3].Type != "scim.user.create" || next.recorded[0].User != "alice" {
		t.Fatalf("audit log received %+v", next.recorded)
	}
	if err := a.Flush(context.Background()); err == nil || next.flushed != 1 {
		t.Fatalf("Flush = %v, flushed %d times; want the log's own result", err, next.flushed)
	}
	m = scrape(t, h)
	for series, want := range map[string]float64{
		`keygate_audit_events_total{type="token.issued"}`:     2,
		`keygate_audit_events_total{type="session.end"}`:      1,
		`keygate_audit_events_total{type="scim.user.create"}`: 1,
		`keygate_audit_events_total{type="session.start"}`:    0,
	} {
		if m[series] != want {
			t.Errorf("%s = %v, want %v", series, m[series], want)
		}
	}
}

// The sessions gauge reads the registry's count at each scrape.
func TestGatewaySessions(t *testing.T) {
	var n atomic.Int64
	reg := NewRegistry()
	reg.MustRegister(GatewaySessions(func() int { return int(n.Load()) }))
	h := Handler(reg, slog.New(slog.DiscardHandler))
	n.Store(3)
	if v := scrape(t, h)["keygate_gateway_sessions"]; v != 3 {
		t.Fatalf("keygate_gateway_sessions = %v, want 3", v)
	}
	n.Store(0)
	if v, ok := scrape(t, h)["keygate_gateway_sessions"]; !ok || v != 0 {
		t.Fatalf("keygate_gateway_sessions = %v (present %v), want 0", v, ok)
	}
}

// The feed lag gauge reads the store's lag at each scrape.
func TestStateFeedLag(t *testing.T) {
	var lag atomic.Int64
	reg := NewRegistry()
	reg.MustRegister(StateFeedLag(func() time.Duration { return time.Duration(lag.Load()) }))
	h := Handler(reg, slog.New(slog.DiscardHandler))
	lag.Store(int64(7500 * time.Millisecond))
	if v := scrape(t, h)["keygate_state_feed_lag_seconds"]; v != 7.5 {
		t.Fatalf("keygate_state_feed_lag_seconds = %v, want 7.5", v)
	}
}

// The registry carries the Go runtime and process metrics, and the handler
// serves only GET /metrics.
func TestRegistryAndHandler(t *testing.T) {
	reg := NewRegistry()
	h := Handler(reg, slog.New(slog.DiscardHandler))
	m := scrape(t, h)
	for _, name := range []string{"go_goroutines", "process_start_time_seconds"} {
		if _, ok := m[name]; !ok {
			t.Errorf("%s missing from the scrape", name)
		}
	}
	for _, r := range []*http.Request{httptest.NewRequest(http.MethodPost, Path, nil), httptest.NewRequest(http.MethodGet, "/", nil)} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code == http.StatusOK {
			t.Errorf("%s %s answered 200", r.Method, r.URL.Path)
		}
	}
}

// The seeds' measures are read from the events that carry them: the
// token's age at session start and a revoked session's time-to-revoke.
func TestMeasuresFromAuditEvents(t *testing.T) {
	a := NewAuditCounter(&fakeLog{})
	reg := NewRegistry()
	reg.MustRegister(a)
	a.Record(audit.Event{Type: audit.SessionStart, Detail: map[string]any{"token_age_ms": int64(90_000)}})
	a.Record(audit.Event{Type: audit.SessionStart, Detail: map[string]any{"token_age_ms": int64(30_000)}})
	a.Record(audit.Event{Type: audit.SessionEnd, Detail: map[string]any{"revoked_after_ms": int64(400)}})
	a.Record(audit.Event{Type: audit.SessionEnd, Detail: map[string]any{"upstream_end": "closed"}})
	m := scrape(t, Handler(reg, slog.New(slog.DiscardHandler)))
	for series, want := range map[string]float64{
		`keygate_token_age_seconds_count`:              2,
		`keygate_token_age_seconds_sum`:                120,
		`keygate_token_age_seconds_bucket{le="60"}`:    1,
		`keygate_revocation_seconds_count`:             1,
		`keygate_revocation_seconds_sum`:               0.4,
		`keygate_revocation_seconds_bucket{le="0.25"}`: 0,
		`keygate_revocation_seconds_bucket{le="0.5"}`:  1,
	} {
		if v, ok := m[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
}
