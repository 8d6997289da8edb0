package deploy_test

import (
	"debug/elf"
	"debug/macho"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// versionLine is what a stamped binary prints for keygate version.
var versionLine = regexp.MustCompile(`^keygate (\S+) \(commit ([0-9a-f]+), built (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\)\n$`)

func TestBuildStampsVersion(t *testing.T) {
	out := release(t)
	if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		t.Skipf("scripts/build makes no binary this machine (%s/%s) runs", runtime.GOOS, runtime.GOARCH)
	}
	bin := filepath.Join(dist, "keygate-linux-"+runtime.GOARCH)
	if !strings.Contains(out, bin) {
		t.Errorf("scripts/build does not say it built %s:\n%s", bin, out)
	}
	commit := headCommit(t)
	for _, arg := range []string{"version", "--version"} {
		got, err := exec.Command(bin, arg).Output()
		if err != nil {
			t.Fatalf("keygate %s: %v", arg, err)
		}
		m := versionLine.FindStringSubmatch(string(got))
		if m == nil {
			t.Fatalf("keygate %s printed %q, want keygate VERSION (commit HASH, built DATE)", arg, got)
		}
		if m[1] == "dev" {
			t.Errorf("keygate %s: version is dev, want the stamp of scripts/build", arg)
		}
		if m[2] != commit {
			t.Errorf("keygate %s: commit %s, want HEAD's %s", arg, m[2], commit)
		}
	}
}

// The cross-compiled binaries exist and are for the platform their names
// say; the Linux ones are static, for distroless and any distribution.
func TestBuildTargets(t *testing.T) {
	release(t)
	for name, machine := range map[string]elf.Machine{
		"keygate-linux-amd64": elf.EM_X86_64,
		"keygate-linux-arm64": elf.EM_AARCH64,
	} {
		f, err := elf.Open(filepath.Join(dist, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if f.Machine != machine {
			t.Errorf("%s: ELF machine %v, want %v", name, f.Machine, machine)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked; want a static binary (CGO_ENABLED=0)", name)
			}
		}
		f.Close()
	}
	f, err := macho.Open(filepath.Join(dist, "keygate-darwin-arm64"))
	if err != nil {
		t.Fatalf("keygate-darwin-arm64: %v", err)
	}
	defer f.Close()
	if f.Cpu != macho.CpuArm64 || f.Type != macho.TypeExec {
		t.Errorf("keygate-darwin-arm64: Mach-O %v %v, want an arm64 executable", f.Cpu, f.Type)
	}
}

// The release binaries go to dist/, which git ignores.
func TestDistIsIgnored(t *testing.T) {
	err := exec.Command("git", "-C", repoRoot, "check-ignore", "-q", "dist/keygate-linux-amd64").Run()
	if err != nil {
		raw, _ := os.ReadFile(filepath.Join(repoRoot, ".gitignore"))
		t.Errorf("git does not ignore dist/ (%v); .gitignore:\n%s", err, raw)
	}
}
