package deploy_test

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var dockerfile = filepath.Join(repoRoot, "Dockerfile")

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	Cmd  string // upper case: FROM, USER, ...
	Args string
}

func readDockerfile(t *testing.T) []instruction {
	t.Helper()
	f, err := os.Open(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// finalStage is the instructions from the last FROM on: the image that
// ships.
func finalStage(t *testing.T) []instruction {
	t.Helper()
	all := readDockerfile(t)
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].Cmd == "FROM" {
			return all[i:]
		}
	}
	t.Fatal("Dockerfile has no FROM")
	return nil
}

// The image runs keygate as a non-root user: the last USER of the final
// stage names neither root nor uid 0.
func TestDockerfileRunsAsNonRoot(t *testing.T) {
	user := ""
	for _, in := range finalStage(t) {
		if in.Cmd == "USER" {
			user = in.Args
		}
	}
	name, _, _ := strings.Cut(user, ":")
	if name == "" || name == "root" || name == "0" {
		t.Errorf("the final stage's USER is %q: the image must not run keygate as root", user)
	}
}

// The shipped image keeps data_dir on a volume and starts the server.
func TestDockerfileFinalStage(t *testing.T) {
	want := map[string]string{
		"VOLUME":     "/var/lib/keygate",
		"EXPOSE":     "8443 5433",
		"ENTRYPOINT": `["/keygate"]`,
		"CMD":        `["server", "--config", "/etc/keygate/keygate.yaml"]`,
	}
	got := map[string]string{}
	for _, in := range finalStage(t) {
		got[in.Cmd] = in.Args
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("final stage %s %s, want %s %s", k, got[k], k, v)
		}
	}
}

// The builder's Go is the one go.mod asks for.
func TestDockerfileGoVersion(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(raw)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	from := readDockerfile(t)[0]
	if from.Cmd != "FROM" || !strings.HasPrefix(from.Args, "golang:"+string(m[1])) {
		t.Errorf("the build stage is FROM %s, want golang:%s (go.mod's go line)", from.Args, m[1])
	}
}

// containerTool finds docker or podman with a daemon (or podman's
// daemonless engine) that answers, or skips the test naming what is
// missing.
func containerTool(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"docker", "podman"} {
		path, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		if out, err := exec.Command(path, "info").CombinedOutput(); err != nil {
			t.Skipf("%s is installed but does not answer (%v): start its daemon to build the image\n%s", name, err, out)
		}
		return path
	}
	t.Skip("neither docker nor podman is installed: the image build is not tested")
	return ""
}

// The image builds, and the keygate in it is stamped with the build
// arguments.
func TestDockerImageBuilds(t *testing.T) {
	tool := containerTool(t)
	b := make([]byte, 4)
	rand.Read(b)
	tag := "keygate-test:" + hex.EncodeToString(b)
	commit := headCommit(t)
	build := exec.Command(tool, "build", "--build-arg", "VERSION=v0.0.0-test", "--build-arg", "COMMIT="+commit, "-t", tag, repoRoot)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s build: %v\n%s", filepath.Base(tool), err, out)
	}
	t.Cleanup(func() { exec.Command(tool, "image", "rm", "-f", tag).Run() })
	out, err := exec.Command(tool, "run", "--rm", tag, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s run %s version: %v\n%s", filepath.Base(tool), tag, err, out)
	}
	m := versionLine.FindStringSubmatch(string(out))
	if m == nil || m[1] != "v0.0.0-test" || m[2] != commit {
		t.Errorf("keygate version in the image printed %q, want v0.0.0-test and commit %s", out, commit)
	}
}
