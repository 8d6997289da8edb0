package deploy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// keygate is distributed under the Apache License 2.0, whose full text is
// LICENSE at the repository's root.
func TestLicenseIsApache2(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, "LICENSE"))
	if err != nil {
		t.Fatalf("LICENSE: %v", err)
	}
	text := strings.Join(strings.Fields(string(raw)), " ")
	for _, want := range []string{"Apache License Version 2.0, January 2004", "END OF TERMS AND CONDITIONS"} {
		if !strings.Contains(text, want) {
			t.Errorf("LICENSE lacks %q: want the full Apache-2.0 text", want)
		}
	}
}
