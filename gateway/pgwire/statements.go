package pgwire

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

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
// After an ErrorResponse to an extended-protocol message the server skips
// every message up to the next Sync (a Query or FunctionCall too), and the
// queue undoes what the skipped messages changed; a Sync sent while the
// server copies data in is ignored, and the queue drops it. A message that refers to
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
	// queuedText is the statement text the queue's ops hold.
	queuedText int
	// last is the batch's last statement whose result came: its event is
	// written at the batch's ReadyForQuery, since an error answering the
	// Sync (a failed commit) is its too. Earlier ones are written at once.
	last *gateway.SentStatement
	// discarding says the server discards the client's messages up to the
	// next Sync, after an error in an extended-protocol batch whose Sync
	// had not been sent yet.
	discarding bool
	// copyIn says the server copies data in, and ignores Sync meanwhile.
	copyIn bool
	// ready holds statements whose events are due: the goroutine that
	// made them due writes them once it lets go of mu. hasReady says it
	// holds some, for a look without mu.
	ready    []*gateway.SentStatement
	hasReady atomic.Bool
	// unstored is set once writeReady wrote events that the client may
	// not hear the end of before they are stored (see gateway.Stored).
	unstored atomic.Bool
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
	// sync marks the opEnd of a Sync, the one message the server does not
	// skip after an error in an extended-protocol batch.
	sync bool
	// sent is the statement an opExec runs, or the text an opEnd of a
	// simple Query runs, awaiting its outcome; size is its text's length.
	sent *gateway.SentStatement
	size int
}

// Kinds of op.
const (
	opParse    = 'P' // the client's Parse: ParseComplete is relayed
	opInjected = 'p' // keygate's own Parse or Close: its completion is not
	opBind     = 'B'
	opClose    = 'C'
	opDescribe = 'D' // Describe: ends with RowDescription or NoData
	opExec     = 'E' // Execute: ends with CommandComplete, PortalSuspended, EmptyQueryResponse or an error
	opEnd      = 'S' // Sync, Query or FunctionCall: ends with ReadyForQuery
	opReply    = 'R' // keygate's own reply, sent when its turn comes
	opCopyEnd  = 'c' // the client's CopyDone or CopyFail, sent before the server said it copies: no reply
)

// Bounds on what one session may make keygate hold.
const (
	maxPending    = 1 << 16
	maxQueuedText = 64 << 20
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

// push queues an op of the current batch; ending ops close the batch. An
// op the server will not see is not queued: a Sync while it copies data
// in, and anything but a Sync while it discards after an error (whose
// change is undone, and whose statement is written as skipped).
func (t *tracker) push(o *op) {
	switch {
	case o.kind == opEnd && o.sync && t.copyIn:
		return
	case t.discarding && o.kind != opReply && !(o.kind == opEnd && o.sync):
		if o.undo != nil {
			o.undo()
		}
		if o.sent != nil {
			o.sent.Add(gateway.Outcome{Skipped: skippedAfterError})
			t.finish(o.sent)
		}
		return
	}
	if o.kind == opEnd && o.sync {
		t.discarding = false
	}
	o.batch = t.batch
	t.queue = append(t.queue, o)
	t.queuedText += o.size
	if o.kind == opEnd || (o.kind == opReply && o.ends) {
		t.batch++
	}
}

// skippedAfterError is the outcome of a statement the server skipped.
const skippedAfterError = "an earlier message of its batch failed, and the server skipped the rest of the batch"

// finish notes a statement whose result came. Only the batch's last one
// waits for the batch's end; the one before it is written now, so that a
// batch without a Sync holds no more than one.
func (t *tracker) finish(st *gateway.SentStatement) {
	if t.last != nil {
		t.due(t.last)
	}
	t.last = st
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
	for (len(t.queue) >= maxPending || t.queuedText >= maxQueuedText) && !t.closed {
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

// status is the transaction status of the last ReadyForQuery.
func (t *tracker) status() byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.txStatus
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
// messages' completions are not relayed). status is ReadyForQuery's
// transaction status; body is a CommandComplete's or an ErrorResponse's
// body, nil when it was too long to read. Statements whose events are
// now due are left for takeReady.
func (t *tracker) reply(typ, status byte, body []byte) (relay bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dropCopyEnds()
	switch typ {
	case '1': // ParseComplete
		o, err := t.pop(opParse, opInjected)
		return err == nil && o.kind == opParse, err
	case '2': // BindComplete
		_, err := t.pop(opBind)
		return err == nil, err
	case '3': // CloseComplete
		o, err := t.pop(opClose, opInjected)
		return err == nil && o.kind == opClose, err
	case 'T', 'n': // RowDescription, NoData: a Describe's last reply
		if len(t.queue) > 0 && t.queue[0].kind == opDescribe {
			t.removeHead()
		}
	case 'C': // CommandComplete
		t.result(gateway.Outcome{Tag: commandTag(body)})
	case 's': // PortalSuspended: the Execute's row limit was reached
		t.result(gateway.Outcome{Suspended: true})
	case 'I': // EmptyQueryResponse
		t.result(gateway.Outcome{Empty: true})
	case 'G': // CopyInResponse
		t.copyStarted()
	case 'E': // ErrorResponse
		t.copyIn = false
		t.failure(errorOutcome(body))
	case 'Z': // ReadyForQuery
		o, err := t.pop(opEnd)
		if err != nil {
			return false, err
		}
		if o.succeeded != nil && !o.failed {
			o.succeeded()
		}
		t.ended(o.batch, status)
		if t.last != nil {
			t.due(t.last)
			t.last = nil
		}
		if o.sent != nil {
			t.due(o.sent)
		}
	}
	return true, nil
}

// due notes a statement whose event can be written.
func (t *tracker) due(st *gateway.SentStatement) {
	t.ready = append(t.ready, st)
	t.hasReady.Store(true)
}

// writeReady writes the events of the statements that are due. It must
// not be called with mu held.
func (t *tracker) writeReady() {
	if !t.hasReady.Load() {
		return
	}
	t.mu.Lock()
	ready := t.ready
	t.ready = nil
	t.hasReady.Store(false)
	t.mu.Unlock()
	for _, st := range ready {
		st.Done()
	}
	if len(ready) > 0 {
		t.unstored.Store(true)
	}
}

// removeHead takes the oldest op off the queue.
func (t *tracker) removeHead() *op {
	o := t.queue[0]
	t.queue[0] = nil
	t.queue = t.queue[1:]
	t.queuedText -= o.size
	t.cond.Broadcast()
	return o
}

// dropCopyEnds drops the markers of CopyDone and CopyFail messages at the
// head of the queue: they get no reply.
func (t *tracker) dropCopyEnds() {
	for len(t.queue) > 0 && t.queue[0].kind == opCopyEnd {
		t.removeHead()
	}
}

// clientCopyEnd notes a CopyDone or CopyFail from the client.
func (t *tracker) clientCopyEnd() {
	if t.copyIn {
		t.copyIn = false
		return
	}
	// The server has not said it copies yet (or it will not): mark where
	// the client's copy ended, for copyStarted.
	t.push(&op{kind: opCopyEnd})
}

// copyStarted notes that the server copies data in for the statement at
// the head of the queue: it ignores the Syncs the client sends before its
// CopyDone or CopyFail.
func (t *tracker) copyStarted() {
	if len(t.queue) == 0 {
		return
	}
	rest := t.queue[1:]
	end := slices.IndexFunc(rest, func(o *op) bool { return o.kind == opCopyEnd })
	// Without the client's CopyDone or CopyFail yet, its later Syncs are
	// dropped as they come (see push).
	t.copyIn = end < 0
	if t.copyIn {
		end = len(rest)
	}
	kept := t.queue[:1]
	for _, o := range rest[:end] {
		if !(o.kind == opEnd && o.sync) {
			kept = append(kept, o)
		}
	}
	if !t.copyIn {
		end++ // the marker has done its work
	}
	t.queue = append(kept, rest[end:]...)
	t.cond.Broadcast()
}

// result gives the outcome of one statement to the Execute it ends, or to
// the simple Query running it.
func (t *tracker) result(out gateway.Outcome) {
	if len(t.queue) == 0 {
		return
	}
	switch o := t.queue[0]; o.kind {
	case opExec:
		t.removeHead()
		o.sent.Add(out)
		t.finish(o.sent)
	case opEnd:
		if o.sent != nil {
			o.sent.Add(out)
		}
	}
}

// failure handles an ErrorResponse. The error of a Query or FunctionCall
// is its own; one answering a Sync belongs to the batch's last statement
// (its implicit commit failed). One to an extended-protocol message makes
// the server skip every message up to the next Sync: the first Execute
// among them gets the error (a failed Parse, Bind or Describe is its
// statement's failure), every later statement is skipped, and what the
// skipped messages changed is undone. An error with nothing waiting (a
// FATAL between statements) belongs to no statement.
func (t *tracker) failure(out gateway.Outcome) {
	i := 0
	for i < len(t.queue) && t.queue[i].kind == opReply {
		i++
	}
	if i == len(t.queue) {
		return
	}
	if head := t.queue[i]; head.kind == opEnd {
		head.failed = true
		switch {
		case !head.sync && head.sent != nil:
			head.sent.Add(out)
		case head.sync && t.last != nil:
			t.last.Add(out)
		}
		return
	}
	end := i
	for end < len(t.queue) && !(t.queue[end].kind == opEnd && t.queue[end].sync) {
		end++
	}
	if end < len(t.queue) {
		t.queue[end].failed = true
	} else {
		t.discarding = true
	}
	hit := false
	var kept []*op
	for j := i; j < end; j++ {
		o := t.queue[j]
		if o.kind == opReply {
			kept = append(kept, o)
			continue
		}
		if o.sent != nil {
			if o.kind == opExec && !hit {
				hit = true
				o.sent.Add(out)
			} else {
				o.sent.Add(gateway.Outcome{Skipped: skippedAfterError})
			}
			t.finish(o.sent)
		}
		t.queuedText -= o.size
	}
	for j := end - 1; j >= i; j-- {
		if u := t.queue[j].undo; u != nil && t.queue[j].kind != opReply {
			u()
		}
	}
	rest := append(append(slices.Clone(t.queue[:i]), kept...), t.queue[end:]...)
	t.queue = rest
	t.cond.Broadcast()
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
	finished = t.ready
	if t.last != nil {
		finished = append(finished, t.last)
	}
	t.ready, t.last = nil, nil
	t.hasReady.Store(false)
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
	if slices.Contains(kinds, o.kind) {
		return t.removeHead(), nil
	}
	return nil, fmt.Errorf("%w: a %q reply to a %q message", errDesync, kinds[0], o.kind)
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
		o := t.removeHead()
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
