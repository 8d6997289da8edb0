package deploy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// repoRoot is the repository's root, seen from this package's directory.
const repoRoot = ".."

// dist is where the release build writes its binaries for these tests:
// a directory of their own, never the repository's dist/.
var dist string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keygate-deploy-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, "deploy tests:", err)
		os.Exit(1)
	}
	dist = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildOut  string
	buildErr  error
)

// release runs scripts/build once for all the tests that need its
// binaries and returns its output. The Go build cache makes the three
// targets quick after the first time.
func release(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		cmd := exec.Command(filepath.Join(repoRoot, "scripts", "build"))
		cmd.Env = append(os.Environ(), "DIST="+dist, "VERSION=", "TARGETS=")
		out, err := cmd.CombinedOutput()
		buildOut = string(out)
		if err != nil {
			buildErr = fmt.Errorf("scripts/build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildOut
}

// headCommit is the short hash of the commit the tree is at.
func headCommit(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "-C", repoRoot, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse --short HEAD: %v: these tests need a git checkout", err)
	}
	return strings.TrimSpace(string(out))
}
