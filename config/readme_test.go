package config

import (
	"os"
	"strings"
	"testing"
)

// The README's config reference is a config that loads as written: an
// operator copies it and edits from there.
func TestReadmeReferenceParses(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(raw), "\n## Config reference\n")
	if !ok {
		t.Fatal("README.md has no ## Config reference section")
	}
	_, block, ok := strings.Cut(after, "```yaml\n")
	if !ok {
		t.Fatal("the config reference has no yaml block")
	}
	block, _, ok = strings.Cut(block, "\n```\n")
	if !ok {
		t.Fatal("the config reference's yaml block does not end")
	}
	// The files it names exist where an operator would put them.
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/policy.cedar", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(dir+"/keygate.yaml", []byte(block+"\n")); err != nil {
		t.Fatalf("the README's config reference does not load:\n%v", err)
	}
}
