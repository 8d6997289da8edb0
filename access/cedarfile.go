package access

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"

	"github.com/cedar-policy/cedar-go"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"
)

// CedarFile is policy text in Cedar's own language, for rules that
// permission sets, assignments and deny rules cannot express. Every one of
// its policies takes part in every decision: a forbid refuses whatever an
// assignment allows, and a permit allows on its own.
//
// A policy is named in explanations by its @id annotation, or by the file's
// base name and its line; a forbid's @description annotation, when present,
// is what a refusal shows the person. A permit grants exactly the level
// asked for, with DefaultTokenTTL.
type CedarFile struct {
	// Name is the file name, used in error messages.
	Name string
	Text []byte
}

// rawPolicy is one policy of a CedarFile.
type rawPolicy struct {
	id          cedar.PolicyID
	policy      *cedar.Policy
	description string // @description, or empty
	where       string // base name:line
	at          string // file name:line, for errors
}

// name is how an explanation names the policy.
func (r rawPolicy) name() string {
	if string(r.id) == r.where {
		return "policy " + r.where
	}
	return fmt.Sprintf("policy %s (%s)", r.id, r.where)
}

// cedarErrorPos finds the position in cedar-go's parse errors, which name
// the input "<input>" whatever the file.
var cedarErrorPos = regexp.MustCompile(`^(?:parser error: )?(?:parse error at )?<input>:(\d+):(\d+):? ?`)

// parseCedarFile parses f and validates every policy in it against
// CedarSchema, so that a misspelt entity type, action or attribute is an
// error at load rather than a policy that silently never applies.
func parseCedarFile(f CedarFile) ([]rawPolicy, error) {
	list, err := cedar.NewPolicyListFromBytes(f.Name, f.Text)
	if err != nil {
		msg := err.Error()
		if m := cedarErrorPos.FindStringSubmatch(msg); m != nil {
			return nil, fmt.Errorf("%s:%s:%s: %s", f.Name, m[1], m[2], msg[len(m[0]):])
		}
		return nil, fmt.Errorf("%s: %s", f.Name, msg)
	}
	v := validate.New(resolvedSchema())
	base := filepath.Base(f.Name)
	var out []rawPolicy
	var errs []error
	for _, p := range list {
		line := p.Position().Line
		ann := p.Annotations()
		r := rawPolicy{
			policy:      p,
			description: string(ann["description"]),
			where:       fmt.Sprintf("%s:%d", base, line),
			at:          fmt.Sprintf("%s:%d", f.Name, line),
		}
		r.id = cedar.PolicyID(r.where)
		if id, ok := ann["id"]; ok {
			r.id = cedar.PolicyID(id)
		}
		if reservedID(string(r.id)) {
			errs = append(errs, fmt.Errorf("%s: @id(%q) is reserved for the config's own rules", r.at, r.id))
		}
		if err := v.Policy(string(r.id), (*xast.Policy)(p.AST())); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.at, err))
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}
