package api

import (
	"net/http"
	"testing"

	"github.com/keygate/keygate/config"
)

// TestDatabasesReach checks that db list says where each database the
// person may use is, and where keygate's gateway takes clients for it.
func TestDatabasesReach(t *testing.T) {
	e := newEnv(t)
	cfg := &config.Config{PublicHostnames: []string{"db.example.com", "10.0.0.5"}, Databases: []config.Database{
		{Name: "orders", Engine: config.EnginePostgres, Address: "orders.internal:5432"},
	}}
	e.api.Reach = ConfigReach(cfg, func(string) string { return "0.0.0.0:6543" })
	alice := e.session(t, "alice", "analysts")
	var got []DatabaseAccess
	if code, _ := e.call(t, "GET", "/v1/databases", alice, nil, &got); code != http.StatusOK || len(got) != 1 {
		t.Fatalf("databases: %d %+v", code, got)
	}
	if d := got[0]; d.Engine != "postgres" || d.Address != "orders.internal:5432" || d.Gateway != "db.example.com:6543" {
		t.Errorf("orders = %+v, want engine postgres, address orders.internal:5432, gateway db.example.com:6543", d)
	}
	carol := e.session(t, "carol")
	if code, _ := e.call(t, "GET", "/v1/databases", carol, nil, &got); code != http.StatusOK || len(got) != 0 {
		t.Errorf("carol, who may use nothing, sees %+v", got)
	}
}

func TestConfigReach(t *testing.T) {
	cfg := &config.Config{PublicHostnames: []string{"localhost"}, Databases: []config.Database{
		{Name: "orders", Engine: config.EnginePostgres, Address: "10.1.2.3:5432"},
		{Name: "shop", Engine: "mysql", Address: "10.1.2.4:3306"},
	}}
	reach := ConfigReach(cfg, func(engine string) string {
		if engine == config.EnginePostgres {
			return "127.0.0.1:5433"
		}
		return ""
	})
	if r, ok := reach("orders"); !ok || r != (DatabaseReach{Engine: "postgres", Address: "10.1.2.3:5432", Gateway: "localhost:5433"}) {
		t.Errorf("orders: %+v %v", r, ok)
	}
	if r, ok := reach("shop"); !ok || r.Gateway != "" || r.Address != "10.1.2.4:3306" {
		t.Errorf("shop, whose engine has no listener here: %+v %v", r, ok)
	}
	if _, ok := reach("nope"); ok {
		t.Error("an unknown database has a reach")
	}
}
