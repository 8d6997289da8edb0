package server

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/sqlite"
)

// namingConfig has a database in each of two environments and the issue's
// group naming rule. The upstreams are never reached: these tests ask the
// server's decisions, not its gateway.
const namingConfig = `data_dir: %s
listen:
  api: 127.0.0.1:0
  postgres: 127.0.0.1:0
shutdown_grace: 1s
databases:
  - name: orders
    address: 127.0.0.1:1
    tags: {environment: prod}
    tls: disable
    admin: {user: a, password_env: KEYGATE_TEST_UNSET}
  - name: scratch
    address: 127.0.0.1:1
    tags: {environment: dev}
    tls: disable
    admin: {user: a, password_env: KEYGATE_TEST_UNSET}
permission_sets:
  - name: db-readonly
    access: ro
  - name: db-readwrite
    access: rw
assignments:
  - group: analysts
    permission_set: db-readwrite
    databases: [scratch]
group_naming:
  pattern: %s
`

// syncBuffer is a log destination safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// newNamingServer makes a server on namingConfig with pattern, and returns
// it with its config file, its log, and a function that runs it until the
// test ends.
func newNamingServer(t *testing.T, pattern string) (srv *Server, path string, logs *syncBuffer, run func()) {
	t.Helper()
	dir := t.TempDir()
	path = filepath.Join(dir, "keygate.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(namingConfig, filepath.Join(dir, "data"), pattern)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs = &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err = New(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ran := false
	run = func() {
		ran = true
		go func() { done <- srv.Run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		if !ran {
			srv.close()
			return
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return srv, path, logs, run
}

func allowed(t *testing.T, srv *Server, user, db string, level access.Level) access.Decision {
	t.Helper()
	d, err := srv.authz.Authorize(context.Background(), authz.Request{User: user, Database: db, Level: level})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// holders is who could reach db, as "user group level".
func holders(t *testing.T, srv *Server, db string) []string {
	t.Helper()
	hs, err := srv.authz.WhoCan(context.Background(), db, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, h := range hs {
		out = append(out, fmt.Sprintf("%s %s %s", h.User, h.Group, h.Level))
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after 5s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Groups named by the rule grant as they appear, move with a rename and
// go with a delete, without a reload; a reload that changes the rule
// re-derives every grant.
func TestGroupNamingFollowsTheStore(t *testing.T) {
	srv, path, logs, run := newNamingServer(t, "kg-{environment}-{permission_set}")
	ctx := context.Background()
	alice, err := srv.store.CreateUser(ctx, identity.User{UserName: "alice", Active: true})
	if err != nil {
		t.Fatal(err)
	}
	g, err := srv.store.CreateGroup(ctx, identity.Group{Name: "kg-prod-db-readonly"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.store.AddMember(ctx, g.ID, alice.ID, "test"); err != nil {
		t.Fatal(err)
	}
	// A decision right after the change sees the grant without waiting
	// for the change feed: nothing watches it yet.
	if d := allowed(t, srv, "alice", "orders", access.ReadOnly); !d.Allowed || d.Policy != "group_naming[kg-prod-db-readonly]" {
		t.Fatalf("ro on orders through kg-prod-db-readonly: %+v", d)
	}
	if d := allowed(t, srv, "alice", "orders", access.ReadWrite); d.Allowed {
		t.Errorf("rw on orders: %s", d.Reason)
	}
	if d := allowed(t, srv, "alice", "scratch", access.ReadOnly); d.Allowed {
		t.Errorf("ro on scratch: %s", d.Reason)
	}

	// The watcher alone brings who-can answers up to date: no decision
	// for alice comes between the rename and the answer.
	run()
	if _, err := srv.store.UpdateGroup(ctx, g.ID, "test", func(g identity.Group) (identity.Group, store.MemberChange, error) {
		g.Name = "kg-dev-db-readwrite"
		return g, store.MemberChange{}, nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice on scratch through the renamed group", func() bool {
		return slices.Equal(holders(t, srv, "scratch"), []string{"alice kg-dev-db-readwrite rw"})
	})
	if got := holders(t, srv, "orders"); len(got) != 0 {
		t.Errorf("orders after the rename: %q", got)
	}

	if _, err := srv.store.CreateGroup(ctx, identity.Group{Name: "marketing"}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.store.CreateGroup(ctx, identity.Group{Name: "analysts"}); err != nil {
		t.Fatal(err)
	}
	f, err := srv.AccessFindings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f.Pattern != "kg-{environment}-{permission_set}" || f.Groups != 3 || f.Assigned != 1 || len(f.Findings) != 1 ||
		f.Findings[0].Group != "marketing" || f.Findings[0].Kind != "no_match" {
		t.Errorf("findings: %+v", f)
	}

	if err := srv.store.DeleteGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if d := allowed(t, srv, "alice", "scratch", access.ReadOnly); d.Allowed {
		t.Errorf("ro on scratch after the delete: %s", d.Reason)
	}
	waitFor(t, "the policy to forget the deleted group", func() bool {
		srv.policyMu.Lock()
		defer srv.policyMu.Unlock()
		return !slices.Contains(srv.groups, "kg-dev-db-readwrite")
	})

	// A reload applies a new rule to the groups there are.
	g, err = srv.store.CreateGroup(ctx, identity.Group{Name: "team-prod-db-readonly"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.store.AddMember(ctx, g.ID, alice.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if d := allowed(t, srv, "alice", "orders", access.ReadOnly); d.Allowed {
		t.Fatalf("team-prod-db-readonly grants before the rule names it: %s", d.Reason)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bytes.Replace(raw, []byte("pattern: kg-"), []byte("pattern: team-"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := srv.Reload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.NamedAssignments != 1 {
		t.Errorf("reload derived %d assignments, want 1", res.NamedAssignments)
	}
	if d := allowed(t, srv, "alice", "orders", access.ReadOnly); !d.Allowed || d.Grant.Group != "team-prod-db-readonly" {
		t.Errorf("after the reload: %+v", d)
	}
	if !strings.Contains(logs.String(), `msg="group naming rule applied" pattern=team-{environment}-{permission_set} groups=3 assigned=1 findings=1`) {
		t.Errorf("no summary of the rebuild in the log:\n%s", logs.String())
	}
}

// BenchmarkRebuildPolicy times a rebuild for 1,000 groups, 900 of which
// the rule assigns (450 permission sets, each in two environments):
// listing them from SQLite, deriving the assignments and compiling the
// policy.
func BenchmarkRebuildPolicy(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	var sets strings.Builder
	for i := range 450 {
		fmt.Fprintf(&sets, "  - name: set-%d\n    access: %s\n", i, access.Levels[i%3])
	}
	raw := fmt.Sprintf(namingConfig, filepath.Join(dir, "data"), "kg-{environment}-{permission_set}")
	raw = strings.Replace(raw, "permission_sets:\n", "permission_sets:\n"+sets.String(), 1)
	cfg, err := config.Parse(filepath.Join(dir, "keygate.yaml"), []byte(raw))
	if err != nil {
		b.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(dir, "keygate.db"), time.Now)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	for i := range 1000 {
		name := fmt.Sprintf("kg-%s-set-%d", []string{"prod", "dev"}[i%2], i/2)
		if i >= 900 {
			name = fmt.Sprintf("team-%d", i)
		}
		if _, err := st.CreateGroup(ctx, identity.Group{Name: name}); err != nil {
			b.Fatal(err)
		}
	}
	srv := &Server{store: st}
	for b.Loop() {
		groups, err := srv.groupNames(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		built, err := buildPolicy(cfg, groups)
		if err != nil {
			b.Fatal(err)
		}
		if built.assigned != 900 || built.findings != 100 {
			b.Fatalf("assigned %d, findings %d", built.assigned, built.findings)
		}
	}
}
