package client_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/client"
)

// The live session and access rules calls reach the routes the API
// serves them on, with the caller's credential, and decode the answers.
func TestLiveAndRulesCalls(t *testing.T) {
	var got []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/sessions":
			json.NewEncoder(w).Encode(api.MySessions{SignIns: []api.Session{{ID: "s1", Current: true}}, Live: []api.LiveSession{{ID: "g1", Statements: 3}}})
		case "/v1/admin/live":
			json.NewEncoder(w).Encode([]api.LiveSession{{ID: "g1"}, {ID: "g2"}})
		case "/v1/admin/access/rules":
			json.NewEncoder(w).Encode(api.AccessRules{PermissionSets: []api.PermissionSetRule{{Name: "db-readonly", TokenTTL: "15m"}}})
		case "/v1/sessions/s 2":
			json.NewEncoder(w).Encode(api.Session{ID: "s 2", Status: "revoked"})
		case "/v1/live/g1", "/v1/admin/live/g2":
			json.NewEncoder(w).Encode(api.LiveSession{ID: filepath.Base(r.URL.Path)})
		default:
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(api.Error{Error: "no live session x of yours"})
		}
	}))
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(srv.URL, caFile, "kgs_alice")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	mine, err := c.MySessions(ctx)
	if err != nil || len(mine.SignIns) != 1 || !mine.SignIns[0].Current || len(mine.Live) != 1 || mine.Live[0].Statements != 3 {
		t.Errorf("MySessions: %+v %v", mine, err)
	}
	if s, err := c.EndSession(ctx, "s 2"); err != nil || s.Status != "revoked" {
		t.Errorf("EndSession: %+v %v", s, err)
	}
	if ls, err := c.EndLive(ctx, "g1"); err != nil || ls.ID != "g1" {
		t.Errorf("EndLive: %+v %v", ls, err)
	}
	if _, err := c.EndLive(ctx, "x"); !client.IsStatus(err, http.StatusNotFound) || err.Error() != "no live session x of yours" {
		t.Errorf("EndLive of another's: %v", err)
	}
	if list, err := c.ListLive(ctx, "alice", "orders"); err != nil || len(list) != 2 {
		t.Errorf("ListLive: %+v %v", list, err)
	}
	if _, err := c.ListLive(ctx, "", ""); err != nil {
		t.Errorf("ListLive unfiltered: %v", err)
	}
	if ls, err := c.EndLiveAdmin(ctx, "g2"); err != nil || ls.ID != "g2" {
		t.Errorf("EndLiveAdmin: %+v %v", ls, err)
	}
	if r, err := c.AccessRules(ctx); err != nil || len(r.PermissionSets) != 1 || r.PermissionSets[0].TokenTTL != "15m" {
		t.Errorf("AccessRules: %+v %v", r, err)
	}
	want := []string{
		"GET /v1/sessions Bearer kgs_alice",
		"DELETE /v1/sessions/s%202 Bearer kgs_alice",
		"DELETE /v1/live/g1 Bearer kgs_alice",
		"DELETE /v1/live/x Bearer kgs_alice",
		"GET /v1/admin/live?database=orders&user=alice Bearer kgs_alice",
		"GET /v1/admin/live Bearer kgs_alice",
		"DELETE /v1/admin/live/g2 Bearer kgs_alice",
		"GET /v1/admin/access/rules Bearer kgs_alice",
	}
	if len(got) != len(want) {
		t.Fatalf("requests:\n%q\nwant\n%q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d: %q, want %q", i, got[i], want[i])
		}
	}
}
