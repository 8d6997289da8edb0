package main

import "testing"

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"alice":                 "alice",
		"SELECT 'é', 1":         "SELECT 'é', 1",
		"x\x1b[2K\x1b]52;c;YQ=": `x\u001b[2K\u001b]52;c;YQ=`,
		"a\tb\nc":               `a\u0009b\u000ac`,
		"bad\xffutf8":           `bad\xffutf8`,
		"c1\xc2\x9b[31m":        `c1\u009b[31m`,
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
}
