package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testenv"
)

// stateDatabases numbers the state databases the cluster tests make.
var stateDatabases atomic.Int64

// startCluster starts two keygate servers, nodes a and b, on one
// PostgreSQL state database owned by a plain login role, in front of the
// same upstream databases. Each has its own data_dir and ports.
func startCluster(t *testing.T, dbPrefix string) (a, b *kgServer) {
	t.Helper()
	pg := testenv.StartPostgres(t)
	n := stateDatabases.Add(1)
	role, db := fmt.Sprintf("keygate_state_%d", n), fmt.Sprintf("%s_state", dbPrefix)
	password := rand.Text()
	for _, q := range []string{
		"DROP DATABASE IF EXISTS " + db + " WITH (FORCE)",
		"DROP ROLE IF EXISTS " + role,
		fmt.Sprintf("CREATE ROLE %s LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '%s'", role, password),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", db, role),
	} {
		if err := pg.Exec(t.Context(), "postgres", q); err != nil {
			t.Fatal(err)
		}
	}
	key := make([]byte, 32)
	rand.Read(key)
	env := []string{
		fmt.Sprintf("KEYGATE_STATE_URL=postgres://%s:%s@%s/%s?sslmode=disable", role, password, pg.Address(), db),
		"KEYGATE_SECRETS_KEY=" + base64.StdEncoding.EncodeToString(key),
	}
	state := "state:\n  postgres_url_env: KEYGATE_STATE_URL\n  secrets_key_env: KEYGATE_SECRETS_KEY\n  node: %s\n"
	a = startServerWith(t, dbPrefix, serverOptions{env: env, extraConfig: fmt.Sprintf(state, "a"), stopWithTest: true})
	b = a.sibling(t, "")
	b.editConfig(t, "node: a", "node: b")
	b.launch(t)
	t.Cleanup(func() { b.stop(t) })
	return a, b
}

// Two servers on one state: a person whose sign-in session was made
// through node a gets a token from node b and connects through b; a SCIM
// group removal sent to a ends her live session on b. Over 50 trials the
// time from the SCIM response to the session's end is printed, p99 under
// a second.
func TestClusterRevocationAcrossNodes(t *testing.T) {
	a, b := startCluster(t, "cluster")

	// Both nodes hold the same CA, signing keys and admin credential, and
	// neither made a SQLite state.
	for _, name := range []string{"ca.pem", "ca.key", "token-keys.json", "admin.credential"} {
		fa, errA := os.ReadFile(filepath.Join(a.dir, "data", name))
		fb, errB := os.ReadFile(filepath.Join(b.dir, "data", name))
		if errA != nil || errB != nil || string(fa) != string(fb) {
			t.Fatalf("%s differs between the nodes (%v, %v)", name, errA, errB)
		}
	}
	for _, s := range []*kgServer{a, b} {
		if _, err := os.Stat(filepath.Join(s.dir, "data", "keygate.db")); err == nil {
			t.Fatalf("a node on a shared state made keygate.db in %s", s.dir)
		}
	}
	if ca := b.kg(t, 0, "ca"); ca != a.kg(t, 0, "ca") {
		t.Fatal("keygate ca differs between the nodes")
	}

	c := a.scimClient(t, "azure-ad")
	user := c.must(201, "POST", "/Users", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "nadia", "active": true}`)
	uid := user["id"].(string)
	c.must(201, "POST", "/Groups", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "analysts"}`)
	analysts := groupID(t, c, "analysts")
	add := `{` + patchOp + `, "Operations": [{"op": "Add", "path": "members", "value": [{"value": "` + uid + `"}]}]}`
	remove := `{` + patchOp + `, "Operations": [{"op": "Remove", "path": "members[value eq \"` + uid + `\"]"}]}`

	// The sign-in session is made through node a and used on node b.
	b.sessions["nadia"] = a.session(t, "nadia")

	// One connection watches the upstream for every trial: each of
	// startSleeper's looks opens a connection held until the test ends.
	watch := a.pg.Connect(t, "postgres")
	running := func(app string) bool {
		res, err := watch.Exec(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE application_name = '"+app+"' AND query LIKE '%pg_sleep%'").ReadAll()
		return err == nil && len(res) == 1 && len(res[0].Rows) == 1 && string(res[0].Rows[0][0]) == "1"
	}
	const trials = 50
	var took []time.Duration
	for i := range trials {
		c.must(200, "PATCH", "/Groups/"+analysts, add)
		var tok string
		// b learns of the membership from the shared feed.
		waitFor(t, 5*time.Second, func() bool {
			r := b.tokenResult(t, "nadia", "orders")
			tok = strings.TrimSpace(r.stdout)
			return r.code == 0
		})
		app := fmt.Sprintf("cluster-%d", i)
		sl := b.startPsql(t, "nadia", "orders", tok, app, "SELECT pg_sleep(30)")
		waitFor(t, 10*time.Second, func() bool { return running(app) })
		c.must(200, "PATCH", "/Groups/"+analysts, remove)
		responded := time.Now()
		took = append(took, sl.ended(t, "the SCIM removal on node a").Sub(responded))
	}
	slices.Sort(took)
	p50, p99 := took[len(took)/2], took[len(took)*99/100]
	t.Logf("SCIM removal on node a to the session's end on node b, %d trials: p50 %s, p99 %s, max %s", trials, p50, p99, took[len(took)-1])
	if p99 > time.Second {
		t.Fatalf("p99 %s from the SCIM response on a to the session's end on b, want under 1s", p99)
	}
	if r := b.tokenResult(t, "nadia", "orders"); r.code == 0 {
		t.Fatal("node b issued a token after the removal")
	}

	// Each node wrote its own chain, and verify walks both.
	out := a.kg(t, 0, "audit", "verify")
	mustContain(t, "audit verify", out, "intact")
	// Node b ended the sessions itself, told by the shared feed: each
	// end is in b's chain with the revocation as its reason.
	revoked := 0
	for _, e := range a.audit(t, "--type", "session.end", "--user", "nadia") {
		if e.Node != "b" {
			t.Fatalf("a session on node b ended in chain %q", e.Node)
		}
		if strings.HasPrefix(e.Reason, "access revoked") {
			revoked++
		}
	}
	if revoked != trials {
		t.Fatalf("%d session.end events of node b say access revoked, want %d", revoked, trials)
	}
	for _, e := range a.audit(t, "--type", "scim") {
		if e.Node != "a" {
			t.Fatalf("SCIM event sent to node a in chain %q", e.Node)
		}
	}
}
