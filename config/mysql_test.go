package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// mysqlConfig has a MariaDB database next to a PostgreSQL one. Line
// numbers matter: tests below point at them.
const mysqlConfig = `data_dir: ./data
listen:
  postgres: 127.0.0.1:5433
databases:
  - name: orders
    address: pg.internal:5432
    admin: {user: keygate_admin, password_env: P}
  - name: shop
    engine: mysql
    address: maria.internal:3306
    database: shop_prod
    tls: require
    admin:
      user: keygate_admin
      password_env: SHOP_ADMIN_PASSWORD
`

func TestMySQLDatabase(t *testing.T) {
	c := mustParse(t, mysqlConfig)
	if c.Listen.MySQL != DefaultMySQLListen {
		t.Errorf("Listen.MySQL = %q, want the default %s", c.Listen.MySQL, DefaultMySQLListen)
	}
	want := Database{Name: "shop", Engine: EngineMySQL, Address: "maria.internal:3306", Database: "shop_prod",
		Schemas: []string{"shop_prod"}, TLS: "require",
		Admin: AdminCredential{User: "keygate_admin", PasswordEnv: "SHOP_ADMIN_PASSWORD"},
		Pool:  defaultPool, QueueTimeout: Duration(DefaultQueueTimeout)}
	if !reflect.DeepEqual(c.Databases[1], want) {
		t.Errorf("shop =\n%+v\nwant\n%+v", c.Databases[1], want)
	}
	if !reflect.DeepEqual(c.Databases[0].Schemas, []string{"public"}) {
		t.Errorf("a PostgreSQL database's schemas = %q, want [public]", c.Databases[0].Schemas)
	}
	if !c.Uses(EngineMySQL) || !c.Uses(EnginePostgres) {
		t.Errorf("Uses: mysql %v, postgres %v; want both", c.Uses(EngineMySQL), c.Uses(EnginePostgres))
	}

	raw := strings.NewReplacer("    tls: require\n", "    tls: require\n    local_infile: true\n    schemas: [shop_prod, shop_archive]\n",
		"  postgres: 127.0.0.1:5433\n", "  postgres: 127.0.0.1:5433\n  mysql: 0.0.0.0:3306\n").Replace(mysqlConfig)
	c = mustParse(t, raw)
	if d := c.Databases[1]; !d.LocalInfile || !reflect.DeepEqual(d.Schemas, []string{"shop_prod", "shop_archive"}) {
		t.Errorf("shop = %+v, want local_infile and both schemas", d)
	}
	if c.Listen.MySQL != "0.0.0.0:3306" {
		t.Errorf("Listen.MySQL = %q", c.Listen.MySQL)
	}
}

// An install that fronts only PostgreSQL does not use the MySQL listener,
// so nothing about it conflicts with the others.
func TestMySQLListenerOnlyWithMySQLDatabases(t *testing.T) {
	c := mustParse(t, minimal+"listen:\n  postgres: 127.0.0.1:3307\n")
	if c.Uses(EngineMySQL) {
		t.Error("Uses(mysql) without a mysql database")
	}
	if c.Listen.MySQL != DefaultMySQLListen {
		t.Errorf("Listen.MySQL = %q, want the default", c.Listen.MySQL)
	}
	msg := parseErr(t, strings.Replace(mysqlConfig, "postgres: 127.0.0.1:5433", "postgres: 127.0.0.1:3307", 1))
	if want := `listen.mysql "127.0.0.1:3307" and listen.postgres "127.0.0.1:3307" take the same port`; !strings.Contains(msg, want) {
		t.Errorf("error %q lacks %q", msg, want)
	}
}

func TestMySQLValidation(t *testing.T) {
	tests := []struct {
		name     string
		old, new string
		atLine   string
		message  string
	}{
		{
			name: "unknown engine",
			old:  "engine: mysql", new: "engine: oracle", atLine: "engine: oracle",
			message: `database "shop": engine "oracle" is not supported; use postgres or mysql (for MySQL and MariaDB)`,
		},
		{
			name: "owner_role on mysql",
			old:  "    tls: require\n", new: "    tls: require\n    owner_role: shop_owner\n", atLine: "owner_role: shop_owner",
			message: `database "shop": owner_role is for PostgreSQL only`,
		},
		{
			name: "local_infile on postgres",
			old:  "    address: pg.internal:5432\n", new: "    address: pg.internal:5432\n    local_infile: true\n", atLine: "local_infile: true",
			message: `database "orders": local_infile is for engine mysql only`,
		},
		{
			name: "mysql admin user missing",
			old:  "      user: keygate_admin\n      password_env: SHOP", new: "      password_env: SHOP", atLine: "    admin:\n      password_env: SHOP",
			message: `database "shop": admin.user is required: a user with CREATE USER, PROCESS and CONNECTION ADMIN`,
		},
		{
			name: "listen.mysql not host:port",
			old:  "  postgres: 127.0.0.1:5433\n", new: "  postgres: 127.0.0.1:5433\n  mysql: '3307'\n", atLine: "mysql: '3307'",
			message: `listen.mysql "3307" is not host:port`,
		},
		{
			name: "listen.mysql on the API's port",
			old:  "  postgres: 127.0.0.1:5433\n", new: "  postgres: 127.0.0.1:5433\n  mysql: 127.0.0.1:8443\n", atLine: "mysql: 127.0.0.1:8443",
			message: `listen.api "127.0.0.1:8443" and listen.mysql "127.0.0.1:8443" take the same port`,
		},
		{
			name: "listen.mysql on every address, on the PostgreSQL port",
			old:  "  postgres: 127.0.0.1:5433\n", new: "  postgres: 127.0.0.1:5433\n  mysql: 0.0.0.0:5433\n", atLine: "mysql: 0.0.0.0:5433",
			message: `listen.mysql "0.0.0.0:5433" and listen.postgres "127.0.0.1:5433" take the same port`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(mysqlConfig, tt.old) {
				t.Fatalf("test bug: %q not in the config", tt.old)
			}
			raw := strings.Replace(mysqlConfig, tt.old, tt.new, 1)
			msg := parseErr(t, raw)
			idx := strings.Index(raw, tt.atLine)
			if idx < 0 {
				t.Fatalf("test bug: %q not in config", tt.atLine)
			}
			want := fmt.Sprintf("%s:%d: %s", testPath, strings.Count(raw[:idx], "\n")+1, tt.message)
			if !strings.Contains(msg, want) {
				t.Errorf("error\n  %q\nwant it to contain\n  %q", msg, want)
			}
		})
	}
}

func TestListenerConflicts(t *testing.T) {
	tests := []struct {
		listen   string
		conflict bool
	}{
		{"{api: 127.0.0.1:8443, postgres: 127.0.0.1:8443}", true},
		{"{api: 0.0.0.0:8443, postgres: 127.0.0.1:8443}", true},
		{"{api: ':8443', postgres: 10.0.0.5:8443}", true},
		{"{api: '[::]:8443', postgres: 10.0.0.5:8443}", true},
		{"{api: 127.0.0.1:9090, metrics: 127.0.0.1:9090}", true},
		{"{api: 127.0.0.1:8443, postgres: 10.0.0.5:8443}", false},
		{"{api: 127.0.0.1:0, postgres: 127.0.0.1:0, metrics: 127.0.0.1:0}", false},
	}
	for _, tt := range tests {
		_, err := Parse(testPath, []byte(minimal+"listen: "+tt.listen+"\n"))
		if got := err != nil && strings.Contains(err.Error(), "take the same port"); got != tt.conflict {
			t.Errorf("listen %s: conflict %v, want %v (err %v)", tt.listen, got, tt.conflict, err)
		}
	}
}

func TestLoadLocationReadsMySQLListener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keygate.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("data_dir: ./data\nlisten:\n  mysql: 127.0.0.1:4407\n")
	c, err := LoadLocation(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.MySQL != "127.0.0.1:4407" {
		t.Errorf("Listen.MySQL = %q", c.Listen.MySQL)
	}
	write("data_dir: ./data\n")
	if c, err = LoadLocation(path); err != nil || c.Listen.MySQL != DefaultMySQLListen {
		t.Errorf("Listen.MySQL = %q (%v), want the default", c.Listen.MySQL, err)
	}
}
