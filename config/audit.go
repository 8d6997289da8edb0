package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Audit says what the audit log keeps of the statements people send.
type Audit struct {
	// MaxStatementSize is the longest statement the audit keeps whole
	// (default 1MiB, at most 16MiB).
	MaxStatementSize ByteSize `yaml:"max_statement_size"`
	// OversizedStatements is what happens to a longer statement: refuse
	// (the default) ends the session before any of it reaches the
	// upstream; truncate runs it, and the audit keeps its head and tail
	// with its full length and SHA-256. Padding on both sides of a
	// statement can hide its middle from head and tail, which is why
	// refusing is the default.
	OversizedStatements string `yaml:"oversized_statements"`
	// CheckpointInterval is how often each server signs the newest event
	// of its audit chain, when it recorded something since (default 1m,
	// at least 1s). A server also signs its chain's end when it stops.
	CheckpointInterval Duration `yaml:"checkpoint_interval"`
}

// What the audit does with statements over max_statement_size.
const (
	OversizedRefuse   = "refuse"
	OversizedTruncate = "truncate"
)

// Bounds on audit.max_statement_size.
const (
	DefaultMaxStatementSize = 1 << 20
	minStatementSize        = 1 << 10
	maxStatementSize        = 16 << 20
)

func (a *Audit) applyDefaults() {
	if a.MaxStatementSize == 0 {
		a.MaxStatementSize = DefaultMaxStatementSize
	}
	if a.CheckpointInterval == 0 {
		a.CheckpointInterval = Duration(time.Minute)
	}
	if a.OversizedStatements == "" {
		a.OversizedStatements = OversizedRefuse
	}
}

func (c *Config) validateAudit() []error {
	var errs []error
	if n := c.Audit.MaxStatementSize; n < minStatementSize || n > maxStatementSize {
		errs = append(errs, c.errorAt("audit.max_statement_size", "audit.max_statement_size %s: use a size from 1KiB to 16MiB", n))
	}
	if o := c.Audit.OversizedStatements; o != OversizedRefuse && o != OversizedTruncate {
		errs = append(errs, c.errorAt("audit.oversized_statements", "audit.oversized_statements %q: use refuse or truncate", o))
	}
	if d := time.Duration(c.Audit.CheckpointInterval); d < time.Second {
		errs = append(errs, c.errorAt("audit.checkpoint_interval", "audit.checkpoint_interval %s: use a duration of at least 1s, such as 1m", d))
	}
	return errs
}

// ByteSize is a number of bytes written as 1048576, 512KiB or 1MiB.
type ByteSize int

var byteSizeRE = regexp.MustCompile(`^(\d+)\s*(B|KiB|MiB|GiB)?$`)

// UnmarshalYAML accepts a number of bytes with an optional KiB, MiB or GiB
// suffix.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

// ParseByteSize parses a size such as 1048576, 512KiB or 1MiB.
func ParseByteSize(s string) (ByteSize, error) {
	m := byteSizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("invalid size %q: use a number of bytes, or one with KiB or MiB such as 512KiB", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	shift := map[string]uint{"": 0, "B": 0, "KiB": 10, "MiB": 20, "GiB": 30}[m[2]]
	if err != nil || n > (1<<40)>>shift {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return ByteSize(n << shift), nil
}

// String writes the size as the config does.
func (b ByteSize) String() string {
	switch {
	case b > 0 && b%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", b>>20)
	case b > 0 && b%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", b>>10)
	}
	return strconv.Itoa(int(b))
}
