package e2e

import (
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/api"
)

// keygate access who answers for a moment before, during and after a
// membership, from the membership history; and says who connected, from
// the audit log.
func TestAccessWho(t *testing.T) {
	s := sharedServer(t)
	// Someone in analysts makes sure the group exists, whichever test ran
	// first.
	s.addUser(t, "who-anchor", "analysts")
	s.addUser(t, "wendy")
	before := time.Now()
	time.Sleep(20 * time.Millisecond)
	s.kg(t, 0, "admin", "group", "add-member", "analysts", "wendy")
	if r := s.psql(t, s.connString("wendy", "orders"), s.token(t, "wendy", "orders"), "SELECT 1"); r.code != 0 {
		t.Fatalf("wendy's psql: %s", r.stderr)
	}
	during := time.Now()
	time.Sleep(20 * time.Millisecond)
	s.kg(t, 0, "admin", "group", "remove-member", "analysts", "wendy")

	who := func(args ...string) api.WhoAnswer {
		t.Helper()
		var ans api.WhoAnswer
		if err := json.Unmarshal([]byte(s.kg(t, 0, append([]string{"access", "who", "--db", "orders", "--json"}, args...)...)), &ans); err != nil {
			t.Fatal(err)
		}
		return ans
	}
	holder := func(ans api.WhoAnswer, user string) (api.Holder, bool) {
		for _, h := range ans.Holders {
			if h.User == user {
				return h, true
			}
		}
		return api.Holder{}, false
	}
	if h, ok := holder(who("--at", before.UTC().Format(time.RFC3339Nano)), "wendy"); ok {
		t.Errorf("before she joined analysts, wendy could reach orders: %+v", h)
	}
	ans := who("--at", during.UTC().Format(time.RFC3339Nano), "--since", before.UTC().Format(time.RFC3339Nano))
	if h, ok := holder(ans, "wendy"); !ok || h.Access != "ro" || h.Group != "analysts" || h.PermissionSet != "db-readonly" {
		t.Errorf("while in analysts: %+v, %v", h, ok)
	}
	var connected *api.Connection
	for i, c := range ans.Connected {
		if c.User == "wendy" {
			connected = &ans.Connected[i]
		}
	}
	if connected == nil || connected.Sessions != 1 || strings.Join(connected.Access, ",") != "ro" {
		t.Errorf("who connected: %+v", ans.Connected)
	}
	if h, ok := holder(who(), "wendy"); ok {
		t.Errorf("after she left analysts, wendy can reach orders: %+v", h)
	}
	text := s.kg(t, 0, "access", "who", "--db", "orders", "--at", during.Format("2006-01-02T15:04:05.999999999Z07:00"))
	mustContain(t, "who as text", text, "could reach orders at")
	mustContain(t, "who as text", text, "connected between")
}

// keygate access review exports one CSV row per person and database they
// could reach, with the level and what gives it.
func TestAccessReview(t *testing.T) {
	s := sharedServer(t)
	s.addUser(t, "yusuf", "engineers")
	s.addUser(t, "zoe", "dbadmins")
	rows, err := csv.NewReader(strings.NewReader(s.kg(t, 0, "access", "review"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rows[0], ",") != "database,user,access,group,permission_set,require_mfa,deleted" {
		t.Fatalf("header = %v", rows[0])
	}
	got := map[string]string{}
	for _, r := range rows[1:] {
		if r[1] == "yusuf" || r[1] == "zoe" {
			got[r[0]+"/"+r[1]] = r[2] + " " + r[3] + " " + r[4]
		}
	}
	want := map[string]string{
		"orders/yusuf": "rw engineers db-readwrite",
		"orders/zoe":   "admin dbadmins db-admin",
		"billing/zoe":  "admin dbadmins db-admin",
	}
	if len(got) != len(want) {
		t.Errorf("review rows for yusuf and zoe = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	var js []api.Holder
	if err := json.Unmarshal([]byte(s.kg(t, 0, "access", "review", "--format", "json")), &js); err != nil || len(js) != len(rows)-1 {
		t.Errorf("review --format json: %d rows (%v), csv has %d", len(js), err, len(rows)-1)
	}
}
