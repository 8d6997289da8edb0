package server

import (
	"testing"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/upstream"
)

// Every engine's databases keep pools the gateway re-checks and the
// metrics report: a database whose upstream lost the pool's methods would
// keep revoked people's pooled connections.
func TestEveryDatabaseHasAPool(t *testing.T) {
	raw := `data_dir: ./data
databases:
  - name: orders
    address: 127.0.0.1:1
    admin: {user: keygate_admin, password_env: P}
  - name: shop
    engine: mysql
    address: 127.0.0.1:1
    admin: {user: keygate_admin, password_env: P}
`
	cfg, err := config.Parse(t.TempDir()+"/keygate.yaml", []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	ups, err := OpenUpstreams(cfg, upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ups.Close()
	pools := ups.gatewayPools()
	for _, name := range []string{"orders", "shop"} {
		if _, ok := pools[name]; !ok {
			t.Errorf("database %s has no pool for the gateway", name)
		}
	}
}
