package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keygate/keygate/api"
)

// These tests attack keygate the way a person holding nothing but their own
// token would, and check that nothing runs upstream without the audit
// saying what it was: no padding that hides a statement, no prepared
// statement re-pointed behind the audit's back, no function called outside
// SQL, no token smuggled into a start-up parameter, and no flood before
// authentication that locks others out or drowns the log.

// evasionItems is the table the attacks write to, with a sequence whose
// value shows whether anything ran.
const evasionItems = `CREATE TABLE items (id serial PRIMARY KEY, note text);
INSERT INTO items (note) VALUES ('a');
CREATE SEQUENCE probe_seq;`

// evasionServer starts a server of its own for a test, with the items
// table created as keygate's admin role before any keygate connection, so
// that the group roles' grants cover it, and dave in engineers (rw).
func evasionServer(t *testing.T, prefix, extraConfig string) *kgServer {
	t.Helper()
	s := startServerWith(t, prefix, serverOptions{stopWithTest: true, extraConfig: extraConfig})
	if err := s.pg.Exec(context.Background(), prefix+"_orders", "SET ROLE "+s.pg.AdminUser+";\n"+evasionItems); err != nil {
		t.Fatal(err)
	}
	s.addUser(t, "dave", "engineers")
	return s
}

// evasionNote is the note of item 1 in the upstream database db.
func evasionNote(t *testing.T, s *kgServer, db string) string {
	t.Helper()
	return s.upstreamQuery(t, db, "SELECT note FROM items WHERE id = 1")[0][0]
}

// evasionSessionID finds the session a connection opened: its
// session.start names the connection's address as the client.
func evasionSessionID(t *testing.T, s *kgServer, user string, c *pgconn.PgConn) string {
	t.Helper()
	addr := c.Conn().LocalAddr().String()
	var id string
	found := holdsWithin(10*time.Second, func() bool {
		for _, e := range s.audit(t, "--user", user, "--type", "session.start") {
			if e.Client == addr {
				id = e.SessionID
				return true
			}
		}
		return false
	})
	if !found {
		t.Fatalf("no session.start for %s from %s", user, addr)
	}
	return id
}

// evasionAwait reads the events of type typ (exactly) of one session until
// done accepts them or 10 s have passed, and returns the last reading.
func evasionAwait(t *testing.T, s *kgServer, user, sessionID, typ string, done func([]api.AuditEvent) bool) []api.AuditEvent {
	t.Helper()
	var events []api.AuditEvent
	holdsWithin(10*time.Second, func() bool {
		events = events[:0]
		for _, e := range s.audit(t, "--user", user, "--type", typ) {
			if e.Type == typ && e.SessionID == sessionID {
				events = append(events, e)
			}
		}
		return done(events)
	})
	return events
}

// evasionDetail is a string field of an event's detail.
func evasionDetail(e api.AuditEvent, key string) string {
	v, _ := e.Detail[key].(string)
	return v
}

// evasionNumber is a numeric field of an event's detail; -1 when absent.
func evasionNumber(e api.AuditEvent, key string) float64 {
	v, ok := e.Detail[key].(float64)
	if !ok {
		return -1
	}
	return v
}

// evasionDescribe lists events for a failure message, long texts cut.
func evasionDescribe(events []api.AuditEvent) string {
	var b strings.Builder
	for _, e := range events {
		q := e.Query
		if len(q) > 120 {
			q = q[:60] + "…" + q[len(q)-60:]
		}
		fmt.Fprintf(&b, "\n  %s protocol=%q statement=%q function=%q query(%d bytes)=%q", e.Type, evasionDetail(e, "protocol"), evasionDetail(e, "statement"), evasionDetail(e, "function"), len(e.Query), q)
	}
	if b.Len() == 0 {
		return " none"
	}
	return b.String()
}

// evasionExecutes keeps the events of Execute messages.
func evasionExecutes(events []api.AuditEvent) []api.AuditEvent {
	var out []api.AuditEvent
	for _, e := range events {
		if evasionDetail(e, "protocol") == "execute" {
			out = append(out, e)
		}
	}
	return out
}

// evasionSHA256 is the hex SHA-256 of a statement's text.
func evasionSHA256(text string) string {
	sum := sha256.Sum256([]byte(text))
	return hex.EncodeToString(sum[:])
}

// evasionConfig is user's connection config through the gateway, from
// localIP when it is not empty.
func evasionConfig(t *testing.T, s *kgServer, user, db, token, localIP string) *pgconn.Config {
	t.Helper()
	cfg, err := pgconn.ParseConfig(s.connString(user, db, "connect_timeout=10"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = token
	if localIP != "" {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}, Timeout: 10 * time.Second}
		cfg.DialFunc = d.DialContext
	}
	return cfg
}

// evasionReply is one backend message, copied out of pgproto3's buffers.
type evasionReply struct {
	kind    string // the message type, as %T prints it
	code    string // ErrorResponse
	message string // ErrorResponse
	tag     string // CommandComplete
	data    []byte // FunctionCallResponse, DataRow (first column)
}

// String shows a reply in a failure message.
func (r evasionReply) String() string {
	s := r.kind
	if r.code != "" {
		s += fmt.Sprintf(" %s %q", r.code, r.message)
	}
	if r.tag != "" {
		s += " " + r.tag
	}
	if len(r.data) > 0 {
		s += fmt.Sprintf(" %q", r.data[:min(len(r.data), 200)])
	}
	return s
}

// evasionReceive reads backend messages on c up to ReadyForQuery.
func evasionReceive(t *testing.T, c *pgconn.PgConn) []evasionReply {
	t.Helper()
	c.Conn().SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.Conn().SetReadDeadline(time.Time{})
	var replies []evasionReply
	for {
		msg, err := c.Frontend().Receive()
		if err != nil {
			t.Fatalf("the connection ended before ReadyForQuery (%v); replies: %v", err, replies)
		}
		r := evasionReply{kind: fmt.Sprintf("%T", msg)}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			r.code, r.message = m.Code, m.Message
		case *pgproto3.CommandComplete:
			r.tag = string(m.CommandTag)
		case *pgproto3.FunctionCallResponse:
			r.data = bytes.Clone(m.Result)
		case *pgproto3.DataRow:
			if len(m.Values) > 0 {
				r.data = bytes.Clone(m.Values[0])
			}
		case *pgproto3.ReadyForQuery:
			return append(replies, r)
		}
		replies = append(replies, r)
	}
}

// evasionDial opens a TCP connection to the gateway from localIP.
func evasionDial(t *testing.T, s *kgServer, localIP string) net.Conn {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", itoa(s.pgPort)))
	if err != nil {
		t.Fatalf("connect from %s: %v", localIP, err)
	}
	return c
}

// evasionSend sends raw bytes from localIP and waits for the gateway to
// close the connection.
func evasionSend(t *testing.T, s *kgServer, localIP string, payload []byte) {
	t.Helper()
	c := evasionDial(t, s, localIP)
	defer c.Close()
	if _, err := c.Write(payload); err != nil {
		t.Fatalf("send from %s: %v", localIP, err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, c)
}

// evasionTokenPayload is the part of a token that makes it unique.
func evasionTokenPayload(tok string) string {
	return strings.Split(tok, ".")[2]
}

// A statement padded past what the audit keeps must not hide what it does:
// up to audit.max_statement_size it is recorded whole, past it refused by
// default (simple and extended protocol), or with truncate recorded as head
// and tail with its full length and hash.
func TestAttackPaddedStatement(t *testing.T) {
	const prefix = "evpad"
	db := prefix + "_orders"
	s := evasionServer(t, prefix, "")
	tok := s.token(t, "dave", "orders", "--access", "rw")
	ctx := context.Background()

	t.Run("recorded-whole", func(t *testing.T) {
		c := s.pgx(t, "dave", "orders", tok)
		stmt := "select 1 /*" + strings.Repeat(" ", 66_000) + "*/; update items set note='X' where id=1"
		if _, err := c.Exec(ctx, stmt).ReadAll(); err != nil {
			t.Fatalf("padded statement: %v", err)
		}
		if note := evasionNote(t, s, db); note != "X" {
			t.Fatalf("the padded UPDATE did not run (note %q); a statement under the limit must run", note)
		}
		id := evasionSessionID(t, s, "dave", c)
		events := evasionAwait(t, s, "dave", id, "query", func(events []api.AuditEvent) bool {
			_, ok := findEvent(events, func(e api.AuditEvent) bool { return strings.Contains(e.Query, "update items set note='X'") })
			return ok
		})
		e, ok := findEvent(events, func(e api.AuditEvent) bool { return strings.Contains(e.Query, "update items set note='X'") })
		if !ok {
			t.Fatalf("the UPDATE hidden behind 66,000 spaces ran upstream, but no query event of the session names it:%s", evasionDescribe(events))
		}
		if e.Query != stmt || evasionDetail(e, "protocol") != "simple" {
			t.Errorf("the padded statement is recorded as %d bytes with detail.protocol %q, want its %d bytes whole and \"simple\"", len(e.Query), evasionDetail(e, "protocol"), len(stmt))
		}
	})

	// checkRefused checks that a statement over the limit was refused with
	// FATAL 54000, never ran, and left a query.refused event with its
	// length and hash.
	checkRefused := func(t *testing.T, c *pgconn.PgConn, err error, stmt, note string) {
		t.Helper()
		want := fmt.Sprintf("keygate: statement of %d bytes refused", len(stmt))
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			t.Errorf("the %d-byte statement was accepted without an error", len(stmt))
		case !errors.As(err, &pgErr):
			t.Errorf("the %d-byte statement failed with %v, want FATAL 54000 %q", len(stmt), err, want)
		case pgErr.Code != "54000" || pgErr.Severity != "FATAL" || !strings.HasPrefix(pgErr.Message, want):
			t.Errorf("the %d-byte statement got %s %s %q, want FATAL 54000 %q", len(stmt), pgErr.Severity, pgErr.Code, pgErr.Message, want)
		}
		if got := evasionNote(t, s, db); got == note {
			t.Errorf("the UPDATE behind %d bytes of padding ran upstream (note is now %q): a statement too long to audit reached the database", len(stmt), got)
		}
		id := evasionSessionID(t, s, "dave", c)
		refused := evasionAwait(t, s, "dave", id, "query.refused", func(events []api.AuditEvent) bool { return len(events) > 0 })
		if len(refused) != 1 {
			queries := evasionAwait(t, s, "dave", id, "query", func([]api.AuditEvent) bool { return true })
			t.Fatalf("query.refused events of the session = %d, want 1:%s\nits query events:%s", len(refused), evasionDescribe(refused), evasionDescribe(queries))
		}
		e := refused[0]
		if got := evasionNumber(e, "length"); got != float64(len(stmt)) {
			t.Errorf("query.refused detail.length = %v, want %d", e.Detail["length"], len(stmt))
		}
		if got, want := evasionDetail(e, "sha256"), evasionSHA256(stmt); got != want {
			t.Errorf("query.refused detail.sha256 = %q, want %q (SHA-256 of the full text)", got, want)
		}
	}

	t.Run("refused-simple", func(t *testing.T) {
		c := s.pgx(t, "dave", "orders", tok)
		stmt := "select 1 /*" + strings.Repeat(" ", 1_100_000) + "*/; update items set note='Y' where id=1"
		_, err := c.Exec(ctx, stmt).ReadAll()
		checkRefused(t, c, err, stmt, "Y")
	})

	t.Run("refused-extended", func(t *testing.T) {
		c := s.pgx(t, "dave", "orders", tok)
		stmt := "/*" + strings.Repeat(" ", 1_100_000) + "*/ update items set note='W' where id=1"
		err := c.ExecParams(ctx, stmt, nil, nil, nil, nil).Read().Err
		checkRefused(t, c, err, stmt, "W")
	})

	t.Run("truncate", func(t *testing.T) {
		const prefix = "evtrunc"
		ts := evasionServer(t, prefix, "audit:\n  max_statement_size: 64KiB\n  oversized_statements: truncate\n")
		c := ts.pgx(t, "dave", "orders", ts.token(t, "dave", "orders", "--access", "rw"))
		pad := strings.Repeat(" ", 70_000)
		stmt := "select 1 /*" + pad + "*/; update items set note='Z' where id=1; select 2 /*" + pad + "*/"
		if _, err := c.Exec(ctx, stmt).ReadAll(); err != nil {
			t.Fatalf("with oversized_statements: truncate, the statement failed: %v", err)
		}
		if note := evasionNote(t, ts, prefix+"_orders"); note != "Z" {
			t.Fatalf("with oversized_statements: truncate, the statement did not run (note %q)", note)
		}
		id := evasionSessionID(t, ts, "dave", c)
		sum := evasionSHA256(stmt)
		events := evasionAwait(t, ts, "dave", id, "query", func(events []api.AuditEvent) bool {
			_, ok := findEvent(events, func(e api.AuditEvent) bool { return evasionDetail(e, "sha256") == sum })
			return ok
		})
		e, ok := findEvent(events, func(e api.AuditEvent) bool { return evasionDetail(e, "sha256") == sum })
		if !ok {
			t.Fatalf("no query event of the session carries the statement's SHA-256 %s:%s", sum, evasionDescribe(events))
		}
		if e.Detail["truncated"] != true {
			t.Errorf("detail.truncated = %v, want true", e.Detail["truncated"])
		}
		if got := evasionNumber(e, "length"); got != float64(len(stmt)) {
			t.Errorf("detail.length = %v, want %d", e.Detail["length"], len(stmt))
		}
		if len(e.Query) > 64<<10 {
			t.Errorf("the recorded text is %d bytes, more than max_statement_size (65536)", len(e.Query))
		}
		if !strings.HasPrefix(e.Query, "select 1 /*") || !strings.HasSuffix(e.Query, "*/") {
			t.Errorf("the recorded text is not the statement's head and tail: starts %q, ends %q", e.Query[:min(20, len(e.Query))], e.Query[max(0, len(e.Query)-20):])
		}
	})
}

// evasionSelect is the harmless statement an attacker prepares by name.
const evasionSelect = "SELECT note FROM items WHERE id = 1"

// evasionCheckExecutions checks that each execution of the prepared
// statement name left exactly one execute event, in order, naming what the
// command tag says ran.
func evasionCheckExecutions(t *testing.T, s *kgServer, c *pgconn.PgConn, name string, tags []string) {
	t.Helper()
	id := evasionSessionID(t, s, "dave", c)
	events := evasionAwait(t, s, "dave", id, "query", func(events []api.AuditEvent) bool {
		return len(evasionExecutes(events)) >= len(tags)
	})
	executes := evasionExecutes(events)
	if len(executes) != len(tags) {
		updates := 0
		for _, tag := range tags {
			if strings.HasPrefix(tag, "UPDATE") {
				updates++
			}
		}
		t.Fatalf("%d executions of %q (command tags %q, %d of them an UPDATE) left %d execute events; the session's query events:%s", len(tags), name, tags, updates, len(executes), evasionDescribe(events))
	}
	for i, tag := range tags {
		e := executes[i]
		if got := evasionDetail(e, "statement"); got != name {
			t.Errorf("execution %d: detail.statement = %q, want %q", i+1, got, name)
		}
		switch {
		case strings.HasPrefix(tag, "UPDATE"):
			if !strings.Contains(strings.ToUpper(e.Query), "UPDATE") && !strings.HasPrefix(e.Query, "[execute prepared statement") {
				t.Errorf("execution %d of %q ran an UPDATE (%s) but the audit says it ran %q: the attacker changed data under a harmless statement's name", i+1, name, tag, e.Query)
			}
		case strings.HasPrefix(tag, "SELECT"):
			if e.Query != evasionSelect {
				t.Errorf("execution %d of %q ran a SELECT (%s) but the audit says it ran %q, want %q", i+1, name, tag, e.Query, evasionSelect)
			}
		default:
			t.Errorf("execution %d of %q ended with command tag %q, want SELECT or UPDATE", i+1, name, tag)
		}
	}
}

// evasionExecuteThrice executes the prepared statement name three times
// and returns the command tags.
func evasionExecuteThrice(t *testing.T, c *pgconn.PgConn, name string) []string {
	t.Helper()
	var tags []string
	for i := range 3 {
		res := c.ExecPrepared(context.Background(), name, nil, nil, nil).Read()
		if res.Err != nil {
			t.Fatalf("execution %d of %q: %v", i+1, name, res.Err)
		}
		tags = append(tags, res.CommandTag.String())
	}
	return tags
}

// A statement prepared through the protocol is re-pointed with SQL
// DEALLOCATE and PREPARE, in plain SQL or in dynamic SQL no text filter can
// read; the audit of each execution must still name what ran. A statement
// made with SQL PREPARE and executed through the protocol is recorded as
// such, never with a text keygate cannot vouch for.
func TestAttackRepointedPreparedStatement(t *testing.T) {
	const prefix = "evprep"
	db := prefix + "_orders"
	s := evasionServer(t, prefix, "")
	tok := s.token(t, "dave", "orders", "--access", "rw")
	ctx := context.Background()

	for _, tc := range []struct{ name, repoint string }{
		{"sql", "DEALLOCATE report; PREPARE report AS UPDATE items SET note = 'Y' WHERE id = 1"},
		{"dynamic-sql", `DO $$ BEGIN EXECUTE 'DEALLOC' || 'ATE report'; EXECUTE 'PREP' || 'ARE report AS UPDATE items SET note = ''Z'' WHERE id = 1'; END $$`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := s.pgx(t, "dave", "orders", tok)
			if _, err := c.Prepare(ctx, "report", evasionSelect, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exec(ctx, tc.repoint).ReadAll(); err != nil {
				t.Logf("re-pointing report failed: %v", err)
			}
			tags := evasionExecuteThrice(t, c, "report")
			t.Logf("executions of report: %q; item 1 is now %q", tags, evasionNote(t, s, db))
			evasionCheckExecutions(t, s, c, "report", tags)
		})
	}

	t.Run("sql-prepare", func(t *testing.T) {
		c := s.pgx(t, "dave", "orders", tok)
		if _, err := c.Exec(ctx, "PREPARE sqlmade AS UPDATE items SET note = 'S' WHERE id = 1").ReadAll(); err != nil {
			t.Fatal(err)
		}
		res := c.ExecPrepared(ctx, "sqlmade", nil, nil, nil).Read()
		if res.Err != nil {
			t.Fatalf("executing the SQL-prepared statement through the protocol: %v", res.Err)
		}
		id := evasionSessionID(t, s, "dave", c)
		events := evasionAwait(t, s, "dave", id, "query", func(events []api.AuditEvent) bool { return len(evasionExecutes(events)) > 0 })
		executes := evasionExecutes(events)
		if len(executes) != 1 {
			t.Fatalf("one execution of sqlmade (%s) left %d execute events; the session's query events:%s", res.CommandTag, len(executes), evasionDescribe(events))
		}
		want := `[execute prepared statement "sqlmade" made with SQL PREPARE`
		if e := executes[0]; !strings.HasPrefix(e.Query, want) || evasionDetail(e, "statement") != "sqlmade" {
			t.Errorf("the execution of sqlmade is recorded as statement %q, text %q; want statement \"sqlmade\" and a text starting %q", evasionDetail(e, "statement"), e.Query, want)
		}
	})
}

// Executing the unnamed statement several times after one Parse leaves one
// execute event per execution, each with the statement's text.
func TestUnnamedStatementExecutedThrice(t *testing.T) {
	s := evasionServer(t, "evunnamed", "")
	c := s.pgx(t, "dave", "orders", s.token(t, "dave", "orders", "--access", "rw"))
	fe := c.Frontend()
	fe.Send(&pgproto3.Parse{Query: "SELECT 1"})
	for range 3 {
		fe.Send(&pgproto3.Bind{})
		fe.Send(&pgproto3.Execute{})
	}
	fe.Send(&pgproto3.Sync{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var completed int
	for _, r := range evasionReceive(t, c) {
		if r.code != "" {
			t.Fatalf("the executions failed: %s %s", r.code, r.message)
		}
		if r.tag != "" {
			completed++
		}
	}
	if completed != 3 {
		t.Fatalf("the upstream completed %d executions, want 3", completed)
	}
	id := evasionSessionID(t, s, "dave", c)
	events := evasionAwait(t, s, "dave", id, "query", func(events []api.AuditEvent) bool { return len(evasionExecutes(events)) >= 3 })
	executes := evasionExecutes(events)
	if len(executes) != 3 {
		t.Fatalf("three executions of the unnamed statement left %d execute events: an attacker can run a statement again and again under one audit line; the session's query events:%s", len(executes), evasionDescribe(events))
	}
	for i, e := range executes {
		if e.Query != "SELECT 1" || evasionDetail(e, "statement") != "" {
			t.Errorf("execution %d recorded as statement %q, text %q; want the unnamed statement, \"SELECT 1\"", i+1, evasionDetail(e, "statement"), e.Query)
		}
	}
	if len(events) != 3 {
		t.Errorf("the session has %d query events, want only the three executions (an executed unnamed Parse is not recorded on its own):%s", len(events), evasionDescribe(events))
	}
}

// A FunctionCall message calls any function by oid, outside SQL: only the
// large-object functions libpq uses are relayed, and recorded; any other,
// such as query_to_xml running a query of the caller's choice, is refused
// without reaching the upstream, and the session goes on.
func TestAttackFunctionCall(t *testing.T) {
	const prefix = "evfunc"
	db := prefix + "_orders"
	s := evasionServer(t, prefix, "")
	if got := s.upstreamQuery(t, db, "SELECT 2924::regproc::text")[0][0]; got != "query_to_xml" {
		t.Fatalf("oid 2924 is %s upstream, not query_to_xml", got)
	}
	tok := s.token(t, "dave", "orders", "--access", "rw")
	c := s.pgx(t, "dave", "orders", tok)
	ctx := context.Background()

	call := func(query string) []evasionReply {
		t.Helper()
		c.Frontend().Send(&pgproto3.FunctionCall{
			Function:       2924,
			ArgFormatCodes: []uint16{0},
			Arguments:      [][]byte{[]byte(query), []byte("true"), []byte("false"), []byte("")},
		})
		if err := c.Frontend().Flush(); err != nil {
			t.Fatal(err)
		}
		return evasionReceive(t, c)
	}
	for _, query := range []string{"select * from customers", "select nextval('probe_seq')"} {
		replies := call(query)
		var refused bool
		for _, r := range replies {
			for _, name := range []string{"Ada", "Grace"} {
				if bytes.Contains(r.data, []byte(name)) {
					t.Errorf("query_to_xml(%q) by FunctionCall returned customer %s: a function ran a query outside the audited statement path", query, name)
				}
			}
			if r.code == "42501" && strings.Contains(r.message, "function call") {
				refused = true
			}
		}
		if !refused {
			t.Errorf("query_to_xml(%q) by FunctionCall got %v, want ErrorResponse 42501 about the function call, then ReadyForQuery", query, replies)
		}
	}
	if got := s.upstreamQuery(t, db, "SELECT is_called FROM probe_seq")[0][0]; got != "f" {
		t.Errorf("probe_seq was advanced: query_to_xml by FunctionCall ran nextval upstream")
	}
	res, err := c.Exec(ctx, "SELECT 1").ReadAll()
	if err != nil || len(res) != 1 || len(res[0].Rows) != 1 || string(res[0].Rows[0][0]) != "1" {
		t.Fatalf("SELECT 1 after the refused function calls: %v %+v", err, res)
	}
	id := evasionSessionID(t, s, "dave", c)
	refusals := evasionAwait(t, s, "dave", id, "query.refused", func(events []api.AuditEvent) bool { return len(events) >= 2 })
	for _, e := range refusals {
		if evasionNumber(e, "oid") != 2924 || evasionDetail(e, "protocol") != "function" {
			t.Errorf("query.refused detail = %v, want oid 2924 and protocol function", e.Detail)
		}
	}
	if len(refusals) != 2 {
		queries := evasionAwait(t, s, "dave", id, "query", func([]api.AuditEvent) bool { return true })
		t.Errorf("two refused function calls left %d query.refused events:%s\nthe session's query events:%s", len(refusals), evasionDescribe(refusals), evasionDescribe(queries))
	}

	// psql's \lo_import calls the large-object functions by FunctionCall.
	file := filepath.Join(t.TempDir(), "upload.txt")
	if err := os.WriteFile(file, bytes.Repeat([]byte("large object content\n"), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := s.psql(t, s.connString("dave", "orders"), tok, `\lo_import `+file)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "lo_import ") {
		t.Fatalf(`\lo_import through keygate: exit %d, stdout %q, stderr %q`, r.code, r.stdout, r.stderr)
	}
	want := map[string]bool{"lo_creat": false, "lo_open": false, "lowrite": false, "lo_close": false}
	var functions []api.AuditEvent
	holdsWithin(10*time.Second, func() bool {
		functions = functions[:0]
		for _, e := range s.audit(t, "--user", "dave", "--type", "query") {
			if e.Type == "query" && evasionDetail(e, "protocol") == "function" && !e.Time.Before(start.Add(-time.Second)) {
				functions = append(functions, e)
			}
		}
		for name := range want {
			want[name] = false
		}
		for _, e := range functions {
			name := evasionDetail(e, "function")
			if name == "lo_create" {
				name = "lo_creat"
			}
			if _, ok := want[name]; ok {
				want[name] = true
			}
		}
		for _, seen := range want {
			if !seen {
				return false
			}
		}
		return true
	})
	var missing []string
	for _, name := range []string{"lo_creat", "lo_open", "lowrite", "lo_close"} {
		if !want[name] {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		t.Errorf(`\lo_import left no query event with detail.protocol "function" for %s (lo_creat stands for lo_create too); function events:%s`, strings.Join(missing, ", "), evasionDescribe(functions))
	}
	for _, e := range functions {
		if evasionDetail(e, "function") == "lowrite" && (!strings.HasPrefix(e.Query, "lowrite(") || !strings.Contains(e.Query, " bytes>") || strings.Contains(e.Query, "large object content")) {
			t.Errorf("lowrite recorded as %q, want its data shown as a length only", e.Query)
		}
		if _, ok := e.Detail["oid"].(float64); !ok {
			t.Errorf("%s event lacks detail.oid: %v", evasionDetail(e, "function"), e.Detail)
		}
	}
}

// A token pasted into any start-up parameter is refused, as in user or
// dbname, and never written to the audit or the log; passed upstream it
// would show in pg_stat_activity to every session there.
func TestTokenInStartupParameter(t *testing.T) {
	const prefix = "evparam"
	s := evasionServer(t, prefix, "")
	password := s.token(t, "dave", "orders", "--access", "rw")
	ctx := context.Background()
	var payloads []string
	// setting is where the token lands upstream if the parameter is relayed.
	for _, tc := range []struct{ param, value, setting string }{
		{"application_name", "%s", "application_name"},
		{"options", "-c application_name=%s", "application_name"},
		{"app.note", "%s", "app.note"},
	} {
		tok := s.token(t, "dave", "orders", "--access", "rw")
		payload := evasionTokenPayload(tok)
		payloads = append(payloads, payload)
		cfg := evasionConfig(t, s, "dave", "orders", password, "")
		cfg.RuntimeParams[tc.param] = fmt.Sprintf(tc.value, tok)
		c, err := pgconn.ConnectConfig(ctx, cfg)
		if err == nil {
			res := c.ExecParams(ctx, "SELECT coalesce(current_setting($1, true), '')", [][]byte{[]byte(tc.setting)}, nil, nil, nil).Read()
			c.Close(ctx)
			if res.Err == nil && strings.HasPrefix(string(res.Rows[0][0]), "v4.public.") {
				t.Errorf("a token in start-up parameter %s was accepted and relayed: upstream, the session's %s holds it, for anyone who can read it there", tc.param, tc.setting)
			} else {
				t.Errorf("a connection with a token in start-up parameter %s was accepted", tc.param)
			}
			continue
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "28P01" || !strings.Contains(pgErr.Message, "start-up parameter") {
			t.Errorf("token in %s: connection failed with %v, want FATAL 28P01 about a start-up parameter", tc.param, err)
		}
	}
	refusals := func() int {
		n := 0
		for _, e := range s.audit(t, "--user", "dave", "--type", "connect.refused") {
			if strings.Contains(e.Reason, "start-up parameter") {
				n++
			}
		}
		return n
	}
	if !holdsWithin(10*time.Second, func() bool { return refusals() >= 3 }) {
		t.Errorf("connect.refused events about a start-up parameter = %d, want 3", refusals())
	}
	audit := s.kg(t, 0, "audit", "--json")
	log, err := os.ReadFile(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	for i, payload := range payloads {
		if strings.Contains(audit, payload) {
			t.Errorf("the token of attempt %d appears in `keygate audit --json`", i+1)
		}
		if bytes.Contains(log, []byte(payload)) {
			t.Errorf("the token of attempt %d appears in the server log", i+1)
		}
	}
}

// Silent connections from one address cannot lock everyone else out: over
// the per-address limit they are refused with 57P03, and a client from
// another address still connects at once. The flood is larger than the
// global limit on connections starting up (1024), so that without a
// per-address limit it would lock everyone out.
func TestPreAuthLimitPerAddress(t *testing.T) {
	const flood = 1100
	s := evasionServer(t, "evpreauth", "")
	tok := s.token(t, "dave", "orders", "--access", "rw")
	var silent []net.Conn
	defer func() {
		for _, c := range silent {
			c.Close()
		}
	}()
	for range flood {
		silent = append(silent, evasionDial(t, s, "127.0.0.1"))
	}

	start := time.Now()
	c, err := pgconn.ConnectConfig(context.Background(), evasionConfig(t, s, "dave", "orders", tok, "127.0.0.2"))
	if err != nil {
		t.Fatalf("%d silent connections from 127.0.0.1 locked out a client from 127.0.0.2: %v", flood, err)
	}
	took := time.Since(start)
	res := c.ExecParams(context.Background(), "SELECT 1", nil, nil, nil, nil).Read()
	c.Close(context.Background())
	if res.Err != nil {
		t.Fatalf("SELECT 1 from 127.0.0.2: %v", res.Err)
	}
	if took > 5*time.Second {
		t.Errorf("a client from 127.0.0.2 took %s to connect while 127.0.0.1 held %d silent connections", took, flood)
	}

	// What each silent connection got: a refusal and a close, or nothing
	// yet (still held, waiting for its start-up packet).
	const perAddress = "too many connections are starting at once from your address"
	var mu sync.Mutex
	var refused, held int
	other := map[string]int{}
	var wg sync.WaitGroup
	for _, sc := range silent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc.SetReadDeadline(time.Now().Add(3 * time.Second))
			b, err := io.ReadAll(sc)
			var ne net.Error
			mu.Lock()
			defer mu.Unlock()
			switch {
			case bytes.Contains(b, []byte("57P03")) && bytes.Contains(b, []byte(perAddress)):
				refused++
			case len(b) == 0 && errors.As(err, &ne) && ne.Timeout():
				held++
			default:
				other[fmt.Sprintf("%q (%v)", b, err)]++
			}
		}()
	}
	wg.Wait()
	t.Logf("of %d silent connections from 127.0.0.1: %d refused per address, %d held, others %v", flood, refused, held, other)
	if refused == 0 {
		t.Errorf("none of %d silent connections from 127.0.0.1 was refused with 57P03 %q: one address can take every pre-authentication slot", flood, perAddress)
	}
	if held > 32 {
		t.Errorf("%d silent connections from one address were held at once, want at most 32", held)
	}
}

// Refusals before authentication are cheap to provoke: an attacker must not
// be able to flood the log or the audit with them. Each kind is still
// recorded, a few at a time per address, with a count of what was left out.
func TestRateLimitedRefusals(t *testing.T) {
	s := evasionServer(t, "evrate", "")
	const unmatched = "cancel request matched no session"
	oversized := binary.BigEndian.AppendUint32(nil, 20000)
	oversized = binary.BigEndian.AppendUint32(oversized, 3<<16)
	afterSSL := binary.BigEndian.AppendUint32(nil, 8)
	afterSSL = binary.BigEndian.AppendUint32(afterSSL, 80877103)
	startup := binary.BigEndian.AppendUint32(nil, 3<<16)
	startup = append(startup, "user\x00dave\x00database\x00orders\x00\x00"...)
	afterSSL = binary.BigEndian.AppendUint32(afterSSL, uint32(4+len(startup)))
	afterSSL = append(afterSSL, startup...)
	// Each kind comes from its own address, so that one kind's limit does
	// not hide the other.
	kinds := []struct{ name, ip string }{{"an oversized start-up packet", "127.0.0.3"}, {"data after an SSLRequest", "127.0.0.4"}}
	payloads := map[string][]byte{"127.0.0.3": oversized, "127.0.0.4": afterSSL}

	countLines := func(substrings ...string) int {
		b, err := os.ReadFile(s.logPath)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, line := range strings.Split(string(b), "\n") {
			all := true
			for _, sub := range substrings {
				all = all && strings.Contains(strings.ToLower(line), sub)
			}
			if all {
				n++
			}
		}
		return n
	}

	for range 200 {
		sendCancel(t, s.pgPort, 12345, []byte{1, 2, 3, 4})
	}
	for _, k := range kinds {
		for range 50 {
			evasionSend(t, s, k.ip, payloads[k.ip])
		}
	}
	burstEnd := time.Now()
	burstLines := countLines(unmatched)

	// The suppressed counts come with the next record after the limit's
	// window, so keep knocking until they show.
	var events []api.AuditEvent
	var cancelSuppressed, refusalSuppressed bool
	var lastKnock time.Time
	holdsWithin(15*time.Second, func() bool {
		if time.Since(lastKnock) > 500*time.Millisecond {
			lastKnock = time.Now()
			sendCancel(t, s.pgPort, 12345, []byte{1, 2, 3, 4})
			for _, k := range kinds {
				evasionSend(t, s, k.ip, payloads[k.ip])
			}
		}
		cancelSuppressed = countLines("cancel", "suppress") > 0
		events = s.audit(t, "--type", "connect.refused")
		refusalSuppressed = false
		for _, e := range events {
			if evasionNumber(e, "suppressed") > 0 {
				refusalSuppressed = true
			}
		}
		return cancelSuppressed && refusalSuppressed
	})

	if burstLines == 0 {
		t.Errorf("200 unmatched cancel requests left no %q line in the log", unmatched)
	}
	if burstLines > 10 {
		t.Errorf("200 unmatched cancel requests left %d %q lines in the log: an attacker can flood the log", burstLines, unmatched)
	}
	if !cancelSuppressed {
		t.Errorf("the log never reported how many %q lines were suppressed", unmatched)
	}
	for _, k := range kinds {
		var inBurst []api.AuditEvent
		for _, e := range events {
			if strings.HasPrefix(e.Client, k.ip+":") && !e.Time.After(burstEnd) {
				inBurst = append(inBurst, e)
			}
		}
		switch {
		case len(inBurst) == 0:
			t.Errorf("50 connections with %s from %s left no connect.refused event: the probing is invisible in the audit", k.name, k.ip)
		case len(inBurst) > 10:
			t.Errorf("50 connections with %s from %s left %d connect.refused events: an attacker can flood the audit", k.name, k.ip, len(inBurst))
		}
		for _, e := range inBurst {
			if e.Reason == "" {
				t.Errorf("connect.refused for %s has no reason: %+v", k.name, e)
			}
		}
	}
	if !refusalSuppressed {
		t.Errorf("no connect.refused event carries detail.suppressed > 0 after the limit dropped some:%s", evasionDescribe(events))
	}
}
