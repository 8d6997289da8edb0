package deploy_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/config"
)

const unitFile = "keygate.service"

// installedBinary is where the unit expects keygate.
const installedBinary = "/usr/local/bin/keygate"

// systemdAnalyze finds systemd-analyze. scripts/test installs it, so in CI
// its absence is a failure; elsewhere the test is skipped with the fix.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze is missing: install the systemd package (scripts/test does)")
		}
		t.Skip("systemd-analyze is missing: install the systemd package (apt-get install systemd) or run scripts/test")
	}
	return path
}

// verifiableUnit writes the unit with ExecStart pointing at a freshly
// built keygate: systemd-analyze verify refuses a unit whose binary does
// not exist, and the test must not depend on (or write to)
// /usr/local/bin. Everything else is the file as shipped.
func verifiableUnit(t *testing.T) string {
	t.Helper()
	release(t)
	if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		t.Skipf("scripts/build makes no binary this machine (%s/%s) runs", runtime.GOOS, runtime.GOARCH)
	}
	raw, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dist, "keygate-linux-"+runtime.GOARCH)
	unit := strings.Replace(string(raw), "ExecStart="+installedBinary+" ", "ExecStart="+bin+" ", 1)
	if unit == string(raw) {
		t.Fatalf("%s: no ExecStart=%s line", unitFile, installedBinary)
	}
	path := filepath.Join(t.TempDir(), unitFile)
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// systemd-analyze verify accepts the unit without a single warning.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze := systemdAnalyze(t)
	out, err := exec.Command(analyze, "verify", verifiableUnit(t)).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitFile, err, out)
	}
}

// The unit stays confined: systemd's own exposure score (0 best, 10
// worst) is at most 2.0 (it is 1.1 with systemd 252). Dropping the system
// call filter alone pushes it over; TestSystemdUnitSettings pins the
// protections the brief names one by one.
func TestSystemdUnitExposure(t *testing.T) {
	analyze := systemdAnalyze(t)
	out, err := exec.Command(analyze, "security", "--offline=true", "--threshold=20", verifiableUnit(t)).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: %v: exposure above 2.0\n%s", err, out)
	}
}

// unitSettings reads the [Service] section's settings; a repeated key
// keeps every value.
func unitSettings(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	settings := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, _ := strings.Cut(line, "=")
			settings[k] = append(settings[k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return settings
}

// The settings keygate's operation depends on, which verify and the
// exposure score do not check.
func TestSystemdUnitSettings(t *testing.T) {
	s := unitSettings(t)
	want := map[string]string{
		"ExecStart":               installedBinary + " server --config /etc/keygate/keygate.yaml",
		"DynamicUser":             "yes",
		"StateDirectory":          "keygate",
		"ConfigurationDirectory":  "keygate",
		"EnvironmentFile":         "-/etc/keygate/keygate.env",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"LockPersonality":         "yes",
		"MemoryDenyWriteExecute":  "yes",
		"NoNewPrivileges":         "yes",
		"CapabilityBoundingSet":   "",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"UMask":                   "0077",
		"KillSignal":              "SIGTERM",
		"Restart":                 "on-failure",
	}
	for k, v := range want {
		if got := s[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s=%q, want %s=%s", k, got, k, v)
		}
	}
	if got := s["SystemCallFilter"]; len(got) == 0 || got[0] != "@system-service" {
		t.Errorf("SystemCallFilter=%q, want @system-service first", got)
	}
	if got := s["LimitNOFILE"]; len(got) != 1 {
		t.Errorf("LimitNOFILE=%q, want one limit for many client connections", got)
	}
	if got := s["AmbientCapabilities"]; len(got) > 0 {
		t.Errorf("AmbientCapabilities=%q: keygate's default ports need no capability", got)
	}
	// keygate takes shutdown_grace to drain, then up to 10s to close;
	// systemd must not kill it before.
	stop, err := time.ParseDuration(strings.Join(s["TimeoutStopSec"], ""))
	if err != nil {
		t.Fatalf("TimeoutStopSec=%q: %v", s["TimeoutStopSec"], err)
	}
	if min := config.DefaultShutdownGrace + 10*time.Second; stop <= min {
		t.Errorf("TimeoutStopSec=%v, want more than shutdown_grace's default plus 10s (%v)", stop, min)
	}
}
