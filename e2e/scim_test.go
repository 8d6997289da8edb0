package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// scimClient talks to the SCIM endpoint as an identity provider does.
type scimClient struct {
	t     testing.TB
	base  string
	token string
	http  *http.Client
}

func (s *kgServer) scimClient(t testing.TB, name string) *scimClient {
	t.Helper()
	out := s.kg(t, 0, "admin", "scim-token", "create", "--name", name, "--ttl", "30d")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	tok := lines[len(lines)-1]
	if !strings.HasPrefix(tok, "kgp_") {
		t.Fatalf("scim-token create printed %q", out)
	}
	mustContain(t, "scim-token create", out, s.apiURL+"/scim/v2")
	pem, err := os.ReadFile(s.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &scimClient{t: t, base: s.apiURL + "/scim/v2", token: tok,
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
}

func (c *scimClient) do(method, path, body string) (int, map[string]any) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/scim+json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 {
		json.Unmarshal(raw, &out)
	}
	return resp.StatusCode, out
}

func (c *scimClient) must(status int, method, path, body string) map[string]any {
	c.t.Helper()
	got, out := c.do(method, path, body)
	if got != status {
		c.t.Fatalf("%s %s: %d, want %d: %v", method, path, got, status, out)
	}
	return out
}

const patchOp = `"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]`

// A person provisioned by SCIM gets a token and connects; a SCIM PATCH that
// removes her from her group ends her live session within a second of the
// response, and her next token is refused.
func TestSCIMRevocation(t *testing.T) {
	s := sharedServer(t)
	c := s.scimClient(t, "azure-ad")
	user := c.must(201, "POST", "/Users", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "nora", "active": true}`)
	uid := user["id"].(string)
	// A group made by SCIM, so its creation is audited whatever ran before.
	c.must(201, "POST", "/Groups", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "nora team", "members": [{"value": "`+uid+`"}]}`)
	// analysts is the group the config gives read-only access on orders; an
	// earlier test may have created it already.
	analysts := groupID(t, c, "analysts")
	addNora := `{` + patchOp + `, "Operations": [{"op": "Add", "path": "members", "value": [{"value": "` + uid + `"}]}]}`
	c.must(200, "PATCH", "/Groups/"+analysts, addNora)

	tok := s.token(t, "nora", "orders")
	sl := s.startSleeper(t, "nora", "orders", tok, "scim-nora")
	c.must(200, "PATCH", "/Groups/"+analysts, `{`+patchOp+`, "Operations": [{"op": "Remove", "path": "members[value eq \"`+uid+`\"]"}]}`)
	sl.endedWithin(t, "the SCIM PATCH's response", time.Now(), time.Second, "access revoked")
	if r := s.tokenResult(t, "nora", "orders"); r.code == 0 {
		t.Fatal("a token was issued after SCIM removed the access")
	}

	// Deactivation by SCIM does the same for a person back in the group,
	// and so does deleting them.
	c.must(200, "PATCH", "/Groups/"+analysts, addNora)
	s.token(t, "nora", "orders")
	c.must(200, "PATCH", "/Users/"+uid, `{`+patchOp+`, "Operations": [{"op": "replace", "value": {"active": false}}]}`)
	if r := s.tokenResult(t, "nora", "orders"); r.code == 0 || !strings.Contains(r.stderr, "nora was disabled") {
		t.Fatalf("token after SCIM deactivation: exit %d, %s", r.code, r.stderr)
	}
	// Deactivation revoked her sign-in sessions for good: enabling her
	// again needs a new sign-in.
	c.must(200, "PATCH", "/Users/"+uid, `{`+patchOp+`, "Operations": [{"op": "replace", "value": {"active": true}}]}`)
	if r := s.tokenResult(t, "nora", "orders"); r.code == 0 || !strings.Contains(r.stderr, "revoked") {
		t.Fatalf("token through a session from before the deactivation: exit %d, %s", r.code, r.stderr)
	}
	s.forgetSession("nora")
	live := s.pgx(t, "nora", "orders", s.token(t, "nora", "orders"))
	c.must(204, "DELETE", "/Users/"+uid, "")
	deleted := time.Now()
	waitFor(t, time.Second, func() bool {
		return live.ExecParams(context.Background(), "SELECT 1", nil, nil, nil, nil).Read().Err != nil
	})
	t.Logf("deleting the person through SCIM ended their session within %s", time.Since(deleted))

	// SCIM changes are in the audit under the token's name.
	events := s.audit(t, "--type", "scim")
	var actors, types []string
	for _, e := range events {
		types = append(types, e.Type)
		if e.Type != "scim.auth.refused" {
			actors = append(actors, e.Actor)
		}
	}
	for _, want := range []string{"scim.user.create", "scim.group.create", "scim.group.update", "scim.user.update"} {
		if !strings.Contains(strings.Join(types, " "), want) {
			t.Errorf("audit --type scim lacks %s: %v", want, types)
		}
	}
	for _, a := range actors {
		if a != "scim:azure-ad" {
			t.Fatalf("SCIM event with actor %q", a)
		}
	}
}

// groupID finds a group by name through SCIM, creating it if needed.
func groupID(t testing.TB, c *scimClient, name string) string {
	t.Helper()
	out := c.must(200, "GET", "/Groups?excludedAttributes=members&filter="+strings.ReplaceAll(`displayName eq "`+name+`"`, " ", "%20"), "")
	if res, _ := out["Resources"].([]any); len(res) == 1 {
		return res[0].(map[string]any)["id"].(string)
	}
	return c.must(201, "POST", "/Groups", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "`+name+`"}`)["id"].(string)
}

// Tokens are made, listed and revoked with the CLI; a revoked token and a
// wrong one get 401 and are audited.
func TestSCIMTokenLifecycle(t *testing.T) {
	s := sharedServer(t)
	c := s.scimClient(t, "okta-e2e")
	c.must(200, "GET", "/Users?count=1", "")

	list := s.kg(t, 0, "admin", "scim-token", "list")
	mustContain(t, "scim-token list", list, "okta-e2e")
	if strings.Contains(list, c.token) {
		t.Fatal("scim-token list shows a secret")
	}
	// The name is taken while the token lives.
	r := s.run(t, nil, "admin", "scim-token", "create", "--name", "okta-e2e")
	if r.code == 0 || !strings.Contains(r.stderr, "revoke it first") {
		t.Fatalf("second token with the same name: exit %d, %s", r.code, r.stderr)
	}
	s.kg(t, 0, "admin", "scim-token", "revoke", "okta-e2e")
	status, body := c.do("GET", "/Users?count=1", "")
	if status != http.StatusUnauthorized || !strings.Contains(body["detail"].(string), "revoked") {
		t.Fatalf("revoked token: %d %v", status, body)
	}
	wrong := *c
	wrong.token = "kgp_not-a-token"
	if status, _ := wrong.do("GET", "/Users", ""); status != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", status)
	}
	events := s.audit(t, "--type", "scim.auth.refused")
	var reasons []string
	for _, e := range events {
		reasons = append(reasons, e.Reason)
		if strings.Contains(e.Reason, "kgp_") {
			t.Fatal("an audited refusal contains a token")
		}
	}
	all := strings.Join(reasons, "; ")
	mustContain(t, "refusals", all, "token okta-e2e was revoked")
	mustContain(t, "refusals", all, "unknown token")
	// The name is free again.
	s.kg(t, 0, "admin", "scim-token", "create", "--name", "okta-e2e")
}

// "Who was in this group at time T" from the CLI, before and after a
// membership change made through SCIM.
func TestGroupHistoryAt(t *testing.T) {
	s := sharedServer(t)
	c := s.scimClient(t, "history")
	uid := c.must(201, "POST", "/Users", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "hist-ann"}`)["id"].(string)
	gid := c.must(201, "POST", "/Groups", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Finance Team",
		"members": [{"value": "`+uid+`"}]}`)["id"].(string)
	time.Sleep(1100 * time.Millisecond)
	before := time.Now().UTC().Format(time.RFC3339Nano)
	time.Sleep(1100 * time.Millisecond)
	c.must(200, "PATCH", "/Groups/"+gid, `{`+patchOp+`, "Operations": [{"op": "Remove", "path": "members", "value": [{"value": "`+uid+`"}]}]}`)
	after := time.Now().UTC().Format(time.RFC3339Nano)

	full := s.kg(t, 0, "admin", "group", "history", "Finance Team")
	mustContain(t, "history", full, "hist-ann")
	mustContain(t, "history", full, "scim:history")
	atBefore := s.kg(t, 0, "admin", "group", "history", "Finance Team", "--at", before)
	mustContain(t, "history --at before", atBefore, "hist-ann")
	atAfter := s.kg(t, 0, "admin", "group", "history", "Finance Team", "--at", after)
	if strings.Contains(atAfter, "hist-ann") {
		t.Fatalf("history --at after the removal still lists hist-ann:\n%s", atAfter)
	}
	r := s.run(t, nil, "admin", "group", "history", "No Such Group")
	if r.code == 0 || !strings.Contains(r.stderr, "no group") {
		t.Fatalf("history of an unknown group: exit %d, %s", r.code, r.stderr)
	}
}
