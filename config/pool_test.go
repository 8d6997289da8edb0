package config

import (
	"strings"
	"testing"
	"time"
)

// defaultPool is what a database without a pool section gets.
var defaultPool = Pool{IdleTimeout: Duration(DefaultPoolIdleTimeout)}

func TestPoolAndBudget(t *testing.T) {
	c := mustParse(t, mysqlConfig)
	if d := c.Databases[0]; !d.Pool.On() || d.MaxConnections != 0 || time.Duration(d.QueueTimeout) != DefaultQueueTimeout {
		t.Errorf("defaults: pool on %v, max_connections %d, queue_timeout %s; want on, 0, %s", d.Pool.On(), d.MaxConnections, time.Duration(d.QueueTimeout), DefaultQueueTimeout)
	}
	raw := strings.Replace(mysqlConfig, "    tls: require\n", `    tls: require
    pool: {enabled: false, idle_timeout: 5m, max_idle: 7}
    max_connections: 40
    max_connections_per_person: 4
    queue_timeout: 2s
`, 1)
	d := mustParse(t, raw).Databases[1]
	if d.Pool.On() || time.Duration(d.Pool.IdleTimeout) != 5*time.Minute || d.Pool.MaxIdle != 7 ||
		d.MaxConnections != 40 || d.MaxConnectionsPerPerson != 4 || time.Duration(d.QueueTimeout) != 2*time.Second {
		t.Errorf("shop = %+v", d)
	}
	for _, tc := range []struct{ set, want string }{
		{"    max_connections: -1\n", "must be 0 (none) or more"},
		{"    max_connections: 4\n    max_connections_per_person: 5\n", "max_connections_per_person 5 is more than max_connections 4"},
		{"    queue_timeout: -1s\n", "must be positive"},
	} {
		msg := parseErr(t, strings.Replace(mysqlConfig, "    tls: require\n", "    tls: require\n"+tc.set, 1))
		if !strings.Contains(msg, tc.want) {
			t.Errorf("%q: error %q, want it to say %q", tc.set, msg, tc.want)
		}
	}
}
