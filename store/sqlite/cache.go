package sqlite

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/keygate/keygate/identity"
)

// maxCached bounds each of the cache's maps; past it a map starts over.
const maxCached = 10000

// readCache keeps what every connection through the gateway reads to be
// authorized (the person, their groups, their sign-in session), so that a
// person's next connection costs no SQLite query. Every write
// transaction on the state moves the generation on once it commits, before
// its changes are published, which invalidates everything cached: a read
// after a write, or after hearing of it on the change feed, never sees
// what the write replaced. A read that raced a write is not cached.
type readCache struct {
	gen atomic.Uint64

	mu       sync.Mutex
	users    map[string]cached[identity.User] // by nocaseKey of the name
	groups   map[string]cached[[]identity.Group]
	sessions map[string]cached[identity.Session]
}

type cached[T any] struct {
	gen uint64
	v   T
}

func newReadCache() *readCache {
	return &readCache{users: map[string]cached[identity.User]{}, groups: map[string]cached[[]identity.Group]{},
		sessions: map[string]cached[identity.Session]{}}
}

// invalidate is called after every committed write to the state.
func (c *readCache) invalidate() { c.gen.Add(1) }

// through returns m[key] if it is of the current generation, and otherwise
// reads it with read and keeps it, unless a write committed meanwhile.
// Values go out as copies, so that no caller changes another's.
func through[T any](c *readCache, m map[string]cached[T], key string, clone func(T) T, read func() (T, error)) (T, error) {
	gen := c.gen.Load()
	c.mu.Lock()
	e, ok := m[key]
	c.mu.Unlock()
	if ok && e.gen == gen {
		return clone(e.v), nil
	}
	v, err := read()
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	if c.gen.Load() == gen {
		if len(m) >= maxCached {
			clear(m)
		}
		m[key] = cached[T]{gen: gen, v: clone(v)}
	}
	c.mu.Unlock()
	return v, nil
}

func cloneUser(u identity.User) identity.User {
	u.Attributes = maps.Clone(u.Attributes)
	u.Profile = slices.Clone(u.Profile)
	return u
}

func cloneGroups(g []identity.Group) []identity.Group { return slices.Clone(g) }

func cloneSession(s identity.Session) identity.Session {
	s.Tags = maps.Clone(s.Tags)
	s.Groups = slices.Clone(s.Groups)
	return s
}

// nocaseKey folds name as SQLite's NOCASE does, ASCII letters only, so
// that two names the store tells apart never share an entry.
func nocaseKey(name string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, name)
}
