package pgwire

import (
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/gateway"
)

// queryEvents are the audited statements whose text is q, in order.
func (f *relayFixture) queryEvents(t *testing.T, q string) []audit.Event {
	t.Helper()
	var out []audit.Event
	for _, e := range f.audit.OfType(audit.Query) {
		if e.Query == q {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no query event for %q", q)
	}
	return out
}

func outcomeOf(t *testing.T, e audit.Event) []gateway.Outcome {
	t.Helper()
	o, ok := e.Detail["outcome"].([]gateway.Outcome)
	if !ok {
		t.Fatalf("query event %q has no outcome: %+v", e.Query, e.Detail)
	}
	return o
}

func wantOutcome(t *testing.T, e audit.Event, want ...gateway.Outcome) {
	t.Helper()
	got := outcomeOf(t, e)
	if len(got) != len(want) {
		t.Fatalf("%q: outcome %+v, want %+v", e.Query, got, want)
	}
	for i := range want {
		g := got[i]
		if want[i].Error == "" {
			g.Error = ""
		}
		if g != want[i] {
			t.Errorf("%q: outcome %d = %+v, want %+v", e.Query, i, got[i], want[i])
		}
	}
}

// Every statement's event says what it came to, in every way a client can
// send it: a simple Query holding several statements, an Execute, an
// Execute whose Parse failed, one skipped after an error, one whose
// implicit commit failed, and a portal suspended at its row limit.
func TestStatementOutcomes(t *testing.T) {
	f := newRelay(t, "pw_outcome")

	ro := f.connect(t, "olga", access.ReadOnly)
	const refused = "INSERT INTO items (note) VALUES ('refused')"
	ro.send(&pgproto3.Parse{Query: refused}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantCode(t, ro.until(t, "refused insert"), "42501")
	wantOutcome(t, f.queryEvents(t, refused)[0], gateway.Outcome{SQLState: "42501"})

	rw := f.connect(t, "omar", access.ReadWrite)
	const multi = "INSERT INTO items (note) VALUES ('one'); SELECT 1/0; SELECT 'never'"
	rw.send(&pgproto3.Query{String: multi})
	rw.until(t, "multi")
	e := f.queryEvents(t, multi)[0]
	wantOutcome(t, e, gateway.Outcome{Tag: "INSERT 0 1"}, gateway.Outcome{SQLState: "22012"})
	if outcomeOf(t, e)[1].Error != "division by zero" {
		t.Errorf("error text %q", outcomeOf(t, e)[1].Error)
	}
	if d, ok := e.Detail["duration_ms"].(float64); !ok || d < 0 {
		t.Errorf("duration_ms = %v", e.Detail["duration_ms"])
	}

	rw.send(&pgproto3.Query{String: ""})
	rw.until(t, "empty")
	wantOutcome(t, f.queryEvents(t, "")[0], gateway.Outcome{Empty: true})

	// One batch: a statement that runs, one that fails, one skipped.
	rw.send(&pgproto3.Parse{Name: "ok", Query: "SELECT 'ok'"}, &pgproto3.Parse{Name: "bad", Query: "SELECT 1/0"},
		&pgproto3.Bind{PreparedStatement: "ok"}, &pgproto3.Execute{},
		&pgproto3.Bind{PreparedStatement: "bad"}, &pgproto3.Execute{},
		&pgproto3.Bind{PreparedStatement: "ok"}, &pgproto3.Execute{},
		&pgproto3.Sync{})
	wantCode(t, rw.until(t, "batch"), "22012")
	oks := f.queryEvents(t, "SELECT 'ok'")
	var execs []audit.Event
	for _, e := range oks {
		if e.Detail["protocol"] == "execute" {
			execs = append(execs, e)
		}
	}
	if len(execs) != 2 {
		t.Fatalf("executions of SELECT 'ok': %+v", oks)
	}
	wantOutcome(t, execs[0], gateway.Outcome{Tag: "SELECT 1"})
	wantOutcome(t, execs[1], gateway.Outcome{Skipped: skippedAfterError})
	for _, e := range f.queryEvents(t, "SELECT 1/0") {
		if e.Detail["protocol"] == "execute" {
			wantOutcome(t, e, gateway.Outcome{SQLState: "22012"})
		}
	}

	// A Parse that fails is its statement's failure.
	const typo = "SELEC 'typo'"
	rw.send(&pgproto3.Parse{Query: typo}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantCode(t, rw.until(t, "typo"), "42601")
	wantOutcome(t, f.queryEvents(t, typo)[0], gateway.Outcome{SQLState: "42601"})

	// The insert completes, and its implicit commit fails: both are its.
	rw.send(&pgproto3.Query{String: "CREATE TEMP TABLE d (id int UNIQUE DEFERRABLE INITIALLY DEFERRED)"})
	rw.until(t, "temp table")
	const dup = "INSERT INTO d VALUES (1), (1)"
	rw.send(&pgproto3.Parse{Query: dup}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantCode(t, rw.until(t, "deferred"), "23505")
	wantOutcome(t, f.queryEvents(t, dup)[0], gateway.Outcome{Tag: "INSERT 0 2"}, gateway.Outcome{SQLState: "23505"})

	// A portal fetched in two steps: each Execute is its own event.
	rw.send(&pgproto3.Query{String: "BEGIN"})
	rw.until(t, "begin")
	const rows = "SELECT generate_series(1, 3)"
	rw.send(&pgproto3.Parse{Query: rows}, &pgproto3.Bind{DestinationPortal: "p"}, &pgproto3.Execute{Portal: "p", MaxRows: 2},
		&pgproto3.Execute{Portal: "p", MaxRows: 2}, &pgproto3.Sync{})
	rw.until(t, "portal")
	fetches := f.queryEvents(t, rows)
	if len(fetches) != 2 {
		t.Fatalf("events of %q: %+v", rows, fetches)
	}
	wantOutcome(t, fetches[0], gateway.Outcome{Suspended: true})
	wantOutcome(t, fetches[1], gateway.Outcome{Tag: "SELECT 1"})
}

// A statement whose result never comes, because keygate ended the
// session, is audited before the session's end, at the time it was sent:
// with the error of the backend ending it, or, when the client is gone
// before a second statement's result, an unknown outcome that says why.
func TestUnfinishedStatementIsAuditedBeforeTheEnd(t *testing.T) {
	f := newRelay(t, "pw_unfinished")
	be := f.connect(t, "uma", access.ReadOnly)
	const sleep = "SELECT pg_sleep(30)"
	sent := time.Now()
	const next = "SELECT 'queued behind the sleep'"
	be.send(&pgproto3.Query{String: sleep}, &pgproto3.Query{String: next})
	waitFor(t, func() bool {
		return f.upstream(t, "SELECT count(*) FROM pg_stat_activity WHERE query = '"+sleep+"'") == "1"
	})
	f.srv.Gateway.End(f.srv.Gateway.Sessions()[0], "access revoked: a test")
	be.fatal("57P01", "keygate: access revoked: a test")

	events := f.audit.All()
	i := slices.IndexFunc(events, func(e audit.Event) bool { return e.Query == sleep })
	end := slices.IndexFunc(events, func(e audit.Event) bool { return e.Type == audit.SessionEnd })
	if i < 0 || end < i {
		t.Fatalf("the statement's event (at %d) is not before the session's end (at %d)", i, end)
	}
	wantOutcome(t, events[i], gateway.Outcome{SQLState: "57P01"})
	j := slices.IndexFunc(events, func(e audit.Event) bool { return e.Query == next })
	if j < 0 || end < j {
		t.Fatalf("the queued statement's event (at %d) is not before the session's end (at %d)", j, end)
	}
	wantOutcome(t, events[j], gateway.Outcome{Unknown: "the session ended before the result came: access revoked: a test"})
	if at := events[i].Time; at.Before(sent.Add(-time.Second)) || at.After(sent.Add(time.Second)) {
		t.Errorf("event time %s, sent at %s", at, sent)
	}
}

// After an error in an extended-protocol batch, the server skips every
// message up to the Sync, a Query too: that Query is audited as skipped,
// and the outcomes of the statements after it stay with their statements.
func TestOutcomesAfterSkippedQuery(t *testing.T) {
	f := newRelay(t, "pw_outcome_skip")
	be := f.connect(t, "sam", access.ReadWrite)
	const ignored = "SELECT 'ignored'"
	be.send(&pgproto3.Parse{Query: "SELECT 1/0"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Query{String: ignored}, &pgproto3.Sync{})
	wantCode(t, be.until(t, "batch"), "22012")
	wantOutcome(t, f.queryEvents(t, ignored)[0], gateway.Outcome{Skipped: skippedAfterError})

	const create = "CREATE TEMP TABLE victim (id int)"
	be.send(&pgproto3.Query{String: create})
	be.until(t, "create")
	be.send(&pgproto3.Query{String: "SELECT 1/0"})
	be.until(t, "division")
	wantOutcome(t, f.queryEvents(t, create)[0], gateway.Outcome{Tag: "CREATE TABLE"})
	for _, e := range f.queryEvents(t, "SELECT 1/0") {
		if e.Detail["protocol"] == "simple" {
			wantOutcome(t, e, gateway.Outcome{SQLState: "22012"})
		}
	}
}

// A Sync sent while the server copies data in is ignored by the server,
// whether keygate sees it before or after the server says it copies: the
// COPY gets its tag, and the statements after it theirs.
func TestOutcomesAroundExtendedCopy(t *testing.T) {
	f := newRelay(t, "pw_outcome_copy")
	be := f.connect(t, "cody", access.ReadWrite)
	const copyIn = "COPY items (note) FROM STDIN"
	data := &pgproto3.CopyData{Data: []byte("copied\n")}

	// As libpq sends it: Execute and Sync at once, the data, and another
	// Sync after CopyDone.
	be.send(&pgproto3.Parse{Query: copyIn}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	for m := be.next(); !isType[*pgproto3.CopyInResponse](m); m = be.next() {
	}
	be.send(data, &pgproto3.CopyDone{}, &pgproto3.Sync{})
	be.until(t, "copy, Sync first")

	// The server says it copies before keygate sees the Sync.
	be.send(&pgproto3.Parse{Query: copyIn}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	for m := be.next(); !isType[*pgproto3.CopyInResponse](m); m = be.next() {
	}
	be.send(&pgproto3.Sync{}, data, data, &pgproto3.CopyDone{}, &pgproto3.Sync{})
	be.until(t, "copy, Sync during the copy")

	const after = "SELECT 'after the copies'"
	be.send(&pgproto3.Query{String: after})
	be.until(t, "after")
	copies := f.queryEvents(t, copyIn)
	if len(copies) != 2 {
		t.Fatalf("events of %q: %+v", copyIn, copies)
	}
	wantOutcome(t, copies[0], gateway.Outcome{Tag: "COPY 1"})
	wantOutcome(t, copies[1], gateway.Outcome{Tag: "COPY 2"})
	wantOutcome(t, f.queryEvents(t, after)[0], gateway.Outcome{Tag: "SELECT 1"})
	if n := f.upstream(t, "SELECT count(*) FROM items WHERE note = 'copied'"); n != "3" {
		t.Errorf("%s rows copied, want 3", n)
	}
}

// An error with no Execute left in its batch (a failed Describe) belongs to
// no statement: the COMMIT before it keeps its tag.
func TestErrorWithoutExecuteIsNobodys(t *testing.T) {
	f := newRelay(t, "pw_outcome_describe")
	be := f.connect(t, "dora", access.ReadWrite)
	for _, q := range []string{"BEGIN", "DELETE FROM items", "COMMIT"} {
		be.send(&pgproto3.Query{String: q})
		be.until(t, q)
	}
	be.send(&pgproto3.Describe{ObjectType: 'S', Name: "nope"}, &pgproto3.Sync{})
	wantCode(t, be.until(t, "describe"), "26000")
	wantOutcome(t, f.queryEvents(t, "COMMIT")[0], gateway.Outcome{Tag: "COMMIT"})
}

// A batch without a Sync holds at most one statement's event back: the
// others are written as their results come, so that a client that never
// sends Sync cannot make keygate hold its statements.
func TestEventsAreWrittenBeforeTheSync(t *testing.T) {
	f := newRelay(t, "pw_outcome_nosync")
	be := f.connect(t, "nico", access.ReadOnly)
	for i := range 3 {
		be.send(&pgproto3.Parse{Query: "SELECT " + string(rune('1'+i))}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
		for m := be.next(); !isType[*pgproto3.CommandComplete](m); m = be.next() {
		}
	}
	waitFor(t, func() bool { return len(f.executions()) == 2 })
	if got := f.executions(); len(got) != 2 || got[0] != "SELECT 1" || got[1] != "SELECT 2" {
		t.Fatalf("events written before the Sync: %q, want SELECT 1 and SELECT 2", got)
	}
	be.send(&pgproto3.Sync{})
	be.until(t, "sync")
	if got := f.executions(); len(got) != 3 {
		t.Fatalf("events after the Sync: %q", got)
	}
}
