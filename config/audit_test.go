package config

import (
	"strings"
	"testing"
)

func TestAuditDefaults(t *testing.T) {
	c := mustParse(t, minimal)
	if c.Audit.MaxStatementSize != 1<<20 || c.Audit.OversizedStatements != OversizedRefuse {
		t.Errorf("audit defaults = %+v, want 1MiB and refuse", c.Audit)
	}
}

func TestAuditSettings(t *testing.T) {
	for in, want := range map[string]ByteSize{"65536": 64 << 10, "64KiB": 64 << 10, "2MiB": 2 << 20, "16MiB": 16 << 20, "1 MiB": 1 << 20} {
		c := mustParse(t, minimal+"audit:\n  max_statement_size: "+in+"\n  oversized_statements: truncate\n")
		if c.Audit.MaxStatementSize != want || c.Audit.OversizedStatements != OversizedTruncate {
			t.Errorf("max_statement_size %s = %+v, want %d", in, c.Audit, want)
		}
	}
}

func TestAuditRefused(t *testing.T) {
	for in, want := range map[string]string{
		"max_statement_size: 1GiB":        ":3: audit.max_statement_size 1024MiB: use a size from 1KiB to 16MiB",
		"max_statement_size: 100":         ":3: audit.max_statement_size 100: use a size from 1KiB to 16MiB",
		"max_statement_size: 1MB":         `:3: invalid size "1MB": use a number of bytes, or one with KiB or MiB such as 512KiB`,
		"oversized_statements: truncated": `:3: audit.oversized_statements "truncated": use refuse or truncate`,
	} {
		msg := parseErr(t, minimal+"audit:\n  "+in+"\n")
		if !strings.Contains(msg, want) {
			t.Errorf("audit %s: %q, want it to contain %q", in, msg, want)
		}
	}
}
