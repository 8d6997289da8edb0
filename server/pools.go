package server

import (
	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/gateway"
	"github.com/keygate/keygate/metrics"
	"github.com/keygate/keygate/upstream/pool"
)

// pooler is an upstream database that keeps people's connections between
// sessions.
type pooler interface {
	PoolOwners() []pool.Key
	DrainPool(person, level string) int
	PoolStats() pool.Stats
}

// gatewayPool is an upstream's pool as the gateway sees it.
type gatewayPool struct{ p pooler }

func (g gatewayPool) Holders() []gateway.Holder {
	seen := map[gateway.Holder]bool{}
	var out []gateway.Holder
	for _, k := range g.p.PoolOwners() {
		h := gateway.Holder{Person: k.Person, Level: access.Level(k.Level)}
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}

func (g gatewayPool) Drain(person string, level access.Level) int {
	return g.p.DrainPool(person, string(level))
}

// pools are the pools of the databases that keep them, by database name.
func (u Upstreams) pools() map[string]pooler {
	out := map[string]pooler{}
	for name, db := range u.Databases {
		if p, ok := db.(pooler); ok {
			out[name] = p
		}
	}
	return out
}

// gatewayPools are the pools for the gateway's re-checks.
func (u Upstreams) gatewayPools() map[string]gateway.Pool {
	out := map[string]gateway.Pool{}
	for name, p := range u.pools() {
		out[name] = gatewayPool{p}
	}
	return out
}

// poolStates is what the metrics say of each database's pool.
func (s *Server) poolStates() []metrics.PoolState {
	var out []metrics.PoolState
	for name, p := range s.upstreams.pools() {
		st := p.PoolStats()
		out = append(out, metrics.PoolState{Database: name, Open: st.Open, Idle: st.Idle, Waiting: st.Waiting, MaxConnections: st.Max,
			Reused: st.Reused, Logins: st.Dialed, Waits: st.Waits, Timeouts: st.Timeouts, WaitTime: st.WaitTime,
			Evicted: st.Evicted, Expired: st.Expired, Drained: st.Drained})
	}
	return out
}
