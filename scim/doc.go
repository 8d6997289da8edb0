package scim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/keygate/keygate/identity"
)

// doc is a SCIM resource as a JSON object, every key spelled as its schema
// spells it, extension attributes under their schema URN. Numbers are
// json.Number, so nothing is lost on the way through.
type doc map[string]any

// decodeObject decodes a JSON object, keeping numbers exact.
func decodeObject(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, errorf(400, invalidSyntax, "the body is not valid JSON: %v", err)
	}
	if dec.More() {
		return nil, errorf(400, invalidSyntax, "the body holds more than one JSON value")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errorf(400, invalidSyntax, "the body must be a JSON object")
	}
	return m, nil
}

// normalize checks raw against rt and returns it as a doc. Read-only
// attributes and passwords are dropped, unknown attributes ignored (a
// string attribute under the keygate extension becomes a tag); an unknown
// schema or a value of the wrong type is an error.
func normalize(rt *resourceType, raw map[string]any) (doc, error) {
	d := doc{}
	for key, v := range raw {
		switch {
		case strings.EqualFold(key, "schemas"):
			if err := checkSchemas(rt, v); err != nil {
				return nil, err
			}
		case strings.EqualFold(key, "id"), strings.EqualFold(key, "meta"):
			// Read-only: the server's.
		case strings.EqualFold(key, "externalId"):
			if err := setValue(d, find(common, "externalId"), "externalId", v); err != nil {
				return nil, err
			}
		default:
			if err := d.set(rt, key, v); err != nil {
				return nil, err
			}
		}
	}
	return d, nil
}

func checkSchemas(rt *resourceType, v any) error {
	list, ok := v.([]any)
	if !ok {
		return badValue("schemas must be a list of schema URNs")
	}
	for _, s := range list {
		urn, ok := s.(string)
		if !ok {
			return badValue("schemas must be a list of schema URNs")
		}
		if !rt.knownSchema(urn) {
			return errorf(400, invalidValue, "unknown schema %q for a %s: use %s", urn, rt.Name, strings.Join(rt.schemaIDs(), ", "))
		}
	}
	return nil
}

func (rt *resourceType) schemaIDs() []string {
	ids := []string{rt.core.ID}
	for _, e := range rt.extensions {
		ids = append(ids, e.ID)
	}
	return ids
}

// set stores one top-level key of a request: a core attribute, an
// extension object under its URN, or an extension attribute written out in
// full ("urn:...:enterprise:2.0:User:department").
func (d doc) set(rt *resourceType, key string, v any) error {
	if ext := rt.extension(key); ext != nil {
		obj, ok := v.(map[string]any)
		if v != nil && !ok {
			return badValue("%s must be an object", ext.ID)
		}
		for k, sv := range obj {
			if err := d.setExtension(ext, k, sv); err != nil {
				return err
			}
		}
		return nil
	}
	if urn, rest, ok := rt.splitURN(key); ok {
		if ext := rt.extension(urn); ext != nil {
			return d.setExtension(ext, rest, v)
		}
		return d.set(rt, rest, v)
	}
	if strings.Contains(key, ":") {
		return badValue("unknown schema in attribute %q: use %s", key, strings.Join(rt.schemaIDs(), ", "))
	}
	a := rt.attribute(key)
	if a == nil || a.readOnly() || a.Mutability == "writeOnly" {
		return nil // unknown, read-only or never kept: ignored
	}
	return setValue(d, a, a.Name, v)
}

func (d doc) setExtension(ext *schema, key string, v any) error {
	obj, _ := d[ext.ID].(map[string]any)
	if obj == nil {
		obj = map[string]any{}
	}
	a := find(ext.Attributes, key)
	switch {
	case a == nil && ext.ID == SchemaKeygate:
		// A free tag: any string attribute.
		if v == nil {
			delete(obj, key)
			break
		}
		s, ok := v.(string)
		if !ok {
			return badValue("%s:%s: a tag must be a string", ext.ID, key)
		}
		obj[key] = s
	case a == nil || a.readOnly():
		return nil
	default:
		if err := setValue(obj, a, a.Name, v); err != nil {
			return fmt.Errorf("%s: %w", ext.ID, err)
		}
	}
	if len(obj) == 0 {
		delete(d, ext.ID)
	} else {
		d[ext.ID] = obj
	}
	return nil
}

// setValue stores v, checked against a, under name in m; null removes it.
func setValue(m map[string]any, a *attribute, name string, v any) error {
	nv, err := normalizeValue(a, v, a.Name)
	if err != nil {
		return err
	}
	if nv == nil {
		delete(m, name)
	} else {
		m[name] = nv
	}
	return nil
}

// normalizeValue checks v against a, converting what clients are known to
// send ("True" for a boolean, a lone object for a multi-valued attribute).
func normalizeValue(a *attribute, v any, path string) (any, error) {
	if v == nil {
		return nil, nil
	}
	if a.MultiValued {
		list, ok := v.([]any)
		if !ok {
			list = []any{v}
		}
		single := *a
		single.MultiValued = false
		var out []any
		for _, e := range list {
			ne, err := normalizeValue(&single, e, path)
			if err != nil {
				return nil, err
			}
			if ne != nil {
				out = append(out, ne)
			}
		}
		if len(out) == 0 {
			return nil, nil
		}
		return out, nil
	}
	switch a.Type {
	case tComplex:
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, badValue("%s must be an object, not %s", path, kind(v))
		}
		out := map[string]any{}
		for k, sv := range obj {
			sub := a.sub(k)
			if sub == nil || sub.readOnly() {
				continue
			}
			nv, err := normalizeValue(sub, sv, path+"."+sub.Name)
			if err != nil {
				return nil, err
			}
			if nv != nil {
				out[sub.Name] = nv
			}
		}
		// Required sub-attributes (members.value, tags.key) are checked
		// before an empty value is dropped: a member sent as
		// {"display": "ann"} keeps nothing, and dropping it would answer
		// success for a member never added.
		for _, sub := range a.SubAttributes {
			if sub.Required && out[sub.Name] == nil {
				return nil, badValue("%s.%s is required", path, sub.Name)
			}
		}
		if len(out) == 0 {
			return nil, nil
		}
		return out, nil
	case tBoolean:
		switch b := v.(type) {
		case bool:
			return b, nil
		case string:
			// Azure AD sends "True" and "False".
			switch strings.ToLower(b) {
			case "true":
				return true, nil
			case "false":
				return false, nil
			}
		}
		return nil, badValue("%s must be true or false, not %s", path, describe(v))
	case tInteger, tDecimal:
		n, ok := v.(json.Number)
		if !ok {
			return nil, badValue("%s must be a number, not %s", path, kind(v))
		}
		if a.Type == tInteger {
			if _, err := n.Int64(); err != nil {
				return nil, badValue("%s must be a whole number, not %s", path, n)
			}
		}
		return n, nil
	case tDateTime:
		s, ok := v.(string)
		if !ok {
			return nil, badValue("%s must be a date and time (RFC 3339), not %s", path, kind(v))
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			return nil, badValue("%s must be a date and time (RFC 3339), not %q", path, s)
		}
		return s, nil
	default: // string, reference, binary
		switch s := v.(type) {
		case string:
			return s, nil
		case json.Number:
			// An employee number sent as a number is still its digits. A
			// name that identifies the resource (userName, a group's
			// displayName) is not: a number there is a mapping mistake,
			// refused rather than made into a person called "5".
			if a.Uniqueness == "none" {
				return s.String(), nil
			}
		}
		return nil, badValue("%s must be a string, not %s", path, kind(v))
	}
}

func kind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}

func describe(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return kind(v)
}

func (d doc) str(name string) string {
	s, _ := d[name].(string)
	return s
}

// clone copies d deeply enough to change it without touching d.
func (d doc) clone() doc {
	b, _ := json.Marshal(d)
	out, _ := decodeObject(b)
	if out == nil {
		return doc{}
	}
	return doc(out)
}

// userFromDoc fills u from d: the fields keygate indexes and acts on, the
// principal tags, and the whole document as the profile.
func userFromDoc(d doc, u *identity.User) error {
	name := strings.TrimSpace(d.str("userName"))
	if name == "" {
		return badValue("userName is required")
	}
	if err := identity.ValidateUserName(name); err != nil {
		return badValue("userName: %v; keygate uses it as the database user name", err)
	}
	d["userName"] = name
	u.UserName = name
	u.Active = true
	if a, ok := d["active"].(bool); ok {
		u.Active = a
	}
	u.DisplayName = d.str("displayName")
	u.ExternalID = d.str("externalId")
	u.Email = primaryValue(d["emails"])
	u.Attributes = principalTags(d)
	profile := d.clone()
	for _, k := range []string{"id", "meta", "groups", "password", "schemas"} {
		delete(profile, k)
	}
	b, err := json.Marshal(profile)
	if err != nil {
		return fmt.Errorf("encode profile: %w", err)
	}
	u.Profile = b
	return nil
}

// primaryValue is the value of the primary element of a multi-valued
// attribute, or of its first.
func primaryValue(v any) string {
	list, _ := v.([]any)
	first := ""
	for _, e := range list {
		m, _ := e.(map[string]any)
		val, _ := m["value"].(string)
		if p, _ := m["primary"].(bool); p {
			return val
		}
		if first == "" {
			first = val
		}
	}
	return first
}

// principalTags collects the attributes access rules see: the enterprise
// extension's, and the keygate extension's project, environment and tags.
func principalTags(d doc) map[string]string {
	tags := map[string]string{}
	if ent, ok := d[SchemaEnterprise].(map[string]any); ok {
		for _, k := range []string{"employeeNumber", "costCenter", "organization", "division", "department"} {
			if s, ok := ent[k].(string); ok && s != "" {
				tags[k] = s
			}
		}
		if m, ok := ent["manager"].(map[string]any); ok {
			if s, _ := m["value"].(string); s != "" {
				tags["manager"] = s
			}
		}
	}
	if kg, ok := d[SchemaKeygate].(map[string]any); ok {
		for k, v := range kg {
			if s, ok := v.(string); ok && s != "" {
				tags[k] = s
			}
		}
		list, _ := kg["tags"].([]any)
		for _, e := range list {
			m, _ := e.(map[string]any)
			if key, _ := m["key"].(string); key != "" {
				val, _ := m["value"].(string)
				tags[key] = val
			}
		}
	}
	return tags
}

// timeFormat is how meta times are written.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

func etag(version int64) string { return fmt.Sprintf(`W/"%d"`, version) }

// renderUser is the SCIM resource of u. groups, when not nil, fill the
// read-only groups attribute.
func renderUser(u identity.User, groups []identity.Group, base string) doc {
	d := doc{}
	if len(u.Profile) > 0 {
		if m, err := decodeObject(u.Profile); err == nil {
			d = doc(m)
		}
	}
	d["id"] = u.ID
	d["userName"] = u.UserName
	d["active"] = u.Active
	if u.ExternalID != "" {
		d["externalId"] = u.ExternalID
	}
	// People made with `keygate admin user add` have no profile.
	if _, ok := d["displayName"]; !ok && u.DisplayName != "" {
		d["displayName"] = u.DisplayName
	}
	if _, ok := d["emails"]; !ok && u.Email != "" {
		d["emails"] = []any{map[string]any{"value": u.Email, "type": "work", "primary": true}}
	}
	if groups != nil {
		list := make([]any, 0, len(groups))
		for _, g := range groups {
			list = append(list, map[string]any{"value": g.ID, "display": g.Name, "$ref": base + "/Groups/" + g.ID, "type": "direct"})
		}
		d["groups"] = list
	}
	schemas := []any{SchemaUser}
	for _, ext := range userType.extensions {
		if _, ok := d[ext.ID]; ok {
			schemas = append(schemas, ext.ID)
		}
	}
	d["schemas"] = schemas
	d["meta"] = meta("User", u.Created, u.Modified, base+"/Users/"+u.ID, u.Version)
	return d
}

// renderGroup is the SCIM resource of g. members, when not nil, fill the
// members attribute.
func renderGroup(g identity.Group, members []identity.Member, base string) doc {
	d := doc{"id": g.ID, "displayName": g.Name, "schemas": []any{SchemaGroup}}
	if g.ExternalID != "" {
		d["externalId"] = g.ExternalID
	}
	if members != nil {
		list := make([]any, 0, len(members))
		for _, m := range members {
			list = append(list, map[string]any{"value": m.UserID, "display": m.UserName, "$ref": base + "/Users/" + m.UserID, "type": "User"})
		}
		d["members"] = list
	}
	d["meta"] = meta("Group", g.Created, g.Modified, base+"/Groups/"+g.ID, g.Version)
	return d
}

func meta(resourceType string, created, modified time.Time, location string, version int64) map[string]any {
	return map[string]any{
		"resourceType": resourceType,
		"created":      created.UTC().Format(timeFormat),
		"lastModified": modified.UTC().Format(timeFormat),
		"location":     location,
		"version":      etag(version),
	}
}

// project applies the attributes and excludedAttributes query parameters
// (RFC 7644 §3.4.2.5). id and schemas are always returned.
func project(rt *resourceType, d doc, attributes, excluded []string) doc {
	if len(attributes) > 0 {
		out := doc{"id": d["id"], "schemas": d["schemas"]}
		for _, name := range attributes {
			copyAttr(rt, d, out, name)
		}
		return out
	}
	for _, name := range excluded {
		removeAttr(rt, d, name)
	}
	return d
}

// resolveName splits an attribute name as a client writes it into where
// it lives in a doc: the extension URN (or ""), the attribute and the
// sub-attribute, all spelled as the schema spells them.
func resolveName(rt *resourceType, name string) (urn, attrName, sub string, ok bool) {
	if u, rest, found := rt.splitURN(name); found {
		name = rest
		if ext := rt.extension(u); ext != nil {
			urn = ext.ID
		}
	}
	attrName, sub, _ = strings.Cut(name, ".")
	var a *attribute
	if urn != "" {
		a = find(rt.extension(urn).Attributes, attrName)
	} else {
		a = rt.attribute(attrName)
	}
	if a == nil {
		return "", "", "", false
	}
	attrName = a.Name
	if sub != "" {
		s := a.sub(sub)
		if s == nil {
			return "", "", "", false
		}
		sub = s.Name
	}
	return urn, attrName, sub, true
}

func container(d doc, urn string, create bool) map[string]any {
	if urn == "" {
		return d
	}
	m, _ := d[urn].(map[string]any)
	if m == nil && create {
		m = map[string]any{}
		d[urn] = m
	}
	return m
}

func copyAttr(rt *resourceType, from, to doc, name string) {
	urn, a, sub, ok := resolveName(rt, name)
	if !ok {
		return
	}
	src := container(from, urn, false)
	v, present := src[a]
	if !present {
		return
	}
	dst := container(to, urn, true)
	if sub == "" {
		dst[a] = v
		return
	}
	switch x := v.(type) {
	case map[string]any:
		m, _ := dst[a].(map[string]any)
		if m == nil {
			m = map[string]any{}
		}
		if sv, ok := x[sub]; ok {
			m[sub] = sv
		}
		dst[a] = m
	case []any:
		var list []any
		for _, e := range x {
			if em, ok := e.(map[string]any); ok {
				if sv, ok := em[sub]; ok {
					list = append(list, map[string]any{sub: sv})
				}
			}
		}
		dst[a] = list
	}
}

func removeAttr(rt *resourceType, d doc, name string) {
	urn, a, sub, ok := resolveName(rt, name)
	if !ok || (urn == "" && (a == "id" || a == "schemas")) {
		return
	}
	c := container(d, urn, false)
	if c == nil {
		return
	}
	if sub == "" {
		delete(c, a)
		return
	}
	switch x := c[a].(type) {
	case map[string]any:
		delete(x, sub)
	case []any:
		for _, e := range x {
			if em, ok := e.(map[string]any); ok {
				delete(em, sub)
			}
		}
	}
}
