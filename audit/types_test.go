package audit

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// stringConsts returns the string constants a file declares, by name,
// evaluating literals and sums of literals and earlier constants.
func stringConsts(t *testing.T, path string, known map[string]string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if i >= len(vs.Values) {
					continue
				}
				if v, ok := stringValue(vs.Values[i], known); ok {
					out[name.Name], known[name.Name] = v, v
				}
			}
		}
	}
	return out
}

// stringValue evaluates a string literal, a known constant (by bare name
// or as audit.Name), or a sum of those.
func stringValue(e ast.Expr, consts map[string]string) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.Ident:
		v, ok := consts[e.Name]
		return v, ok
	case *ast.SelectorExpr:
		if x, ok := e.X.(*ast.Ident); ok && x.Name == "audit" {
			v, ok := consts[e.Sel.Name]
			return v, ok
		}
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		a, ok1 := stringValue(e.X, consts)
		b, ok2 := stringValue(e.Y, consts)
		return a + b, ok1 && ok2
	}
	return "", false
}

// TestTypesListsEveryConstant fails when an event type constant is added to
// audit.go or types.go without being listed in Types.
func TestTypesListsEveryConstant(t *testing.T) {
	consts := map[string]string{}
	declared := stringConsts(t, "audit.go", consts)
	for k, v := range stringConsts(t, "types.go", consts) {
		declared[k] = v
	}
	if len(declared) < 20 {
		t.Fatalf("found only %d string constants in audit.go and types.go; is the parse right? %v", len(declared), declared)
	}
	all := Types()
	for name, v := range declared {
		if name == "AdminPrefix" {
			continue // a prefix, not a type
		}
		if !slices.Contains(all, v) {
			t.Errorf("audit.%s = %q is not in Types(): add it to types in types.go", name, v)
		}
	}
	if !slices.IsSorted(all) || len(slices.Compact(slices.Clone(all))) != len(all) {
		t.Errorf("Types() is not sorted and unique: %v", all)
	}
}

// TestTypesListsEveryRecordedLiteral fails when code records an event whose
// type is written as a literal that Types does not list: audit.Event{Type:
// "x"}, the API's adminEvent(r, "x", ...) and SCIM's record(r, "x", ...).
func TestTypesListsEveryRecordedLiteral(t *testing.T) {
	consts := map[string]string{}
	stringConsts(t, "audit.go", consts)
	stringConsts(t, "types.go", consts)
	found := map[string]string{} // type → where
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				if !isEventType(n.Type) {
					return true
				}
				for _, el := range n.Elts {
					kv, ok := el.(*ast.KeyValueExpr)
					if k, _ := kv.Key.(*ast.Ident); ok && k != nil && k.Name == "Type" {
						if v, ok := stringValue(kv.Value, consts); ok {
							found[v] = fset.Position(kv.Pos()).String()
						}
					}
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok || len(n.Args) < 2 {
					return true
				}
				recorder := sel.Sel.Name == "adminEvent" || (sel.Sel.Name == "record" && f.Name.Name == "scim")
				if !recorder {
					return true
				}
				if v, ok := stringValue(n.Args[1], consts); ok {
					found[v] = fset.Position(n.Pos()).String()
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The API's admin actions and SCIM's changes name their types at the
	// call; finding none would mean the scan is broken.
	if len(found) < 10 {
		t.Fatalf("found only %d recorded type literals; is the scan right? %v", len(found), found)
	}
	all := Types()
	for typ, where := range found {
		if !slices.Contains(all, typ) {
			t.Errorf("%s records event type %q, which Types() does not list: add a constant for it in audit/types.go", where, typ)
		}
	}
}

func isEventType(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.SelectorExpr:
		x, ok := e.X.(*ast.Ident)
		return ok && x.Name == "audit" && e.Sel.Name == "Event"
	case *ast.Ident:
		return e.Name == "Event"
	}
	return false
}

func TestKnownType(t *testing.T) {
	for typ, want := range map[string]bool{
		"session.start":       true,
		"session":             true,
		"query":               true,
		"admin":               true,
		"admin.group":         true,
		"admin.group.create":  true,
		"scim":                true,
		"upstream.intrusion":  true,
		"sesion.start":        false,
		"sess":                false,
		"session.":            false,
		"admin.group.destroy": false,
		"":                    false,
	} {
		if got := KnownType(typ); got != want {
			t.Errorf("KnownType(%q) = %v, want %v", typ, got, want)
		}
	}
}

// The README's audit section names every event type, so that an auditor
// reading it knows what each line of the log can be.
func TestReadmeNamesEveryType(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n## The audit log\n")
	if !ok {
		t.Fatal("README.md has no ## The audit log section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	for _, typ := range Types() {
		if !strings.Contains(section, "`"+typ+"`") {
			t.Errorf("README.md's audit section does not name `%s`", typ)
		}
	}
}
