package archtest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

const fakeModule = "example.com/m"

// fakeGraph builds a module graph from each package's direct imports. An
// import that names another key is one of the module's packages; anything
// else is the standard library or a third-party module. Deps follow the
// module's own packages transitively, as go list reports them.
func fakeGraph(imports map[string][]string) graph {
	full := func(path string) string {
		if _, ok := imports[path]; ok {
			return fakeModule + "/" + path
		}
		return path
	}
	g := graph{module: fakeModule, pkgs: map[string]pkg{}}
	for rel, direct := range imports {
		var p pkg
		for _, imp := range direct {
			p.Imports = append(p.Imports, full(imp))
		}
		seen := map[string]bool{rel: true}
		var walk func(string)
		walk = func(cur string) {
			for _, imp := range imports[cur] {
				if seen[imp] {
					continue
				}
				seen[imp] = true
				p.Deps = append(p.Deps, full(imp))
				walk(imp)
			}
		}
		walk(rel)
		g.pkgs[rel] = p
	}
	return g
}

// clean is a module that keeps every rule; each case adds one breach.
var clean = map[string][]string{
	"identity":          {"fmt", "strings", "time"},
	"access":            {"identity", "path/filepath", "io", "bufio", "crypto/rand", "github.com/cedar-policy/cedar-go/types"},
	"store":             {"identity", "context"},
	"store/sqlite":      {"store", "database/sql", "os"},
	"token":             {"access", "os"},
	"audit":             {"store", "token", "log/slog"},
	"authz":             {"access", "store"},
	"upstream":          {"context", "log/slog"},
	"upstream/postgres": {"upstream", "access", "net"},
	"upstream/mysql":    {"upstream", "access", "database/sql", "github.com/go-sql-driver/mysql"},
	"mysqlproto":        {"bufio", "io", "github.com/go-mysql-org/go-mysql/mysql"},
	"gateway":           {"access", "audit", "authz", "token", "net", "log/slog"},
	"gateway/pgwire":    {"gateway", "upstream/postgres"},
	"gateway/mysqlwire": {"gateway", "upstream/mysql", "mysqlproto", "access", "github.com/go-mysql-org/go-mysql/mysql"},
	"api/apitype":       {"time"},
	"internal/atomic":   {"os"},
	"api":               {"api/apitype", "authz", "net/http"},
	"client":            {"api/apitype", "internal/atomic", "net/http", "os"},
	"web":               {"client", "api", "identity", "sso"},
	"server":            {"api", "web", "gateway", "gateway/pgwire", "gateway/mysqlwire", "upstream/postgres", "upstream/mysql", "store/sqlite"},
	"cmd/keygate":       {"server", "client"},
}

// with returns clean with pkg also importing imports.
func with(pkg string, imports ...string) map[string][]string {
	m := map[string][]string{}
	for k, v := range clean {
		m[k] = slices.Clone(v)
	}
	m[pkg] = append(m[pkg], imports...)
	return m
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name    string
		imports map[string][]string
		// want lists "rule pkg dep" for each violation.
		want []string
	}{
		{"clean module", clean, nil},
		{"identity opens a file", with("identity", "os"), []string{"pure-io identity os"}},
		{"access runs a process", with("access", "os/exec"), []string{"pure-io access os/exec"}},
		{"access calls out over HTTP", with("access", "net/http"), []string{"pure-io access net/http"}},
		{"access logs", with("access", "log/slog"), []string{"pure-io access log/slog"}},
		{"access reads a directory", with("access", "io/fs"), []string{"pure-io access io/fs"}},
		{"access queries a database", with("access", "database/sql"), []string{"pure-io access database/sql"}},
		{"identity makes system calls", with("identity", "syscall"), []string{"pure-io identity syscall"}},
		{"access speaks TLS", with("access", "crypto/tls"), []string{"pure-io access crypto/tls"}},
		{
			"access uses an untrusted module",
			with("access", "github.com/jackc/pgx/v5"),
			[]string{"pure-io access github.com/jackc/pgx/v5"},
		},
		{"access imports the store", with("access", "store"), []string{"pure-deps access store"}},
		{
			"identity imports an internal helper",
			with("identity", "internal/atomic"),
			[]string{"pure-deps access internal/atomic", "pure-deps identity internal/atomic"},
		},
		{
			// gateway/pgwire imports gateway, so this graph has a cycle the
			// compiler would refuse; the check must still see every edge,
			// also those of the other engine, which imports gateway.
			"gateway reaches an engine through authz",
			with("authz", "gateway/pgwire"),
			[]string{
				"engine-own-upstream gateway/mysqlwire gateway/pgwire",
				"engine-own-upstream gateway/mysqlwire upstream/postgres",
				"gateway-engines gateway gateway/pgwire",
				"gateway-engines gateway upstream/postgres",
			},
		},
		{
			"gateway imports upstream",
			with("gateway", "upstream/postgres"),
			[]string{"engine-own-upstream gateway/mysqlwire upstream/postgres", "gateway-engines gateway upstream/postgres"},
		},
		{"store imports a backend", with("store", "store/sqlite"), []string{"store-backends store store/sqlite"}},
		{
			"client imports the server's api",
			with("client", "api"),
			[]string{
				"client-wire client access",
				"client-wire client api",
				"client-wire client authz",
				"client-wire client identity",
				"client-wire client store",
			},
		},
		{
			"wire types import identity",
			with("api/apitype", "identity"),
			[]string{"client-wire client identity"},
		},
		{"audit imports api/apitype", with("audit", "api/apitype"), []string{"down audit api/apitype"}},
		{"the portal reads the store", with("web", "store"), []string{"portal-api web store"}},
		{
			"an engine imports another engine",
			with("gateway/mysqlwire", "gateway/pgwire"),
			[]string{
				"engine-own-upstream gateway/mysqlwire gateway/pgwire",
				"engine-own-upstream gateway/mysqlwire upstream/postgres",
			},
		},
		{
			"an engine imports another engine's upstream",
			with("gateway/pgwire", "upstream/mysql"),
			[]string{"engine-own-upstream gateway/pgwire upstream/mysql"},
		},
		{
			"an engine reaches another's upstream through its own",
			with("upstream/mysql", "upstream/postgres"),
			[]string{"engine-own-upstream gateway/mysqlwire upstream/postgres"},
		},
		{
			"the codecs import a keygate layer",
			with("mysqlproto", "gateway"),
			[]string{"codecs-neutral mysqlproto gateway"},
		},
		{
			"the codecs import go-mysql's client",
			with("mysqlproto", "github.com/go-mysql-org/go-mysql/client"),
			[]string{"codecs-neutral mysqlproto github.com/go-mysql-org/go-mysql/client"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := violations(tt.imports)
			if !slices.Equal(got, tt.want) {
				t.Errorf("violations:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// A package that imports something above it depends on all that is
// above that too, and so does every package that imports it: these cases
// list what the violations must include.
func TestCheckUpwardImports(t *testing.T) {
	tests := []struct {
		name    string
		imports map[string][]string
		want    []string
	}{
		{
			"backend imports server",
			with("store/sqlite", "server"),
			[]string{"down store/sqlite server", "down store/sqlite api", "down store/sqlite gateway/pgwire"},
		},
		{
			"token imports cmd",
			with("token", "cmd/keygate"),
			[]string{"down token cmd/keygate", "down audit cmd/keygate", "down token server"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := violations(tt.imports)
			for _, w := range tt.want {
				if !slices.Contains(got, w) {
					t.Errorf("violations %q lack %q", got, w)
				}
			}
		})
	}
}

// violations checks the fake module and lists "rule pkg dep", sorted.
func violations(imports map[string][]string) []string {
	var out []string
	for _, v := range check(fakeGraph(imports), rules) {
		out = append(out, fmt.Sprintf("%s %s %s", v.rule, v.pkg, v.dep))
	}
	slices.Sort(out)
	return out
}

func TestViolationNamesImportAndRule(t *testing.T) {
	direct := check(fakeGraph(with("access", "os")), rules)
	if len(direct) != 1 {
		t.Fatalf("want one violation, got %v", direct)
	}
	msg := direct[0].String()
	for _, part := range []string{"access imports os", "identity and access import no I/O packages"} {
		if !strings.Contains(msg, part) {
			t.Errorf("message %q lacks %q", msg, part)
		}
	}

	var through violation
	for _, v := range check(fakeGraph(with("authz", "gateway/pgwire")), rules) {
		if v.pkg == "gateway" && v.dep == "gateway/pgwire" {
			through = v
		}
	}
	msg = through.String()
	for _, part := range []string{"gateway depends on gateway/pgwire (gateway → authz → gateway/pgwire)", "gateway imports no engine"} {
		if !strings.Contains(msg, part) {
			t.Errorf("message %q lacks %q", msg, part)
		}
	}
	if through.via() != "authz" {
		t.Errorf("via = %q, want authz", through.via())
	}
}
