package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/store/sqlite"
)

// sibling writes a config for another keygate server: s's config with
// fresh ports and, unless dataDir is "", data_dir dataDir. It returns the
// new server, not yet started.
func (s *kgServer) sibling(t *testing.T, dataDir string) *kgServer {
	t.Helper()
	raw, err := os.ReadFile(s.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	apiPort, pgPort := freePort(t), freePort(t)
	cfg := string(raw)
	if dataDir != "" {
		cfg = strings.Replace(cfg, "data_dir: ./data", "data_dir: "+dataDir, 1)
	}
	cfg = regexp.MustCompile(`(?m)^  api: .*$`).ReplaceAllString(cfg, fmt.Sprintf("  api: 127.0.0.1:%d", apiPort))
	cfg = regexp.MustCompile(`(?m)^  postgres: .*$`).ReplaceAllString(cfg, fmt.Sprintf("  postgres: 127.0.0.1:%d", pgPort))
	b := &kgServer{dir: dir, pg: s.pg, env: s.env, sessions: map[string]string{}, pgPort: pgPort,
		cfgPath: filepath.Join(dir, "keygate.yaml"), logPath: filepath.Join(dir, "server.log"),
		apiURL: fmt.Sprintf("https://127.0.0.1:%d", apiPort), caFile: s.caFile}
	if err := os.WriteFile(b.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

// serverCmd is `keygate server` on cfgPath, killed if still running after
// limit.
func serverCmd(t *testing.T, s *kgServer, limit time.Duration) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, keygateBin, "server", "--config", s.cfgPath)
	cmd.Env = append(append(os.Environ(), "ORDERS_ADMIN_PASSWORD="+s.pg.AdminPassword), s.env...)
	r := runCmd(t, cmd)
	if ctx.Err() != nil {
		t.Fatalf("keygate server still running after %s; it should have refused to start:\n%s", limit, r.stderr)
	}
	return r
}

// A second server on a data_dir that a running server uses refuses
// before it binds its ports, naming the first one's pid and API address,
// and the first keeps serving.
func TestOneServerPerDataDir(t *testing.T) {
	s := startServer(t, "onedir", "", true)
	s.addUser(t, "dora", "analysts")
	b := s.sibling(t, filepath.Join(s.dir, "data"))

	r := serverCmd(t, b, 30*time.Second)
	if r.code == 0 {
		t.Fatalf("a second server on the same data_dir exited 0:\n%s", r.stderr)
	}
	apiAddr := strings.TrimPrefix(s.apiURL, "https://")
	for _, want := range []string{
		fmt.Sprintf("is in use by keygate server pid %d (api %s, postgres 127.0.0.1:%d", s.cmd.Process.Pid, apiAddr, s.pgPort),
		"stop that one first, or give this one a data_dir of its own",
	} {
		mustContain(t, "second server's stderr", r.stderr, want)
	}
	if strings.Contains(r.stderr, "keygate is ready") {
		t.Errorf("the second server said it was ready:\n%s", r.stderr)
	}

	tok := s.token(t, "dora", "orders")
	if res := s.psql(t, s.connString("dora", "orders"), tok, "SELECT count(*) FROM customers"); res.code != 0 || strings.TrimSpace(res.stdout) != "2" {
		t.Fatalf("the first server stopped serving: exit %d: %s%s", res.code, res.stdout, res.stderr)
	}
	mustContain(t, "audit verify", s.kg(t, 0, "audit", "verify"), "audit log intact")
}

// A backup taken while statements run through the gateway restores into
// a server that passes audit verify and has every person and group. A
// restore refuses the running server's data_dir, naming it, and a
// non-empty directory without --force.
func TestBackupDuringTrafficRestores(t *testing.T) {
	s := startServer(t, "backup", "", true)
	for _, p := range []struct{ name, group string }{{"alice", "analysts"}, {"bob", "engineers"}, {"carol", "analysts"}, {"dave", "dbadmins"}} {
		s.addUser(t, p.name, p.group)
	}
	s.kg(t, 0, "admin", "group", "add", "auditors")
	people := kgJSON[[]api.Person](t, s, "admin", "user", "list", "--json")
	groups := kgJSON[[]api.GroupInfo](t, s, "admin", "group", "list", "--json")

	// Traffic: statements through the gateway until the backup is done,
	// each one a query event in the audit log.
	conn := s.pgx(t, "bob", "orders", s.token(t, "bob", "orders"))
	var ran atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := conn.Exec(context.Background(), "SELECT count(*) FROM orders").ReadAll(); err != nil {
				t.Errorf("statement %d: %v", ran.Load()+1, err)
				return
			}
			ran.Add(1)
		}
	})
	waitFor(t, 10*time.Second, func() bool { return ran.Load() >= 50 })
	backup := filepath.Join(t.TempDir(), "keygate-backup.tar.gz")
	before := ran.Load()
	out := s.kg(t, 0, "state", "backup", backup)
	during := ran.Load() - before
	close(stop)
	wg.Wait()
	t.Logf("%d statements ran during the backup:\n%s", during, out)
	mustContain(t, "state backup", out, "4 people, 4 groups, ")
	fi, err := os.Stat(backup)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("backup has mode %v, want 0600", fi.Mode().Perm())
	}

	r := s.run(t, nil, "state", "restore", backup, "--data-dir", filepath.Join(s.dir, "data"), "--force")
	if r.code == 0 {
		t.Fatal("restore into the running server's data_dir succeeded")
	}
	mustContain(t, "restore into a running server's data_dir", r.stderr, fmt.Sprintf("in use by keygate server pid %d", s.cmd.Process.Pid))
	mustContain(t, "restore into a running server's data_dir", r.stderr, "stop it before restoring")

	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "keygate.db"), []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = s.run(t, nil, "state", "restore", backup, "--data-dir", full)
	if r.code == 0 {
		t.Fatal("restore into a non-empty directory without --force succeeded")
	}
	mustContain(t, "restore into a non-empty directory", r.stderr, "is not empty (it holds keygate.db): restore into an empty directory, or pass --force")

	// Only one server manages the upstream's roles at a time: the first
	// one stops before the restored one starts.
	s.stop(t)
	b := s.sibling(t, "")
	newDir := filepath.Join(b.dir, "data")
	out = s.kg(t, 0, "state", "restore", backup, "--data-dir", newDir)
	mustContain(t, "state restore", out, "4 people, 4 groups, ")
	mustContain(t, "state restore", out, "(audit chain intact)")
	b.launch(t)
	t.Cleanup(func() { b.stop(t) })

	out = b.kg(t, 0, "audit", "verify")
	mustContain(t, "audit verify of the restored server", out, "audit log intact")
	restoredPeople := kgJSON[[]api.Person](t, b, "admin", "user", "list", "--json")
	restoredGroups := kgJSON[[]api.GroupInfo](t, b, "admin", "group", "list", "--json")
	if !slices.EqualFunc(people, restoredPeople, func(a, b api.Person) bool { return a.Name == b.Name && a.Active == b.Active }) {
		t.Errorf("restored people %+v, want %+v", restoredPeople, people)
	}
	if !slices.EqualFunc(groups, restoredGroups, func(a, b api.GroupInfo) bool { return a.Name == b.Name && slices.Equal(a.Members, b.Members) }) {
		t.Errorf("restored groups %+v, want %+v", restoredGroups, groups)
	}
	// The restored keys sign and check tokens: bob works as before.
	tok := b.token(t, "bob", "orders")
	if res := b.psql(t, b.connString("bob", "orders"), tok, "SELECT count(*) FROM orders"); res.code != 0 {
		t.Fatalf("psql through the restored server: exit %d: %s", res.code, res.stderr)
	}
}

// SIGTERM with a live session and a short shutdown_grace: the server
// ends the session, exits 0, and is gone within the grace and 10 s.
func TestShutdownIsBounded(t *testing.T) {
	s := startServer(t, "bounded", "", true)
	s.addUser(t, "sam", "analysts")
	tok := s.token(t, "sam", "orders")
	sl := s.startSleeper(t, "sam", "orders", tok, "bounded-sam")
	start := time.Now()
	s.cmd.Process.Signal(syscall.SIGTERM)
	const grace = 2 * time.Second // shutdown_grace in the test config
	select {
	case <-s.done:
	case <-time.After(grace + 10*time.Second):
		t.Fatalf("server still running %s after SIGTERM", grace+10*time.Second)
	}
	t.Logf("server exited %s after SIGTERM", time.Since(start))
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		log, _ := os.ReadFile(s.logPath)
		t.Fatalf("server exited %d after SIGTERM:\n%s", code, log)
	}
	sl.ended(t, "the server exited")
	mustContain(t, "psql error", sl.stderr.String(), "keygate is shutting down")
	log, _ := os.ReadFile(s.logPath)
	mustContain(t, "server log", string(log), "msg=stopped")
}

// A data_dir whose state a newer keygate migrated is refused at start-up
// with what to do, and the server exits non-zero without serving.
func TestNewerSchemaRefusesToStart(t *testing.T) {
	s := startServer(t, "newer", "", true)
	s.stop(t)
	known := sqlite.KnownSchemas().State
	db, err := sql.Open("sqlite", "file:"+filepath.Join(s.dir, "data", "keygate.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (?, 1)`, known+1); err != nil {
		t.Fatal(err)
	}
	db.Close()

	r := serverCmd(t, s, 30*time.Second)
	if r.code == 0 {
		t.Fatalf("a server on a newer schema exited 0:\n%s", r.stderr)
	}
	want := fmt.Sprintf("keygate.db was written by a newer keygate (schema %d, this binary knows up to %d): run that version or newer, or restore a backup taken with this one", known+1, known)
	mustContain(t, "server stderr", r.stderr, want)
	if strings.Contains(r.stderr, "keygate is ready") {
		t.Errorf("the server said it was ready on a newer schema:\n%s", r.stderr)
	}
}
