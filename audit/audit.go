// Package audit is keygate's append-only, hash-chained event log: who
// connected where, every statement they sent, every refusal and every change
// to who may do what. Each event carries the hash of the one before it, so a
// removed or edited event breaks the chain and Verify finds it.
//
// Recording is asynchronous and batched so that auditing every statement does
// not put a disk write on the query path; it is never lossy: when the writer
// falls behind, Record waits.
package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/token"
)

// Event types. A query by type matches dotted prefixes, so "session" selects
// both session events.
const (
	SessionStart   = "session.start"   // a gateway session began
	SessionEnd     = "session.end"     // a gateway session ended (detail: duration, bytes, reason)
	Query          = "query"           // a statement (detail.protocol: simple, parse, execute, function)
	QueryCancel    = "query.cancel"    // a cancel request was forwarded
	QueryRefused   = "query.refused"   // a statement or function call was refused and never reached the upstream (reason)
	ConnectRefused = "connect.refused" // a gateway connection was refused (reason)
	TokenIssued    = "token.issued"    // a database token was minted (detail: token id, expiry)
	TokenRefused   = "token.refused"   // a token request was refused (reason)
	AdminPrefix    = "admin"           // admin.user.create, admin.group.add-member, ...
	SignIn         = "signin"          // a person signed in through an identity provider (detail: method, mfa)
	SignInRefused  = "signin.refused"  // a sign-in was refused (reason; detail: code, method)
	SignOut        = "signout"         // a sign-in session was revoked
	SSOWarning     = "sso.warning"     // identity provider metadata is stale or a certificate expires soon
	ConfigReload   = "config.reload"   // the config was read again and its access rules applied (detail: counts, restart_needed)
	ConfigRefused  = "config.refused"  // a config reload was refused; the running rules stay (reason)
	AccessSprawl   = "access.sprawl"   // permission sets grew faster than people (reason; detail: counts then and now)
	// UpstreamIntrusion is a backend of a keygate-managed role that keygate
	// did not open, found and ended (detail: role, pid, client_addr,
	// client_port, terminated).
	UpstreamIntrusion = "upstream.intrusion"
)

// MaxQueryLen bounds the statement text kept per event. It is the hard
// ceiling above the gateway's own, configurable limit
// (audit.max_statement_size), which keeps statements whole or refuses
// them: this truncation is a last line of defence, not the audit's policy.
const MaxQueryLen = 16 << 20

// maxQueuedBytes bounds the statement text waiting to be written: a client
// that pipelines large statements waits for the audit store, rather than
// making keygate hold them all in memory.
const maxQueuedBytes = 64 << 20

// Event is what callers record.
type Event struct {
	// Time is when it happened; zero means now. A statement's event is
	// written once its result is known but carries the time it was sent,
	// so times need not grow with the sequence: the chain orders events
	// by seq, and queries by time only filter.
	Time      time.Time
	Type      string
	Actor     string // who caused it when that is not User: "admin", a SCIM token name
	User      string
	Database  string
	Access    string
	Client    string
	SessionID string
	Query     string
	Reason    string
	Detail    map[string]any
}

// Appender is the part of the store the log writes to.
type Appender interface {
	AppendAudit(ctx context.Context, events []store.AuditEvent) error
	ChainHead(ctx context.Context, chain string) (store.AuditEvent, error)
}

// Log records events. Create it with Open; stop it with Close.
type Log struct {
	app    Appender
	logger *slog.Logger
	now    func() time.Time
	ch     chan request
	done   chan struct{}
	// flushing wakes a writer that lingers for a batch, when a Flush or
	// Shutdown waits for it. It holds at most one wake-up.
	flushing chan struct{}

	// mu guards closed: Record and Flush hold it shared while they send,
	// Close exclusively, so nothing is ever sent on a closed channel.
	mu     sync.RWMutex
	closed bool

	// queuedMu guards queued, the bytes of text waiting to be written;
	// drained is signalled when a batch has been written.
	queuedMu sync.Mutex
	queued   int
	drained  *sync.Cond

	// failing holds the error of the last write while writes fail.
	failing atomic.Pointer[error]
	// chain is the chain this log appends to. seq and prev are owned by
	// the writer goroutine, or by Shutdown once it took over from a
	// writer stuck in the store.
	chain string
	seq   int64
	prev  []byte
	// checkpointed is the number of the chain's newest checkpoint this
	// log wrote.
	checkpointed int64

	// writeCtx is what writes run under. Shutdown cancels it and closes
	// abandon when its deadline passes: the writer then stops retrying
	// and keeps what it could not store for the spill file.
	writeCtx    context.Context
	cancelWrite context.CancelFunc
	abandon     chan struct{}
	// shutdown is set by the first Shutdown (or Close).
	shutdown atomic.Bool
	// pendMu guards unwritten (events given up on, for the spill file),
	// inflight (the batch being written), writing (the writer is inside
	// the store) and takenOver (Shutdown took the writer's work over).
	pendMu    sync.Mutex
	unwritten []store.AuditEvent
	inflight  []store.AuditEvent
	writing   bool
	takenOver bool
}

// request is an event, a flush marker when flushed is set, or a
// checkpoint to sign with checkpoint.
type request struct {
	ev         Event
	size       int // eventSize, reserved until written
	flushed    chan struct{}
	checkpoint ed25519.PrivateKey
}

const (
	queueLen = 1 << 16
	batchMax = 1024
	// groupCommitLinger is how long the writer waits for more events
	// before committing a batch. Every commit costs the same few WAL writes,
	// so at thousands of statements a second committing each small batch at
	// once would spend most of keygate's CPU on the audit store. The writer
	// sleeps through it and then takes what queued up, rather than waking
	// for each event: a wake-up per statement cost the gateway a few
	// microseconds of every one.
	groupCommitLinger = 10 * time.Millisecond
)

// Option tunes Open.
type Option func(*Log)

// WithChain makes the log append to the named chain: each server that
// shares a store keeps its own. The default is the unnamed chain of a lone
// server.
func WithChain(name string) Option { return func(l *Log) { l.chain = name } }

// Open continues the chain from its newest stored event and starts the
// writer. logger must not be nil; now is the clock, nil meaning time.Now.
func Open(ctx context.Context, app Appender, logger *slog.Logger, now func() time.Time, opts ...Option) (*Log, error) {
	if now == nil {
		now = time.Now
	}
	l := &Log{app: app, logger: logger, now: now, ch: make(chan request, queueLen), done: make(chan struct{}), flushing: make(chan struct{}, 1),
		abandon: make(chan struct{})}
	for _, o := range opts {
		o(l)
	}
	l.writeCtx, l.cancelWrite = context.WithCancel(context.Background())
	l.drained = sync.NewCond(&l.queuedMu)
	last, err := app.ChainHead(ctx, l.chain)
	switch {
	case errors.Is(err, store.ErrNotFound):
		l.prev = genesis(l.chain)
	case err != nil:
		return nil, fmt.Errorf("open audit log: %w", err)
	default:
		l.seq, l.prev = last.ChainSeq, last.Hash
	}
	go l.run()
	return l, nil
}

// genesis is the PrevHash of a chain's first event. A named chain's
// names it, so that no event can be moved from one chain to another.
func genesis(chain string) []byte {
	seed := "keygate audit log"
	if chain != "" {
		seed += "\x00" + chain
	}
	h := sha256.Sum256([]byte(seed))
	return h[:]
}

// ErrClosed is returned by Flush after Close.
var ErrClosed = errors.New("audit log is closed")

// Record queues an event. It never drops one while the log is open: when
// the queue is full it waits for the writer. After Close, the event is
// written to the server log instead, since nothing can store it any more.
func (l *Log) Record(e Event) {
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	size := eventSize(e)
	l.reserve(size)
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.unreserve(size)
		l.logger.Error("audit event after the audit log closed", "type", e.Type, "user", redact(e.User), "database", redact(e.Database))
		return
	}
	l.ch <- request{ev: e, size: size}
}

// eventSize is what an event's text costs while it waits to be written.
func eventSize(e Event) int { return len(e.Query) + len(e.Reason) }

// reserve waits until size more bytes may be queued. One event is always
// let through, however large, so that a single statement near the limit
// never waits forever.
func (l *Log) reserve(size int) {
	l.queuedMu.Lock()
	defer l.queuedMu.Unlock()
	for l.queued > 0 && l.queued+size > maxQueuedBytes {
		l.drained.Wait()
	}
	l.queued += size
}

func (l *Log) unreserve(size int) {
	l.queuedMu.Lock()
	l.queued -= size
	l.queuedMu.Unlock()
	l.drained.Broadcast()
}

// Err is the error of the last write while the audit store refuses
// writes, nil when it takes them. The gateway starts no session while it
// is set: a session whose statements cannot be recorded must not begin.
func (l *Log) Err() error {
	if err := l.failing.Load(); err != nil {
		return *err
	}
	return nil
}

// Flush waits until every event recorded before the call is stored.
func (l *Log) Flush(ctx context.Context) error {
	done := make(chan struct{})
	if err := l.send(ctx, request{flushed: done}); err != nil {
		return err
	}
	l.wake()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wake ends the writer's linger, so that what is queued is written now.
func (l *Log) wake() {
	select {
	case l.flushing <- struct{}{}:
	default:
	}
}

func (l *Log) send(ctx context.Context, r request) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	select {
	case l.ch <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stores what is queued and stops the writer, waiting as long as
// the store takes. A server stops with Shutdown, which bounds the wait.
func (l *Log) Close() error {
	_, err := l.Shutdown(context.Background(), "")
	return err
}

func (l *Log) run() {
	defer close(l.done)
	batch := make([]store.AuditEvent, 0, batchMax)
	var waiting []chan struct{}
	var size int
	linger := time.NewTimer(groupCommitLinger)
	linger.Stop()
	for {
		r, ok := <-l.ch
		if !ok {
			return
		}
		batch, waiting = l.add(batch, waiting, r)
		size += r.size
		// Group commit: let what arrives within the linger queue up,
		// unless a batch is already waiting or someone waits on a Flush,
		// then take it.
		if len(waiting) == 0 && len(l.ch) < batchMax {
			linger.Reset(groupCommitLinger)
			select {
			case <-linger.C:
			case <-l.flushing:
				linger.Stop()
			}
		}
		closed := false
	gather:
		for len(batch) < batchMax {
			select {
			case r, ok := <-l.ch:
				if !ok {
					closed = true
					break gather
				}
				batch, waiting = l.add(batch, waiting, r)
				size += r.size
			default:
				break gather
			}
		}
		stop := !l.write(batch)
		l.unreserve(size)
		release(waiting)
		if closed || stop {
			return
		}
		batch, waiting, size = batch[:0], waiting[:0], 0
	}
}

func (l *Log) add(batch []store.AuditEvent, waiting []chan struct{}, r request) ([]store.AuditEvent, []chan struct{}) {
	if r.flushed != nil {
		return batch, append(waiting, r.flushed)
	}
	if r.checkpoint != nil {
		ev, ok := l.checkpointEvent(r.checkpoint)
		if !ok {
			return batch, waiting
		}
		r.ev = ev
	}
	l.seq++
	e := toStored(l.chain, l.seq, r.ev)
	e.PrevHash = l.prev
	e.Hash = Hash(e)
	l.prev = e.Hash
	return append(batch, e), waiting
}

// write stores a batch, retrying until it succeeds: an audit event is never
// dropped, and a store that stays broken stops the gateway through
// back-pressure rather than letting it run unaudited. Once Shutdown gives
// up on the store, the batch is kept for the spill file instead. It
// reports false when Shutdown took the writer's work over, after which
// the writer must stop.
//
// A failing store is logged at ERROR on the first failure and then at
// most every errorLogEvery, with the attempts so far: the store may stay
// broken for hours, and the gateway's refusals say the rest.
func (l *Log) write(batch []store.AuditEvent) bool {
	if len(batch) == 0 {
		return true
	}
	var logged time.Time
	for attempt := 0; ; attempt++ {
		l.pendMu.Lock()
		if l.abandoned() {
			l.unwritten = append(l.unwritten, batch...)
			l.pendMu.Unlock()
			return true
		}
		l.inflight, l.writing = batch, true
		l.pendMu.Unlock()

		err := l.app.AppendAudit(l.writeCtx, batch)

		l.pendMu.Lock()
		l.inflight, l.writing = nil, false
		takenOver := l.takenOver
		l.pendMu.Unlock()
		if takenOver {
			if err == nil {
				l.logger.Error("audit events stored after shutdown gave up on the store; they are also in the spill file", "first_seq", batch[0].ChainSeq, "last_seq", batch[len(batch)-1].ChainSeq)
			}
			return false
		}
		if err == nil {
			if l.failing.Swap(nil) != nil {
				l.logger.Info("audit writes succeed again", "after_attempts", attempt+1)
			}
			l.logAnchors(batch)
			return true
		}
		l.failing.Store(&err)
		if attempt == 0 || time.Since(logged) >= errorLogEvery {
			l.logger.Error("audit write failed; retrying, and refusing new sessions until it succeeds", "events", len(batch), "attempt", attempt+1, "err", err)
			logged = time.Now()
		}
		select {
		case <-time.After(min(time.Duration(attempt+1)*100*time.Millisecond, 5*time.Second)):
		case <-l.abandon:
		}
	}
}

// errorLogEvery is how often a failing audit store is logged again.
const errorLogEvery = 30 * time.Second

func release(waiting []chan struct{}) {
	for _, w := range waiting {
		close(w)
	}
}

func toStored(chain string, seq int64, e Event) store.AuditEvent {
	s := store.AuditEvent{
		Chain:     chain,
		ChainSeq:  seq,
		Time:      e.Time.UTC(),
		Type:      e.Type,
		Actor:     redact(e.Actor),
		User:      redact(e.User),
		Database:  redact(e.Database),
		Access:    e.Access,
		Client:    e.Client,
		SessionID: e.SessionID,
		Query:     truncate(redact(e.Query), MaxQueryLen),
		Reason:    redact(e.Reason),
	}
	if len(e.Detail) > 0 {
		b, err := json.Marshal(e.Detail)
		if err != nil {
			b, _ = json.Marshal(map[string]string{"error": "detail not encodable: " + err.Error()})
		}
		s.Detail = []byte(redact(string(b)))
	}
	return s
}

// tokenShape matches a keygate token anywhere in a string.
var tokenShape = regexp.MustCompile(regexp.QuoteMeta(token.Prefix) + `[A-Za-z0-9_\-.]+`)

// redact removes anything shaped like a database token, for the case where
// someone pastes a token into the wrong field or into a query. Tokens are
// never recorded on purpose; this is the second line.
func redact(s string) string {
	if !token.Mentions(s) {
		return s
	}
	return tokenShape.ReplaceAllString(s, "[redacted token]")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("…[%d more bytes]", len(s)-cut)
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// Hash computes an event's chain hash from its fields and PrevHash. Every
// field is length-prefixed so that no two different events hash alike. It
// covers the event's place in its chain, not its position in the log,
// which the store gives after the hash is made; a named chain's name is
// covered too (the unnamed chain's events hash as they always did).
func Hash(e store.AuditEvent) []byte {
	h := sha256.New()
	var buf [8]byte
	writeBytes := func(b []byte) {
		binary.BigEndian.PutUint64(buf[:], uint64(len(b)))
		h.Write(buf[:])
		h.Write(b)
	}
	writeBytes(e.PrevHash)
	binary.BigEndian.PutUint64(buf[:], uint64(e.ChainSeq))
	h.Write(buf[:])
	binary.BigEndian.PutUint64(buf[:], uint64(e.Time.UnixNano()))
	h.Write(buf[:])
	for _, f := range []string{e.Type, e.Actor, e.User, e.Database, e.Access, e.Client, e.SessionID, e.Query, e.Reason} {
		writeBytes([]byte(f))
	}
	writeBytes(e.Detail)
	if e.Chain != "" {
		writeBytes([]byte(e.Chain))
	}
	return h.Sum(nil)
}

// Lister is the part of the store Verify reads.
type Lister interface {
	ListAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditEvent, error)
}

// Verify walks the whole log, every chain in it, and reports the first
// event whose hash, link or number is wrong, or a position missing from
// the log. It returns the number of events checked.
func Verify(ctx context.Context, l Lister) (int64, error) {
	type link struct {
		seq  int64
		hash []byte
	}
	chains := map[string]link{}
	var pos int64
	for {
		events, err := l.ListAudit(ctx, store.AuditQuery{AfterSeq: pos, Limit: 5000})
		if err != nil {
			return pos, fmt.Errorf("verify audit log: %w", err)
		}
		if len(events) == 0 {
			return pos, nil
		}
		for _, e := range events {
			if e.Seq != pos+1 {
				return pos, fmt.Errorf("audit log broken after event %d: next stored event is %d", pos, e.Seq)
			}
			last, ok := chains[e.Chain]
			if !ok {
				last.hash = genesis(e.Chain)
			}
			if e.ChainSeq != last.seq+1 {
				return pos, fmt.Errorf("audit log broken at event %d: it is number %d of %s, whose previous event was number %d", e.Seq, e.ChainSeq, chainName(e.Chain), last.seq)
			}
			if string(e.PrevHash) != string(last.hash) {
				return pos, fmt.Errorf("audit log broken at event %d: it does not link to event %d of %s", e.Seq, last.seq, chainName(e.Chain))
			}
			if string(Hash(e)) != string(e.Hash) {
				return pos, fmt.Errorf("audit log broken at event %d: its content does not match its hash", e.Seq)
			}
			chains[e.Chain] = link{e.ChainSeq, e.Hash}
			pos = e.Seq
		}
	}
}

// chainName names a chain for a message.
func chainName(chain string) string {
	if chain == "" {
		return "the chain"
	}
	return "node " + chain + "'s chain"
}
