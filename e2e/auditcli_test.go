package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// follower is `keygate audit --follow` running in the background.
type follower struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr bytes.Buffer
	mu     sync.Mutex // guards stderr
	exited chan error
}

func (s *kgServer) startFollower(t *testing.T, args ...string) *follower {
	t.Helper()
	f := &follower{lines: make(chan string, 1024), exited: make(chan error, 1)}
	f.cmd = exec.Command(keygateBin, append(append([]string{"audit", "--follow"}, args...), "--config", s.cfgPath)...)
	f.cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.stderr.Write(p)
	})
	out, err := f.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f.lines <- sc.Text()
		}
		f.exited <- f.cmd.Wait()
	}()
	t.Cleanup(func() { f.cmd.Process.Kill() })
	return f
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

func (f *follower) errText() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stderr.String()
}

// await waits up to d for a line containing want and returns it.
func (f *follower) await(t *testing.T, d time.Duration, want string) string {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case line := <-f.lines:
			if strings.Contains(line, want) {
				return line
			}
		case <-timeout:
			t.Fatalf("keygate audit --follow printed no line with %q within %s; stderr: %s", want, d, f.errText())
		}
	}
}

// interrupt sends Ctrl-C and checks that the follower exits 0.
func (f *follower) interrupt(t *testing.T) {
	t.Helper()
	f.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-f.exited:
		if err != nil {
			t.Fatalf("keygate audit --follow after Ctrl-C: %v; stderr: %s", err, f.errText())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("keygate audit --follow still running 5s after Ctrl-C")
	}
}

func TestAuditCLIFollowFilterAndOffline(t *testing.T) {
	s := startServer(t, "auditcli", "", true)
	s.kg(t, 0, "admin", "group", "add", "followgrp-a")

	// --follow with --since shows the backlog first, then new events as
	// they come; in the table too, each line as it comes.
	jsonF := s.startFollower(t, "--json", "--type", "admin.group", "--since", "1h")
	tableF := s.startFollower(t, "--type", "admin")
	var first struct {
		Type   string         `json:"type"`
		Detail map[string]any `json:"detail"`
	}
	if err := json.Unmarshal([]byte(jsonF.await(t, 10*time.Second, "followgrp-a")), &first); err != nil || first.Type != "admin.group.create" {
		t.Fatalf("backlog event: %+v, %v", first, err)
	}
	tableF.await(t, 10*time.Second, "TYPE")
	// The table follower starts at the next event; give it a moment to
	// have asked the server for it.
	time.Sleep(300 * time.Millisecond)

	s.kg(t, 0, "admin", "group", "add", "followgrp-b")
	added := time.Now()
	jsonF.await(t, 2*time.Second, "followgrp-b")
	t.Logf("--follow --json printed the event %v after keygate admin group add returned", time.Since(added))
	line := tableF.await(t, 2*time.Second, "group followgrp-b")
	mustContain(t, "follow table line", line, "admin.group.create")
	select {
	case l := <-tableF.lines:
		t.Errorf("table follower printed more than the new event: %q", l)
	default:
	}
	jsonF.interrupt(t)
	tableF.interrupt(t)

	// Dates are UTC days; --until takes RFC 3339.
	now := time.Now().UTC().Format(time.RFC3339Nano)
	out := s.kg(t, 0, "audit", "--since", "2026-01-01", "--until", now, "--type", "admin", "--json")
	mustContain(t, "audit --since --until", out, `"group":"followgrp-a"`)
	mustContain(t, "audit --since --until", out, `"group":"followgrp-b"`)
	if out := s.kg(t, 0, "audit", "--since", "2026-01-01", "--until", "2026-01-02", "--json"); out != "" {
		t.Errorf("audit --until 2026-01-02 printed %q, want nothing", out)
	}
	r := s.run(t, nil, "audit", "--type", "sesion.start")
	if r.code != 2 {
		t.Fatalf("audit --type sesion.start: exit %d, want 2; stderr %s", r.code, r.stderr)
	}
	mustContain(t, "audit --type sesion.start", r.stderr, "did you mean session.start")

	// A refused credential is reported with its fix, not answered from
	// data_dir.
	dataDir := filepath.Join(s.dir, "data")
	credFile := filepath.Join(dataDir, "admin.credential")
	cred, err := os.ReadFile(credFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(credFile, []byte("kga_wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = s.run(t, nil, "audit")
	if r.code != 1 || strings.Contains(r.stderr, "data_dir") && strings.Contains(r.stderr, "read-only") {
		t.Errorf("audit with a wrong credential: exit %d, stderr %q; want the refusal, not data_dir", r.code, r.stderr)
	}
	mustContain(t, "audit with a wrong credential", r.stderr, "admin credential required")
	if err := os.WriteFile(credFile, cred, 0o600); err != nil {
		t.Fatal(err)
	}

	// A follower waiting on the API does not hold up the server's stop
	// (its shutdown_grace is 2s).
	waiting := s.startFollower(t, "--type", "admin.group")
	waiting.await(t, 10*time.Second, "TYPE")
	time.Sleep(300 * time.Millisecond)
	stopping := time.Now()
	s.stop(t)
	if took := time.Since(stopping); took > 1500*time.Millisecond {
		t.Errorf("keygate server took %v to stop with a follower waiting", took)
	}
	waiting.interrupt(t)

	// Stopped: keygate reads data_dir itself, read-only, and says so.
	notice := "keygate server is not answering at " + s.apiURL + "; reading data_dir " + dataDir + " directly (read-only)"
	r = s.run(t, nil, "audit", "--type", "admin.group")
	if r.code != 0 {
		t.Fatalf("audit while stopped: exit %d: %s", r.code, r.stderr)
	}
	mustContain(t, "audit while stopped", r.stdout, "group followgrp-b")
	if strings.TrimSpace(r.stderr) != notice {
		t.Errorf("audit while stopped: stderr %q, want just %q", r.stderr, notice)
	}
	r = s.run(t, nil, "audit", "verify")
	if r.code != 0 {
		t.Fatalf("audit verify while stopped: exit %d: %s", r.code, r.stderr)
	}
	mustContain(t, "audit verify while stopped", r.stdout, "audit log intact")
	mustContain(t, "audit verify while stopped", r.stderr, notice)

	// --follow reads the file, and sees what a server started later writes.
	offline := s.startFollower(t, "--json", "--type", "admin.group", "--since", "2026-01-01")
	offline.await(t, 10*time.Second, "followgrp-b")
	s.launch(t)
	s.kg(t, 0, "admin", "group", "add", "followgrp-c")
	added = time.Now()
	offline.await(t, 3*time.Second, "followgrp-c")
	t.Logf("offline --follow printed the event %v after keygate admin group add returned", time.Since(added))
	mustContain(t, "offline follower stderr", offline.errText(), "reading data_dir")
	offline.interrupt(t)
	s.stop(t)

	// Nothing to read: the message says what failed and what to do.
	auditFile := filepath.Join(dataDir, "keygate-audit.db")
	if err := os.Rename(auditFile, auditFile+".moved"); err != nil {
		t.Fatal(err)
	}
	r = s.run(t, nil, "audit")
	if r.code == 0 {
		t.Fatalf("audit without server or audit file: exit 0: %s", r.stdout)
	}
	for _, want := range []string{"keygate server is not answering", s.apiURL, "connection refused", auditFile + " does not exist", "keygate server creates it"} {
		mustContain(t, "audit without server or audit file", r.stderr, want)
	}
}
