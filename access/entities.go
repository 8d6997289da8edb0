package access

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"

	"github.com/keygate/keygate/identity"
)

// entities is the two entities a request reads: the person and the
// database. Groups and actions need no entities of their own: nothing in
// the model gives them parents, attributes or tags.
type entities struct {
	person, database types.Entity
}

func (e *entities) Get(uid types.EntityUID) (types.Entity, bool) {
	switch uid {
	case e.person.UID:
		return e.person, true
	case e.database.UID:
		return e.database, true
	}
	return types.Entity{}, false
}

var (
	mfaTrue  = types.NewRecord(types.RecordMap{"mfa": types.True})
	mfaFalse = types.NewRecord(types.RecordMap{"mfa": types.False})
)

// tagRecord is tags as a Cedar record of strings.
func tagRecord(tags map[string]string) types.Record {
	if len(tags) == 0 {
		return types.Record{}
	}
	m := make(types.RecordMap, len(tags))
	for k, v := range tags {
		m[types.String(k)] = types.String(v)
	}
	return types.NewRecord(m)
}

// A cache keeps, for the people and databases recently decided on, their
// Cedar entities and, for people, the policies filed for them and their
// groups. Building those costs more than evaluating the handful of policies
// that apply (Cedar records are hashed and copied, and a person in many
// groups has many lists to gather), and the same person is decided on
// again and again: at token time, at connect time, at every change of
// their groups. An entry is used only when it was built from exactly the
// principal or database at hand.
type cache struct {
	people    sync.Map // user name → *cachedPerson
	databases sync.Map // database name → *cachedDatabase
	size      atomic.Int64
}

// maxCached bounds the cache; past it, entries are built for each request
// and not kept.
const maxCached = 1 << 16

type cachedPerson struct {
	groups []string
	tags   map[string]string
	mfa    bool
	entity types.Entity
	// personal holds, per level, the policies filed for the person and
	// their groups, gathered when first needed.
	personal [3]atomic.Pointer[[]*filed]
	// candidates are the assignments of the person's groups, most
	// specific first.
	candidates []int
}

type cachedDatabase struct {
	tags   map[string]string
	entity types.Entity
}

func (c *cache) person(pr identity.Principal, p *Policy) *cachedPerson {
	if v, ok := c.people.Load(pr.UserName); ok {
		e := v.(*cachedPerson)
		if e.mfa == pr.MFA && slices.Equal(e.groups, pr.Groups) && maps.Equal(e.tags, pr.Attributes) {
			return e
		}
	}
	parents := make([]types.EntityUID, len(pr.Groups))
	for i, g := range pr.Groups {
		parents[i] = groupUID(g)
	}
	attrs := mfaFalse
	if pr.MFA {
		attrs = mfaTrue
	}
	e := &cachedPerson{
		groups: slices.Clone(pr.Groups),
		tags:   maps.Clone(pr.Attributes),
		mfa:    pr.MFA,
		entity: types.Entity{
			UID:        personUID(pr.UserName),
			Parents:    types.NewEntityUIDSet(parents...),
			Attributes: attrs,
			Tags:       tagRecord(pr.Attributes),
		},
		candidates: p.candidates(pr.Groups),
	}
	c.store(&c.people, pr.UserName, e)
	return e
}

func (c *cache) database(db Database) *cachedDatabase {
	if v, ok := c.databases.Load(db.Name); ok {
		e := v.(*cachedDatabase)
		if maps.Equal(e.tags, db.Tags) {
			return e
		}
	}
	e := &cachedDatabase{tags: maps.Clone(db.Tags), entity: types.Entity{UID: databaseUID(db.Name), Tags: tagRecord(db.Tags)}}
	c.store(&c.databases, db.Name, e)
	return e
}

func (c *cache) store(m *sync.Map, key string, v any) {
	if _, loaded := m.Swap(key, v); !loaded && c.size.Add(1) > maxCached {
		m.Delete(key)
		c.size.Add(-1)
	}
}

// policies returns the policies filed for the person at level want.
func (e *cachedPerson) policies(x *index, user string, want Level) []*filed {
	r := want.rank()
	if l := e.personal[r].Load(); l != nil {
		return *l
	}
	l := x.personal(user, e.groups, r)
	e.personal[r].Store(&l)
	return l
}

// request is the Cedar request for p on db at level want; its entities
// are e's.
func request(e *entities, p *cachedPerson, db *cachedDatabase, want Level) cedar.Request {
	e.person, e.database = p.entity, db.entity
	return cedar.Request{
		Principal: e.person.UID,
		Action:    actionUID(want),
		Resource:  e.database.UID,
		Context:   types.Record{},
	}
}
