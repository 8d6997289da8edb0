package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/pki"
)

// readmeMarker sits right above the README code block this file runs.
const readmeMarker = "<!-- tested: e2e TestReadmePathWithoutSignIn -->"

// readmeBlock returns the command lines of the code block right below
// marker in README.md: comments and blank lines dropped, lines continued
// with a backslash joined as the shell joins them.
func readmeBlock(t *testing.T, marker string) []string {
	t.Helper()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(raw), marker)
	if !ok {
		t.Fatalf("README.md has no %s", marker)
	}
	sc := bufio.NewScanner(strings.NewReader(after))
	var lines []string
	var cur string
	inBlock := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case !inBlock && line == "":
			continue
		case !inBlock && strings.HasPrefix(line, "```"):
			inBlock = true
			continue
		case !inBlock:
			t.Fatalf("README.md: %q between %s and its code block", line, marker)
		case strings.HasPrefix(line, "```"):
			if cur != "" {
				t.Fatalf("README.md: the code block ends in a continued line: %q", cur)
			}
			return lines
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		}
		if rest, ok := strings.CutSuffix(line, `\`); ok {
			cur += rest
			continue
		}
		lines = append(lines, cur+line)
		cur = ""
	}
	t.Fatalf("README.md: the code block below %s does not end", marker)
	return nil
}

// cleanEnv is this process's environment without what would let a
// command find keygate or PostgreSQL some other way than the README says:
// no KEYGATE_* variable, no PG* variable, no HOME or XDG config directory.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "KEYGATE_") || strings.HasPrefix(name, "PG") || name == "HOME" || name == "XDG_CONFIG_HOME" || name == "PATH" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// onPath is a PATH on which `keygate` is the binary under test.
func onPath(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	if err := os.Symlink(keygateBin, filepath.Join(bin, "keygate")); err != nil {
		t.Fatal(err)
	}
	return bin + string(os.PathListSeparator) + os.Getenv("PATH")
}

// The README's path for a server without sign-in, word for word: the
// administrator writes a profile file for alice, alice installs it on a
// machine that has never seen keygate (a fresh HOME, no keygate
// environment), and keygate whoami, keygate db token and psql then work
// with no flags, psql landing as alice's per-person role.
func TestReadmePathWithoutSignIn(t *testing.T) {
	s := startServer(t, "nosignin", "", true)
	s.addUser(t, "alice", "analysts")
	lines := readmeBlock(t, readmeMarker)

	// The only differences from the README: the host and port where this
	// test's gateway listens. The administrator runs beside the server's
	// keygate.yaml, as the README says, and alice in a directory of her
	// own, so file names need no change.
	substitute := strings.NewReplacer(
		"host=keygate.example.com", "host=127.0.0.1",
		"port=5433", fmt.Sprintf("port=%d", s.pgPort),
	)
	path := onPath(t)
	home, aliceDir := t.TempDir(), t.TempDir()
	adminEnv := append(cleanEnv(), "PATH="+path, "HOME="+t.TempDir())
	aliceEnv := append(cleanEnv(), "PATH="+path, "HOME="+home, "PGCONNECT_TIMEOUT=10")

	var psqlOut string
	for i, line := range lines {
		line = substitute.Replace(line)
		admin := strings.Contains(line, "--config keygate.yaml")
		cmd := exec.Command("sh", "-c", line)
		cmd.Dir, cmd.Env = aliceDir, aliceEnv
		if admin {
			cmd.Dir, cmd.Env = filepath.Dir(s.cfgPath), adminEnv
		}
		last := i == len(lines)-1
		if last {
			// The block ends in an interactive psql session.
			cmd.Stdin = strings.NewReader("select current_user;\n")
		}
		r := runCmd(t, cmd)
		t.Logf("$ %s\n%s%s", line, r.stdout, r.stderr)
		if r.code != 0 {
			t.Fatalf("README line %q: exit %d\nstdout: %s\nstderr: %s", line, r.code, r.stdout, r.stderr)
		}
		if admin {
			// The administrator sends the file to alice.
			for _, f := range []string{"alice.keygate.json"} {
				copyFile(t, filepath.Join(filepath.Dir(s.cfgPath), f), filepath.Join(aliceDir, f))
			}
		}
		if last {
			if !strings.HasPrefix(line, "PGPASSWORD=") || !strings.Contains(line, "psql") {
				t.Fatalf("the README block ends in %q, not a psql session", line)
			}
			psqlOut = r.stdout
		}
	}
	if !strings.Contains(psqlOut, "alice.ro") {
		t.Fatalf("psql's select current_user printed %q, want alice's role alice.ro", psqlOut)
	}
	if fi, err := os.Stat(filepath.Join(home, ".config", "keygate", "sessions", "default.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("session cache: %v %v, want mode 0600", fi, err)
	}

	// A profile file that swaps the CA is refused, and the CA alice
	// trusts stays; told to replace it, keygate still checks the server
	// through the new CA first, and keeps the old one when it fails.
	caPath := filepath.Join(home, ".config", "keygate", "ca-default.pem")
	trusted, err := os.ReadFile(caPath)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(aliceDir, "alice.keygate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]any
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	other, err := pki.Open(t.TempDir(), []string{"localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	file["ca_pem"] = string(other.CAPEM())
	forged, _ := json.Marshal(file)
	if err := os.WriteFile(filepath.Join(aliceDir, "forged.json"), forged, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ args, want string }{
		{"--import forged.json", "other than the one this profile trusts"},
		{"--import forged.json --replace-ca", "certificate"},
	} {
		imp := exec.Command("sh", "-c", "keygate configure "+tc.args)
		imp.Dir, imp.Env = aliceDir, aliceEnv
		r := runCmd(t, imp)
		if r.code == 0 {
			t.Fatalf("keygate configure %s accepted a profile file with another CA", tc.args)
		}
		mustContain(t, "forged import", r.stderr, tc.want)
		if now, _ := os.ReadFile(caPath); !bytes.Equal(now, trusted) {
			t.Fatalf("keygate configure %s replaced the trusted CA bundle", tc.args)
		}
	}

	// On this server keygate login cannot work; it says what does.
	login := exec.Command(keygateBin, "login", "--no-browser")
	login.Dir, login.Env = aliceDir, aliceEnv
	r := runCmd(t, login)
	if r.code == 0 {
		t.Fatal("keygate login succeeded on a server without sign-in")
	}
	mustContain(t, "keygate login without sso", r.stderr, "no sign-in set up")
	mustContain(t, "keygate login without sso", r.stderr, "keygate admin session create NAME --profile-out FILE")
	mustContain(t, "keygate login without sso", r.stderr, "keygate configure --import FILE")
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// keygate login without --ca, on a machine without keygate's CA, gets an
// error that says to pass --ca and where the bundle is, not Go's
// "certificate signed by unknown authority"; keygate configure with the
// CA saves the profile, and KEYGATE_SESSION then needs no server flags.
func TestUntrustedServerAndConfiguredProfile(t *testing.T) {
	s := sharedServer(t)
	s.addUser(t, "nosignin-bob", "analysts")
	env := append(cleanEnv(), "PATH="+os.Getenv("PATH"), "HOME="+t.TempDir(), "KEYGATE_CONFIG_DIR="+t.TempDir())
	kg := func(extra []string, args ...string) result {
		cmd := exec.Command(keygateBin, args...)
		cmd.Env = append(append([]string(nil), env...), extra...)
		return runCmd(t, cmd)
	}

	r := kg(nil, "login", "--server", s.apiURL, "--no-browser")
	if r.code == 0 {
		t.Fatal("keygate login without --ca succeeded")
	}
	mustContain(t, "login without --ca", r.stderr, "keygate server at "+s.apiURL+" presents a certificate this machine does not trust: pass --ca FILE")
	mustContain(t, "login without --ca", r.stderr, s.apiURL+"/v1/ca.pem")
	if strings.Contains(r.stderr, "x509:") {
		t.Errorf("login without --ca shows Go's error text: %s", r.stderr)
	}

	r = kg(nil, "configure", "--server", s.apiURL)
	if r.code == 0 {
		t.Fatal("keygate configure saved a server whose certificate it cannot verify")
	}
	mustContain(t, "configure without --ca", r.stderr, "pass --ca FILE")

	if r = kg(nil, "configure", "--server", s.apiURL, "--ca", s.caFile); r.code != 0 {
		t.Fatalf("keygate configure --server --ca: exit %d: %s", r.code, r.stderr)
	}
	session := []string{"KEYGATE_SESSION=" + s.session(t, "nosignin-bob")}
	r = kg(session, "db", "token", "orders")
	tok := strings.TrimSpace(r.stdout)
	if r.code != 0 || !strings.HasPrefix(tok, "v4.public.") {
		t.Fatalf("keygate db token orders with KEYGATE_SESSION and a configured profile: exit %d: %s", r.code, r.stderr)
	}
	q := s.psql(t, s.connString("nosignin-bob", "orders"), tok, "SELECT current_user")
	if q.code != 0 || strings.TrimSpace(q.stdout) != "nosignin-bob.ro" {
		t.Fatalf("psql as nosignin-bob: exit %d: %s %s", q.code, q.stdout, q.stderr)
	}
}
