package client_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/client"
)

// handlerTransport answers a client's requests from a handler in-process.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, req)
	return rec.Result(), nil
}

// The audit filter's fields, the text search among them, reach the API
// as its query parameters.
func TestAuditFilterQuery(t *testing.T) {
	var got []string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.RawQuery)
		json.NewEncoder(w).Encode(api.AuditPage{Events: []api.AuditEvent{{Seq: 1, User: "alice"}}})
	})
	c, err := client.NewTransport("https://keygate.example", handlerTransport{h}, "kgs_x")
	if err != nil {
		t.Fatal(err)
	}
	since := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var n int
	err = c.Audit(context.Background(), client.AuditFilter{User: "alice", Text: "drop table", Since: since}, func(api.AuditEvent) error { n++; return nil })
	if err != nil || n != 1 {
		t.Fatalf("Audit: %d events, %v", n, err)
	}
	if want := "q=drop+table&since=2026-12-01T00%3A00%3A00Z&user=alice"; len(got) != 1 || got[0] != want {
		t.Errorf("query %q, want %q", got, want)
	}
}
