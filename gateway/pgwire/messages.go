package pgwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/gateway"
)

// maxName bounds the statement and portal names keygate reads; PostgreSQL
// keeps 63 bytes of a name.
const maxName = 4096

// maxParseExtra bounds what a Parse message holds besides its text: the
// name and up to 65535 parameter types.
const maxParseExtra = maxName + 2 + 4*65535 + 2

// keepBuffer is the largest message buffer a session keeps between
// messages; a larger one, read for one long statement, is let go, so that
// an idle session does not hold on to its longest statement.
const keepBuffer = 8 << 10

// fromClient relays the client's messages upstream, noting each statement
// for the audit before it is sent (its event is written with its outcome;
// see gateway.SentStatement). It returns when the client
// ends the session or the session is stopped.
func (s *session) fromClient() error {
	var hdr [5]byte
	for {
		if err := s.awaitRoom(); err != nil {
			return err
		}
		if _, err := io.ReadFull(s.cr, hdr[:]); err != nil {
			if s.isStopped() {
				return errStopped
			}
			return err
		}
		if s.isStopped() {
			return errStopped
		}
		typ, n := hdr[0], int(binary.BigEndian.Uint32(hdr[1:]))-4
		if n < 0 || n > maxMessage {
			return fmt.Errorf("%w: message %q of length %d", errProtocol, typ, n+4)
		}
		if s.skipping && typ != 'S' && typ != 'X' {
			if _, err := s.cr.Discard(n); err != nil {
				return err
			}
			continue
		}
		var err error
		switch typ {
		case 'Q':
			err = s.onQuery(hdr, n)
		case 'P':
			err = s.onParse(hdr, n)
		case 'B':
			err = s.onBind(hdr, n)
		case 'E':
			err = s.onExecute(hdr, n)
		case 'D':
			err = s.onDescribe(hdr, n)
		case 'C':
			err = s.onClose(hdr, n)
		case 'S':
			err = s.onSync(hdr, n)
		case 'H':
			s.recordPending()
			err = s.forward(hdr, n)
		case 'F':
			err = s.onFunctionCall(hdr, n)
		case 'X':
			// Not relayed: the session's end decides whether the backend
			// ends or goes back to the person's pool (see finish).
			if err := s.uw.Flush(); err != nil {
				return err
			}
			s.gs.BytesFromClient.Add(int64(n + 5))
			return errClientTerminated
		case 'c', 'f': // CopyDone, CopyFail
			s.st.mu.Lock()
			s.st.clientCopyEnd()
			s.st.mu.Unlock()
			err = s.forward(hdr, n)
		default:
			err = s.forward(hdr, n)
		}
		if err != nil {
			return err
		}
		s.st.writeReady()
		s.gs.BytesFromClient.Add(int64(n + 5))
		if s.cr.Buffered() == 0 || typ == 'H' {
			if err := s.uw.Flush(); err != nil {
				return err
			}
		}
	}
}

// awaitRoom holds the client back while too many of its messages await
// replies: a client that pipelines without reading may not make keygate
// hold its messages without limit.
func (s *session) awaitRoom() error {
	t := s.st
	t.mu.Lock()
	full := len(t.queue) >= maxPending
	t.mu.Unlock()
	if !full {
		return nil
	}
	if err := s.uw.Flush(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.room()
}

// flushIfWaiting sends what the upstream has not yet been sent when a
// message may have to wait for an earlier batch's replies: that batch's
// Sync may still be in the buffer.
func (s *session) flushIfWaiting() error {
	t := s.st
	t.mu.Lock()
	waiting := t.done < t.batch-1
	t.mu.Unlock()
	if waiting {
		return s.uw.Flush()
	}
	return nil
}

// forward relays a message as it is.
func (s *session) forward(hdr [5]byte, n int) error {
	if _, err := s.uw.Write(hdr[:]); err != nil {
		return err
	}
	return errors.Join(copyN(s.uw, s.cr.reader(), n))
}

// read reads a whole message body into the session's buffer.
func (s *session) read(n int) ([]byte, error) {
	if cap(s.buf) < n {
		s.buf = make([]byte, n)
	}
	b := s.buf[:n]
	if _, err := io.ReadFull(s.cr, b); err != nil {
		return nil, err
	}
	return b, nil
}

// doneWithBuffer lets a large buffer go after a long statement.
func (s *session) doneWithBuffer() {
	if cap(s.buf) > keepBuffer {
		s.buf = nil
	}
}

func (s *session) record(text string, detail map[string]any) {
	s.gw.Statement(s.gs, text, detail)
}

// recordPending records the text of an unnamed statement that was parsed
// but not executed: every text that reaches the upstream is in the audit.
func (s *session) recordPending() {
	if p := s.pending; p != nil {
		s.pending = nil
		if !p.recorded {
			p.recorded = true
			s.record(p.audit, withDetail(p.detail, "protocol", "parse", "statement", ""))
		}
	}
}

// withDetail copies base and adds key/value pairs.
func withDetail(base map[string]any, kv ...any) map[string]any {
	d := make(map[string]any, len(base)+len(kv)/2)
	maps.Copy(d, base)
	for i := 0; i+1 < len(kv); i += 2 {
		d[kv[i].(string)] = kv[i+1]
	}
	return d
}

// onQuery handles a simple Query.
func (s *session) onQuery(hdr [5]byte, n int) error {
	s.recordPending()
	if n-1 > s.srv.maxStatement() {
		if !s.srv.TruncateOversized || n-1 > audit.MaxQueryLen {
			return s.refuseOversized("simple", n, false)
		}
		return s.streamQuery(hdr, n)
	}
	body, err := s.read(n)
	if err != nil {
		return err
	}
	defer s.doneWithBuffer()
	if n == 0 || body[n-1] != 0 || bytes.IndexByte(body, 0) != n-1 {
		return fmt.Errorf("%w: malformed Query message", errProtocol)
	}
	text := string(body[:n-1])
	t := s.st
	t.mu.Lock()
	if name, held := t.heldDeallocation(text); held {
		// The upstream never had this name: keygate answers for it.
		t.dropStmt(name)
		t.execs++
		t.push(&op{kind: opReply, ends: true, reply: commandComplete("DEALLOCATE")})
		t.mu.Unlock()
		st := s.gw.StatementSent(s.gs, text, map[string]any{"protocol": "simple", "answered_by": "keygate"})
		st.Add(gateway.Outcome{Tag: "DEALLOCATE"})
		st.Done()
		s.sendReplies()
		return nil
	}
	o := &op{kind: opEnd, sent: s.gw.StatementSent(s.gs, text, map[string]any{"protocol": "simple"}), size: len(text)}
	t.simpleQuery(text, o)
	t.execs++
	t.push(o)
	t.mu.Unlock()
	if _, err := s.uw.Write(hdr[:]); err != nil {
		return err
	}
	_, err = s.uw.Write(body)
	return err
}

func commandComplete(tag string) []byte {
	b, _ := (&pgproto3.CommandComplete{CommandTag: []byte(tag)}).Encode(nil)
	return b
}

// streamQuery relays a Query longer than the audit keeps whole, for an
// operator who chose to run such statements: its event, written with its
// outcome, holds its head and tail, its length and its SHA-256, all known
// before the last byte reaches the upstream (the server runs nothing
// before the whole message is in).
func (s *session) streamQuery(hdr [5]byte, n int) error {
	t := s.st
	t.mu.Lock()
	o := &op{kind: opEnd}
	t.simpleQuery("", o)
	t.execs++
	t.push(o)
	t.mu.Unlock()
	if _, err := s.uw.Write(hdr[:]); err != nil {
		return err
	}
	d := gateway.NewDigest(s.srv.maxStatement())
	if err := errors.Join(copyN(io.MultiWriter(s.uw, d), s.cr.reader(), n-1)); err != nil {
		return err
	}
	last, err := s.cr.ReadByte()
	if err != nil {
		return err
	}
	if last != 0 {
		return fmt.Errorf("%w: malformed Query message", errProtocol)
	}
	text, detail := d.Summary()
	sent := s.gw.StatementSent(s.gs, text, withDetail(detail, "protocol", "simple"))
	// The upstream runs nothing before the last byte, so no reply can
	// have come for o yet.
	t.mu.Lock()
	o.sent = sent
	t.mu.Unlock()
	return s.uw.WriteByte(0)
}

// refuseOversized refuses a statement longer than the audit keeps whole:
// nothing of it reaches the upstream, the refusal is audited with the
// statement's length and SHA-256, and the session ends. parse says the
// message is a Parse, whose text follows the statement name.
func (s *session) refuseOversized(proto string, n int, parse bool) error {
	d := gateway.NewDigest(1 << 10)
	rest := n
	if parse {
		name, err := s.cr.Peek(min(n, maxName+1))
		if err != nil {
			return err
		}
		i := bytes.IndexByte(name, 0)
		if i < 0 {
			return fmt.Errorf("%w: malformed Parse message", errProtocol)
		}
		s.cr.Discard(i + 1)
		rest -= i + 1
	}
	// The text runs to its NUL; what follows (a Parse's types) is not
	// part of it.
	inText := true
	for rest > 0 {
		if _, err := s.cr.Peek(1); err != nil {
			return err
		}
		chunk, _ := s.cr.Peek(min(s.cr.Buffered(), rest))
		if inText {
			if i := bytes.IndexByte(chunk, 0); i >= 0 {
				d.Write(chunk[:i])
				inText = false
			} else {
				d.Write(chunk)
			}
		}
		s.cr.Discard(len(chunk))
		rest -= len(chunk)
	}
	return s.refuseDigested(proto, d)
}

// refuseDigested audits the refusal of the statement d followed, with its
// head, length and SHA-256, and ends the session.
func (s *session) refuseDigested(proto string, d *gateway.Digest) error {
	head, detail := d.Summary()
	reason := fmt.Sprintf("statement of %d bytes refused: the audit keeps statements of up to %s whole (audit.max_statement_size); send it in smaller statements, or ask the operator to set audit.oversized_statements: truncate",
		d.Len(), byteSize(s.srv.maxStatement()))
	delete(detail, "truncated")
	s.gw.RefuseStatement(s.gs, reason, head, withDetail(detail, "protocol", proto))
	s.stop(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "54000", Message: "keygate: " + reason})
	return errStopped
}

// byteSize writes n as the config does: 1MiB, 64KiB, 1000.
func byteSize(n int) string {
	switch {
	case n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// onParse handles a Parse. A named statement is kept by keygate and parsed
// upstream as the unnamed one; an unnamed statement passes through.
func (s *session) onParse(hdr [5]byte, n int) error {
	limit := s.srv.maxStatement()
	if n > audit.MaxQueryLen+maxParseExtra || (n > limit+maxParseExtra && !s.srv.TruncateOversized) {
		return s.refuseOversized("parse", n, true)
	}
	body, err := s.read(n)
	if err != nil {
		return err
	}
	defer s.doneWithBuffer()
	rawName, rest, ok := cstring(body)
	if !ok {
		return fmt.Errorf("%w: malformed Parse message", errProtocol)
	}
	rawText, types, ok := cstring(rest)
	if !ok {
		return fmt.Errorf("%w: malformed Parse message", errProtocol)
	}
	if len(rawText) > limit && !s.srv.TruncateOversized {
		return s.refuseOversizedText("parse", rawText)
	}
	s.recordPending()
	name := string(rawName)
	st := &stmt{name: name, text: string(rawText), types: bytes.Clone(types)}
	st.audit, st.detail = gateway.AuditForm(st.text, limit)
	if err := s.flushIfWaiting(); err != nil {
		return err
	}
	t := s.st
	t.mu.Lock()
	if name != "" {
		existing, err := t.lookup(name)
		if err != nil {
			t.mu.Unlock()
			return err
		}
		var refusal []byte
		switch {
		case existing != nil:
			refusal = errorMessage("42P05", fmt.Sprintf("prepared statement %q already exists", name))
		case t.full(name, len(st.text)):
			refusal = errorMessage("54000", fmt.Sprintf("keygate: a session may hold at most %d prepared statements of %s in all: close some", maxStatements, byteSize(maxStmtBytes)))
		}
		if refusal != nil {
			// Like PostgreSQL, ignore the rest of the batch.
			t.push(&op{kind: opReply, reply: refusal})
			t.mu.Unlock()
			s.skipping = true
			s.sendReplies()
			return nil
		}
	}
	st.batch = t.batch
	o := &op{kind: opParse, size: len(st.text)}
	t.define(st, o)
	t.setUnnamed(st, o)
	t.push(o)
	t.mu.Unlock()
	if name != "" {
		s.record(st.audit, withDetail(st.detail, "protocol", "parse", "statement", name))
	} else {
		s.pending = st
	}
	// Upstream it is the unnamed statement: the body without the name.
	binary.BigEndian.PutUint32(hdr[1:], uint32(4+n-len(rawName)))
	if _, err := s.uw.Write(hdr[:]); err != nil {
		return err
	}
	_, err = s.uw.Write(body[len(rawName):])
	return err
}

// refuseOversizedText refuses a statement already read whole.
func (s *session) refuseOversizedText(proto string, text []byte) error {
	d := gateway.NewDigest(1 << 10)
	d.Write(text)
	return s.refuseDigested(proto, d)
}

// parseMessage is a Parse of s into the upstream's unnamed statement.
func parseMessage(s *stmt) []byte {
	n := 4 + 1 + len(s.text) + 1 + len(s.types)
	b := make([]byte, 0, 1+n)
	b = append(b, 'P')
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = append(b, 0)
	b = append(b, s.text...)
	b = append(b, 0)
	return append(b, s.types...)
}

// closeUnnamed closes the upstream's unnamed statement.
var closeUnnamed = []byte{'C', 0, 0, 0, 6, 'S', 0}

// peekNames reads the NUL-terminated names at the start of a message
// without consuming them.
func (s *session) peekNames(n, count int) ([]string, int, error) {
	head, err := s.cr.Peek(min(n, count*(maxName+1)))
	if err != nil {
		return nil, 0, err
	}
	names := make([]string, count)
	used := 0
	for i := range names {
		name, _, ok := cstring(head[used:])
		if !ok {
			return nil, 0, fmt.Errorf("%w: malformed message or a name longer than %d bytes", errProtocol, maxName)
		}
		names[i] = string(name)
		used += len(name) + 1
	}
	return names, used, nil
}

// onBind handles a Bind: of a statement keygate holds, it binds the
// upstream's unnamed statement, parsing it there first if needed.
func (s *session) onBind(hdr [5]byte, n int) error {
	names, used, err := s.peekNames(n, 2)
	if err != nil {
		return err
	}
	portalName, stmtName := names[0], names[1]
	if err := s.flushIfWaiting(); err != nil {
		return err
	}
	t := s.st
	t.mu.Lock()
	e, err := t.lookup(stmtName)
	if err != nil {
		t.mu.Unlock()
		return err
	}
	p := &portal{name: portalName, stmt: e}
	inject := t.useUnnamed(e, stmtName)
	if e == nil {
		p.sqlName = stmtName
	}
	o := &op{kind: opBind}
	t.bind(p, o)
	t.push(o)
	t.mu.Unlock()
	if _, err := s.uw.Write(inject); err != nil {
		return err
	}
	if e == nil {
		return s.forward(hdr, n)
	}
	binary.BigEndian.PutUint32(hdr[1:], uint32(4+n-len(stmtName)))
	if _, err := s.uw.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := s.uw.Write(append([]byte(portalName), 0, 0)); err != nil {
		return err
	}
	s.cr.Discard(used)
	return errors.Join(copyN(s.uw, s.cr.reader(), n-used))
}

// onExecute records an execution, with the text of what it runs, before
// relaying it.
func (s *session) onExecute(hdr [5]byte, n int) error {
	if n > maxName+5 {
		return fmt.Errorf("%w: malformed Execute message", errProtocol)
	}
	body, err := s.read(n)
	if err != nil {
		return err
	}
	name, rest, ok := cstring(body)
	if !ok || len(rest) != 4 {
		return fmt.Errorf("%w: malformed Execute message", errProtocol)
	}
	portalName := string(name)
	if err := s.flushIfWaiting(); err != nil {
		return err
	}
	t := s.st
	t.mu.Lock()
	p, err := t.lookupPortal(portalName)
	if err != nil {
		t.mu.Unlock()
		return err
	}
	text, detail := executed(p, portalName, t.execs)
	t.execs++
	if p != nil {
		p.lastExec = t.execs
	}
	t.push(&op{kind: opExec, sent: s.gw.StatementSent(s.gs, text, detail), size: len(text)})
	t.mu.Unlock()
	if p != nil && p.stmt != nil && p.stmt == s.pending {
		// The unnamed statement's text goes into the audit with this
		// execution.
		s.pending.recorded = true
		s.pending = nil
	}
	if _, err := s.uw.Write(hdr[:]); err != nil {
		return err
	}
	_, err = s.uw.Write(body)
	return err
}

// executed is what the audit says an Execute of portal p runs. It claims a
// text only when keygate knows it: a statement keygate holds, bound with
// nothing run since (a statement run in between could have closed the
// portal and declared another of the same name in SQL).
func executed(p *portal, name string, execs int64) (string, map[string]any) {
	detail := map[string]any{"protocol": "execute", "portal": name}
	switch {
	case p == nil:
		return fmt.Sprintf("[execute portal %q, which keygate did not bind: a cursor declared in SQL, whose text is in an earlier statement of this session]", name), detail
	case p.stmt == nil && p.sqlName == "":
		return fmt.Sprintf("[execute portal %q bound to the unnamed statement, which does not exist]", name), detail
	case p.stmt == nil:
		detail["statement"] = p.sqlName
		return fmt.Sprintf("[execute prepared statement %q made with SQL PREPARE, whose text is in an earlier statement of this session]", p.sqlName), detail
	}
	detail = withDetail(p.stmt.detail, "protocol", "execute", "portal", name, "statement", p.stmt.name)
	if p.lastExec != execs {
		detail["unverified"] = true
		return fmt.Sprintf("[portal %q may have been declared again in SQL since its Bind; it was bound to:] %s", name, p.stmt.audit), detail
	}
	return p.stmt.audit, detail
}

// readTarget reads a Describe or Close message: 'S' or 'P' and a name.
func (s *session) readTarget(n int, what string) (body []byte, kind byte, name string, err error) {
	if n > maxName+2 {
		return nil, 0, "", fmt.Errorf("%w: malformed %s message", errProtocol, what)
	}
	if body, err = s.read(n); err != nil {
		return nil, 0, "", err
	}
	if len(body) < 2 {
		return nil, 0, "", fmt.Errorf("%w: malformed %s message", errProtocol, what)
	}
	raw, _, ok := cstring(body[1:])
	if !ok {
		return nil, 0, "", fmt.Errorf("%w: malformed %s message", errProtocol, what)
	}
	return body, body[0], string(raw), nil
}

// useUnnamed readies the upstream's unnamed statement for a Bind or
// Describe of the client's statement name, which keygate holds as e (nil
// when it does not), and returns what to send upstream first: a Parse of e
// when the unnamed statement does not hold it, or, for the client's unnamed
// statement that does not exist, a Close that empties the upstream's, so
// that the message fails as PostgreSQL's would. Called with t.mu held.
func (t *tracker) useUnnamed(e *stmt, name string) []byte {
	switch {
	case e != nil && !t.unnamedHolds(e):
		o := &op{kind: opInjected}
		t.setUnnamed(e, o)
		t.push(o)
		return parseMessage(e)
	case e == nil && name == "" && t.unnamed != nil:
		t.push(&op{kind: opInjected})
		t.unnamed = nil
		return closeUnnamed
	}
	return nil
}

// onDescribe handles a Describe: of a statement keygate holds, it describes
// the upstream's unnamed statement, parsing it there first if needed.
func (s *session) onDescribe(hdr [5]byte, n int) error {
	body, kind, name, err := s.readTarget(n, "Describe")
	if err != nil {
		return err
	}
	t := s.st
	if kind != 'S' {
		t.mu.Lock()
		t.push(&op{kind: opDescribe})
		t.mu.Unlock()
		return s.write(hdr, body)
	}
	if err := s.flushIfWaiting(); err != nil {
		return err
	}
	t.mu.Lock()
	e, err := t.lookup(name)
	if err != nil {
		t.mu.Unlock()
		return err
	}
	inject := t.useUnnamed(e, name)
	t.push(&op{kind: opDescribe})
	t.mu.Unlock()
	if _, err := s.uw.Write(inject); err != nil {
		return err
	}
	if e != nil {
		return s.write([5]byte{'D', 0, 0, 0, 6}, []byte{'S', 0})
	}
	return s.write(hdr, body)
}

// onClose handles a Close. Closing a statement keygate holds forgets it;
// the upstream closes its unnamed statement instead, which answers with
// the CloseComplete the client expects, in its place.
func (s *session) onClose(hdr [5]byte, n int) error {
	body, kind, name, err := s.readTarget(n, "Close")
	if err != nil {
		return err
	}
	if err := s.flushIfWaiting(); err != nil {
		return err
	}
	t := s.st
	t.mu.Lock()
	o := &op{kind: opClose}
	held := false
	switch kind {
	case 'S':
		e, err := t.lookup(name)
		if err != nil {
			t.mu.Unlock()
			return err
		}
		if held = e != nil; held {
			t.closeStmt(name, o)
			t.unnamed = nil
		}
	case 'P':
		t.closePortal(name, o)
	}
	t.push(o)
	t.mu.Unlock()
	if held {
		return s.write([5]byte{'C', 0, 0, 0, 6}, []byte{'S', 0})
	}
	return s.write(hdr, body)
}

// onSync ends a batch.
func (s *session) onSync(hdr [5]byte, n int) error {
	s.recordPending()
	t := s.st
	t.mu.Lock()
	t.push(&op{kind: opEnd, sync: true})
	t.mu.Unlock()
	s.skipping = false
	return s.forward(hdr, n)
}

// write sends a message whose body is in b.
func (s *session) write(hdr [5]byte, b []byte) error {
	if _, err := s.uw.Write(hdr[:]); err != nil {
		return err
	}
	_, err := s.uw.Write(b)
	return err
}

// largeObject describes a large-object function libpq calls with a
// FunctionCall message: the only ones keygate relays.
type largeObject struct {
	name string
	args string // i: int4, l: int8, o: oid, b: bytea
}

// largeObjects are libpq's large-object functions by their fixed OIDs in
// pg_catalog.
var largeObjects = map[uint32]largeObject{
	715:  {"lo_create", "o"},
	952:  {"lo_open", "oi"},
	953:  {"lo_close", "i"},
	954:  {"loread", "ii"},
	955:  {"lowrite", "ib"},
	956:  {"lo_lseek", "iii"},
	957:  {"lo_creat", "i"},
	958:  {"lo_tell", "i"},
	964:  {"lo_unlink", "o"},
	1004: {"lo_truncate", "ii"},
	3170: {"lo_lseek64", "ili"},
	3171: {"lo_tell64", "i"},
	3172: {"lo_truncate64", "il"},
}

// onFunctionCall relays the large-object calls libpq makes, recorded with
// the function's name and arguments, and refuses every other FunctionCall:
// one runs any function by OID outside SQL (query_to_xml runs any query),
// and SELECT does the same with its text in the audit.
func (s *session) onFunctionCall(hdr [5]byte, n int) error {
	s.recordPending()
	head, err := s.cr.Peek(min(n, 1<<10))
	if err != nil {
		return err
	}
	if len(head) < 4 {
		return fmt.Errorf("%w: malformed FunctionCall message", errProtocol)
	}
	oid := binary.BigEndian.Uint32(head)
	fn, ok := largeObjects[oid]
	if !ok {
		if _, err := s.cr.Discard(n); err != nil {
			return err
		}
		reason := fmt.Sprintf("function call of OID %d refused: keygate relays only the large-object functions libpq uses; call other functions with SELECT", oid)
		s.gw.RefuseStatement(s.gs, reason, "", map[string]any{"protocol": "function", "oid": oid})
		t := s.st
		t.mu.Lock()
		t.push(&op{kind: opReply, ends: true, reply: errorMessage("42501", "keygate: "+reason)})
		t.mu.Unlock()
		s.sendReplies()
		return nil
	}
	s.record(fn.describe(head), map[string]any{"protocol": "function", "function": fn.name, "oid": oid})
	t := s.st
	t.mu.Lock()
	t.execs++
	t.push(&op{kind: opEnd})
	t.mu.Unlock()
	return s.forward(hdr, n)
}

// describe writes a call as lo_open(16390, 131072) from the start of its
// FunctionCall message body (head). Binary integers are shown as numbers,
// text arguments as text (32 bytes at most), bytea as its length.
func (fn largeObject) describe(head []byte) string {
	var args []string
	b := head[4:]
	u16 := func() (int, bool) {
		if len(b) < 2 {
			return 0, false
		}
		v := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		return v, true
	}
	nformats, ok := u16()
	formats := make([]int, 0, nformats)
	for i := 0; ok && i < nformats; i++ {
		var f int
		f, ok = u16()
		formats = append(formats, f)
	}
	nargs, ok2 := u16()
	ok = ok && ok2
	// The function's own arguments, no more: the server refuses a call
	// with others, and the audit need not spell out thousands of them.
	for i := 0; ok && i < nargs && i < len(fn.args); i++ {
		if len(b) < 4 {
			ok = false
			break
		}
		size := int(int32(binary.BigEndian.Uint32(b)))
		b = b[4:]
		kind := byte('?')
		if i < len(fn.args) {
			kind = fn.args[i]
		}
		binaryFormat := len(formats) == 1 && formats[0] == 1 || i < len(formats) && len(formats) > 1 && formats[i] == 1
		switch {
		case size < 0:
			args = append(args, "NULL")
		case kind == 'b':
			args = append(args, fmt.Sprintf("<%d bytes>", size))
			ok = false // the data may run past head; nothing follows it in lowrite
		case size > len(b):
			ok = false
		case binaryFormat && size == 4:
			if kind == 'o' {
				args = append(args, fmt.Sprint(binary.BigEndian.Uint32(b)))
			} else {
				args = append(args, fmt.Sprint(int32(binary.BigEndian.Uint32(b))))
			}
		case binaryFormat && size == 8:
			args = append(args, fmt.Sprint(int64(binary.BigEndian.Uint64(b))))
		case binaryFormat:
			args = append(args, fmt.Sprintf("<%d bytes>", size))
		default:
			args = append(args, fmt.Sprintf("%q", truncateText(string(b[:size]), 32)))
		}
		if size > 0 && size <= len(b) {
			b = b[size:]
		}
	}
	if len(args) < nargs {
		args = append(args, "…")
	}
	return fn.name + "(" + strings.Join(args, ", ") + ")"
}

// truncateText cuts s to at most n bytes at a rune boundary.
func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
