package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/client"
)

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"alice":                 "alice",
		"SELECT 'é', 1":         "SELECT 'é', 1",
		"x\x1b[2K\x1b]52;c;YQ=": `x\u001b[2K\u001b]52;c;YQ=`,
		"a\tb\nc":               `a\u0009b\u000ac`,
		"bad\xffutf8":           `bad\xffutf8`,
		"c1\xc2\x9b[31m":        `c1\u009b[31m`,
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseAuditTime(t *testing.T) {
	// A time zone far from UTC: dates must not follow it.
	loc := time.FixedZone("UTC+9", 9*3600)
	now := time.Date(2026, 12, 4, 15, 30, 0, 0, loc)
	for in, want := range map[string]time.Time{
		"2026-12-04":                time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC),
		"2026-01-01":                time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		"2026-12-04T09:30:00+01:00": time.Date(2026, 12, 4, 8, 30, 0, 0, time.UTC),
		"2026-12-04T09:30:00.5Z":    time.Date(2026, 12, 4, 9, 30, 0, 5e8, time.UTC),
		"2h":                        now.Add(-2 * time.Hour),
		"7d":                        now.Add(-7 * 24 * time.Hour),
		"0":                         now,
	} {
		got, err := parseAuditTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseAuditTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"yesterday", "-2h", "2026-12-04 10:00", "2026-13-01", "12/04/2026", ""} {
		if _, err := parseAuditTime(in, now); err == nil || !strings.Contains(err.Error(), "UTC date (2026-12-04)") {
			t.Errorf("parseAuditTime(%q) = %v, want an error naming the forms", in, err)
		}
	}
	if got, err := parseSince("0", now); err != nil || !got.IsZero() {
		t.Errorf("parseSince(0) = %v, %v; want no lower bound", got, err)
	}
}

// runAudit runs keygate audit with args and no config: flag checks come
// before anything is read.
func runAudit(args ...string) error {
	root := newRoot()
	root.SetArgs(append([]string{"audit"}, args...))
	root.SetOut(new(strings.Builder))
	root.SetErr(new(strings.Builder))
	return root.ExecuteContext(context.Background())
}

func TestAuditFlagErrorsAreUsageErrors(t *testing.T) {
	t.Setenv("KEYGATE_CONFIG", "")
	t.Setenv("KEYGATE_SESSION", "")
	t.Setenv("KEYGATE_PROFILE", "")
	t.Setenv("KEYGATE_CONFIG_DIR", t.TempDir())
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--since", "2026-12-04", "--until", "2026-12-01"}, "--until 2026-12-01T00:00:00Z is before --since 2026-12-04T00:00:00Z"},
		{[]string{"--since", "1h", "--until", "2h"}, "is before --since"},
		{[]string{"--follow", "--until", "1h"}, "--follow shows events as they come"},
		{[]string{"-f", "--until", "2026-12-04"}, "not --until"},
		{[]string{"--since", "soon"}, "--since: cannot read \"soon\""},
		{[]string{"--until", "later"}, "--until: cannot read \"later\""},
		{[]string{"--type", "sesion.start"}, "did you mean session.start?"},
		{[]string{"--type", "admin.grup"}, "did you mean admin.group?"},
		{[]string{"--type", "xyzzy-plugh"}, "the types are: access.sprawl, admin.group.add-member"},
	} {
		err := runAudit(tc.args...)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("keygate audit %s: %v; want a usage error saying %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
	// Accepted, so the command goes on to look for a credential: without
	// --config, the person's own session.
	for _, args := range [][]string{
		{"--type", "session"}, {"--type", "admin"}, {"--type", "query"}, {"--type", "admin.group.create"},
		{"--since", "2026-01-01", "--until", "2026-12-04T10:00:00Z"}, {"-f", "--since", "1h"},
	} {
		err := runAudit(args...)
		if err == nil || !strings.Contains(err.Error(), "not signed in (profile default): run keygate login, or pass --config FILE") {
			t.Errorf("keygate audit %s: %v; want it to get as far as needing a session or --config", strings.Join(args, " "), err)
		}
	}
}

func TestCheckAuditTypeListsEveryType(t *testing.T) {
	err := checkAuditType("nonsense")
	if err == nil {
		t.Fatal("checkAuditType(nonsense) = nil")
	}
	for _, typ := range audit.Types() {
		if !strings.Contains(err.Error(), typ) {
			t.Errorf("the error does not list %s: %v", typ, err)
		}
	}
	if strings.Contains(err.Error(), "did you mean") {
		t.Errorf("suggested something for a word nothing like a type: %v", err)
	}
}

func TestWhatShowsOutcome(t *testing.T) {
	outcomes := func(items ...map[string]any) map[string]any {
		list := make([]any, len(items))
		for i, it := range items {
			list[i] = it
		}
		return map[string]any{"outcome": list}
	}
	for _, tc := range []struct {
		e    api.AuditEvent
		want string
	}{
		{api.AuditEvent{Type: "query", Query: "INSERT INTO t\n  VALUES (1)", Detail: outcomes(map[string]any{"tag": "INSERT 0 1"})},
			"INSERT INTO t VALUES (1) → INSERT 0 1"},
		{api.AuditEvent{Type: "query", Query: "DELETE FROM x", Detail: outcomes(map[string]any{"sqlstate": "42501", "error": "permission denied for table x"})},
			"DELETE FROM x → ERROR 42501 permission denied for table x"},
		{api.AuditEvent{Type: "query", Query: "SELECT 1; SELECT 2; BAD", Detail: outcomes(
			map[string]any{"tag": "SELECT 1"}, map[string]any{"unknown": "connection closed"}, map[string]any{"sqlstate": "42601", "error": "syntax error"})},
			"SELECT 1; SELECT 2; BAD → SELECT 1, ?, ERROR 42601 syntax error"},
		{api.AuditEvent{Type: "query", Query: "SELECT 1"}, "SELECT 1"},
		{api.AuditEvent{Type: "query", Query: "SELECT 1", Detail: map[string]any{"outcome": "not a list"}}, "SELECT 1"},
		{api.AuditEvent{Type: "session.end", Reason: "client closed", Detail: map[string]any{"duration_ms": 1500.0}}, "client closed; after 1.5s"},
		{api.AuditEvent{Type: "query", Query: "SELECT 1", Detail: map[string]any{"duration_ms": 0.25, "outcome": []any{map[string]any{"suspended": true}}}}, "SELECT 1 → more rows; took 250µs"},
	} {
		if got := what(tc.e); got != tc.want {
			t.Errorf("what(%+v) = %q, want %q", tc.e, got, tc.want)
		}
	}
}

func TestServerNotAnswering(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "https://" + ln.Addr().String()
	ln.Close()
	c, err := client.New(closed, "", "kga_x")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.VerifyAudit(context.Background())
	if !serverNotAnswering(err) {
		t.Errorf("nothing listening: serverNotAnswering(%v) = false", err)
	}

	// Something answers, but in plain HTTP: not a reason to read data_dir,
	// and the message says what is wrong.
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	c, err = client.New(strings.Replace(plain.URL, "http:", "https:", 1), "", "kga_x")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.VerifyAudit(context.Background())
	if serverNotAnswering(err) {
		t.Errorf("plain HTTP: serverNotAnswering(%v) = true", err)
	}
	src := &auditSource{serverURL: plain.URL}
	if got := src.explain(err); got == nil || !strings.Contains(got.Error(), "but not with TLS") {
		t.Errorf("explain(%v) = %v", err, got)
	}
}
