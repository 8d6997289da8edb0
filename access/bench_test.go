package access

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/keygate/keygate/identity"
)

// BenchmarkDecide times decisions on a policy of 200 permission sets,
// half with conditions, assigned to 100 groups, for people in 1-6 groups.
// bench/access measures at full size and prints percentiles.
func BenchmarkDecide(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	rules := Rules{Denies: []Deny{{Description: "no prod writes for contractors", Group: "g7", DatabaseTags: map[string]string{"env": "prod"}, Levels: []Level{ReadWrite}}}}
	envs := []string{"prod", "dev", "test"}
	for i := range 200 {
		s := PermissionSet{Name: fmt.Sprintf("s%d", i), Level: Levels[r.IntN(3)]}
		if i%2 == 0 {
			s.Conditions, _ = ParseConditions("database.env == person.env")
		}
		rules.PermissionSets = append(rules.PermissionSets, s)
		a := Assignment{Group: fmt.Sprintf("g%d", r.IntN(100)), PermissionSet: s.Name, Databases: []string{AllDatabases}}
		if i%3 == 0 {
			a.Databases, a.DatabaseTags = nil, map[string]string{"env": envs[r.IntN(3)]}
		}
		rules.Assignments = append(rules.Assignments, a)
	}
	p, err := Compile(rules)
	if err != nil {
		b.Fatal(err)
	}
	var people []identity.Principal
	for i := range 100 {
		pr := identity.Principal{UserName: fmt.Sprintf("u%d", i), Active: true, Attributes: map[string]string{"env": envs[r.IntN(3)]}}
		for range 1 + r.IntN(6) {
			pr.Groups = append(pr.Groups, fmt.Sprintf("g%d", r.IntN(100)))
		}
		people = append(people, pr)
	}
	dbs := []Database{{Name: "orders", Tags: map[string]string{"env": "prod"}}, {Name: "scratch", Tags: map[string]string{"env": "dev"}}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p.Decide(people[i%len(people)], dbs[i%len(dbs)], Levels[i%len(Levels)])
		i++
	}
}
