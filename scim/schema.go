package scim

import "strings"

// Schema URNs.
const (
	SchemaUser       = "urn:ietf:params:scim:schemas:core:2.0:User"
	SchemaGroup      = "urn:ietf:params:scim:schemas:core:2.0:Group"
	SchemaEnterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	// SchemaKeygate carries the attributes keygate's access rules use as
	// principal tags. Azure AD wants custom extensions named in this form.
	SchemaKeygate = "urn:ietf:params:scim:schemas:extension:keygate:2.0:User"
	// schemaADGroup is what Azure AD puts in the schemas of groups it
	// sends; it adds nothing to the core Group schema.
	schemaADGroup = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"

	messageList  = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	messagePatch = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	messageError = "urn:ietf:params:scim:api:messages:2.0:Error"

	schemaServiceProviderConfig = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
	schemaResourceType          = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
	schemaSchema                = "urn:ietf:params:scim:schemas:core:2.0:Schema"
)

type attrType string

const (
	tString    attrType = "string"
	tBoolean   attrType = "boolean"
	tDecimal   attrType = "decimal"
	tInteger   attrType = "integer"
	tDateTime  attrType = "dateTime"
	tReference attrType = "reference"
	tComplex   attrType = "complex"
	tBinary    attrType = "binary"
)

// attribute is an RFC 7643 attribute definition. It serves /Schemas as is
// and drives validation, filters and PATCH paths.
type attribute struct {
	Name            string       `json:"name"`
	Type            attrType     `json:"type"`
	MultiValued     bool         `json:"multiValued"`
	Description     string       `json:"description,omitempty"`
	Required        bool         `json:"required"`
	CaseExact       bool         `json:"caseExact"`
	Mutability      string       `json:"mutability"`
	Returned        string       `json:"returned"`
	Uniqueness      string       `json:"uniqueness"`
	CanonicalValues []string     `json:"canonicalValues,omitempty"`
	ReferenceTypes  []string     `json:"referenceTypes,omitempty"`
	SubAttributes   []*attribute `json:"subAttributes,omitempty"`
}

func (a *attribute) readOnly() bool { return a.Mutability == "readOnly" }

// sub finds a sub-attribute by name, ignoring case.
func (a *attribute) sub(name string) *attribute {
	return find(a.SubAttributes, name)
}

func find(attrs []*attribute, name string) *attribute {
	for _, a := range attrs {
		if strings.EqualFold(a.Name, name) {
			return a
		}
	}
	return nil
}

// schema is an RFC 7643 schema.
type schema struct {
	ID          string       `json:"id"`
	Name        string       `json:"name"`
	Description string       `json:"description"`
	Attributes  []*attribute `json:"attributes"`
}

// option shapes an attribute definition.
type option func(*attribute)

func required(a *attribute)  { a.Required = true }
func caseExact(a *attribute) { a.CaseExact = true }
func multi(a *attribute)     { a.MultiValued = true }
func readOnly(a *attribute)  { a.Mutability = "readOnly" }
func writeOnly(a *attribute) { a.Mutability = "writeOnly"; a.Returned = "never" }
func immutable(a *attribute) { a.Mutability = "immutable" }
func unique(a *attribute)    { a.Uniqueness = "server" }
func always(a *attribute)    { a.Returned = "always" }

func canonical(values ...string) option {
	return func(a *attribute) { a.CanonicalValues = values }
}

func refTypes(types ...string) option {
	return func(a *attribute) { a.ReferenceTypes = types }
}

func desc(d string) option { return func(a *attribute) { a.Description = d } }

func attr(name string, t attrType, opts ...option) *attribute {
	a := &attribute{Name: name, Type: t, Mutability: "readWrite", Returned: "default", Uniqueness: "none"}
	for _, o := range opts {
		o(a)
	}
	return a
}

func complexAttr(name string, subs []*attribute, opts ...option) *attribute {
	a := attr(name, tComplex, opts...)
	a.SubAttributes = subs
	return a
}

// multiValuedOf is the usual value/display/type/primary shape of
// emails, phoneNumbers, ims, photos, entitlements, roles and certificates.
func multiValuedOf(name string, valueType attrType, types ...string) *attribute {
	return complexAttr(name, []*attribute{
		attr("value", valueType),
		attr("display", tString),
		attr("type", tString, canonical(types...)),
		attr("primary", tBoolean),
	}, multi)
}

var userSchema = &schema{
	ID:          SchemaUser,
	Name:        "User",
	Description: "A person who may reach databases through keygate",
	Attributes: []*attribute{
		attr("userName", tString, required, unique, desc("The person's user name: their database user name, and <name>.<level> upstream. At most 56 bytes, no whitespace.")),
		complexAttr("name", []*attribute{
			attr("formatted", tString), attr("familyName", tString), attr("givenName", tString),
			attr("middleName", tString), attr("honorificPrefix", tString), attr("honorificSuffix", tString),
		}),
		attr("displayName", tString),
		attr("nickName", tString),
		attr("profileUrl", tReference, refTypes("external")),
		attr("title", tString),
		attr("userType", tString),
		attr("preferredLanguage", tString),
		attr("locale", tString),
		attr("timezone", tString),
		attr("active", tBoolean, desc("false disables the person: their sessions end and no token is issued")),
		attr("password", tString, writeOnly, desc("Accepted and ignored: keygate never stores a password")),
		multiValuedOf("emails", tString, "work", "home", "other"),
		multiValuedOf("phoneNumbers", tString, "work", "home", "mobile", "fax", "pager", "other"),
		multiValuedOf("ims", tString, "aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"),
		multiValuedOf("photos", tReference, "photo", "thumbnail"),
		complexAttr("addresses", []*attribute{
			attr("formatted", tString), attr("streetAddress", tString), attr("locality", tString),
			attr("region", tString), attr("postalCode", tString), attr("country", tString),
			attr("type", tString, canonical("work", "home", "other")), attr("primary", tBoolean),
		}, multi),
		complexAttr("groups", []*attribute{
			attr("value", tString, readOnly), attr("$ref", tReference, readOnly, refTypes("Group")),
			attr("display", tString, readOnly), attr("type", tString, readOnly, canonical("direct")),
		}, multi, readOnly),
		multiValuedOf("entitlements", tString),
		multiValuedOf("roles", tString),
		multiValuedOf("x509Certificates", tBinary),
	},
}

var enterpriseSchema = &schema{
	ID:          SchemaEnterprise,
	Name:        "EnterpriseUser",
	Description: "Enterprise user; its attributes become principal tags",
	Attributes: []*attribute{
		attr("employeeNumber", tString),
		attr("costCenter", tString),
		attr("organization", tString),
		attr("division", tString),
		attr("department", tString),
		complexAttr("manager", []*attribute{
			attr("value", tString), attr("$ref", tReference, refTypes("User")), attr("displayName", tString, readOnly),
		}),
	},
}

var keygateSchema = &schema{
	ID:   SchemaKeygate,
	Name: "KeygateUser",
	Description: "Attributes keygate's access rules use as principal tags. Besides project, environment and tags, " +
		"any other string attribute sent under this schema becomes a tag of the same name.",
	Attributes: []*attribute{
		attr("project", tString),
		attr("environment", tString),
		complexAttr("tags", []*attribute{attr("key", tString, required), attr("value", tString)}, multi),
	},
}

var groupSchema = &schema{
	ID:          SchemaGroup,
	Name:        "Group",
	Description: "A group of people; assignments give groups access",
	Attributes: []*attribute{
		attr("displayName", tString, required, unique),
		complexAttr("members", []*attribute{
			attr("value", tString, required, immutable), attr("$ref", tReference, immutable, refTypes("User")),
			attr("display", tString, readOnly), attr("type", tString, immutable, canonical("User")),
		}, multi),
	},
}

var membersAttr = find(groupSchema.Attributes, "members")

// common are the attributes every resource has (RFC 7643 §3.1).
var common = []*attribute{
	attr("id", tString, readOnly, always, caseExact, unique),
	attr("externalId", tString, caseExact),
	complexAttr("meta", []*attribute{
		attr("resourceType", tString, readOnly, caseExact),
		attr("created", tDateTime, readOnly),
		attr("lastModified", tDateTime, readOnly),
		attr("location", tReference, readOnly),
		attr("version", tString, readOnly, caseExact),
	}, readOnly),
}

// resourceType ties an endpoint to its schemas.
type resourceType struct {
	Name       string
	Endpoint   string
	core       *schema
	extensions []*schema
	// aliases are schema URNs clients send that add nothing.
	aliases []string
}

var (
	userType  = &resourceType{Name: "User", Endpoint: "/Users", core: userSchema, extensions: []*schema{enterpriseSchema, keygateSchema}}
	groupType = &resourceType{Name: "Group", Endpoint: "/Groups", core: groupSchema, aliases: []string{schemaADGroup}}
)

// attribute finds a top-level attribute of the core schema or the common
// ones, ignoring case.
func (rt *resourceType) attribute(name string) *attribute {
	if a := find(rt.core.Attributes, name); a != nil {
		return a
	}
	return find(common, name)
}

// extension finds an extension schema by URN, ignoring case.
func (rt *resourceType) extension(urn string) *schema {
	for _, s := range rt.extensions {
		if strings.EqualFold(s.ID, urn) {
			return s
		}
	}
	return nil
}

// knownSchema reports whether urn may appear in a resource's schemas.
func (rt *resourceType) knownSchema(urn string) bool {
	if strings.EqualFold(urn, rt.core.ID) || rt.extension(urn) != nil {
		return true
	}
	for _, a := range rt.aliases {
		if strings.EqualFold(urn, a) {
			return true
		}
	}
	return false
}

// splitURN splits a fully qualified attribute name such as
// "urn:...:enterprise:2.0:User:department" into the schema and the rest,
// for any schema the resource type knows.
func (rt *resourceType) splitURN(name string) (schemaURN, rest string, ok bool) {
	for _, s := range append([]*schema{rt.core}, rt.extensions...) {
		if len(name) > len(s.ID)+1 && strings.EqualFold(name[:len(s.ID)], s.ID) && name[len(s.ID)] == ':' {
			return s.ID, name[len(s.ID)+1:], true
		}
	}
	return "", "", false
}
