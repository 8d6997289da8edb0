package pgwire

import (
	"testing"
	"unicode/utf8"
)

// The bodies of CommandComplete and ErrorResponse come from the upstream
// and end up in the audit: whatever they hold, reading them never panics,
// an error always has a SQLSTATE, and its text is valid UTF-8 and bounded.
func FuzzErrorOutcome(f *testing.F) {
	f.Add([]byte("SFATAL\x00VFATAL\x00C57P01\x00Mterminating connection due to administrator command\x00\x00"))
	f.Add([]byte("SERROR\x00C42501\x00Mpermission denied for table orders\x00\x00"))
	f.Add([]byte("C\x00M\xff\xfe\x00\x00"))
	f.Add([]byte("INSERT 0 1\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		commandTag(body)
		out := errorOutcome(body)
		if out.SQLState == "" {
			t.Errorf("no SQLSTATE from %q", body)
		}
		if !utf8.ValidString(out.Error) {
			t.Errorf("error text %q is not valid UTF-8", out.Error)
		}
		if len(out.Error) > 3*maxErrorText {
			t.Errorf("error text of %d bytes", len(out.Error))
		}
	})
}
