package audit

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keygate/keygate/store"
)

// Checkpoint is the type of the signed checkpoint a server adds to its
// chain every minute it recorded something (detail: covers, covers_hash,
// key_id, signature). The signature covers the chain's newest event before
// it, and through the hash chain every event and checkpoint before that:
// someone able to rewrite the audit store, hashes and all, cannot sign
// again without the key, and an auditor checks that offline against the
// public key alone.
const Checkpoint = "audit.checkpoint"

// checkpointMessage is what a checkpoint signs.
func checkpointMessage(chain string, covers int64, coversHash []byte, at time.Time) []byte {
	var b []byte
	b = append(b, "keygate audit checkpoint\x00"...)
	b = binary.BigEndian.AppendUint64(b, uint64(len(chain)))
	b = append(b, chain...)
	b = binary.BigEndian.AppendUint64(b, uint64(covers))
	b = append(b, coversHash...)
	b = binary.BigEndian.AppendUint64(b, uint64(at.UnixNano()))
	return b
}

// KeyID names a checkpoint key by a digest of its public half.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// checkpointDetail is a checkpoint event's detail.
type checkpointDetail struct {
	Covers     int64  `json:"covers"`
	CoversHash string `json:"covers_hash"`
	KeyID      string `json:"key_id"`
	Signature  string `json:"signature"`
}

// Checkpoint adds a signed checkpoint to the log's chain, covering its
// newest event, unless nothing was recorded since the last one. It
// returns once the checkpoint is queued.
func (l *Log) Checkpoint(ctx context.Context, key ed25519.PrivateKey) error {
	return l.send(ctx, request{checkpoint: key})
}

// checkpointEvent is the checkpoint the writer adds after the chain's
// newest event, or false when the chain has nothing new since the last.
func (l *Log) checkpointEvent(key ed25519.PrivateKey) (Event, bool) {
	if l.seq == 0 || l.seq == l.checkpointed {
		return Event{}, false
	}
	at := l.now().UTC()
	sig := ed25519.Sign(key, checkpointMessage(l.chain, l.seq, l.prev, at))
	l.checkpointed = l.seq + 1 // the checkpoint's own number
	return Event{Time: at, Type: Checkpoint, Detail: map[string]any{
		"covers": l.seq, "covers_hash": hex.EncodeToString(l.prev),
		"key_id": KeyID(key.Public().(ed25519.PublicKey)), "signature": base64.StdEncoding.EncodeToString(sig),
	}}, true
}

// logAnchors logs the checkpoints of a stored batch, as anchors kept
// apart from the audit store (see Anchor).
func (l *Log) logAnchors(batch []store.AuditEvent) {
	for _, e := range batch {
		if e.Type == Checkpoint {
			a := Anchor{Chain: e.Chain, ChainSeq: e.ChainSeq, Hash: hex.EncodeToString(e.Hash)}
			l.logger.Info("audit checkpoint", "node", e.Chain, "number", e.ChainSeq, "hash", a.Hash, "anchor", a.String())
		}
	}
}

// exported is one line of an export: a stored event whole, with its
// position, so that an auditor recomputes every hash from it.
type exported struct {
	Seq       int64      `json:"seq"`
	Chain     exportText `json:"chain,omitempty"`
	ChainSeq  int64      `json:"chain_seq"`
	Time      time.Time  `json:"time"`
	Type      exportText `json:"type"`
	Actor     exportText `json:"actor,omitempty"`
	User      exportText `json:"user,omitempty"`
	Database  exportText `json:"database,omitempty"`
	Access    exportText `json:"access,omitempty"`
	Client    exportText `json:"client,omitempty"`
	SessionID exportText `json:"session_id,omitempty"`
	Query     exportText `json:"query,omitempty"`
	Reason    exportText `json:"reason,omitempty"`
	Detail    exportText `json:"detail,omitempty"`
	PrevHash  string     `json:"prev_hash"`
	Hash      string     `json:"hash"`
}

// exportText is text that survives JSON byte for byte: valid UTF-8 as a
// string, anything else (a client may send any bytes) as {"base64": …}.
type exportText string

func (t exportText) MarshalJSON() ([]byte, error) {
	if utf8.ValidString(string(t)) {
		return json.Marshal(string(t))
	}
	return json.Marshal(map[string]string{"base64": base64.StdEncoding.EncodeToString([]byte(t))})
}

func (t *exportText) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*t = exportText(s)
		return nil
	}
	var o struct {
		Base64 string `json:"base64"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return err
	}
	raw, err := base64.StdEncoding.DecodeString(o.Base64)
	if err != nil {
		return err
	}
	*t = exportText(raw)
	return nil
}

// Export writes every event after position after, oldest first, one JSON
// object a line, and returns the last position written.
func Export(ctx context.Context, l Lister, after int64, w io.Writer) (int64, error) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for {
		events, err := l.ListAudit(ctx, store.AuditQuery{AfterSeq: after, Limit: 5000})
		if err != nil {
			return after, fmt.Errorf("export audit log: %w", err)
		}
		if len(events) == 0 {
			return after, nil
		}
		for _, e := range events {
			if err := enc.Encode(exported{Seq: e.Seq, Chain: exportText(e.Chain), ChainSeq: e.ChainSeq, Time: e.Time.UTC(), Type: exportText(e.Type),
				Actor: exportText(e.Actor), User: exportText(e.User), Database: exportText(e.Database), Access: exportText(e.Access),
				Client: exportText(e.Client), SessionID: exportText(e.SessionID), Query: exportText(e.Query), Reason: exportText(e.Reason),
				Detail: exportText(e.Detail), PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash)}); err != nil {
				return after, fmt.Errorf("export audit log: %w", err)
			}
			after = e.Seq
		}
	}
}

// ExportSummary is what VerifyExport found in an intact export.
type ExportSummary struct {
	Events      int64
	Chains      int
	Checkpoints int
	// Unsigned counts, per chain, the events after its last checkpoint:
	// intact as far as the hashes go, not yet vouched for by a signature.
	Unsigned map[string]int64
	// Last is each chain's last checkpoint, to compare with the anchors
	// the server logged.
	Last map[string]Anchor
}

// Anchor names a checkpoint from outside the audit store: the server logs
// each one it stores ("audit checkpoint", with node, number and hash), so
// that a copy kept apart from the database (log shipping, a ticket) shows
// when the end of a chain was cut off, which the chain alone cannot.
type Anchor struct {
	Chain    string
	ChainSeq int64
	Hash     string // hex
}

// String is the anchor as --checkpoint takes it: NODE:NUMBER:HASH.
func (a Anchor) String() string { return fmt.Sprintf("%s:%d:%s", a.Chain, a.ChainSeq, a.Hash) }

// ParseAnchor reads NODE:NUMBER:HASH (NODE empty for a single server's
// chain).
func ParseAnchor(s string) (Anchor, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return Anchor{}, fmt.Errorf("checkpoint %q: want NODE:NUMBER:HASH, as the server log's audit checkpoint line gives them", s)
	}
	n, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || n < 1 {
		return Anchor{}, fmt.Errorf("checkpoint %q: the number is not a positive integer", s)
	}
	if _, err := hex.DecodeString(parts[2]); err != nil || len(parts[2]) != 2*sha256.Size {
		return Anchor{}, fmt.Errorf("checkpoint %q: the hash is not 64 hex digits", s)
	}
	return Anchor{Chain: parts[0], ChainSeq: n, Hash: strings.ToLower(parts[2])}, nil
}

// VerifyExport checks an export offline: every chain's numbers, links and
// hashes, positions without a gap, and every checkpoint's signature with
// pub and the event it covers. It reports the first fault with its line
// and position.
//
// Each of anchors must be in the export, with its hash: a chain cut after
// its last checkpoint is intact by itself, and only a checkpoint known
// from outside the store shows what is missing.
func VerifyExport(r io.Reader, pub ed25519.PublicKey, anchors ...Anchor) (ExportSummary, error) {
	sum := ExportSummary{Unsigned: map[string]int64{}, Last: map[string]Anchor{}}
	found := make([]bool, len(anchors))
	type link struct {
		seq  int64
		hash []byte
	}
	chains := map[string]*link{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 128<<20)
	var pos int64
	line := 0
	for sc.Scan() {
		line++
		var x exported
		if err := json.Unmarshal(sc.Bytes(), &x); err != nil {
			return sum, fmt.Errorf("line %d: not an exported audit event: %w", line, err)
		}
		prev, err := hex.DecodeString(x.PrevHash)
		if err != nil {
			return sum, fmt.Errorf("line %d (event %d): prev_hash: %w", line, x.Seq, err)
		}
		hash, err := hex.DecodeString(x.Hash)
		if err != nil {
			return sum, fmt.Errorf("line %d (event %d): hash: %w", line, x.Seq, err)
		}
		e := store.AuditEvent{Seq: x.Seq, Chain: string(x.Chain), ChainSeq: x.ChainSeq, Time: x.Time, Type: string(x.Type), Actor: string(x.Actor),
			User: string(x.User), Database: string(x.Database), Access: string(x.Access), Client: string(x.Client), SessionID: string(x.SessionID),
			Query: string(x.Query), Reason: string(x.Reason), PrevHash: prev, Hash: hash}
		if x.Detail != "" {
			e.Detail = []byte(x.Detail)
		}
		if pos != 0 && e.Seq != pos+1 {
			return sum, fmt.Errorf("line %d: event %d follows event %d: %d missing", line, e.Seq, pos, e.Seq-pos-1)
		}
		c := chains[e.Chain]
		if c == nil {
			c = &link{hash: genesis(e.Chain)}
			if e.ChainSeq != 1 {
				// An export may begin mid-chain: its first event is taken
				// as given, and all after it checked against it.
				c.seq, c.hash = e.ChainSeq-1, e.PrevHash
			}
			chains[e.Chain] = c
		}
		if e.ChainSeq != c.seq+1 {
			return sum, fmt.Errorf("line %d (event %d): number %d of %s follows number %d: an event is missing", line, e.Seq, e.ChainSeq, chainName(e.Chain), c.seq)
		}
		if string(e.PrevHash) != string(c.hash) {
			return sum, fmt.Errorf("line %d (event %d): it does not link to event %d of %s", line, e.Seq, c.seq, chainName(e.Chain))
		}
		if string(Hash(e)) != string(e.Hash) {
			return sum, fmt.Errorf("line %d (event %d): its content does not match its hash: it was edited", line, e.Seq)
		}
		if e.Type == Checkpoint {
			if err := verifyCheckpoint(e, pub); err != nil {
				return sum, fmt.Errorf("line %d (event %d): checkpoint of %s: %w", line, e.Seq, chainName(e.Chain), err)
			}
			sum.Checkpoints++
			sum.Unsigned[e.Chain] = -1 // the checkpoint itself is counted next
			sum.Last[e.Chain] = Anchor{Chain: e.Chain, ChainSeq: e.ChainSeq, Hash: x.Hash}
		}
		for i, a := range anchors {
			if a.Chain == e.Chain && a.ChainSeq == e.ChainSeq {
				if a.Hash != strings.ToLower(x.Hash) {
					return sum, fmt.Errorf("line %d (event %d): number %d of %s is not the checkpoint %s: the chain was rewritten", line, e.Seq, e.ChainSeq, chainName(e.Chain), a)
				}
				found[i] = true
			}
		}
		c.seq, c.hash = e.ChainSeq, e.Hash
		sum.Unsigned[e.Chain]++
		pos = e.Seq
		sum.Events++
	}
	if err := sc.Err(); err != nil {
		return sum, fmt.Errorf("read export: %w", err)
	}
	if sum.Events == 0 {
		return sum, errors.New("the export holds no event")
	}
	for i, a := range anchors {
		if !found[i] {
			last := "no event of it"
			if c := chains[a.Chain]; c != nil {
				last = fmt.Sprintf("up to number %d", c.seq)
			}
			return sum, fmt.Errorf("the export lacks checkpoint %s, which the server logged; it holds %s of %s: events were removed from its end", a, last, chainName(a.Chain))
		}
	}
	sum.Chains = len(chains)
	return sum, nil
}

func verifyCheckpoint(e store.AuditEvent, pub ed25519.PublicKey) error {
	var d checkpointDetail
	if err := json.Unmarshal(e.Detail, &d); err != nil {
		return fmt.Errorf("detail: %w", err)
	}
	if d.KeyID != KeyID(pub) {
		return fmt.Errorf("signed with key %s, not the given public key (%s)", d.KeyID, KeyID(pub))
	}
	covered, err := hex.DecodeString(d.CoversHash)
	if err != nil {
		return fmt.Errorf("covers_hash: %w", err)
	}
	sig, err := base64.StdEncoding.DecodeString(d.Signature)
	if err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	if !ed25519.Verify(pub, checkpointMessage(e.Chain, d.Covers, covered, e.Time), sig) {
		return errors.New("the signature does not verify with the public key: it was made with another key, or what it covers was changed")
	}
	if d.Covers != e.ChainSeq-1 || string(covered) != string(e.PrevHash) {
		return fmt.Errorf("it covers number %d, not the event before it", d.Covers)
	}
	return nil
}
