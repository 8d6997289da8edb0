// Package config reads keygate's YAML configuration. Reading is strict: an
// unknown key is an error that names its line, because a misspelt key that is
// silently ignored is how access rules quietly stop applying.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/internal/suggest"
)

// Config is the whole configuration file.
type Config struct {
	DataDir         string          `yaml:"data_dir"`
	PublicHostnames []string        `yaml:"public_hostnames"`
	Listen          Listen          `yaml:"listen"`
	Log             Log             `yaml:"log"`
	Databases       []Database      `yaml:"databases"`
	PermissionSets  []PermissionSet `yaml:"permission_sets"`
	Assignments     []Assignment    `yaml:"assignments"`
	Deny            []Deny          `yaml:"deny"`
	// PolicyFile is a file of Cedar policies for what the YAML cannot
	// say; relative to the config file.
	PolicyFile string `yaml:"policy_file"`
	// GroupNaming assigns permission sets to groups by their names.
	GroupNaming GroupNaming `yaml:"group_naming"`
	SSO         SSO         `yaml:"sso"`
	// ShutdownGrace is how long a stopping server lets live sessions finish
	// before it ends them.
	ShutdownGrace Duration `yaml:"shutdown_grace"`
	// PublicURL is the API's base URL as people, identity providers and
	// the CLI reach it, https://HOST or https://HOST:PORT, for keygate
	// behind a reverse proxy or load balancer: sign-in (the SAML ACS URL
	// and default entity ID, the OIDC redirect URL, the link keygate
	// login prints) and SCIM resource locations name it instead of the
	// listener. Unset, APIURL derives the URL from listen.api and
	// public_hostnames. It has no path, because the API, the sign-in
	// pages and SCIM all live at the root: the proxy maps its root to
	// keygate. Its host is not added to the certificate keygate issues
	// for public_hostnames: a proxy that terminates TLS shows its own
	// certificate, and one that passes TLS through needs the host listed
	// in public_hostnames like any other name clients connect to.
	PublicURL string `yaml:"public_url"`
	// Audit says what the audit keeps of statements.
	Audit Audit `yaml:"audit"`
	// Administrators names the groups whose members administer keygate.
	Administrators Administrators `yaml:"administrators"`
	// Report holds the targets keygate report measures against.
	Report Report `yaml:"report"`
	// State says where the state lives: SQLite in data_dir, or a
	// PostgreSQL database several servers share.
	State State `yaml:"state"`

	// path is the file the config was read from; relative paths in the file
	// are resolved against its directory.
	path string
	// lines maps YAML paths such as "databases[0].name" to source lines for
	// validation messages.
	lines map[string]int
	// policyText is the content of PolicyFile, read at load.
	policyText []byte
	// groupPattern is GroupNaming.Pattern, parsed; nil without a rule.
	groupPattern *access.GroupPattern
}

// Listen holds the listener addresses.
type Listen struct {
	API      string `yaml:"api"`
	Postgres string `yaml:"postgres"`
	// MySQL is the MySQL and MariaDB gateway's address (default
	// 127.0.0.1:3307). keygate binds it only when at least one database
	// has engine: mysql, so that an install that fronts only PostgreSQL
	// does not take a port it never serves; it is checked against the
	// other listeners only then.
	MySQL string `yaml:"mysql"`
	// Metrics is where Prometheus scrapes GET /metrics, over plain HTTP and
	// without authentication; empty (the default) serves no metrics. It is
	// a listener of its own so that a scraper needs neither keygate's CA
	// nor the admin credential, and so that it can be bound to an address
	// only the monitoring network reaches.
	Metrics string `yaml:"metrics"`
}

// Log configures the server's own log.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error; default info
	Format string `yaml:"format"` // text or json; default text
}

// Database is one upstream database that people reach through keygate.
type Database struct {
	Name string `yaml:"name"`
	// Engine is postgres (the default) or mysql, for MySQL and MariaDB.
	Engine  string `yaml:"engine"`
	Address string `yaml:"address"`
	// Database is the upstream database; default the name. For mysql it
	// is the schema sessions start in.
	Database string `yaml:"database"`
	// Schemas are what the access levels are granted on: PostgreSQL
	// schemas in Database (default public), or for mysql the upstream
	// databases, as MySQL calls its schemas (default Database).
	Schemas []string `yaml:"schemas"`
	// OwnerRole is the upstream role that owns the application's tables
	// in Schemas. The admin level is made a member of it, so that
	// admin-level people can alter and drop those tables; ro and rw never
	// are. Empty: admin changes only what admin-level people created.
	// PostgreSQL only: MySQL privileges do not follow ownership.
	OwnerRole string            `yaml:"owner_role"`
	Tags      map[string]string `yaml:"tags"`
	Admin     AdminCredential   `yaml:"admin"`
	// TLS is how keygate connects upstream: disable, prefer (default),
	// require or verify-full.
	TLS string `yaml:"tls"`
	// TLSCAFile is the CA bundle that verify-full checks the upstream
	// certificate against.
	TLSCAFile string `yaml:"tls_ca_file"`
	// LocalInfile lets people at rw and admin run LOAD DATA LOCAL INFILE,
	// which has the server read a file from the client's machine; off
	// (the default), the gateway refuses it. mysql only.
	LocalInfile bool `yaml:"local_infile"`
	// Pool keeps a person's upstream connections between sessions.
	Pool Pool `yaml:"pool"`
	// MaxConnections is the most upstream connections keygate holds to
	// the database for everyone, live and pooled, as RDS Proxy's
	// MaxConnectionsPercent bounds its own; a session that would exceed
	// it waits up to QueueTimeout for one. 0: no budget of keygate's.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerPerson bounds one person's upstream connections
	// to the database, at every level together. 0: none.
	MaxConnectionsPerPerson int `yaml:"max_connections_per_person"`
	// QueueTimeout is how long a new session waits for a connection
	// budget before it is refused; default 30s.
	QueueTimeout Duration `yaml:"queue_timeout"`
}

// Pool is how keygate reuses a person's upstream connections: one pool per
// person, database and level, a connection reset (DISCARD ALL, or
// COM_RESET_CONNECTION for MySQL) before it serves again, and a login
// upstream only when the pool has no idle connection.
type Pool struct {
	// Enabled is true unless set to false.
	Enabled *bool `yaml:"enabled"`
	// IdleTimeout is how long an idle pooled connection is kept; default
	// 60s.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxIdle bounds the idle connections kept for the database, for
	// everyone together; 0 (the default) is half the upstream's own
	// max_connections, as RDS Proxy's MaxIdleConnectionsPercent is.
	MaxIdle int `yaml:"max_idle"`
}

// On reports whether pooling is enabled.
func (p Pool) On() bool { return p.Enabled == nil || *p.Enabled }

// Default pool and budget settings.
const (
	DefaultPoolIdleTimeout = 60 * time.Second
	DefaultQueueTimeout    = 30 * time.Second
)

// AdminCredential is the upstream role that keygate uses to manage per-person
// roles. The password itself never appears in the file.
type AdminCredential struct {
	User        string `yaml:"user"`
	PasswordEnv string `yaml:"password_env"`
}

// Duration is a time.Duration written as "15m", "8h" or "365d".
type Duration time.Duration

// UnmarshalYAML accepts Go durations plus a "d" suffix for days.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// maxDays is the most days a time.Duration holds.
const maxDays = int(math.MaxInt64 / int64(24*time.Hour))

// FormatDuration writes d as a person writes it in the config: 1h, not
// 1h0m0s.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// ParseDuration parses a Go duration, or a whole number of days such as "365d".
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > maxDays {
			return 0, fmt.Errorf("invalid duration %q: use a whole number of days such as 30d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: use a form such as 15m, 8h or 30d", s)
	}
	return v, nil
}

// Engines keygate can front.
const (
	EnginePostgres = "postgres"
	EngineMySQL    = "mysql"
)

// Default values.
const (
	DefaultAPIListen      = "127.0.0.1:8443"
	DefaultPostgresListen = "127.0.0.1:5433"
	DefaultMySQLListen    = "127.0.0.1:3307"
	DefaultShutdownGrace  = 30 * time.Second
)

// Load reads, defaults and validates the config at path.
func Load(path string) (*Config, error) {
	abs, raw, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(abs, raw)
}

// readFile reads the config at path and returns its absolute path, which
// anchors relative paths in it.
func readFile(path string) (abs string, raw []byte, err error) {
	if raw, err = os.ReadFile(path); err != nil {
		return "", nil, fmt.Errorf("read config: %w", err)
	}
	if abs, err = filepath.Abs(path); err != nil {
		return "", nil, fmt.Errorf("read config: %w", err)
	}
	return abs, raw, nil
}

// LoadLocation reads only where the server is and keeps its state
// (data_dir, state, listen, public_hostnames, public_url) from the config at
// path. Commands that talk to a running server need no more, and so keep
// working while the rest of the file is being edited: keygate admin
// reload can then report the edit's mistakes as the server sees them.
func LoadLocation(path string) (*Config, error) {
	abs, raw, err := readFile(path)
	if err != nil {
		return nil, err
	}
	var loc struct {
		DataDir         string   `yaml:"data_dir"`
		PublicHostnames []string `yaml:"public_hostnames"`
		Listen          Listen   `yaml:"listen"`
		PublicURL       string   `yaml:"public_url"`
		State           State    `yaml:"state"`
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, yamlError(abs, err)
	}
	if err := yaml.Unmarshal(raw, &loc); err != nil {
		return nil, yamlError(abs, err)
	}
	if loc.DataDir == "" {
		return nil, fmt.Errorf("%s: data_dir is required: the directory where keygate keeps its state, CA and keys", abs)
	}
	c := &Config{path: abs, DataDir: loc.DataDir, PublicHostnames: loc.PublicHostnames, Listen: loc.Listen, PublicURL: loc.PublicURL,
		State: loc.State, lines: map[string]int{}}
	indexLines(&doc, "", c.lines)
	c.applyDefaults()
	// A malformed public_url would otherwise send admin commands to a
	// server that is not there.
	if err := c.validatePublicURL(); err != nil {
		return nil, err
	}
	if errs := c.validateState(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// Parse reads a config from raw. path names the file in error messages and
// anchors relative paths.
func Parse(path string, raw []byte) (*Config, error) {
	c := &Config{path: path}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: the config is empty: it needs at least data_dir, databases, permission_sets and assignments", path)
		}
		return nil, yamlError(path, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, yamlError(path, err)
	}
	c.lines = map[string]int{}
	indexLines(&doc, "", c.lines)
	c.applyDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

var (
	yamlUnknown = regexp.MustCompile(`^line (\d+): field (\S+) not found in type (\S+)$`)
	yamlAtLine  = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
)

// yamlError rewrites yaml's errors into the form of keygate's own,
// "file:LINE: what", one line per mistake, and names the key meant when a
// key is unknown: "field x not found in type config.Y" means nothing to a
// person editing the file.
func yamlError(path string, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("%s", atLine(path, err.Error()))
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		if m := yamlUnknown.FindStringSubmatch(e); m != nil {
			msg := fmt.Sprintf("%s:%s: unknown key %q", path, m[1], m[2])
			if near := suggest.Closest(m[2], keysOf[m[3]]); near != "" {
				msg += fmt.Sprintf("; did you mean %q?", near)
			} else if keys := keysOf[m[3]]; len(keys) > 0 {
				msg += " (known here: " + strings.Join(keys, ", ") + ")"
			}
			msgs = append(msgs, msg)
			continue
		}
		msgs = append(msgs, atLine(path, e))
	}
	return errors.New(strings.Join(msgs, "\n"))
}

// atLine puts a yaml message with a line number into "file:LINE: what".
func atLine(path, msg string) string {
	if m := yamlAtLine.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("%s:%s: %s", path, m[1], m[2])
	}
	return fmt.Sprintf("%s: %s", path, strings.TrimPrefix(msg, "yaml: "))
}

// keysOf lists the keys each config type accepts, by the type's name as
// yaml reports it ("config.Database").
var keysOf = func() map[string][]string {
	out := map[string][]string{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return
		}
		if _, seen := out[t.String()]; seen {
			return
		}
		out[t.String()] = nil
		var keys []string
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			keys = append(keys, name)
			walk(f.Type)
		}
		out[t.String()] = keys
	}
	walk(reflect.TypeFor[Config]())
	return out
}()

// indexLines records the line of every mapping value and sequence item.
func indexLines(n *yaml.Node, prefix string, out map[string]int) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			indexLines(c, prefix, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			p := key
			if prefix != "" {
				p = prefix + "." + key
			}
			out[p] = n.Content[i].Line
			indexLines(n.Content[i+1], p, out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", prefix, i)
			out[p] = c.Line
			indexLines(c, p, out)
		}
	}
}

func (c *Config) applyDefaults() {
	// Paths are appended to public_url, so a trailing slash goes; so does
	// an explicit :443, which browsers leave out of the Origin they send
	// with the sign-in form. What is not a URL stays as written for
	// validation to show.
	if u := strings.TrimRight(c.PublicURL, "/"); strings.Contains(u, "://") {
		if p, err := url.Parse(u); err == nil && p.Scheme == "https" && p.Port() == "443" && p.Path == "" && p.RawQuery == "" && p.Fragment == "" {
			p.Host = p.Hostname()
			if strings.Contains(p.Host, ":") {
				p.Host = "[" + p.Host + "]"
			}
			u = p.String()
		}
		c.PublicURL = u
	}
	if c.Listen.API == "" {
		c.Listen.API = DefaultAPIListen
	}
	if c.Listen.Postgres == "" {
		c.Listen.Postgres = DefaultPostgresListen
	}
	if c.Listen.MySQL == "" {
		c.Listen.MySQL = DefaultMySQLListen
	}
	if len(c.PublicHostnames) == 0 {
		c.PublicHostnames = []string{"localhost", "127.0.0.1"}
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = Duration(DefaultShutdownGrace)
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	c.Audit.applyDefaults()
	c.Report.applyDefaults()
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	for i := range c.Databases {
		d := &c.Databases[i]
		if d.Engine == "" {
			d.Engine = EnginePostgres
		}
		if d.Database == "" {
			d.Database = d.Name
		}
		if len(d.Schemas) == 0 {
			d.Schemas = []string{"public"}
			if d.Engine == EngineMySQL {
				d.Schemas = []string{d.Database}
			}
		}
		if d.TLS == "" {
			d.TLS = "prefer"
		}
		if d.Pool.IdleTimeout == 0 {
			d.Pool.IdleTimeout = Duration(DefaultPoolIdleTimeout)
		}
		if d.QueueTimeout == 0 {
			d.QueueTimeout = Duration(DefaultQueueTimeout)
		}
	}
	for i := range c.PermissionSets {
		if c.PermissionSets[i].TokenTTL == 0 {
			c.PermissionSets[i].TokenTTL = Duration(access.DefaultTokenTTL)
		}
	}
	c.SSO.applyDefaults(c.APIURL())
}

// errorAt formats a validation error for the YAML path p, or for the
// nearest enclosing path present in the file when p itself is absent.
func (c *Config) errorAt(p, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	for p != "" {
		if line, ok := c.lines[p]; ok {
			return fmt.Errorf("%s:%d: %s", c.path, line, msg)
		}
		p = p[:max(strings.LastIndexAny(p, ".["), 0)]
	}
	return fmt.Errorf("%s: %s", c.path, msg)
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,39}$`)

func (c *Config) validate() error {
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	if c.DataDir == "" {
		add(c.errorAt("data_dir", "data_dir is required: the directory where keygate keeps its state, CA and keys"))
	}
	listeners := map[string]string{"listen.api": c.Listen.API, "listen.postgres": c.Listen.Postgres, "listen.mysql": c.Listen.MySQL}
	if c.Listen.Metrics != "" {
		listeners["listen.metrics"] = c.Listen.Metrics
	}
	for key, addr := range listeners {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			add(c.errorAt(key, "%s %q is not host:port", key, addr))
		}
	}
	if !c.Uses(EngineMySQL) {
		delete(listeners, "listen.mysql")
	}
	errs = append(errs, c.listenerConflicts(listeners)...)
	if err := c.validatePublicURL(); err != nil {
		add(err)
	}
	if !map[string]bool{"debug": true, "info": true, "warn": true, "error": true}[c.Log.Level] {
		add(c.errorAt("log.level", "log.level %q: use debug, info, warn or error", c.Log.Level))
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		add(c.errorAt("log.format", "log.format %q: use text or json", c.Log.Format))
	}
	dbs := map[string]bool{}
	for i, d := range c.Databases {
		p := fmt.Sprintf("databases[%d]", i)
		switch {
		case !nameRE.MatchString(d.Name):
			add(c.errorAt(p+".name", "database name %q: use 1-40 lower-case letters, digits, _ or -, starting with a letter", d.Name))
		case dbs[d.Name]:
			add(c.errorAt(p+".name", "database %q is defined twice", d.Name))
		}
		dbs[d.Name] = true
		if d.Engine != EnginePostgres && d.Engine != EngineMySQL {
			add(c.errorAt(p+".engine", "database %q: engine %q is not supported; use postgres or mysql (for MySQL and MariaDB)", d.Name, d.Engine))
		}
		if _, _, err := net.SplitHostPort(d.Address); err != nil {
			add(c.errorAt(p+".address", "database %q: address %q is not host:port", d.Name, d.Address))
		}
		if d.Admin.User == "" {
			what := "a role with CREATEROLE that keygate manages per-person roles with"
			if d.Engine == EngineMySQL {
				what = "a user with CREATE USER, PROCESS and CONNECTION ADMIN, SELECT on mysql.* and ALL on the schemas WITH GRANT OPTION, that keygate manages per-person users with"
			}
			add(c.errorAt(p+".admin", "database %q: admin.user is required: %s", d.Name, what))
		}
		if d.Admin.PasswordEnv == "" {
			add(c.errorAt(p+".admin", "database %q: admin.password_env is required: the environment variable that holds the admin role's password", d.Name))
		}
		if d.Engine == EngineMySQL && d.OwnerRole != "" {
			add(c.errorAt(p+".owner_role", "database %q: owner_role is for PostgreSQL only: MySQL privileges do not follow table ownership, and the admin level already holds every privilege on the schemas; remove it", d.Name))
		}
		if d.LocalInfile && d.Engine != EngineMySQL {
			add(c.errorAt(p+".local_infile", "database %q: local_infile is for engine mysql only: PostgreSQL has no LOAD DATA LOCAL INFILE; remove it", d.Name))
		}
		if d.Engine == EnginePostgres && d.OwnerRole != "" && (d.OwnerRole == d.Admin.User || strings.HasPrefix(d.OwnerRole, "keygate_") || strings.HasPrefix(d.OwnerRole, "pg_")) {
			add(c.errorAt(p+".owner_role", "database %q: owner_role %q: name the role that owns the application's tables, not keygate's admin role, a keygate role or a pg_ role", d.Name, d.OwnerRole))
		}
		switch d.TLS {
		case "disable", "prefer", "require", "verify-full":
		default:
			add(c.errorAt(p+".tls", "database %q: tls %q: use disable, prefer, require or verify-full", d.Name, d.TLS))
		}
		if d.MaxConnections < 0 || d.MaxConnectionsPerPerson < 0 || d.Pool.MaxIdle < 0 {
			add(c.errorAt(p+".max_connections", "database %q: max_connections, max_connections_per_person and pool.max_idle must be 0 (none) or more", d.Name))
		}
		if d.MaxConnections > 0 && d.MaxConnectionsPerPerson > d.MaxConnections {
			add(c.errorAt(p+".max_connections_per_person", "database %q: max_connections_per_person %d is more than max_connections %d: lower it, or raise max_connections", d.Name, d.MaxConnectionsPerPerson, d.MaxConnections))
		}
		if d.Pool.IdleTimeout < 0 || d.QueueTimeout < 0 {
			add(c.errorAt(p+".pool", "database %q: pool.idle_timeout and queue_timeout must be positive", d.Name))
		}
		if d.TLS == "verify-full" && d.TLSCAFile == "" {
			add(c.errorAt(p+".tls", "database %q: tls verify-full needs tls_ca_file", d.Name))
		}
	}
	errs = append(errs, c.validateAccess(dbs)...)
	errs = append(errs, c.validateAudit()...)
	errs = append(errs, c.validateAdministrators()...)
	errs = append(errs, c.validateState()...)
	errs = append(errs, c.validateReport()...)
	errs = append(errs, c.SSO.validate(c)...)
	return errors.Join(errs...)
}

// listenerConflicts reports two listeners on one port of one host, or of
// every host (0.0.0.0, ::, or no host): the second would fail to bind at
// start. Port 0 picks a free port and conflicts with nothing.
func (c *Config) listenerConflicts(listeners map[string]string) []error {
	keys := slices.Sorted(maps.Keys(listeners))
	var errs []error
	for i, a := range keys {
		ha, pa, err := net.SplitHostPort(listeners[a])
		if err != nil || pa == "0" {
			continue
		}
		for _, b := range keys[i+1:] {
			hb, pb, err := net.SplitHostPort(listeners[b])
			if err != nil || pb != pa {
				continue
			}
			if ha == hb || anyHost(ha) || anyHost(hb) {
				// The error points at whichever of the two the file
				// names last: a default has no line.
				at := b
				if c.lines[a] > c.lines[b] {
					at = a
				}
				errs = append(errs, c.errorAt(at, "%s %q and %s %q take the same port: give each listener a port of its own", a, listeners[a], b, listeners[b]))
			}
		}
	}
	return errs
}

// anyHost reports whether a listener on host binds every address.
func anyHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || (ip != nil && ip.IsUnspecified())
}

// Uses reports whether at least one database has engine; the server binds
// an engine's listener only then.
func (c *Config) Uses(engine string) bool {
	return slices.ContainsFunc(c.Databases, func(d Database) bool { return d.Engine == engine })
}

// Path is the file the config was read from.
func (c *Config) Path() string { return c.path }

// Resolve makes a path from the config file absolute, relative to the
// directory that holds the file.
func (c *Config) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(c.path), p)
}

// DataPath is the absolute path of name inside data_dir.
func (c *Config) DataPath(name string) string {
	return filepath.Join(c.Resolve(c.DataDir), name)
}

// FindDatabase returns the database named name.
func (c *Config) FindDatabase(name string) (Database, bool) {
	for _, d := range c.Databases {
		if d.Name == name {
			return d, true
		}
	}
	return Database{}, false
}

// AccessDatabase is the database as the access decision sees it.
func (d Database) AccessDatabase() access.Database {
	return access.Database{Name: d.Name, Tags: d.Tags}
}

// APIURL is the URL clients use to reach the API: public_url when it is
// set, else derived from listen.api, with a wildcard listen address
// replaced by the first public hostname.
func (c *Config) APIURL() string {
	if c.PublicURL != "" {
		return c.PublicURL
	}
	host, port, err := net.SplitHostPort(c.Listen.API)
	if err != nil {
		return "https://" + c.Listen.API
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = c.PublicHostnames[0]
	}
	return "https://" + net.JoinHostPort(host, port)
}

// validatePublicURL checks public_url, whose trailing slashes
// applyDefaults has removed.
func (c *Config) validatePublicURL() error {
	if c.PublicURL == "" {
		return nil
	}
	if problem := publicURLProblem(c.PublicURL); problem != "" {
		return c.errorAt("public_url", "public_url %q %s", c.PublicURL, problem)
	}
	return nil
}

// publicURLProblem says what is wrong with raw as public_url and how to
// fix it, or returns "" when nothing is.
func publicURLProblem(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Opaque != "" || u.Hostname() == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return "is not an absolute URL: write it as https://HOST or https://HOST:PORT, the address people and identity providers reach keygate at"
	case u.Scheme != "https":
		return "uses http: use https, as browsers send keygate's sign-in cookie only over HTTPS; have the proxy serve HTTPS"
	case u.User != nil:
		return "holds a user name: remove it and the @ after it"
	case strings.ContainsAny(raw, "?#"):
		return "has a query or fragment: remove everything from the ? or #"
	case u.Path != "":
		root := "https://" + u.Host
		return fmt.Sprintf("has a path: keygate serves its API, sign-in pages and SCIM at the root, so have the proxy map %s/ to keygate's / and set public_url to %s", root, root)
	}
	return ""
}
