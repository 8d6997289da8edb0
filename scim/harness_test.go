package scim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/store/sqlite"
)

// env is a SCIM server on a real SQLite store and audit log, reached over
// HTTP.
type env struct {
	t     *testing.T
	srv   *httptest.Server
	store *sqlite.Store
	audit *audit.Log
	token string
	now   time.Time
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, now: time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)}
	clock := func() time.Time { return e.now }
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keygate.db"), clock)
	if err != nil {
		t.Fatal(err)
	}
	e.store = st
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if e.audit, err = audit.Open(ctx, st, log, clock); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.audit.Close(); st.Close() })
	e.token = credential.New(credential.ProvisioningPrefix)
	h := credential.Hash(e.token)
	if _, err := st.CreateProvisioningToken(ctx, identity.ProvisioningToken{Name: "azure-ad"}, h[:]); err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(New(st, e.audit, log, clock).Handler())
	t.Cleanup(e.srv.Close)
	return e
}

// response is an HTTP answer with its body decoded.
type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// do sends body (a string, or anything JSON-encodable) with the token.
func (e *env) do(method, path string, body any, headers ...string) response {
	e.t.Helper()
	return e.doAs(e.token, method, path, body, headers...)
}

func (e *env) doAs(token, method, path string, body any, headers ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.srv.URL+Prefix+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/scim+json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			e.t.Fatalf("%s %s: %d, body is not JSON: %q", method, path, resp.StatusCode, raw)
		}
	}
	return r
}

// want fails the test unless the response has status (and, for errors,
// scimType).
func (r response) want(t *testing.T, status int, scimType ...string) response {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	if len(scimType) > 0 && r.body["scimType"] != scimType[0] {
		t.Fatalf("scimType %v, want %s: %s", r.body["scimType"], scimType[0], r.raw)
	}
	return r
}

func (r response) str(path string) string {
	var v any = r.body
	for _, p := range strings.Split(path, ".") {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	s, _ := v.(string)
	return s
}

func (r response) resources() []map[string]any {
	list, _ := r.body["Resources"].([]any)
	out := make([]map[string]any, len(list))
	for i, x := range list {
		out[i], _ = x.(map[string]any)
	}
	return out
}

func (e *env) flush() {
	e.t.Helper()
	if err := e.audit.Flush(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}
