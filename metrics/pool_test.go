package metrics

import (
	"log/slog"
	"testing"
	"time"
)

// Each database's pool is exported with its name: sizes as gauges, waits,
// time-outs and closes as counters.
func TestPoolCollector(t *testing.T) {
	reg := NewRegistry()
	reg.MustRegister(NewPoolCollector(func() []PoolState {
		return []PoolState{{Database: "orders", Open: 5, Idle: 2, Waiting: 1, MaxConnections: 8, Reused: 40, Logins: 7, Waits: 3,
			WaitTime: 1500 * time.Millisecond, Timeouts: 1, Evicted: 4, Expired: 5, Drained: 6}}
	}))
	got := scrape(t, Handler(reg, slog.New(slog.DiscardHandler)))
	for name, want := range map[string]float64{
		`keygate_pool_connections{database="orders"}`:                   5,
		`keygate_pool_idle_connections{database="orders"}`:              2,
		`keygate_pool_waiting_sessions{database="orders"}`:              1,
		`keygate_pool_max_connections{database="orders"}`:               8,
		`keygate_pool_reused_total{database="orders"}`:                  40,
		`keygate_pool_logins_total{database="orders"}`:                  7,
		`keygate_pool_waits_total{database="orders"}`:                   3,
		`keygate_pool_wait_seconds_total{database="orders"}`:            1.5,
		`keygate_pool_timeouts_total{database="orders"}`:                1,
		`keygate_pool_closed_total{database="orders",reason="evicted"}`: 4,
		`keygate_pool_closed_total{database="orders",reason="expired"}`: 5,
		`keygate_pool_closed_total{database="orders",reason="drained"}`: 6,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
}
