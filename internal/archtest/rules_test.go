package archtest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// pkg is one package of the module as `go list -json` describes it. Only
// the package's own files count: what its tests import (testdata on disk,
// a test server) is not part of the layer it belongs to.
type pkg struct {
	// Imports are the full import paths the package's files name.
	Imports []string
	// Deps are the full import paths it depends on, directly or not.
	Deps []string
}

// graph is the module's import graph: its packages by module-relative path.
type graph struct {
	module string
	pkgs   map[string]pkg
}

// dep is one import path as a rule sees it.
type dep struct {
	path string // full import path
	rel  string // path inside the module, when ours
	ours bool   // part of this module
	std  bool   // part of the standard library
}

func (g graph) dep(path string) dep {
	d := dep{path: path}
	switch {
	case path == g.module:
		d.ours = true
	case strings.HasPrefix(path, g.module+"/"):
		d.ours, d.rel = true, strings.TrimPrefix(path, g.module+"/")
	default:
		// The go command's own test: a standard library path has no dot
		// in its first element, a module path has a domain there.
		first, _, _ := strings.Cut(path, "/")
		d.std = !strings.Contains(first, ".")
	}
	return d
}

// name is how a failure message shows an import: ours relative to the
// module root, everything else in full.
func (d dep) name() string {
	if d.ours {
		return d.rel
	}
	return d.path
}

// rule is one of ARCHITECTURE.md's import rules.
type rule struct {
	// id names the rule in exemptions.
	id string
	// text states the rule; failure messages quote it.
	text string
	// applies picks the module-relative package paths the rule constrains.
	applies func(rel string) bool
	// transitive checks every dependency rather than the direct imports.
	transitive bool
	// forbidden reports whether depending on d breaks the rule.
	forbidden func(d dep) bool
}

// violation is one forbidden dependency of one package.
type violation struct {
	rule string
	text string
	pkg  string
	dep  string
	// chain is the import path from pkg to dep, pkg first, when dep is
	// reached through the module's own packages.
	chain []string
}

func (v violation) String() string {
	if len(v.chain) > 2 {
		return fmt.Sprintf("%s depends on %s (%s), against the rule %q",
			v.pkg, v.dep, strings.Join(v.chain, " → "), v.text)
	}
	return fmt.Sprintf("%s imports %s, against the rule %q", v.pkg, v.dep, v.text)
}

// via is the direct import through which the violation comes.
func (v violation) via() string {
	if len(v.chain) > 1 {
		return v.chain[1]
	}
	return v.dep
}

// check returns every violation of rules in g, sorted by package.
func check(g graph, rules []rule) []violation {
	var out []violation
	for _, rel := range slices.Sorted(maps.Keys(g.pkgs)) {
		p := g.pkgs[rel]
		for _, r := range rules {
			if !r.applies(rel) {
				continue
			}
			paths := p.Imports
			if r.transitive {
				paths = p.Deps
			}
			for _, path := range paths {
				d := g.dep(path)
				if !r.forbidden(d) {
					continue
				}
				out = append(out, violation{
					rule: r.id, text: r.text, pkg: rel, dep: d.name(),
					chain: g.chain(rel, path),
				})
			}
		}
	}
	return out
}

// chain finds the shortest import path from the module package from to
// the import path to, through the module's own packages, as names a
// failure message shows. It is nil when to is reached only through
// packages outside the module.
func (g graph) chain(from, to string) []string {
	prev := map[string]string{from: from}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, imp := range g.pkgs[cur].Imports {
			if imp == to {
				out := []string{g.dep(to).name(), cur}
				for at := cur; at != from; {
					at = prev[at]
					out = append(out, at)
				}
				slices.Reverse(out)
				return out
			}
			d := g.dep(imp)
			if _, seen := prev[d.rel]; !d.ours || seen {
				continue
			}
			prev[d.rel] = cur
			queue = append(queue, d.rel)
		}
	}
	return nil
}

// under matches the module package root and every package below it.
func under(roots ...string) func(string) bool {
	return func(rel string) bool {
		return slices.ContainsFunc(roots, func(root string) bool {
			return rel == root || strings.HasPrefix(rel, root+"/")
		})
	}
}

// below matches every package below root, not root itself.
func below(root, rel string) bool {
	return strings.HasPrefix(rel, root+"/")
}

// ioStd is what "no I/O" means for identity and access: the standard
// library packages, each with everything below it, through which a
// program reaches the world outside its memory — the network (net,
// crypto/tls), files, processes, the environment and signals (os, io/fs,
// io/ioutil), databases (database/sql), raw system calls (syscall), code
// loaded at run time (plugin) and logs (log, log/slog, log/syslog; a pure
// package returns what it decided and its caller logs it).
//
// Allowed on purpose: io and bufio (interfaces over bytes the caller
// provides), time (a clock is an input, not I/O; tests inject one),
// crypto/rand, and path/filepath, whose lexical functions (access names a
// policy by filepath.Base of its file) are what a pure package uses; its
// few file-walking functions are not worth a rule that would misfire.
//
// Only direct imports are checked against this list: fmt itself imports
// os, so every package depends on os transitively.
var ioStd = []string{"net", "crypto/tls", "os", "io/fs", "io/ioutil", "database/sql", "syscall", "plugin", "log"}

// pureExternal lists the modules outside the standard library that
// identity and access may import. A third-party package may do anything,
// so the pure packages name the ones they trust instead of listing the
// ones they fear: cedar-go evaluates policies in memory.
var pureExternal = []string{"github.com/cedar-policy/cedar-go"}

// engineUpstreams maps each engine below gateway/ to its own upstream
// package. An engine added below gateway/ is added here, with the upstream
// package it logs in through: TestEveryEngineIsListed fails until it is.
var engineUpstreams = map[string]string{
	"gateway/pgwire":    "upstream/postgres",
	"gateway/mysqlwire": "upstream/mysql",
}

// neutralUpstreams are the packages below upstream/ that serve every
// engine alike (connection pooling and budgets), which any engine's
// upstream may build on.
var neutralUpstreams = []string{"upstream/pool"}

// engineRules keep the engines independent of each other: an engine
// speaks one protocol to one kind of upstream, so it imports its own
// upstream package and never another engine, nor another engine's
// upstream, directly or through a third package. The engine-neutral
// parents (gateway, upstream) and neutralUpstreams are allowed; the
// gateway-engines rule keeps them free of every engine.
func engineRules() []rule {
	const id, text = "engine-own-upstream", "an engine (gateway/<engine>) imports no other engine and no upstream package but its own"
	forbid := func(engine, own string) func(d dep) bool {
		return func(d dep) bool {
			return d.ours && ((below("gateway", d.rel) && !under(engine)(d.rel)) ||
				(below("upstream", d.rel) && !under(neutralUpstreams...)(d.rel) && (own == "" || !under(own)(d.rel))))
		}
	}
	var out []rule
	for _, engine := range slices.Sorted(maps.Keys(engineUpstreams)) {
		out = append(out, rule{id: id, text: text, applies: under(engine), transitive: true, forbidden: forbid(engine, engineUpstreams[engine])})
	}
	return out
}

// codecs are the module's packet codec packages, and codecLibraries the
// packages outside the standard library they may import: go-mysql's
// protocol constants and packet helpers, without its client or server.
var (
	codecs         = []string{"mysqlproto"}
	codecLibraries = []string{"github.com/go-mysql-org/go-mysql/mysql"}
)

func ioPackage(path string) bool {
	return under(ioStd...)(path)
}

// rules are ARCHITECTURE.md's rules of the house on imports.
var rules = append(houseRules, engineRules()...)

var houseRules = []rule{
	{
		id:      "pure-io",
		text:    "identity and access import no I/O packages",
		applies: under("identity", "access"),
		forbidden: func(d dep) bool {
			switch {
			case d.std:
				return ioPackage(d.path)
			case d.ours:
				return false // pure-deps checks these, transitively
			}
			return !under(pureExternal...)(d.path)
		},
	},
	{
		// A keygate package can do I/O on a pure package's behalf, so its
		// own packages are checked transitively.
		id:         "pure-deps",
		text:       "identity and access depend on no keygate package but each other",
		applies:    under("identity", "access"),
		transitive: true,
		forbidden: func(d dep) bool {
			return d.ours && !under("identity", "access")(d.rel)
		},
	},
	{
		// Packages below gateway/ are its engines, and the core must not
		// reach one through a third package either.
		id:         "gateway-engines",
		text:       "gateway imports no engine (gateway/...) and no upstream package (upstream/...)",
		applies:    func(rel string) bool { return rel == "gateway" },
		transitive: true,
		forbidden: func(d dep) bool {
			return d.ours && (below("gateway", d.rel) || below("upstream", d.rel))
		},
	},
	{
		// Packet codecs are shared by the engine and the tests; they must
		// stay bytes in, bytes out, with no keygate layer behind them.
		id:      "codecs-neutral",
		text:    "a packet codec package (mysqlproto) imports only the standard library and its protocol library",
		applies: under(codecs...),
		forbidden: func(d dep) bool {
			return !d.std && !under(codecLibraries...)(d.path)
		},
	},
	{
		id:         "store-backends",
		text:       "store imports no backend (store/...)",
		applies:    func(rel string) bool { return rel == "store" },
		transitive: true,
		forbidden: func(d dep) bool {
			return d.ours && below("store", d.rel)
		},
	},
	{
		// Transitive, so that the wire types cannot bring the server in
		// either. Leaf helpers under internal/ are no layer of their own;
		// whatever they import is checked here too.
		id:         "client-wire",
		text:       "client imports only api/apitype among keygate packages",
		applies:    under("client"),
		transitive: true,
		forbidden: func(d dep) bool {
			return d.ours && !under("client", "api/apitype", "internal")(d.rel)
		},
	},
	{
		// The portal is a client of the API, in-process: whatever a page
		// shows or does, the API decided and audited. Direct imports only,
		// since client reaches the api package (see client-wire).
		id:      "portal-api",
		text:    "web reaches keygate's state only through the API: among keygate packages it imports client, api, identity and sso",
		applies: under("web"),
		forbidden: func(d dep) bool {
			return d.ours && !under("web", "client", "api", "identity", "sso", "internal")(d.rel)
		},
	},
	{
		id:         "down",
		text:       "dependencies point down: identity, access, token, audit and store import none of api, web, gateway, scim, sso, server, cmd",
		applies:    under("identity", "access", "token", "audit", "store"),
		transitive: true,
		forbidden: func(d dep) bool {
			return d.ours && under("api", "web", "gateway", "scim", "sso", "server", "cmd")(d.rel)
		},
	},
}
