package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/identity"
)

// exampleConfig is a complete configuration as a person would write it.
// Line numbers matter: tests below point at them.
const exampleConfig = `# keygate example
data_dir: ./data
public_hostnames: [db.example.com, 10.0.0.5]
listen:
  api: 0.0.0.0:8443
  postgres: 0.0.0.0:5433
  metrics: 127.0.0.1:9090
log:
  level: debug
  format: json
databases:
  - name: orders
    engine: postgres
    address: pg.internal:5432
    database: orders_prod
    schemas: [public, sales]
    tags: {environment: production, team: shop}
    tls: verify-full
    tls_ca_file: /etc/keygate/rds-ca.pem
    admin:
      user: keygate_admin
      password_env: ORDERS_ADMIN_PASSWORD
  - name: analytics
    address: warehouse:5432
    admin:
      user: keygate_admin
      password_env: ANALYTICS_ADMIN_PASSWORD
permission_sets:
  - name: db-readonly
    access: ro
    token_ttl: 15m
  - name: db-readwrite
    access: rw
    token_ttl: 1h
  - name: db-admin
    access: admin
assignments:
  - group: analysts
    permission_set: db-readonly
    databases: [orders, analytics]
  - group: engineers
    permission_set: db-readwrite
    databases: [orders]
  - group: dba
    permission_set: db-admin
    databases: ["*"]
shutdown_grace: 1d
`

// minimal is the smallest valid configuration.
const minimal = "data_dir: /var/lib/keygate\n"

const testPath = "/etc/keygate/keygate.yaml"

func mustParse(t *testing.T, raw string) *Config {
	t.Helper()
	c, err := Parse(testPath, []byte(raw))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func parseErr(t *testing.T, raw string) string {
	t.Helper()
	_, err := Parse(testPath, []byte(raw))
	if err == nil {
		t.Fatalf("Parse succeeded; want an error for:\n%s", raw)
	}
	return err.Error()
}

func TestExampleParses(t *testing.T) {
	c := mustParse(t, exampleConfig)
	if c.Path() != testPath {
		t.Errorf("Path() = %q, want %q", c.Path(), testPath)
	}
	if c.DataDir != "./data" {
		t.Errorf("DataDir = %q", c.DataDir)
	}
	if want := []string{"db.example.com", "10.0.0.5"}; !reflect.DeepEqual(c.PublicHostnames, want) {
		t.Errorf("PublicHostnames = %q, want %q", c.PublicHostnames, want)
	}
	if c.Listen != (Listen{API: "0.0.0.0:8443", Postgres: "0.0.0.0:5433", MySQL: DefaultMySQLListen, Metrics: "127.0.0.1:9090"}) {
		t.Errorf("Listen = %+v", c.Listen)
	}
	if c.Log != (Log{Level: "debug", Format: "json"}) {
		t.Errorf("Log = %+v", c.Log)
	}
	if got, want := time.Duration(c.ShutdownGrace), 24*time.Hour; got != want {
		t.Errorf("ShutdownGrace = %s, want %s", got, want)
	}
	wantDBs := []Database{
		{
			Name: "orders", Engine: "postgres", Address: "pg.internal:5432", Database: "orders_prod",
			Schemas: []string{"public", "sales"}, Tags: map[string]string{"environment": "production", "team": "shop"},
			Admin: AdminCredential{User: "keygate_admin", PasswordEnv: "ORDERS_ADMIN_PASSWORD"},
			TLS:   "verify-full", TLSCAFile: "/etc/keygate/rds-ca.pem",
			Pool: defaultPool, QueueTimeout: Duration(DefaultQueueTimeout),
		},
		{
			Name: "analytics", Engine: "postgres", Address: "warehouse:5432", Database: "analytics",
			Schemas: []string{"public"},
			Admin:   AdminCredential{User: "keygate_admin", PasswordEnv: "ANALYTICS_ADMIN_PASSWORD"},
			TLS:     "prefer",
			Pool:    defaultPool, QueueTimeout: Duration(DefaultQueueTimeout),
		},
	}
	if !reflect.DeepEqual(c.Databases, wantDBs) {
		t.Errorf("Databases =\n%+v\nwant\n%+v", c.Databases, wantDBs)
	}
	wantSets := []PermissionSet{
		{Name: "db-readonly", Access: "ro", TokenTTL: Duration(15 * time.Minute)},
		{Name: "db-readwrite", Access: "rw", TokenTTL: Duration(time.Hour)},
		{Name: "db-admin", Access: "admin", TokenTTL: Duration(access.DefaultTokenTTL)},
	}
	if !reflect.DeepEqual(c.PermissionSets, wantSets) {
		t.Errorf("PermissionSets = %+v, want %+v", c.PermissionSets, wantSets)
	}
	wantAs := []Assignment{
		{Group: "analysts", PermissionSet: "db-readonly", Databases: []string{"orders", "analytics"}},
		{Group: "engineers", PermissionSet: "db-readwrite", Databases: []string{"orders"}},
		{Group: "dba", PermissionSet: "db-admin", Databases: []string{"*"}},
	}
	if !reflect.DeepEqual(c.Assignments, wantAs) {
		t.Errorf("Assignments = %+v, want %+v", c.Assignments, wantAs)
	}

	d, ok := c.FindDatabase("analytics")
	if !ok || d.Address != "warehouse:5432" {
		t.Errorf("FindDatabase(analytics) = %+v, %v", d, ok)
	}
	if _, ok := c.FindDatabase("nope"); ok {
		t.Error("FindDatabase(nope) found something")
	}
	ad := wantDBs[0].AccessDatabase()
	if ad.Name != "orders" || ad.Tags["team"] != "shop" {
		t.Errorf("AccessDatabase = %+v", ad)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keygate.yaml")
	if err := os.WriteFile(path, []byte(exampleConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Path() != path {
		t.Errorf("Path() = %q, want %q", c.Path(), path)
	}
	if got, want := c.DataPath("keys.json"), filepath.Join(dir, "data", "keys.json"); got != want {
		t.Errorf("DataPath = %q, want %q", got, want)
	}

	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "read config") {
		t.Errorf("Load(missing) = %v, want a read config error", err)
	}
}

func TestLoadRelativePathIsMadeAbsolute(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k.yaml"), []byte("data_dir: state\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	c, err := Load("k.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(c.Path()) {
		t.Errorf("Path() = %q, want absolute", c.Path())
	}
	// Resolve must not depend on the working directory once loaded.
	t.Chdir(t.TempDir())
	if got, want := c.DataPath("x"), filepath.Join(dir, "state", "x"); got != want {
		t.Errorf("DataPath after chdir = %q, want %q", got, want)
	}
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, minimal+`databases:
  - name: orders
    address: pg:5432
    admin: {user: a, password_env: P}
permission_sets:
  - name: ro
    access: ro
`)
	if c.Listen.API != DefaultAPIListen || c.Listen.Postgres != DefaultPostgresListen {
		t.Errorf("Listen = %+v, want defaults %s / %s", c.Listen, DefaultAPIListen, DefaultPostgresListen)
	}
	if c.Listen.Metrics != "" {
		t.Errorf("Listen.Metrics = %q, want empty: metrics are off unless configured", c.Listen.Metrics)
	}
	if want := []string{"localhost", "127.0.0.1"}; !reflect.DeepEqual(c.PublicHostnames, want) {
		t.Errorf("PublicHostnames = %q, want %q", c.PublicHostnames, want)
	}
	if time.Duration(c.ShutdownGrace) != DefaultShutdownGrace {
		t.Errorf("ShutdownGrace = %s, want %s", time.Duration(c.ShutdownGrace), DefaultShutdownGrace)
	}
	if c.Log != (Log{Level: "info", Format: "text"}) {
		t.Errorf("Log = %+v, want info/text", c.Log)
	}
	d := c.Databases[0]
	if d.Engine != EnginePostgres {
		t.Errorf("Engine = %q, want %q", d.Engine, EnginePostgres)
	}
	if d.Database != "orders" {
		t.Errorf("Database = %q, want the name", d.Database)
	}
	if !reflect.DeepEqual(d.Schemas, []string{"public"}) {
		t.Errorf("Schemas = %q, want [public]", d.Schemas)
	}
	if d.TLS != "prefer" {
		t.Errorf("TLS = %q, want prefer", d.TLS)
	}
	if got := time.Duration(c.PermissionSets[0].TokenTTL); got != 15*time.Minute {
		t.Errorf("TokenTTL = %s, want 15m", got)
	}
}

func TestUnknownKeyNamesItsLine(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want []string
	}{
		{"top level", "data_dir: x\ndatadir: y\n", []string{`:2: unknown key "datadir"; did you mean "data_dir"?`}},
		{"nested in listen", "data_dir: x\nlisten:\n  api: 127.0.0.1:1\n  postgress: 127.0.0.1:2\n", []string{`:4: unknown key "postgress"; did you mean "postgres"?`}},
		{"metrics misspelt", "data_dir: x\nlisten:\n  metric: 127.0.0.1:9090\n", []string{`:3: unknown key "metric"; did you mean "metrics"?`}},
		{"in a database", minimal + "databases:\n  - name: orders\n    adress: pg:5432\n", []string{`:4: unknown key "adress"; did you mean "address"?`}},
		{"in admin", minimal + "databases:\n  - name: orders\n    address: pg:5432\n    admin:\n      user: a\n      password: hunter2\n", []string{`:7: unknown key "password"; did you mean "password_env"?`}},
		{"in a permission set", minimal + "permission_sets:\n  - name: ro\n    acces: ro\n", []string{`:4: unknown key "acces"; did you mean "access"?`}},
		{"in an assignment", minimal + "assignments:\n  - group: g\n    permission_sets: ro\n", []string{`:4: unknown key "permission_sets"; did you mean "permission_set"?`}},
		{"several at once", "data_dir: x\nfoo: 1\nlisten:\n  apii: 1\n", []string{`:2: unknown key "foo" (known here: data_dir, public_hostnames, listen,`, `:4: unknown key "apii"; did you mean "api"?`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := parseErr(t, tt.raw)
			for _, w := range tt.want {
				if !strings.Contains(msg, testPath+w) {
					t.Errorf("error %q does not contain %q", msg, testPath+w)
				}
			}
			if strings.Contains(msg, "not found in type") {
				t.Errorf("error %q leaks yaml's internal wording", msg)
			}
		})
	}
}

// Every mistake has the same form, "file:LINE: what", whether yaml or
// keygate found it.
func TestSyntaxError(t *testing.T) {
	msg := parseErr(t, "data_dir: x\nlisten: [\n")
	if !strings.HasPrefix(msg, testPath+":2: ") || strings.Contains(msg, "yaml: ") {
		t.Errorf("error %q: want the file name, the line and no yaml: prefix", msg)
	}
}

// lineOf returns the 1-based line in raw that contains needle.
func lineOf(t *testing.T, raw, needle string) int {
	t.Helper()
	for i, l := range strings.Split(raw, "\n") {
		if strings.Contains(l, needle) {
			return i + 1
		}
	}
	t.Fatalf("%q not in config", needle)
	return 0
}

func TestValidationErrorsCarryFileAndLine(t *testing.T) {
	tests := []struct {
		name    string
		old     string // text in exampleConfig to replace
		new     string
		atLine  string // the error's line is the first line of this (unique) text
		message string
	}{
		{
			name: "assignment names unknown permission set",
			old:  "permission_set: db-readwrite", new: "permission_set: db-writer", atLine: "permission_set: db-writer",
			message: `assignment for group "engineers" names permission set "db-writer", which is not defined under permission_sets`,
		},
		{
			name: "assignment names unknown database",
			old:  "databases: [orders]\n", new: "databases: [orders, billing]\n", atLine: "databases: [orders, billing]",
			message: `assignment for group "engineers" names database "billing", which is not defined under databases`,
		},
		{
			name: "token_ttl over an hour",
			old:  "token_ttl: 1h", new: "token_ttl: 61m", atLine: "token_ttl: 61m",
			message: `permission set "db-readwrite": token_ttl 1h1m0s must be between 1s and 1h0m0s`,
		},
		{
			name: "token_ttl under a second",
			old:  "token_ttl: 15m", new: "token_ttl: 500ms", atLine: "token_ttl: 500ms",
			message: `permission set "db-readonly": token_ttl 500ms must be between 1s`,
		},
		{
			name: "negative token_ttl",
			old:  "token_ttl: 15m", new: "token_ttl: -5m", atLine: "token_ttl: -5m",
			message: `permission set "db-readonly": token_ttl -5m0s must be between 1s`,
		},
		{
			name: "bad access level",
			old:  "access: rw", new: "access: write", atLine: "access: write",
			message: `permission set "db-readwrite": unknown access level "write": use ro, rw or admin`,
		},
		{
			name: "duplicate database",
			old:  "  - name: analytics\n", new: "  - name: orders\n", atLine: "  - name: orders\n    address: warehouse",
			message: `database "orders" is defined twice`,
		},
		{
			name: "duplicate permission set",
			old:  "  - name: db-admin\n", new: "  - name: db-readonly\n", atLine: "  - name: db-readonly\n    access: admin",
			message: `permission set "db-readonly" is defined twice`,
		},
		{
			name: "missing admin.user",
			old:  "      user: keygate_admin\n      password_env: ORDERS", new: "      password_env: ORDERS", atLine: "    admin:\n      password_env: ORDERS",
			message: `database "orders": admin.user is required`,
		},
		{
			name: "missing admin.password_env",
			old:  "      password_env: ANALYTICS_ADMIN_PASSWORD\n", new: "", atLine: "    admin:\n      user: keygate_admin\npermission_sets",
			message: `database "analytics": admin.password_env is required`,
		},
		{
			name: "bad database name",
			old:  "name: analytics", new: "name: Analytics", atLine: "name: Analytics",
			message: `database name "Analytics": use 1-40 lower-case letters`,
		},
		{
			name: "unsupported engine",
			old:  "engine: postgres", new: "engine: oracle", atLine: "engine: oracle",
			message: `database "orders": engine "oracle" is not supported; use postgres`,
		},
		{
			name: "address without port",
			old:  "address: warehouse:5432", new: "address: warehouse", atLine: "address: warehouse",
			message: `database "analytics": address "warehouse" is not host:port`,
		},
		{
			name: "bad tls mode",
			old:  "tls: verify-full", new: "tls: always", atLine: "tls: always",
			message: `database "orders": tls "always": use disable, prefer, require or verify-full`,
		},
		{
			name: "verify-full without a CA file",
			old:  "    tls_ca_file: /etc/keygate/rds-ca.pem\n", new: "", atLine: "tls: verify-full",
			message: `database "orders": tls verify-full needs tls_ca_file`,
		},
		{
			name: "bad log level",
			old:  "level: debug", new: "level: verbose", atLine: "level: verbose",
			message: `log.level "verbose": use debug, info, warn or error`,
		},
		{
			name: "bad log format",
			old:  "format: json", new: "format: xml", atLine: "format: xml",
			message: `log.format "xml": use text or json`,
		},
		{
			name: "listen address without port",
			old:  "api: 0.0.0.0:8443", new: "api: 0.0.0.0", atLine: "api: 0.0.0.0",
			message: `listen.api "0.0.0.0" is not host:port`,
		},
		{
			name: "metrics listen address without port",
			old:  "metrics: 127.0.0.1:9090", new: "metrics: 127.0.0.1", atLine: "metrics: 127.0.0.1",
			message: `listen.metrics "127.0.0.1" is not host:port`,
		},
		{
			name: "assignment without databases",
			old:  "databases: [orders]\n", new: "databases: []\n", atLine: "databases: []",
			message: `assignment for group "engineers" lists no databases`,
		},
		{
			name: "assignment without group",
			old:  "  - group: engineers\n    permission_set", new: "  - permission_set", atLine: "  - permission_set: db-readwrite",
			message: `assignment without a group`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(exampleConfig, tt.old) {
				t.Fatalf("test bug: %q not in example", tt.old)
			}
			raw := strings.Replace(exampleConfig, tt.old, tt.new, 1)
			msg := parseErr(t, raw)
			idx := strings.Index(raw, tt.atLine)
			if idx < 0 {
				t.Fatalf("test bug: %q not in config", tt.atLine)
			}
			line := strings.Count(raw[:idx], "\n") + 1
			want := fmt.Sprintf("%s:%d: %s", testPath, line, tt.message)
			if !strings.Contains(msg, want) {
				t.Errorf("error\n  %q\nwant it to contain\n  %q", msg, want)
			}
		})
	}
}

func TestAllValidationErrorsReported(t *testing.T) {
	raw := strings.NewReplacer("access: rw", "access: write", "level: debug", "level: loud").Replace(exampleConfig)
	msg := parseErr(t, raw)
	for _, w := range []string{`unknown access level "write"`, `log.level "loud"`} {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not report %q", msg, w)
		}
	}
}

func TestDataDirRequired(t *testing.T) {
	msg := parseErr(t, "log: {level: info}\n")
	if !strings.Contains(msg, "data_dir is required") || !strings.HasPrefix(msg, testPath) {
		t.Errorf("error %q: want data_dir is required, prefixed by the file", msg)
	}
}

// TestMissingAdminBlockNamesDatabaseLine checks that a database entry without
// any admin block still gets a line number in its error.
func TestMissingAdminBlockNamesDatabaseLine(t *testing.T) {
	raw := minimal + "databases:\n  - name: orders\n    address: pg:5432\n"
	msg := parseErr(t, raw)
	if !strings.Contains(msg, "admin.user is required") {
		t.Fatalf("error %q does not mention admin.user", msg)
	}
	if !regexp.MustCompile(regexp.QuoteMeta(testPath) + `:\d+: database "orders": admin.user`).MatchString(msg) {
		t.Fatalf("error %q: want the line of the database entry", msg)
	}
}

// TestBadDurationNamesItsLine checks that an unparsable duration names the
// line it is on, like every other mistake in the file.
func TestBadDurationNamesItsLine(t *testing.T) {
	raw := strings.Replace(exampleConfig, "token_ttl: 15m", "token_ttl: 15 minutes", 1)
	msg := parseErr(t, raw)
	if !strings.Contains(msg, `invalid duration "15 minutes"`) {
		t.Fatalf("error %q does not name the bad duration", msg)
	}
	want := fmt.Sprintf("%s:%d: ", testPath, lineOf(t, raw, "token_ttl: 15 minutes"))
	if !strings.Contains(msg, want) {
		t.Fatalf("error %q does not name %s", msg, want)
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"15m", 15 * time.Minute, false},
		{"8h", 8 * time.Hour, false},
		{"1h30m", 90 * time.Minute, false},
		{"500ms", 500 * time.Millisecond, false},
		{"0", 0, false},
		{"1d", 24 * time.Hour, false},
		{"30d", 30 * 24 * time.Hour, false},
		{"365d", 365 * 24 * time.Hour, false},
		{"0d", 0, false},
		{"-1d", 0, true},
		{"1.5d", 0, true},
		{"d", 0, true},
		{"1h1d", 0, true},
		{"15", 0, true},
		{"", 0, true},
		{"fifteen minutes", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseDuration(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && got != tt.want {
			t.Errorf("ParseDuration(%q) = %s, want %s", tt.in, got, tt.want)
		}
		if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.in)) {
			t.Errorf("ParseDuration(%q) error %q does not quote the input", tt.in, err)
		}
	}
}

// TestParseDurationDaysOverflow checks that a day count too large for a
// time.Duration is refused instead of wrapping around.
func TestParseDurationDaysOverflow(t *testing.T) {
	for _, in := range []string{"106752d", "200000d", "9223372036854775807d"} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %s, want an error", in, got)
		}
	}
}

func TestDurationInYAML(t *testing.T) {
	c := mustParse(t, minimal+"shutdown_grace: 2d\n")
	if got := time.Duration(c.ShutdownGrace); got != 48*time.Hour {
		t.Errorf("ShutdownGrace = %s, want 48h", got)
	}
	c = mustParse(t, minimal+"shutdown_grace: 90s\n")
	if got := time.Duration(c.ShutdownGrace); got != 90*time.Second {
		t.Errorf("ShutdownGrace = %s, want 90s", got)
	}
}

func TestResolveAndDataPath(t *testing.T) {
	tests := []struct {
		path, dataDir, in, resolved, data string
	}{
		{"/etc/keygate/keygate.yaml", "./data", "ca.pem", "/etc/keygate/ca.pem", "/etc/keygate/data/keys.json"},
		{"/etc/keygate/keygate.yaml", "data", "sub/ca.pem", "/etc/keygate/sub/ca.pem", "/etc/keygate/data/keys.json"},
		{"/etc/keygate/keygate.yaml", "../state", "../x", "/etc/x", "/etc/state/keys.json"},
		{"/etc/keygate/keygate.yaml", "/var/lib/keygate", "/abs/ca.pem", "/abs/ca.pem", "/var/lib/keygate/keys.json"},
		{"/srv/k.yaml", ".", "", "", "/srv/keys.json"},
	}
	for _, tt := range tests {
		c, err := Parse(tt.path, []byte("data_dir: "+tt.dataDir+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Resolve(tt.in); got != tt.resolved {
			t.Errorf("[%s] Resolve(%q) = %q, want %q", tt.path, tt.in, got, tt.resolved)
		}
		if got := c.DataPath("keys.json"); got != tt.data {
			t.Errorf("[%s, data_dir %s] DataPath = %q, want %q", tt.path, tt.dataDir, got, tt.data)
		}
	}
}

func TestAPIURL(t *testing.T) {
	tests := []struct {
		api, hosts, want string
	}{
		{"0.0.0.0:8443", "[db.example.com, 10.0.0.5]", "https://db.example.com:8443"},
		{"[::]:8443", "[db.example.com]", "https://db.example.com:8443"},
		{":9000", "[gw.example.com]", "https://gw.example.com:9000"},
		{"127.0.0.1:8443", "[db.example.com]", "https://127.0.0.1:8443"},
		{"10.1.2.3:443", "[db.example.com]", "https://10.1.2.3:443"},
		{"gw.internal:8443", "[db.example.com]", "https://gw.internal:8443"},
		{"0.0.0.0:8443", "[10.0.0.5, db.example.com]", "https://10.0.0.5:8443"},
		{"0.0.0.0:8443", "['::1']", "https://[::1]:8443"},
		{"[::1]:8443", "[localhost]", "https://[::1]:8443"},
	}
	for _, tt := range tests {
		c := mustParse(t, fmt.Sprintf("%spublic_hostnames: %s\nlisten: {api: %q}\n", minimal, tt.hosts, tt.api))
		if got := c.APIURL(); got != tt.want {
			t.Errorf("listen.api %s, public_hostnames %s: APIURL = %q, want %q", tt.api, tt.hosts, got, tt.want)
		}
	}
	// The default public hostname is localhost.
	c := mustParse(t, minimal+"listen: {api: '0.0.0.0:8443'}\n")
	if got := c.APIURL(); got != "https://localhost:8443" {
		t.Errorf("default hostnames: APIURL = %q, want https://localhost:8443", got)
	}
}

func TestPolicy(t *testing.T) {
	c := mustParse(t, exampleConfig)
	p, err := c.Policy()
	if err != nil {
		t.Fatalf("Policy: %v", err)
	}
	orders, _ := c.FindDatabase("orders")
	analytics, _ := c.FindDatabase("analytics")
	alice := identity.Principal{UserName: "alice", Active: true, Groups: []string{"analysts"}}
	eve := identity.Principal{UserName: "eve", Active: true, Groups: []string{"engineers"}}
	dan := identity.Principal{UserName: "dan", Active: true, Groups: []string{"dba"}}
	tests := []struct {
		who   identity.Principal
		db    Database
		level access.Level
		allow bool
		ttl   time.Duration
	}{
		{alice, orders, access.ReadOnly, true, 15 * time.Minute},
		{alice, analytics, access.ReadOnly, true, 15 * time.Minute},
		{alice, orders, access.ReadWrite, false, 0},
		{eve, orders, access.ReadWrite, true, time.Hour},
		{eve, orders, access.ReadOnly, true, time.Hour},
		{eve, analytics, access.ReadOnly, false, 0},
		{dan, analytics, access.Admin, true, access.DefaultTokenTTL},
		{dan, orders, access.Admin, true, access.DefaultTokenTTL},
	}
	for _, tt := range tests {
		d := p.Decide(tt.who, tt.db.AccessDatabase(), tt.level)
		if d.Allowed != tt.allow {
			t.Errorf("%s on %s at %s: Allowed = %v, want %v (%s)", tt.who.UserName, tt.db.Name, tt.level, d.Allowed, tt.allow, d.Reason)
		}
		if d.TokenTTL() != tt.ttl {
			t.Errorf("%s on %s at %s: TokenTTL = %s, want %s", tt.who.UserName, tt.db.Name, tt.level, d.TokenTTL(), tt.ttl)
		}
	}
}

// LoadLocation reads where the server is from a file whose access rules
// do not validate, so that admin commands work while it is being edited.
func TestLoadLocation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keygate.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("data_dir: ./data\nlisten:\n  api: 0.0.0.0:9443\npublic_hostnames: [kg.example.com]\nassignments:\n  - group: analysts\n    permission_set: missing\n")
	if _, err := Load(path); err == nil {
		t.Fatal("Load accepted an assignment to an undefined permission set")
	}
	c, err := LoadLocation(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.APIURL() != "https://kg.example.com:9443" || c.DataPath("x") != filepath.Join(dir, "data", "x") {
		t.Errorf("APIURL %s, DataPath %s", c.APIURL(), c.DataPath("x"))
	}
	write("listen: {api: 127.0.0.1:1}\n")
	if _, err := LoadLocation(path); err == nil || !strings.Contains(err.Error(), "data_dir is required") {
		t.Errorf("without data_dir: %v", err)
	}
	write("data_dir: [\n")
	if _, err := LoadLocation(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("broken YAML: %v", err)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Minute:                      "1m",
		10 * time.Minute:                 "10m",
		90 * time.Second:                 "1m30s",
		time.Hour:                        "1h",
		90 * time.Minute:                 "1h30m",
		24 * time.Hour:                   "24h",
		time.Hour + 30*time.Second:       "1h0m30s",
		200 * time.Millisecond:           "200ms",
		time.Hour + 500*time.Millisecond: "1h0m0.5s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%s) = %q, want %q", d, got, want)
		}
	}
}
