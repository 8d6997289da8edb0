package pgwire

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/keygate/keygate/audit"
)

// statements decides what the audit log says a session ran.
//
// Every Query and every Parse is recorded as it arrives: the text the client
// sent is what matters, whether or not the server accepts it. A named
// prepared statement is also recorded at each execution, when the server
// confirms the Bind, with the text of the Parse the server confirmed. The
// client's word is never taken for what a name refers to: a Parse the server
// rejects (a duplicate name) or a Close it skips (after an error) must not
// make the log name the wrong statement.
//
// To know which Parse, Bind and Close the server carried out, the messages
// that get their own completion (ParseComplete, BindComplete, CloseComplete)
// are queued in the order they were sent, with Sync and Query as batch
// boundaries, and matched against the server's replies in order. After an
// ErrorResponse the server skips the rest of the batch up to the next Sync,
// and so does the queue.
type statements struct {
	record func(text string)

	mu      sync.Mutex
	pending []pendingOp
	bytes   int  // text held in pending
	lost    bool // the queue overflowed; executions are recorded by name only
	// prepared maps the statement names the server confirmed to their text.
	// Only the upstream reader touches it.
	prepared map[string]string
}

type pendingOp struct {
	kind byte // 'P' Parse, 'B' Bind, 'C' Close, 'S' Sync or Query
	name string
	text string
	stmt bool // Close: of a statement rather than a portal
}

// Bounds on what a session keeps: a client that pipelines without reading
// replies may not make keygate hold its messages without limit.
const (
	maxPending      = 1 << 16
	maxPendingBytes = 16 << 20
	maxPrepared     = 4096
)

// client handles a message from the client whose body starts with body (the
// whole body is n bytes).
func (st *statements) client(typ byte, body []byte, n int) {
	switch typ {
	case 'Q':
		st.record(statementText(body, n))
		st.push(pendingOp{kind: 'S'})
	case 'P':
		name, rest, ok := cstring(body)
		if !ok {
			return
		}
		text := statementText(rest, n-len(name)-1)
		st.record(text)
		op := pendingOp{kind: 'P', name: string(name)}
		if len(name) > 0 {
			op.text = text
		}
		st.push(op)
	case 'B':
		_, rest, ok := cstring(body) // portal
		if !ok {
			return
		}
		stmt, _, ok := cstring(rest)
		if !ok {
			return
		}
		if len(stmt) > 0 && st.isLost() {
			// Past what keygate tracks: record the execution by name.
			st.record(fmt.Sprintf("[execute prepared statement %q]", stmt))
		}
		st.push(pendingOp{kind: 'B', name: string(stmt)})
	case 'C':
		if len(body) < 2 {
			return
		}
		name, _, ok := cstring(body[1:])
		if !ok {
			return
		}
		st.push(pendingOp{kind: 'C', name: string(name), stmt: body[0] == 'S'})
	case 'S':
		st.push(pendingOp{kind: 'S'})
	case 'F':
		// FunctionCall: a function by oid, outside SQL. It ends like a
		// Query, with ReadyForQuery.
		if len(body) >= 4 {
			st.record(fmt.Sprintf("[function call: oid %d]", binary.BigEndian.Uint32(body)))
		}
		st.push(pendingOp{kind: 'S'})
	}
}

func (st *statements) push(op pendingOp) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.lost {
		return
	}
	if len(st.pending) >= maxPending || st.bytes+len(op.text) > maxPendingBytes {
		st.lost = true
		st.pending, st.bytes = nil, 0
		return
	}
	st.pending = append(st.pending, op)
	st.bytes += len(op.text)
}

// pop takes the oldest pending message if it is of kind; a mismatch means
// the queue no longer matches the conversation, and tracking stops.
func (st *statements) pop(kind byte) (pendingOp, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.lost {
		return pendingOp{}, false
	}
	if len(st.pending) == 0 || st.pending[0].kind != kind {
		st.lost = true
		st.pending, st.bytes = nil, 0
		return pendingOp{}, false
	}
	op := st.pending[0]
	st.pending = st.pending[1:]
	st.bytes -= len(op.text)
	return op, true
}

// skipBatch drops what the server skips after an error: everything up to
// the next Sync, which stays. With through, the Sync goes too.
func (st *statements) skipBatch(through bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for len(st.pending) > 0 && st.pending[0].kind != 'S' {
		st.bytes -= len(st.pending[0].text)
		st.pending = st.pending[1:]
	}
	if through && len(st.pending) > 0 {
		st.pending = st.pending[1:]
	}
}

// server handles a message type from the server.
func (st *statements) server(typ byte) {
	switch typ {
	case '1': // ParseComplete
		if op, ok := st.pop('P'); ok && op.name != "" {
			if st.prepared == nil {
				st.prepared = map[string]string{}
			}
			if len(st.prepared) < maxPrepared {
				st.prepared[op.name] = op.text
			}
		}
	case '2': // BindComplete
		// The unnamed statement was recorded at its Parse.
		if op, ok := st.pop('B'); ok && op.name != "" {
			text, known := st.prepared[op.name]
			if !known {
				// Prepared with SQL PREPARE (recorded then), or one
				// too many to remember.
				text = fmt.Sprintf("[execute prepared statement %q]", op.name)
			}
			st.record(text)
		}
	case '3': // CloseComplete
		if op, ok := st.pop('C'); ok && op.stmt {
			delete(st.prepared, op.name)
		}
	case 'E': // ErrorResponse: the rest of the batch is skipped
		st.skipBatch(false)
	case 'Z': // ReadyForQuery ends a batch
		st.skipBatch(true)
	}
}

func (st *statements) isLost() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.lost
}

// statementText is the NUL-terminated text at the start of b, where b may
// hold only a prefix of a longer message. A statement longer than the audit
// keeps is cut here, saying so.
func statementText(b []byte, n int) string {
	end := len(b)
	terminated := false
	for i, c := range b {
		if c == 0 {
			end, terminated = i, true
			break
		}
	}
	if end <= audit.MaxQueryLen && (terminated || n <= len(b)) {
		return string(b[:end])
	}
	keep := min(end, audit.MaxQueryLen-64)
	for keep > 0 && keep < len(b) && b[keep]&0xC0 == 0x80 {
		keep--
	}
	if terminated {
		return string(b[:keep]) + fmt.Sprintf("…[statement of %d bytes; first %d kept]", end, keep)
	}
	return string(b[:keep]) + fmt.Sprintf("…[statement of more than %d bytes; first %d kept]", end, keep)
}
