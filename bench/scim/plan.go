package main

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
)

// plan is what the run provisions, decided before the first request so
// that the requests cost the driver as little as possible.
type plan struct {
	users  []userSpec
	groups []groupSpec
	// members[g] are the indexes into users of group g's members: the
	// first batched[g] go in PATCHes of -batch, the rest one per PATCH.
	members [][]int
	batched []int
	rng     *rand.Rand
	// userIDs and groupIDs are the ids keygate gave, filled in as the
	// resources are created; empty where creation failed.
	userIDs, groupIDs []string
}

type userSpec struct {
	userName, externalID, given, family, department, employeeNumber string
}

type groupSpec struct {
	displayName, externalID string
}

// Names to make people and groups from; a person's userName is unique by
// its number.
var (
	givenNames  = []string{"Ada", "Alan", "Barbara", "Claude", "Dennis", "Edsger", "Frances", "Grace", "Hedy", "John", "Katherine", "Ken", "Leslie", "Linus", "Margaret", "Niklaus", "Radia", "Shafi", "Tim", "Whitfield"}
	familyNames = []string{"Lovelace", "Turing", "Liskov", "Shannon", "Ritchie", "Dijkstra", "Allen", "Hopper", "Lamarr", "Backus", "Johnson", "Thompson", "Lamport", "Torvalds", "Hamilton", "Wirth", "Perlman", "Goldwasser", "Berners-Lee", "Diffie"}
	departments = []string{"Engineering", "Finance", "Sales", "Marketing", "Support", "Legal", "Operations", "Research", "Data", "Security", "People", "Product"}
)

// zipfExponent shapes the group sizes: size ∝ 1/rank^0.8 gives, for 100,000
// memberships in 1,000 groups, a largest group of about 6,500 people, ten
// groups above 1,000 and a median of about 45, the long tail of team and
// project groups a directory has besides a few all-staff ones.
const zipfExponent = 0.8

func newPlan(o options) (*plan, error) {
	rng := rand.New(rand.NewPCG(o.seed, o.seed^0x9e3779b97f4a7c15))
	p := &plan{rng: rng}
	for i := range o.users {
		given, family := givenNames[rng.IntN(len(givenNames))], familyNames[rng.IntN(len(familyNames))]
		p.users = append(p.users, userSpec{
			userName:       fmt.Sprintf("%s.%s.%05d@example.com", strings.ToLower(given), strings.ToLower(family), i),
			externalID:     uuidFrom(rng),
			given:          given,
			family:         family,
			department:     departments[rng.IntN(len(departments))],
			employeeNumber: fmt.Sprintf("E%06d", 100000+i),
		})
	}
	for i := range o.groups {
		p.groups = append(p.groups, groupSpec{
			displayName: fmt.Sprintf("%s team %04d", departments[i%len(departments)], i),
			externalID:  uuidFrom(rng),
		})
	}
	sizes, err := groupSizes(o.groups, o.memberships, o.users)
	if err != nil {
		return nil, err
	}
	// Each group's members are a uniform sample of the users, drawn by a
	// partial Fisher-Yates shuffle of one permutation that is never reset.
	perm := make([]int, o.users)
	for i := range perm {
		perm[i] = i
	}
	p.members = make([][]int, o.groups)
	p.batched = make([]int, o.groups)
	for g, k := range sizes {
		for i := range k {
			j := i + rng.IntN(o.users-i)
			perm[i], perm[j] = perm[j], perm[i]
		}
		p.members[g] = slices.Clone(perm[:k])
		p.batched[g] = k
	}
	// The memberships sent one per PATCH are taken from the end of every
	// group's list in turn, so that they reach most groups, as changes
	// trickle in after the first sync.
	for left := o.single; left > 0; {
		for g := range p.batched {
			if left > 0 && p.batched[g] > 0 {
				p.batched[g]--
				left--
			}
		}
	}
	return p, nil
}

// groupSizes splits total memberships over n groups by rank^-zipfExponent,
// none larger than most (the number of users): the share above most is
// handed to the groups below it until none is over, then rounded so that
// the sizes add up to total exactly.
func groupSizes(n, total, most int) ([]int, error) {
	if int64(total) > int64(n)*int64(most) {
		return nil, fmt.Errorf("%d memberships do not fit in %d groups of at most %d users", total, n, most)
	}
	share := make([]float64, n)
	capped := make([]bool, n)
	for {
		left, weight := float64(total), 0.0
		for i := range n {
			if capped[i] {
				left -= float64(most)
			} else {
				weight += math.Pow(float64(i+1), -zipfExponent)
			}
		}
		more := false
		for i := range n {
			if capped[i] {
				share[i] = float64(most)
				continue
			}
			share[i] = left * math.Pow(float64(i+1), -zipfExponent) / weight
			if share[i] > float64(most) {
				capped[i], more = true, true
			}
		}
		if !more {
			break
		}
	}
	sizes := make([]int, n)
	sum := 0
	for i, s := range share {
		sizes[i] = int(s)
		sum += sizes[i]
	}
	for i := 0; sum < total; i = (i + 1) % n {
		if sizes[i] < most {
			sizes[i]++
			sum++
		}
	}
	return sizes, nil
}

// uuidFrom is a random version-4 UUID from rng, so that a seed repeats a
// run exactly; Azure AD's externalId is its object id, a UUID.
func uuidFrom(rng *rand.Rand) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// groupShape describes the planned group sizes.
type groupShape struct {
	Largest     int    `json:"largest"`
	LargestName string `json:"largest_name"`
	Median      int    `json:"median"`
	Smallest    int    `json:"smallest"`
	Over1000    int    `json:"groups_over_1000"`
	Batched     int    `json:"memberships_batched"`
	OnePerPatch int    `json:"memberships_one_per_patch"`
}

func (p *plan) shape() groupShape {
	var s groupShape
	sizes := make([]int, len(p.members))
	for g, m := range p.members {
		sizes[g] = len(m)
		if len(m) > s.Largest {
			s.Largest, s.LargestName = len(m), p.groups[g].displayName
		}
		if len(m) > 1000 {
			s.Over1000++
		}
		s.Batched += p.batched[g]
		s.OnePerPatch += len(m) - p.batched[g]
	}
	slices.Sort(sizes)
	s.Median, s.Smallest = sizes[len(sizes)/2], sizes[0]
	return s
}

// largestGroup is the index of the group with the most members.
func (p *plan) largestGroup() int {
	best := 0
	for g, m := range p.members {
		if len(m) > len(p.members[best]) {
			best = g
		}
	}
	return best
}

// The request bodies, in the shape Azure AD sends them.

type scimName struct {
	Formatted  string `json:"formatted"`
	FamilyName string `json:"familyName"`
	GivenName  string `json:"givenName"`
}

type scimEmail struct {
	Primary bool   `json:"primary"`
	Type    string `json:"type"`
	Value   string `json:"value"`
}

type enterpriseUser struct {
	Department     string `json:"department"`
	EmployeeNumber string `json:"employeeNumber"`
}

type userBody struct {
	Schemas     []string          `json:"schemas"`
	ExternalID  string            `json:"externalId"`
	UserName    string            `json:"userName"`
	Active      bool              `json:"active"`
	DisplayName string            `json:"displayName"`
	Emails      []scimEmail       `json:"emails"`
	Meta        map[string]string `json:"meta"`
	Name        scimName          `json:"name"`
	Roles       []string          `json:"roles"`
	Enterprise  enterpriseUser    `json:"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"`
}

const (
	schemaUser       = "urn:ietf:params:scim:schemas:core:2.0:User"
	schemaEnterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	schemaGroup      = "urn:ietf:params:scim:schemas:core:2.0:Group"
	schemaPatchOp    = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
)

func (u userSpec) body() ([]byte, error) {
	full := u.given + " " + u.family
	return json.Marshal(userBody{
		Schemas:     []string{schemaUser, schemaEnterprise},
		ExternalID:  u.externalID,
		UserName:    u.userName,
		Active:      true,
		DisplayName: full,
		Emails:      []scimEmail{{Primary: true, Type: "work", Value: u.userName}},
		Meta:        map[string]string{"resourceType": "User"},
		Name:        scimName{Formatted: full, FamilyName: u.family, GivenName: u.given},
		Roles:       []string{},
		Enterprise:  enterpriseUser{Department: u.department, EmployeeNumber: u.employeeNumber},
	})
}

type groupBody struct {
	Schemas     []string          `json:"schemas"`
	ExternalID  string            `json:"externalId"`
	DisplayName string            `json:"displayName"`
	Meta        map[string]string `json:"meta"`
}

func (g groupSpec) body() ([]byte, error) {
	return json.Marshal(groupBody{
		Schemas:     []string{schemaGroup},
		ExternalID:  g.externalID,
		DisplayName: g.displayName,
		Meta:        map[string]string{"resourceType": "Group"},
	})
}

type memberValue struct {
	Value string `json:"value"`
}

type patchOp struct {
	Op    string        `json:"op"`
	Path  string        `json:"path"`
	Value []memberValue `json:"value"`
}

type patchBody struct {
	Schemas    []string  `json:"schemas"`
	Operations []patchOp `json:"Operations"`
}

// addMembersBody is a PATCH that adds the users with ids to a group, with
// Azure AD's capitalised op.
func addMembersBody(ids []string) ([]byte, error) {
	values := make([]memberValue, len(ids))
	for i, id := range ids {
		values[i] = memberValue{Value: id}
	}
	return json.Marshal(patchBody{Schemas: []string{schemaPatchOp}, Operations: []patchOp{{Op: "Add", Path: "members", Value: values}}})
}
