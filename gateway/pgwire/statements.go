package pgwire

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strings"
	"sync"

	"github.com/keygate/keygate/gateway"
)

// tracker keeps the state of the extended query protocol that the audit
// depends on, and decides what the upstream sees.
//
// keygate keeps a client's prepared statements itself, with their text,
// and runs every one of them upstream as the unnamed statement: before a
// Bind or Describe of a statement the upstream's unnamed statement does not
// hold, keygate sends the upstream a Parse of it. The reason is that
// PostgreSQL shares one namespace between protocol-level prepared statements
// and SQL's PREPARE, and SQL (even dynamic SQL in a DO block, which no text
// filter can see) can DEALLOCATE a name and PREPARE it again as something
// else. Had keygate passed names through, the audit would then claim a
// statement's text while another ran. The unnamed statement cannot be
// reached from SQL, so what an Execute runs is always the text keygate
// recorded. The price is a parse upstream per execution of a named
// statement, which PostgreSQL would otherwise plan once.
//
// Portals keep their names, so that a client can fetch from several at
// once; SQL can close and re-declare a portal too, so an Execute is
// recorded as certain only when nothing ran between the portal's Bind and
// it.
//
// The state is changed in the order the client sends messages (that is
// when keygate decides what to send and record), and confirmed in the
// order the server replies: each message that gets its own completion
// (ParseComplete, BindComplete, CloseComplete), or that keygate answers
// itself, is queued as an op; Sync, Query and FunctionCall end a batch.
// After an ErrorResponse the server skips the rest of the batch, and the
// queue undoes what the skipped messages changed. A message that refers to
// a statement or portal defined in an earlier batch whose replies have not
// arrived waits for them, so that keygate never acts on a change the
// server may have refused.
type tracker struct {
	mu   sync.Mutex
	cond *sync.Cond

	queue []*op
	// batch numbers the client's batches; done is the newest batch whose
	// ReadyForQuery has arrived.
	batch, done int64
	closed      bool

	stmts   map[string]*stmt
	portals map[string]*portal
	// unnamed is what the upstream's unnamed statement holds, as of the
	// batch unnamedBatch; nil when unknown or empty.
	unnamed      *stmt
	unnamedBatch int64
	// execs counts statements sent to run, so that a portal knows whether
	// anything ran since its Bind.
	execs int64
	// txStatus is the transaction status of the last ReadyForQuery.
	txStatus byte
	// stmtBytes is the text held in stmts.
	stmtBytes int
	// finished holds the statements of the batch being replied to whose
	// results came: their events are written at the batch's
	// ReadyForQuery, since an error at its end (a failed commit) is
	// theirs too.
	finished []*gateway.SentStatement
}

// stmt is a prepared statement as the client sees it.
type stmt struct {
	name  string
	text  string
	types []byte // the Parse message's parameter type section
	batch int64
	// audit is what the audit log says of the text, and its detail: the
	// text itself, or its head and tail with length and hash when it is
	// longer than keygate keeps.
	audit  string
	detail map[string]any
	// recorded is set once an unnamed statement's text is in the audit.
	recorded bool
}

// portal is a portal as keygate bound it.
type portal struct {
	name string
	// stmt is what it was bound to; nil for a statement keygate did not
	// prepare (made with SQL PREPARE), named sqlName.
	stmt     *stmt
	sqlName  string
	batch    int64
	lastExec int64
}

// op is a message that awaits a reply, or a reply keygate gives itself.
type op struct {
	kind  byte // opParse, opInjected, opBind, opClose, opEnd, opReply
	batch int64
	// undo reverts what the message changed, should the server skip it.
	undo func()
	// reply is what keygate answers itself for an opReply.
	reply []byte
	// ends says an opReply ends its batch (a refused FunctionCall): a
	// ReadyForQuery follows the reply.
	ends bool
	// succeeded runs when an opEnd's batch ends without an error; failed
	// records that one came.
	succeeded func()
	failed    bool
	// sent is the statement an opExec runs, or the text an opEnd of a
	// simple Query runs, awaiting its outcome.
	sent *gateway.SentStatement
}

// Kinds of op.
const (
	opParse    = 'P' // the client's Parse: ParseComplete is relayed
	opInjected = 'p' // keygate's own Parse or Close: its completion is not
	opBind     = 'B'
	opClose    = 'C'
	opExec     = 'E' // Execute: ends with CommandComplete, PortalSuspended, EmptyQueryResponse or an error
	opEnd      = 'S' // Sync, Query or FunctionCall: ends with ReadyForQuery
	opReply    = 'R' // keygate's own reply, sent when its turn comes
)

// Bounds on what one session may make keygate hold.
const (
	maxPending    = 1 << 16
	maxStatements = 10000
	maxStmtBytes  = 64 << 20
)

// errDesync means the server's replies no longer match what keygate sent:
// the session cannot go on safely.
var errDesync = errors.New("keygate lost track of the protocol conversation")

func newTracker() *tracker {
	t := &tracker{stmts: map[string]*stmt{}, portals: map[string]*portal{}, batch: 1, txStatus: 'I'}
	t.cond = sync.NewCond(&t.mu)
	return t
}

// push queues an op of the current batch; ending ops close the batch.
func (t *tracker) push(o *op) {
	o.batch = t.batch
	t.queue = append(t.queue, o)
	if o.kind == opEnd || (o.kind == opReply && o.ends) {
		t.batch++
	}
}

// unconfirmed reports whether something defined in batch b may still be
// undone: b is an earlier batch whose replies have not all arrived.
func (t *tracker) unconfirmed(b int64) bool { return b < t.batch && b > t.done }

// await waits until batch b is confirmed. Called with t.mu held.
func (t *tracker) await(b int64) error {
	for t.unconfirmed(b) && !t.closed {
		t.cond.Wait()
	}
	if t.closed {
		return errClosed
	}
	return nil
}

var errClosed = errors.New("session is ending")

// room waits until the queue has room. Called with t.mu held.
func (t *tracker) room() error {
	for len(t.queue) >= maxPending && !t.closed {
		t.cond.Wait()
	}
	if t.closed {
		return errClosed
	}
	return nil
}

// close wakes everyone waiting: the session is ending.
func (t *tracker) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.cond.Broadcast()
}

// idle reports whether every message sent upstream has had its reply: the
// backend waits for the client, and ends cleanly on a Terminate.
func (t *tracker) idle() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.queue) == 0
}

// lookup finds a statement keygate holds, once its definition is certain.
// Called with t.mu held.
func (t *tracker) lookup(name string) (*stmt, error) {
	s := t.stmts[name]
	if s == nil || !t.unconfirmed(s.batch) {
		return s, nil
	}
	if err := t.await(s.batch); err != nil {
		return nil, err
	}
	return t.stmts[name], nil
}

// lookupPortal finds a portal keygate bound, once its binding is certain.
// Called with t.mu held.
func (t *tracker) lookupPortal(name string) (*portal, error) {
	p := t.portals[name]
	if p == nil || !t.unconfirmed(p.batch) {
		return p, nil
	}
	if err := t.await(p.batch); err != nil {
		return nil, err
	}
	return t.portals[name], nil
}

// unnamedHolds reports whether the upstream's unnamed statement certainly
// holds s. Called with t.mu held.
func (t *tracker) unnamedHolds(s *stmt) bool {
	return t.unnamed == s && !t.unconfirmed(t.unnamedBatch)
}

// setUnnamed records that a Parse of s into the upstream's unnamed
// statement was sent, as op o. Called with t.mu held.
func (t *tracker) setUnnamed(s *stmt, o *op) {
	prev := o.undo
	t.unnamed, t.unnamedBatch = s, t.batch
	o.undo = func() {
		if prev != nil {
			prev()
		}
		// A Parse that failed or was skipped leaves the unnamed
		// statement empty or as it was: not knowing which, keygate
		// parses again next time.
		if t.unnamed == s {
			t.unnamed = nil
		}
	}
}

// define records a Parse of the client's statement s, as op o. Called with
// t.mu held.
func (t *tracker) define(s *stmt, o *op) {
	prev := t.stmts[s.name]
	t.putStmt(s)
	o.undo = func() {
		if t.stmts[s.name] == s {
			t.dropStmt(s.name)
			if prev != nil {
				t.putStmt(prev)
			}
		}
	}
}

func (t *tracker) putStmt(s *stmt) {
	if old := t.stmts[s.name]; old != nil {
		t.stmtBytes -= len(old.text)
	}
	t.stmts[s.name] = s
	t.stmtBytes += len(s.text)
}

func (t *tracker) dropStmt(name string) {
	if old := t.stmts[name]; old != nil {
		t.stmtBytes -= len(old.text)
		delete(t.stmts, name)
	}
}

// full reports whether a new statement of n bytes would pass the bounds.
// Called with t.mu held.
func (t *tracker) full(name string, n int) bool {
	_, exists := t.stmts[name]
	return (!exists && len(t.stmts) >= maxStatements) || t.stmtBytes+n > maxStmtBytes
}

// bind records a Bind of portal p, as op o. Called with t.mu held.
func (t *tracker) bind(p *portal, o *op) {
	p.batch, p.lastExec = t.batch, t.execs
	prev := t.portals[p.name]
	t.portals[p.name] = p
	o.undo = func() {
		if t.portals[p.name] == p {
			delete(t.portals, p.name)
			if prev != nil {
				t.portals[p.name] = prev
			}
		}
	}
}

// closeStmt records a Close of the client's statement name, as op o.
// Called with t.mu held.
func (t *tracker) closeStmt(name string, o *op) {
	prev := t.stmts[name]
	t.dropStmt(name)
	o.undo = func() {
		if prev != nil && t.stmts[name] == nil {
			t.putStmt(prev)
		}
	}
}

// closePortal records a Close of portal name, as op o. Called with t.mu
// held.
func (t *tracker) closePortal(name string, o *op) {
	prev := t.portals[name]
	delete(t.portals, name)
	o.undo = func() {
		if prev != nil && t.portals[name] == nil {
			t.portals[name] = prev
		}
	}
}

// simpleQuery records what a Query message, sent as op o, does to the
// protocol state: PostgreSQL drops the unnamed statement and portal; and
// if the query succeeds, the statements that SQL DEALLOCATE or DISCARD
// name go too. Called with t.mu held.
func (t *tracker) simpleQuery(text string, o *op) {
	t.dropStmt("")
	delete(t.portals, "")
	t.unnamed = nil
	names := deallocated(text)
	if len(names) == 0 {
		return
	}
	// The statements as they are now: one the client prepares again
	// meanwhile is not dropped.
	held := maps.Clone(t.stmts)
	o.succeeded = func() {
		for _, name := range names {
			for n, s := range held {
				if (name == "" || name == n) && t.stmts[n] == s {
					t.dropStmt(n)
				}
			}
		}
	}
}

// deallocation matches SQL that removes prepared statements: DEALLOCATE
// [PREPARE] name|ALL and DISCARD ALL. It only keeps keygate's statements
// in step with what a client expects; the audit does not depend on it.
var deallocation = regexp.MustCompile(`(?is)\b(?:DEALLOCATE\s+(?:PREPARE\s+)?(?:(ALL)\b|"((?:[^"]|"")+)"|([a-z_][a-z0-9_$]*))|DISCARD\s+(ALL)\b)`)

// deallocated lists the statement names text deallocates; "" stands for
// all of them.
func deallocated(text string) []string {
	if !mayDeallocate(text) {
		return nil
	}
	var out []string
	for _, m := range deallocation.FindAllStringSubmatch(text, -1) {
		switch {
		case m[1] != "" || m[4] != "":
			out = append(out, "")
		case m[2] != "":
			out = append(out, strings.ReplaceAll(m[2], `""`, `"`))
		default:
			out = append(out, strings.ToLower(m[3]))
		}
	}
	return out
}

// mayDeallocate is a quick look for the words the deallocation patterns
// need, so that the regular expressions run only on the rare statement
// that has them: every simple Query passes here.
func mayDeallocate(text string) bool {
	return containsFold(text, "dealloc") || containsFold(text, "discard")
}

// containsFold reports whether s contains the lower-case ASCII word w in
// any case, without allocating.
func containsFold(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if s[i]|0x20 != w[0] {
			continue
		}
		j := 1
		for j < len(w) && s[i+j]|0x20 == w[j] {
			j++
		}
		if j == len(w) {
			return true
		}
	}
	return false
}

// soleDeallocate matches a Query that is nothing but DEALLOCATE of one
// name, which keygate answers itself for a statement it holds: the
// upstream never had that name.
var soleDeallocate = regexp.MustCompile(`(?is)^\s*DEALLOCATE\s+(?:PREPARE\s+)?(?:"((?:[^"]|"")+)"|([a-z_][a-z0-9_$]*))\s*;?\s*$`)

// heldDeallocation reports whether text only deallocates a statement
// keygate holds, and its name. Called with t.mu held.
func (t *tracker) heldDeallocation(text string) (string, bool) {
	if len(t.stmts) == 0 || !mayDeallocate(text) {
		return "", false
	}
	m := soleDeallocate.FindStringSubmatch(text)
	if m == nil {
		return "", false
	}
	name := strings.ReplaceAll(m[1], `""`, `"`)
	if m[1] == "" {
		name = strings.ToLower(m[2])
		if name == "all" {
			return "", false
		}
	}
	_, held := t.stmts[name]
	return name, held
}

// reply tells the tracker of a message from the upstream before it is
// relayed: it says whether the client should see it (keygate's own
// messages' completions are not relayed), and hands back the statements
// whose outcomes are now complete, for the caller to audit. status is
// ReadyForQuery's transaction status; body is a CommandComplete's or an
// ErrorResponse's body, nil when it was too long to read.
func (t *tracker) reply(typ, status byte, body []byte) (relay bool, done []*gateway.SentStatement, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch typ {
	case '1': // ParseComplete
		o, err := t.pop(opParse, opInjected)
		return err == nil && o.kind == opParse, nil, err
	case '2': // BindComplete
		_, err := t.pop(opBind)
		return err == nil, nil, err
	case '3': // CloseComplete
		o, err := t.pop(opClose, opInjected)
		return err == nil && o.kind == opClose, nil, err
	case 'C': // CommandComplete
		t.result(gateway.Outcome{Tag: commandTag(body)})
	case 's': // PortalSuspended: the Execute's row limit was reached
		t.result(gateway.Outcome{Suspended: true})
	case 'I': // EmptyQueryResponse
		t.result(gateway.Outcome{Empty: true})
	case 'E': // ErrorResponse: the server skips the rest of the batch
		t.failure(errorOutcome(body))
		if len(t.queue) > 0 && t.queue[0].kind == opEnd {
			t.queue[0].failed = true
		}
		t.skip()
	case 'Z': // ReadyForQuery
		o, err := t.pop(opEnd)
		if err != nil {
			return false, nil, err
		}
		if o.succeeded != nil && !o.failed {
			o.succeeded()
		}
		t.ended(o.batch, status)
		done, t.finished = t.finished, nil
		if o.sent != nil {
			done = append(done, o.sent)
		}
	}
	return true, done, nil
}

// result gives the outcome of one statement to the Execute it ends, or to
// the simple Query running it.
func (t *tracker) result(out gateway.Outcome) {
	if len(t.queue) == 0 {
		return
	}
	switch o := t.queue[0]; o.kind {
	case opExec:
		t.queue[0] = nil
		t.queue = t.queue[1:]
		t.cond.Broadcast()
		o.sent.Add(out)
		t.finished = append(t.finished, o.sent)
	case opEnd:
		if o.sent != nil {
			o.sent.Add(out)
		}
	}
}

// failure gives an error to the statement it stopped: the first Execute
// the server now skips (a failed Parse or Bind is its statement's
// failure), while later Executes of the batch did not run at all. An error
// with no Execute left in the batch belongs to the simple Query running,
// or to the batch's last finished statement: its commit failed.
func (t *tracker) failure(out gateway.Outcome) {
	hit := false
	for _, o := range t.queue {
		if o.kind == opEnd || (o.kind == opReply && o.ends) {
			if !hit {
				switch {
				case o.kind == opEnd && o.sent != nil:
					o.sent.Add(out)
				case len(t.finished) > 0:
					t.finished[len(t.finished)-1].Add(out)
				}
			}
			return
		}
		if o.kind != opExec {
			continue
		}
		if hit {
			o.sent.Add(gateway.Outcome{Skipped: "an earlier message of its batch failed"})
		} else {
			o.sent.Add(out)
			hit = true
		}
		t.finished = append(t.finished, o.sent)
	}
}

// unfinished takes every statement still waiting for its result or for
// its batch to end: the session is ending and they will not get one.
func (t *tracker) unfinished() (pending, finished []*gateway.SentStatement) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, o := range t.queue {
		if o.sent != nil {
			pending = append(pending, o.sent)
			o.sent = nil
		}
	}
	finished, t.finished = t.finished, nil
	return pending, finished
}

// commandTag is the tag of a CommandComplete body.
func commandTag(body []byte) string {
	tag, _, ok := cstring(body)
	if !ok {
		return ""
	}
	return string(tag)
}

// maxErrorText bounds the error message an outcome keeps.
const maxErrorText = 1024

// errorOutcome reads the SQLSTATE and message of an ErrorResponse body.
func errorOutcome(body []byte) gateway.Outcome {
	var out gateway.Outcome
	for len(body) > 1 {
		code := body[0]
		v, rest, ok := cstring(body[1:])
		if !ok {
			break
		}
		switch code {
		case 'C':
			out.SQLState = string(v)
		case 'M':
			if len(v) > maxErrorText {
				v = v[:maxErrorText]
			}
			out.Error = strings.ToValidUTF8(string(v), "\uFFFD")
		}
		body = rest
	}
	if out.SQLState == "" {
		out.SQLState = "XX000"
		if out.Error == "" {
			out.Error = "the upstream's error could not be read"
		}
	}
	return out
}

// pop takes the oldest op, which must be of one of kinds.
func (t *tracker) pop(kinds ...byte) (*op, error) {
	if len(t.queue) == 0 {
		return nil, fmt.Errorf("%w: a reply to nothing", errDesync)
	}
	o := t.queue[0]
	for _, k := range kinds {
		if o.kind == k {
			t.queue[0] = nil
			t.queue = t.queue[1:]
			t.cond.Broadcast()
			return o, nil
		}
	}
	return nil, fmt.Errorf("%w: a %q reply to a %q message", errDesync, kinds[0], o.kind)
}

// skip drops the ops the server skips after an error, up to the end of the
// batch, undoing what they changed, newest first.
func (t *tracker) skip() {
	i := 0
	for i < len(t.queue) && t.queue[i].kind != opEnd && !(t.queue[i].kind == opReply && t.queue[i].ends) {
		i++
	}
	for j := i - 1; j >= 0; j-- {
		if u := t.queue[j].undo; u != nil {
			u()
		}
	}
	t.queue = t.queue[i:]
	t.cond.Broadcast()
}

// ended records a ReadyForQuery that closes batch b. Outside a transaction
// the server has dropped every portal bound up to then.
func (t *tracker) ended(b int64, status byte) {
	t.done, t.txStatus = b, status
	if status == 'I' {
		for name, p := range t.portals {
			if p.batch <= b {
				delete(t.portals, name)
			}
		}
	}
	t.cond.Broadcast()
}

// takeReplies pops the replies keygate gives itself that are now due: those
// at the head of the queue, whose turn has come. The caller sends them.
func (t *tracker) takeReplies() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []byte
	for len(t.queue) > 0 && t.queue[0].kind == opReply {
		o := t.queue[0]
		t.queue[0] = nil
		t.queue = t.queue[1:]
		out = append(out, o.reply...)
		if o.ends {
			// The transaction status is the one the batch before left.
			out = append(out, 'Z', 0, 0, 0, 5, t.txStatus)
			t.ended(o.batch, t.txStatus)
		}
	}
	if out != nil {
		t.cond.Broadcast()
	}
	return out
}
