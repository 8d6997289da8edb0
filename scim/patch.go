package scim

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"

	filter "github.com/scim2/filter-parser/v2"

	"github.com/keygate/keygate/store"
)

// patchOp is one operation of a PATCH request.
type patchOp struct {
	op    string // add, replace or remove
	path  string
	value any
}

// maxPatchOps bounds the operations of one request.
const maxPatchOps = 1000

// parsePatch decodes a PatchOp request. Operation names are matched without
// regard to case: Azure AD sends "Replace", "Add" and "Remove".
func parsePatch(body []byte) ([]patchOp, error) {
	raw, err := decodeObject(body)
	if err != nil {
		return nil, err
	}
	var ops []any
	for k, v := range raw {
		switch {
		case strings.EqualFold(k, "schemas"):
			list, _ := v.([]any)
			if !slices.ContainsFunc(list, func(s any) bool { str, _ := s.(string); return strings.EqualFold(str, messagePatch) }) {
				return nil, badValue("a PATCH body's schemas must be [%q]", messagePatch)
			}
		case strings.EqualFold(k, "Operations"):
			list, ok := v.([]any)
			if !ok {
				return nil, badValue("Operations must be a list")
			}
			ops = list
		}
	}
	if len(ops) == 0 {
		return nil, badValue("a PATCH body needs Operations")
	}
	if len(ops) > maxPatchOps {
		return nil, errorf(http.StatusRequestEntityTooLarge, tooMany, "at most %d operations per request", maxPatchOps)
	}
	out := make([]patchOp, 0, len(ops))
	for i, o := range ops {
		m, ok := o.(map[string]any)
		if !ok {
			return nil, badValue("operation %d must be an object", i+1)
		}
		var p patchOp
		for k, v := range m {
			switch strings.ToLower(k) {
			case "op":
				s, _ := v.(string)
				p.op = strings.ToLower(s)
			case "path":
				s, ok := v.(string)
				if !ok {
					return nil, badPath("operation %d: path must be a string", i+1)
				}
				p.path = strings.TrimSpace(s)
			case "value":
				p.value = v
			}
		}
		switch p.op {
		case "add", "replace":
			if p.value == nil && p.path == "" {
				return nil, badValue("operation %d (%s) needs a value", i+1, p.op)
			}
		case "remove":
			if p.path == "" {
				return nil, errorf(http.StatusBadRequest, noTarget, "operation %d: remove needs a path", i+1)
			}
		default:
			return nil, errorf(http.StatusBadRequest, invalidSyntax, "operation %d: op must be add, replace or remove, not %q", i+1, p.op)
		}
		out = append(out, p)
	}
	return out, nil
}

// expand turns path-less operations into one operation per attribute of
// their value, so that "replace {active: false}" and
// "replace {name.givenName: x}" go the same way as operations with a path.
func expand(rt *resourceType, ops []patchOp) ([]patchOp, error) {
	var out []patchOp
	for _, o := range ops {
		if o.path != "" {
			out = append(out, o)
			continue
		}
		obj, ok := o.value.(map[string]any)
		if !ok {
			return nil, badValue("%s without a path needs an object value", o.op)
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if strings.EqualFold(k, "schemas") || strings.EqualFold(k, "id") || strings.EqualFold(k, "meta") {
				continue
			}
			if ext := rt.extension(k); ext != nil {
				sub, ok := obj[k].(map[string]any)
				if !ok {
					return nil, badValue("%s must be an object", ext.ID)
				}
				for sk, sv := range sub {
					out = append(out, patchOp{op: o.op, path: ext.ID + ":" + sk, value: sv})
				}
				continue
			}
			out = append(out, patchOp{op: o.op, path: k, value: obj[k]})
		}
	}
	return out, nil
}

// target is where a PATCH path points in a doc.
type target struct {
	urn  string     // extension schema, or "" for the core
	a    *attribute // nil for a free keygate tag
	name string     // the attribute's key in its container
	path filter.Path
}

func resolvePath(rt *resourceType, raw string) (target, error) {
	p, err := filter.ParsePathNumber([]byte(raw))
	if err != nil {
		return target{}, badPath("cannot parse path %q", raw)
	}
	t := target{path: p}
	name := p.AttributePath.AttributeName
	switch {
	case p.AttributePath.URIPrefix != nil:
		urn := *p.AttributePath.URIPrefix
		if ext := rt.extension(urn); ext != nil {
			t.urn = ext.ID
			t.a = find(ext.Attributes, name)
			if t.a == nil && ext.ID == SchemaKeygate && p.AttributePath.SubAttribute == nil && p.ValueExpression == nil {
				t.name = name // a free tag
				return t, nil
			}
		} else if strings.EqualFold(urn, rt.core.ID) {
			t.a = rt.attribute(name)
		} else {
			return target{}, badPath("unknown schema %q in path %q", urn, raw)
		}
	default:
		t.a = rt.attribute(name)
	}
	if t.a == nil {
		return target{}, badPath("unknown attribute %q in path %q", name, raw)
	}
	if t.a.readOnly() {
		return target{}, errorf(http.StatusBadRequest, mutability, "%s is read-only", t.a.Name)
	}
	if t.a.Mutability == "writeOnly" {
		t.a = nil // password: accepted, never kept
		t.name = ""
		return t, nil
	}
	t.name = t.a.Name
	if sub := p.AttributePath.SubAttribute; sub != nil {
		if t.a.Type != tComplex || t.a.sub(*sub) == nil {
			return target{}, badPath("unknown attribute %q in path %q", *sub, raw)
		}
	}
	if sub := p.SubAttribute; sub != nil && (t.a.Type != tComplex || t.a.sub(*sub) == nil) {
		return target{}, badPath("unknown attribute %q in path %q", *sub, raw)
	}
	if p.ValueExpression != nil && !(t.a.Type == tComplex && t.a.MultiValued) {
		return target{}, badPath("%s is not multi-valued: the [filter] in %q does not apply", t.a.Name, raw)
	}
	return t, nil
}

// applyPatch applies ops to d.
func applyPatch(rt *resourceType, d doc, ops []patchOp) error {
	ops, err := expand(rt, ops)
	if err != nil {
		return err
	}
	for _, o := range ops {
		t, err := resolvePath(rt, o.path)
		if err != nil {
			return err
		}
		if t.name == "" {
			continue // password
		}
		if err := t.apply(rt, d, o); err != nil {
			return err
		}
	}
	return nil
}

func (t target) apply(rt *resourceType, d doc, o patchOp) error {
	c := container(d, t.urn, o.op != "remove")
	if c == nil {
		return nil // removing from an extension the resource lacks
	}
	defer func() {
		if t.urn != "" && len(c) == 0 {
			delete(d, t.urn)
		}
	}()
	if t.a == nil { // a free keygate tag
		if o.op == "remove" || o.value == nil {
			delete(c, t.name)
			return nil
		}
		s, ok := o.value.(string)
		if !ok {
			return badValue("%s:%s: a tag must be a string", t.urn, t.name)
		}
		c[t.name] = s
		return nil
	}
	p := t.path
	switch {
	case p.ValueExpression != nil:
		return t.applyFiltered(c, o)
	case p.AttributePath.SubAttribute != nil:
		return t.applySub(c, *p.AttributePath.SubAttribute, o)
	}
	switch o.op {
	case "remove":
		if o.value != nil && t.a.MultiValued {
			// Azure AD removes members and emails by value.
			return t.removeValues(c, o.value)
		}
		delete(c, t.name)
		return nil
	case "replace":
		return setValue(c, t.a, t.name, o.value)
	}
	// add: a multi-valued attribute gains values; any other is set.
	if !t.a.MultiValued {
		return setValue(c, t.a, t.name, o.value)
	}
	nv, err := normalizeValue(t.a, o.value, t.a.Name)
	if err != nil {
		return err
	}
	list := flatten(c[t.name])
	for _, v := range flatten(nv) {
		if !slices.ContainsFunc(list, func(e any) bool { return reflect.DeepEqual(e, v) }) {
			list = append(list, v)
		}
	}
	if len(list) > 0 {
		c[t.name] = list
	}
	return nil
}

// applySub sets or removes a sub-attribute of a single-valued complex
// attribute (name.familyName).
func (t target) applySub(c map[string]any, subName string, o patchOp) error {
	if t.a.MultiValued {
		return badPath("%s is multi-valued: select values with a filter, as in %s[type eq \"work\"].%s", t.a.Name, t.a.Name, subName)
	}
	sub := t.a.sub(subName)
	obj, _ := c[t.name].(map[string]any)
	if o.op == "remove" {
		if obj != nil {
			delete(obj, sub.Name)
			if len(obj) == 0 {
				delete(c, t.name)
			}
		}
		return nil
	}
	if obj == nil {
		obj = map[string]any{}
	}
	if err := setValue(obj, sub, sub.Name, o.value); err != nil {
		return err
	}
	if len(obj) == 0 {
		delete(c, t.name)
	} else {
		c[t.name] = obj
	}
	return nil
}

// applyFiltered handles paths such as emails[type eq "work"].value and
// members[value eq "..."].
func (t target) applyFiltered(c map[string]any, o patchOp) error {
	m := matcher{rt: &resourceType{Name: t.a.Name, core: &schema{Attributes: t.a.SubAttributes}}}
	list := flatten(c[t.name])
	var matched []int
	for i, e := range list {
		el, _ := e.(map[string]any)
		ok, err := m.match(t.path.ValueExpression, doc(el))
		if err != nil {
			return err
		}
		if ok {
			matched = append(matched, i)
		}
	}
	var sub *attribute
	if t.path.SubAttribute != nil {
		sub = t.a.sub(*t.path.SubAttribute)
	}
	switch o.op {
	case "remove":
		if sub != nil {
			for _, i := range matched {
				el, _ := list[i].(map[string]any)
				delete(el, sub.Name)
			}
		} else {
			for j := len(matched) - 1; j >= 0; j-- {
				list = slices.Delete(list, matched[j], matched[j]+1)
			}
		}
	default: // add, replace
		if len(matched) == 0 {
			// Azure AD adds a work email with
			// emails[type eq "work"].value: the filter names the new value.
			el, ok := seed(t.path.ValueExpression)
			if !ok {
				return errorf(http.StatusBadRequest, noTarget, "no %s matches %s", t.a.Name, t.path.ValueExpression)
			}
			list = append(list, el)
			matched = []int{len(list) - 1}
		}
		for _, i := range matched {
			el, _ := list[i].(map[string]any)
			if sub != nil {
				if err := setValue(el, sub, sub.Name, o.value); err != nil {
					return err
				}
				continue
			}
			single := *t.a
			single.MultiValued = false
			nv, err := normalizeValue(&single, o.value, t.a.Name)
			if err != nil {
				return err
			}
			list[i] = nv
		}
	}
	return setValue(c, t.a, t.name, list)
}

// seed builds the element an eq-only filter describes, for creating the
// value a filtered add or replace names.
func seed(e filter.Expression) (map[string]any, bool) {
	switch x := e.(type) {
	case *filter.AttributeExpression:
		if !strings.EqualFold(string(x.Operator), "eq") || x.AttributePath.SubAttribute != nil || x.AttributePath.URIPrefix != nil {
			return nil, false
		}
		v := x.CompareValue
		if s, ok := v.(string); ok {
			var out string
			if json.Unmarshal([]byte(`"`+s+`"`), &out) != nil {
				return nil, false
			}
			v = out
		}
		return map[string]any{x.AttributePath.AttributeName: v}, true
	case *filter.LogicalExpression:
		if !strings.EqualFold(string(x.Operator), "and") {
			return nil, false
		}
		l, ok := seed(x.Left)
		if !ok {
			return nil, false
		}
		r, ok := seed(x.Right)
		if !ok {
			return nil, false
		}
		for k, v := range r {
			l[k] = v
		}
		return l, true
	}
	return nil, false
}

// removeValues removes from a multi-valued attribute the values given,
// matched on their "value" sub-attribute when they have one.
func (t target) removeValues(c map[string]any, v any) error {
	gone, err := normalizeValue(t.a, v, t.a.Name)
	if err != nil {
		return err
	}
	key := func(e any) any {
		if m, ok := e.(map[string]any); ok {
			if val, ok := m["value"]; ok {
				return val
			}
		}
		return e
	}
	list := slices.DeleteFunc(flatten(c[t.name]), func(e any) bool {
		return slices.ContainsFunc(flatten(gone), func(g any) bool { return reflect.DeepEqual(key(e), key(g)) })
	})
	return setValue(c, t.a, t.name, list)
}

// memberPatch is what a Group PATCH does to members, kept as a change
// rather than a list so that a group of ten thousand people is never read
// in full to add one.
type memberPatch struct {
	replace bool
	set     map[string]bool
	add     map[string]bool
	remove  map[string]bool
	// current loads the members when an operation needs them (a filter
	// other than value eq).
	current func() ([]map[string]any, error)
}

func newMemberPatch(current func() ([]map[string]any, error)) *memberPatch {
	return &memberPatch{set: map[string]bool{}, add: map[string]bool{}, remove: map[string]bool{}, current: current}
}

func (mp *memberPatch) addIDs(ids []string) {
	for _, id := range ids {
		if mp.replace {
			mp.set[id] = true
		} else {
			mp.add[id] = true
			delete(mp.remove, id)
		}
	}
}

func (mp *memberPatch) removeIDs(ids []string) {
	for _, id := range ids {
		if mp.replace {
			delete(mp.set, id)
		} else {
			mp.remove[id] = true
			delete(mp.add, id)
		}
	}
}

func (mp *memberPatch) replaceAll(ids []string) {
	mp.replace = true
	mp.set = map[string]bool{}
	mp.add, mp.remove = map[string]bool{}, map[string]bool{}
	for _, id := range ids {
		mp.set[id] = true
	}
}

func (mp *memberPatch) change() store.MemberChange {
	keys := func(m map[string]bool) []string {
		out := make([]string, 0, len(m))
		for k := range m {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	if mp.replace {
		return store.MemberChange{Replace: true, Set: keys(mp.set)}
	}
	return store.MemberChange{Add: keys(mp.add), Remove: keys(mp.remove)}
}

// memberIDs reads the user ids out of a members value: a list of
// {"value": id} objects (or one).
func memberIDs(v any) ([]string, error) {
	nv, err := normalizeValue(membersAttr, v, "members")
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range flatten(nv) {
		m, _ := e.(map[string]any)
		id, _ := m["value"].(string)
		if id == "" {
			return nil, badValue("a member needs a value: the user's id")
		}
		if typ, _ := m["type"].(string); typ != "" && !strings.EqualFold(typ, "User") {
			return nil, badValue("member %s is a %s: only users can be members (nested groups are not supported)", id, typ)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// apply handles one operation on members.
func (mp *memberPatch) apply(o patchOp, p filter.Path) error {
	if p.ValueExpression == nil {
		switch {
		case o.op == "add":
			ids, err := memberIDs(o.value)
			if err != nil {
				return err
			}
			mp.addIDs(ids)
		case o.op == "replace":
			ids, err := memberIDs(o.value)
			if err != nil {
				return err
			}
			mp.replaceAll(ids)
		case o.value != nil:
			// Azure AD: remove with the members to remove as the value.
			ids, err := memberIDs(o.value)
			if err != nil {
				return err
			}
			mp.removeIDs(ids)
		default:
			mp.replaceAll(nil)
		}
		return nil
	}
	if p.SubAttribute != nil {
		return errorf(http.StatusBadRequest, mutability, "a member's attributes cannot be changed: remove the member and add another")
	}
	if o.op != "remove" {
		return badPath("members[...] selects members to remove; add members with path \"members\"")
	}
	if ids, ok := valueEquals(p.ValueExpression); ok {
		mp.removeIDs(ids)
		return nil
	}
	current, err := mp.current()
	if err != nil {
		return err
	}
	m := matcher{rt: &resourceType{Name: "members", core: &schema{Attributes: membersAttr.SubAttributes}}}
	var ids []string
	for _, el := range current {
		ok, err := m.match(p.ValueExpression, doc(el))
		if err != nil {
			return err
		}
		if ok {
			id, _ := el["value"].(string)
			ids = append(ids, id)
		}
	}
	mp.removeIDs(ids)
	return nil
}

// valueEquals reads `value eq "a"` and `value eq "a" or value eq "b"`.
func valueEquals(e filter.Expression) ([]string, bool) {
	switch x := e.(type) {
	case *filter.AttributeExpression:
		if !strings.EqualFold(x.AttributePath.AttributeName, "value") || x.AttributePath.SubAttribute != nil || !strings.EqualFold(string(x.Operator), "eq") {
			return nil, false
		}
		s, ok := x.CompareValue.(string)
		if !ok {
			return nil, false
		}
		var id string
		if json.Unmarshal([]byte(`"`+s+`"`), &id) != nil {
			return nil, false
		}
		return []string{id}, true
	case *filter.LogicalExpression:
		if !strings.EqualFold(string(x.Operator), "or") {
			return nil, false
		}
		l, ok := valueEquals(x.Left)
		if !ok {
			return nil, false
		}
		r, ok := valueEquals(x.Right)
		return append(l, r...), ok
	}
	return nil, false
}
