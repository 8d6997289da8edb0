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
	people    boundedMap // user name → *cachedPerson
	databases boundedMap // database name → *cachedDatabase
}

// maxCached bounds each map of the cache. A map that would grow past it
// starts again empty: simpler than tracking use, and a company with more
// people than that pays for a rebuild now and then.
const maxCached = 1 << 15

// boundedMap is a sync.Map that holds at most maxCached entries.
type boundedMap struct {
	m    sync.Map
	size atomic.Int64
}

func (b *boundedMap) load(key string) (any, bool) { return b.m.Load(key) }

func (b *boundedMap) store(key string, v any) {
	if _, loaded := b.m.Swap(key, v); !loaded && b.size.Add(1) > maxCached {
		b.m.Clear()
		b.size.Store(0)
	}
}

type cachedPerson struct {
	groups []string
	tags   map[string]string
	mfa    bool
	entity types.Entity
	// personal holds, per level, the policies filed for the person and
	// their groups.
	personal [3][]*filed
	// unique is groups sorted, without repeats (a group can be both
	// provisioned and asserted at sign-in).
	unique []string
	// candidates are the assignments of the person's groups, most
	// specific first.
	candidates []int
}

type cachedDatabase struct {
	tags   map[string]string
	entity types.Entity
}

func (c *cache) person(pr identity.Principal, p *Policy) *cachedPerson {
	if v, ok := c.people.load(pr.UserName); ok {
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
	}
	e.unique = slices.Compact(slices.Sorted(slices.Values(pr.Groups)))
	e.personal = p.index.personal(pr.UserName, e.unique)
	e.candidates = p.candidates(e.unique)
	c.people.store(pr.UserName, e)
	return e
}

func (c *cache) database(db Database) *cachedDatabase {
	if v, ok := c.databases.load(db.Name); ok {
		e := v.(*cachedDatabase)
		if maps.Equal(e.tags, db.Tags) {
			return e
		}
	}
	e := &cachedDatabase{tags: maps.Clone(db.Tags), entity: types.Entity{UID: databaseUID(db.Name), Tags: tagRecord(db.Tags)}}
	c.databases.store(db.Name, e)
	return e
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
