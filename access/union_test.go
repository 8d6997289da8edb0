package access

import (
	"github.com/cedar-policy/cedar-go"

	"github.com/keygate/keygate/identity"
)

// unionAllows is the decision of a plain cedar.Authorize over every policy,
// with entities built as CedarSchema documents them, independently of the
// index and the cache.
func unionAllows(ps *cedar.PolicySet, pr identity.Principal, db Database, want Level) bool {
	if !pr.Active || want.rank() < 0 {
		return false
	}
	person := cedar.NewEntityUID("Keygate::Person", cedar.String(pr.UserName))
	database := cedar.NewEntityUID("Keygate::Database", cedar.String(db.Name))
	var parents []cedar.EntityUID
	for _, g := range pr.Groups {
		parents = append(parents, cedar.NewEntityUID("Keygate::Group", cedar.String(g)))
	}
	tags := func(m map[string]string) cedar.Record {
		rm := cedar.RecordMap{}
		for k, v := range m {
			rm[cedar.String(k)] = cedar.String(v)
		}
		return cedar.NewRecord(rm)
	}
	ents := cedar.EntityMap{
		person: {
			UID:        person,
			Parents:    cedar.NewEntityUIDSet(parents...),
			Attributes: cedar.NewRecord(cedar.RecordMap{"mfa": cedar.Boolean(pr.MFA)}),
			Tags:       tags(pr.Attributes),
		},
		database: {UID: database, Tags: tags(db.Tags)},
	}
	dec, _ := cedar.Authorize(ps, ents, cedar.Request{
		Principal: person,
		Action:    cedar.NewEntityUID("Keygate::Action", cedar.String(want)),
		Resource:  database,
		Context:   cedar.NewRecord(nil),
	})
	return dec == cedar.Allow
}
