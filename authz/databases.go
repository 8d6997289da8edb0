package authz

import (
	"maps"
	"slices"
)

// Databases names the databases of the rules in force, sorted, so that a
// caller can ask Authorize about each of them: `keygate db list` does.
func (a *Authz) Databases() []string {
	return slices.Sorted(maps.Keys(a.state.Load().databases))
}
