package api

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/audit"
)

func TestAuditUntilAndLast(t *testing.T) {
	e := newEnv(t)
	base := e.now
	for i := range 3 {
		e.audit.Record(audit.Event{Time: base.Add(time.Duration(i) * time.Hour), Type: audit.Query, User: "alice", Query: "SELECT " + strconv.Itoa(i)})
	}
	var page AuditPage
	until := base.Add(90 * time.Minute).Format(time.RFC3339)
	if code, _ := e.call(t, "GET", "/v1/admin/audit?until="+until, e.admin, nil, &page); code != http.StatusOK {
		t.Fatalf("until: %d", code)
	}
	if len(page.Events) != 2 || page.Events[1].Query != "SELECT 1" {
		t.Errorf("until %s: %+v, want the first two", until, page.Events)
	}
	// Nothing matches, yet the log was read to its end.
	page = AuditPage{}
	e.call(t, "GET", "/v1/admin/audit?type=session", e.admin, nil, &page)
	if len(page.Events) != 0 || page.Last != 3 {
		t.Errorf("type=session: %d events, last %d; want none, 3", len(page.Events), page.Last)
	}
	for _, bad := range []string{"until=tomorrow", "wait=soon", "wait=-1s", "after=x"} {
		if code, _ := e.call(t, "GET", "/v1/admin/audit?"+bad, e.admin, nil, nil); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", bad, code)
		}
	}
}

func TestAuditWaitReturnsTheNextMatchingEvent(t *testing.T) {
	e := newEnv(t)
	e.audit.Record(audit.Event{Type: audit.Query, User: "alice", Query: "SELECT 1"})
	go func() {
		time.Sleep(300 * time.Millisecond)
		e.audit.Record(audit.Event{Type: audit.Query, User: "bob", Query: "SELECT 2"})
		time.Sleep(300 * time.Millisecond)
		e.audit.Record(audit.Event{Type: audit.SessionEnd, User: "bob"})
	}()
	start := time.Now()
	var page AuditPage
	if code, _ := e.call(t, "GET", "/v1/admin/audit?type=session&after=1&wait=10s", e.admin, nil, &page); code != http.StatusOK {
		t.Fatalf("wait: %d", code)
	}
	took := time.Since(start)
	if len(page.Events) != 1 || page.Events[0].Type != audit.SessionEnd || page.Last != 3 {
		t.Fatalf("wait: %+v, last %d; want the session.end, last 3", page.Events, page.Last)
	}
	if took < 500*time.Millisecond || took > 3*time.Second {
		t.Errorf("wait answered after %v; want soon after the event, about 600ms", took)
	}

	// Nothing comes: the answer is empty at the end of the wait.
	start = time.Now()
	page = AuditPage{}
	e.call(t, "GET", "/v1/admin/audit?after=3&wait=400ms", e.admin, nil, &page)
	if took := time.Since(start); len(page.Events) != 0 || page.Last != 3 || took < 400*time.Millisecond || took > 3*time.Second {
		t.Errorf("empty wait: %d events, last %d after %v", len(page.Events), page.Last, took)
	}
}

// A waiting request does not hold up the server's shutdown.
func TestAuditWaitEndsAtShutdown(t *testing.T) {
	e := newEnv(t)
	time.AfterFunc(200*time.Millisecond, e.api.StopWaiting)
	start := time.Now()
	var page AuditPage
	if code, _ := e.call(t, "GET", "/v1/admin/audit?wait=30s", e.admin, nil, &page); code != http.StatusOK || len(page.Events) != 0 {
		t.Fatalf("wait at shutdown: %d, %+v", code, page)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("wait ended %v after it began; StopWaiting came at 200ms", took)
	}
	// And later ones do not wait at all.
	start = time.Now()
	e.call(t, "GET", "/v1/admin/audit?wait=30s", e.admin, nil, &page)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("wait after shutdown took %v", took)
	}
}

// q finds text in the query, reason, actor or user of an event, ignoring
// case, together with the other filters, and pages on past the events it
// drops.
func TestAuditTextFilter(t *testing.T) {
	e := newEnv(t)
	e.audit.Record(audit.Event{Type: audit.Query, User: "alice", Query: "SELECT * FROM Invoices"})
	e.audit.Record(audit.Event{Type: audit.Query, User: "bob", Query: "SELECT 1"})
	e.audit.Record(audit.Event{Type: audit.TokenRefused, User: "carol", Reason: "no permission set grants invoices"})
	e.audit.Record(audit.Event{Type: audit.Query, User: "invoicebot", Query: "SELECT 2"})
	find := func(query string) []string {
		t.Helper()
		var page AuditPage
		if code, _ := e.call(t, "GET", "/v1/admin/audit?"+query, e.admin, nil, &page); code != http.StatusOK {
			t.Fatalf("%s: %d", query, code)
		}
		var users []string
		for _, ev := range page.Events {
			users = append(users, ev.User)
		}
		return users
	}
	if got := strings.Join(find("q=INVOICE"), " "); got != "alice carol invoicebot" {
		t.Errorf("q=INVOICE: %s", got)
	}
	if got := strings.Join(find("q=invoice&type=query"), " "); got != "alice invoicebot" {
		t.Errorf("q=invoice&type=query: %s", got)
	}
	if got := find("q=nowhere"); len(got) != 0 {
		t.Errorf("q=nowhere: %v", got)
	}
	if code, _ := e.call(t, "GET", "/v1/admin/audit?q="+strings.Repeat("x", auditTextMax+1), e.admin, nil, nil); code != http.StatusBadRequest {
		t.Errorf("long q: %d, want 400", code)
	}

	// A full page of events the text drops still says where to read on.
	for range auditPageMax {
		e.audit.Record(audit.Event{Type: audit.Query, User: "dave", Query: "SELECT 3"})
	}
	e.audit.Record(audit.Event{Type: audit.Query, User: "erin", Query: "SELECT needle"})
	var page AuditPage
	e.call(t, "GET", "/v1/admin/audit?q=needle&after=4", e.admin, nil, &page)
	if len(page.Events) != 0 || page.Next == 0 {
		t.Fatalf("first page: %d events, next %d; want none and a next page", len(page.Events), page.Next)
	}
	e.call(t, "GET", "/v1/admin/audit?q=needle&after="+strconv.FormatInt(page.Next, 10), e.admin, nil, &page)
	if len(page.Events) != 1 || page.Events[0].User != "erin" {
		t.Fatalf("second page: %+v", page.Events)
	}
}

// A wait with a text filter ends with an event the text matches, not
// with the first the store's filters let through.
func TestAuditWaitWithText(t *testing.T) {
	e := newEnv(t)
	e.audit.Record(audit.Event{Type: audit.Query, User: "alice", Query: "SELECT 1"})
	go func() {
		time.Sleep(200 * time.Millisecond)
		e.audit.Record(audit.Event{Type: audit.Query, User: "bob", Query: "SELECT 2"})
		time.Sleep(300 * time.Millisecond)
		e.audit.Record(audit.Event{Type: audit.Query, User: "bob", Query: "DROP TABLE orders"})
	}()
	var page AuditPage
	if code, _ := e.call(t, "GET", "/v1/admin/audit?q=drop&after=1&wait=10s", e.admin, nil, &page); code != http.StatusOK {
		t.Fatalf("wait: %d", code)
	}
	if len(page.Events) != 1 || page.Events[0].Query != "DROP TABLE orders" {
		t.Fatalf("wait with q: %+v", page.Events)
	}
}
