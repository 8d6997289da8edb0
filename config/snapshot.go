package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/keygate/keygate/access"
)

// Rules is the part of a config that decides access: permission sets,
// assignments, deny rules, the policy file's Cedar, the databases' tags
// and who the administrators are. It is what the config history keeps of each version, so that
// "who could reach orders last March" is answered with last March's rules.
type Rules struct {
	PermissionSets []PermissionSet   `json:"permission_sets"`
	Assignments    []Assignment      `json:"assignments"`
	Deny           []Deny            `json:"deny,omitempty"`
	Databases      []access.Database `json:"databases"`
	// PolicyFile names the Cedar file and Cedar is its text.
	PolicyFile string `json:"policy_file,omitempty"`
	Cedar      string `json:"cedar,omitempty"`
	// GroupPattern is the group naming rule's pattern; empty for none.
	GroupPattern string `json:"group_pattern,omitempty"`
	// Administrators are who administered keygate under these rules; nil
	// when no group did, which keeps the digest of such rules as it was
	// before administrators existed.
	Administrators *Administrators `json:"administrators,omitempty"`
}

// Rules returns the config's access rules.
func (c *Config) Rules() (Rules, error) {
	r := Rules{PermissionSets: c.PermissionSets, Assignments: c.Assignments, Deny: c.Deny, Databases: []access.Database{}, GroupPattern: c.GroupNaming.Pattern}
	for _, d := range c.Databases {
		r.Databases = append(r.Databases, d.AccessDatabase())
	}
	if c.Administrators.Configured() {
		admins := c.Administrators
		r.Administrators = &admins
	}
	if c.PolicyFile != "" {
		if c.policyText == nil {
			if err := c.readPolicyFile(); err != nil {
				return Rules{}, fmt.Errorf("policy_file: %w", err)
			}
		}
		r.PolicyFile, r.Cedar = c.Resolve(c.PolicyFile), string(c.policyText)
	}
	return r, nil
}

// Encode returns the rules as JSON and its SHA-256, which tells versions
// apart.
func (r Rules) Encode() (data []byte, digest string, err error) {
	data, err = json.Marshal(r)
	if err != nil {
		return nil, "", fmt.Errorf("encode access rules: %w", err)
	}
	sum := sha256.Sum256(data)
	return data, hex.EncodeToString(sum[:]), nil
}

// DecodeRules reads rules that Encode wrote.
func DecodeRules(data []byte) (Rules, error) {
	var r Rules
	if err := json.Unmarshal(data, &r); err != nil {
		return Rules{}, fmt.Errorf("decode access rules: %w", err)
	}
	return r, nil
}

// NamedAssignments derives the group naming rule's assignments from the
// names of groups, as Config.NamedAssignments does for the running config.
func (r Rules) NamedAssignments(groups []string) ([]access.Assignment, error) {
	if r.GroupPattern == "" {
		return nil, nil
	}
	p, err := access.ParseGroupPattern(r.GroupPattern)
	if err != nil {
		return nil, fmt.Errorf("group_naming.pattern: %w", err)
	}
	sets := make([]string, len(r.PermissionSets))
	for i, s := range r.PermissionSets {
		sets[i] = s.Name
	}
	assigned, _ := p.Assign(groups, sets, r.Databases)
	return assigned, nil
}
