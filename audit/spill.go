package audit

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/keygate/keygate/store"
)

// SpillPattern matches the spill files Shutdown writes: audit events that
// the store could not take before the server stopped.
const SpillPattern = "audit-unwritten-*.jsonl"

// takeOverAfter is how long Shutdown, past its deadline, lets the writer
// hand back what it holds before taking it from a writer stuck inside the
// store.
const takeOverAfter = time.Second

// Shutdown stores what is queued and stops the writer, waiting at most
// until ctx ends. What the store has not taken by then — because it fails,
// or hangs — is written to a spill file in spillDir (SpillPattern, mode
// 0600, one event a line with its seq and hashes, so it can be checked
// against the chain) and named in an ERROR log: an event is never lost
// without a trace. It returns the spill file's path, "" when everything
// was stored. Events recorded after Shutdown go to the server log.
//
// The spilled events are not in the store's chain: the next start
// continues the chain from the last stored event, reusing their sequence
// numbers.
func (l *Log) Shutdown(ctx context.Context, spillDir string) (string, error) {
	if l.shutdown.Swap(true) {
		// A writer stuck in the store may never end: only the first
		// call waits for it.
		return "", nil
	}
	go func() {
		// Record holds mu shared while it waits for room in the queue, so
		// this waits for the writer; it must not hold Shutdown up.
		l.mu.Lock()
		if !l.closed {
			l.closed = true
			close(l.ch)
		}
		l.mu.Unlock()
		l.wake()
	}()
	select {
	case <-l.done:
	case <-ctx.Done():
		close(l.abandon)
		l.cancelWrite()
		l.awaitWriter()
	}
	l.cancelWrite()
	l.pendMu.Lock()
	events := l.unwritten
	l.unwritten = nil
	l.pendMu.Unlock()
	if len(events) == 0 {
		return "", nil
	}
	path, err := writeSpill(spillDir, events, time.Now())
	if err != nil {
		// The last place left is the server log.
		for _, e := range events {
			line, _ := json.Marshal(toSpilled(e))
			l.logger.Error("audit event could not be stored or spilled", "event", string(line))
		}
		return "", fmt.Errorf("audit events could not be stored, nor spilled: %w", err)
	}
	l.logger.Error("audit events could not be stored before shutdown; they are kept in a spill file, outside the audit log's chain",
		"file", path, "events", len(events), "first_seq", events[0].ChainSeq, "last_seq", events[len(events)-1].ChainSeq)
	return path, nil
}

// abandoned reports whether Shutdown gave up on the store.
func (l *Log) abandoned() bool {
	select {
	case <-l.abandon:
		return true
	default:
		return false
	}
}

// awaitWriter waits for the writer, which no longer retries, to hand back
// what it holds; a writer stuck inside the store for longer than
// takeOverAfter is left there and its work taken over.
func (l *Log) awaitWriter() {
	deadline := time.Now().Add(takeOverAfter)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-tick.C:
		}
		if time.Now().Before(deadline) {
			continue
		}
		l.pendMu.Lock()
		if !l.writing {
			// Between batches it moves on by itself: no store call
			// follows an abandon.
			l.pendMu.Unlock()
			continue
		}
		l.takenOver = true
		l.unwritten = append(l.unwritten, l.inflight...)
		l.inflight = nil
		l.pendMu.Unlock()
		l.takeOver()
		return
	}
}

// takeOver chains what is still queued, as the writer would have, once
// the writer is stuck in the store and will stop when it returns. It ends
// when the queue is closed and empty.
func (l *Log) takeOver() {
	var batch []store.AuditEvent
	for r := range l.ch {
		if r.flushed != nil {
			// Never released: the events before it were not stored, and
			// its caller waits on its own context.
			continue
		}
		batch, _ = l.add(batch, nil, r)
		l.unreserve(r.size)
	}
	l.pendMu.Lock()
	l.unwritten = append(l.unwritten, batch...)
	l.pendMu.Unlock()
}

// spilled is one line of a spill file: the stored event, byte for byte,
// so that its hash can be checked.
type spilled struct {
	// Chain and Seq place the event in its chain: the position in the
	// whole log is given when the event is stored.
	Chain     string    `json:"chain,omitempty"`
	Seq       int64     `json:"seq"`
	Time      time.Time `json:"time"`
	Type      string    `json:"type"`
	Actor     string    `json:"actor,omitempty"`
	User      string    `json:"user,omitempty"`
	Database  string    `json:"database,omitempty"`
	Access    string    `json:"access,omitempty"`
	Client    string    `json:"client,omitempty"`
	SessionID string    `json:"session_id,omitempty"`
	Query     string    `json:"query,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	// Detail is text, not embedded JSON, so that no encoder reformats it.
	Detail   string `json:"detail,omitempty"`
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

func toSpilled(e store.AuditEvent) spilled {
	return spilled{Chain: e.Chain, Seq: e.ChainSeq, Time: e.Time.UTC(), Type: e.Type, Actor: e.Actor, User: e.User, Database: e.Database, Access: e.Access,
		Client: e.Client, SessionID: e.SessionID, Query: e.Query, Reason: e.Reason, Detail: string(e.Detail),
		PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash)}
}

func writeSpill(dir string, events []store.AuditEvent, now time.Time) (_ string, err error) {
	if dir == "" {
		return "", errors.New("no directory for a spill file")
	}
	path := filepath.Join(dir, "audit-unwritten-"+now.UTC().Format("20060102T150405.000000000Z")+".jsonl")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("create spill file: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write spill file %s: %w", path, cerr)
		}
	}()
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, e := range events {
		if err := enc.Encode(toSpilled(e)); err != nil {
			return "", fmt.Errorf("write spill file %s: %w", path, err)
		}
	}
	if err := w.Flush(); err != nil {
		return "", fmt.Errorf("write spill file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("write spill file %s: %w", path, err)
	}
	return path, nil
}

// ReadSpill reads the events of a spill file, as they would have been
// stored.
func ReadSpill(path string) ([]store.AuditEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read spill file: %w", err)
	}
	defer f.Close()
	var out []store.AuditEvent
	dec := json.NewDecoder(f)
	for dec.More() {
		var s spilled
		if err := dec.Decode(&s); err != nil {
			return nil, fmt.Errorf("read spill file %s: event %d: %w", path, len(out)+1, err)
		}
		e := store.AuditEvent{Chain: s.Chain, ChainSeq: s.Seq, Time: s.Time, Type: s.Type, Actor: s.Actor, User: s.User, Database: s.Database, Access: s.Access,
			Client: s.Client, SessionID: s.SessionID, Query: s.Query, Reason: s.Reason}
		if s.Detail != "" {
			e.Detail = []byte(s.Detail)
		}
		if e.PrevHash, err = hex.DecodeString(s.PrevHash); err != nil {
			return nil, fmt.Errorf("read spill file %s: event %d: prev_hash: %w", path, s.Seq, err)
		}
		if e.Hash, err = hex.DecodeString(s.Hash); err != nil {
			return nil, fmt.Errorf("read spill file %s: event %d: hash: %w", path, s.Seq, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// SpillFiles lists the spill files in dir, oldest first.
func SpillFiles(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, SpillPattern))
	if err != nil {
		return nil, err
	}
	slices.Sort(files)
	return files, nil
}
