package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// exemption is a known breach of a rule that the module lives with until
// the code moves. The test fails once the breach is gone, so that the list
// only shrinks.
type exemption struct {
	rule string
	pkg  string
	// via is the direct import through which the breach comes.
	via string
	// why says what breaks the rule and how to end the exemption.
	why string
}

var exemptions = []exemption{
	{
		rule: "client-wire",
		pkg:  "client",
		via:  "api",
		why: "client decodes responses into the api package's request and response types, " +
			"which links the whole server into the CLI side; moving those types to api/apitype ends this",
	},
}

func TestModuleFollowsImportRules(t *testing.T) {
	g := loadModule(t)
	for _, r := range rules {
		if !anyPackage(g, r.applies) {
			t.Errorf("rule %s (%q) constrains no package of the module: a package was renamed or moved, update the rule", r.id, r.text)
		}
	}
	used := make([]bool, len(exemptions))
	for _, v := range check(g, rules) {
		if i := exempted(v); i >= 0 {
			used[i] = true
			continue
		}
		t.Error(v)
	}
	for i, e := range exemptions {
		if !used[i] {
			t.Errorf("%s no longer breaks rule %s through %s: remove its exemption", e.pkg, e.rule, e.via)
		}
	}
}

// TestEveryEngineIsListed fails on a package below gateway/ that is no
// listed engine's, so that a new engine's imports are checked from its
// first commit.
func TestEveryEngineIsListed(t *testing.T) {
	g := loadModule(t)
	listed := slices.Collect(maps.Keys(engineUpstreams))
	for rel := range g.pkgs {
		if below("gateway", rel) && !under(listed...)(rel) {
			t.Errorf("%s is below gateway/ but not in engineUpstreams: list it with the upstream package it logs in through", rel)
		}
	}
	for _, engine := range listed {
		if _, ok := g.pkgs[engine]; !ok {
			t.Errorf("engineUpstreams lists %s, which the module does not have", engine)
		}
	}
}

func exempted(v violation) int {
	for i, e := range exemptions {
		if e.rule == v.rule && e.pkg == v.pkg && e.via == v.via() {
			return i
		}
	}
	return -1
}

func anyPackage(g graph, applies func(string) bool) bool {
	for rel := range g.pkgs {
		if applies(rel) {
			return true
		}
	}
	return false
}

// loadModule reads the import graph of the module this test belongs to
// from the go command, for the platform the test runs on.
func loadModule(t *testing.T) graph {
	t.Helper()
	var mod struct{ Path, Dir string }
	if err := goList(t, "", "-m", "-json").Decode(&mod); err != nil {
		t.Fatalf("decoding go list -m: %v", err)
	}
	g := graph{module: mod.Path, pkgs: map[string]pkg{}}
	dec := goList(t, mod.Dir, "-json=ImportPath,Imports,Deps", "./...")
	for {
		var p struct {
			ImportPath    string
			Imports, Deps []string
		}
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decoding go list: %v", err)
		}
		d := g.dep(p.ImportPath)
		if !d.ours {
			t.Fatalf("go list ./... in %s listed %s, outside module %s", mod.Dir, p.ImportPath, mod.Path)
		}
		g.pkgs[d.rel] = pkg{Imports: p.Imports, Deps: p.Deps}
	}
	return g
}

func goList(t *testing.T, dir string, args ...string) *json.Decoder {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return json.NewDecoder(bytes.NewReader(out))
}
