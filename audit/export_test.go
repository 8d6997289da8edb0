package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// exportOf builds a log of two chains with checkpoints, including a
// statement of bytes that are not UTF-8, and exports it.
func exportOf(t *testing.T, key ed25519.PrivateKey) []string {
	t.Helper()
	m := &memStore{}
	ctx := context.Background()
	var logs []*Log
	for _, chain := range []string{"a", "b"} {
		l, err := Open(ctx, m, quietLogger(), func() time.Time { return epoch }, WithChain(chain))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		logs = append(logs, l)
	}
	for round := range 3 {
		for i, l := range logs {
			ev := fullEvent(round*2 + i)
			if round == 1 {
				ev.Query = "SELECT '\xff\xfe'"
			}
			l.Record(ev)
			flush(t, l)
			if err := l.Checkpoint(ctx, key); err != nil {
				t.Fatal(err)
			}
			// Nothing new: no second checkpoint.
			if err := l.Checkpoint(ctx, key); err != nil {
				t.Fatal(err)
			}
			flush(t, l)
		}
	}
	logs[0].Record(fullEvent(9)) // after the last checkpoint
	flush(t, logs[0])
	var buf bytes.Buffer
	n, err := Export(ctx, m, 0, &buf)
	if err != nil || n != int64(len(m.snapshot())) {
		t.Fatalf("Export = %d, %v; want %d events", n, err, len(m.snapshot()))
	}
	return strings.Split(strings.TrimSpace(buf.String()), "\n")
}

func TestExportVerifiesOffline(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	lines := exportOf(t, key)
	verify := func(lines []string) (ExportSummary, error) {
		return VerifyExport(strings.NewReader(strings.Join(lines, "\n")+"\n"), pub)
	}
	sum, err := verify(lines)
	if err != nil {
		t.Fatalf("an untouched export: %v", err)
	}
	if sum.Events != int64(len(lines)) || sum.Chains != 2 || sum.Checkpoints != 6 || sum.Unsigned["a"] != 1 || sum.Unsigned["b"] != 0 {
		t.Fatalf("summary %+v for %d lines", sum, len(lines))
	}
	edit := func(i int, fn func(map[string]any)) []string {
		var m map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &m); err != nil {
			t.Fatal(err)
		}
		fn(m)
		b, _ := json.Marshal(m)
		out := append([]string(nil), lines...)
		out[i] = string(b)
		return out
	}
	removed := append(append([]string(nil), lines[:4]...), lines[5:]...)
	// A checkpoint signed again, with another key, over an edited event
	// and a chain whose hashes were all recomputed: the signature shows it.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	resigned := exportOf(t, other)
	for name, tc := range map[string]struct {
		lines []string
		want  []string
	}{
		"one event edited":                      {edit(2, func(m map[string]any) { m["user"] = "someone-else" }), []string{"line 3 (event 3)", "edited"}},
		"one event removed":                     {removed, []string{"line 5", "event 6 follows event 4"}},
		"renumbered after a removal":            {renumber(t, removed, 4), []string{"line 5 (event 5)", "number 4 of node a's chain follows number 2"}},
		"checkpoint re-signed with another key": {resigned, []string{"line 2 (event 2)", "checkpoint of node a's chain", "not the given public key"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := verify(tc.lines)
			if err == nil {
				t.Fatal("a tampered export verified")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	// Same key id, forged signature bytes.
	forged := edit(2, func(m map[string]any) {
		var d map[string]any
		json.Unmarshal([]byte(m["detail"].(string)), &d)
		d["signature"] = base64.StdEncoding.EncodeToString(make([]byte, ed25519.SignatureSize))
		b, _ := json.Marshal(d)
		m["detail"] = string(b)
	})
	if _, err := verify(forged); err == nil {
		t.Fatal("an export with a forged signature verified")
	}
}

// renumber lowers the positions of the lines from i on by one, as someone
// hiding a removal would.
func renumber(t *testing.T, lines []string, from int) []string {
	out := append([]string(nil), lines...)
	for i := from; i < len(out); i++ {
		var m map[string]any
		json.Unmarshal([]byte(out[i]), &m)
		m["seq"] = m["seq"].(float64) - 1
		b, _ := json.Marshal(m)
		out[i] = string(b)
	}
	return out
}

// A chain cut after a checkpoint is intact by itself; the checkpoint the
// server logged (an anchor kept apart from the store) shows the cut, and
// one whose hash differs shows a rewrite.
func TestExportAnchors(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	lines := exportOf(t, key)
	verify := func(lines []string, anchors ...Anchor) (ExportSummary, error) {
		return VerifyExport(strings.NewReader(strings.Join(lines, "\n")+"\n"), pub, anchors...)
	}
	sum, err := verify(lines)
	if err != nil {
		t.Fatal(err)
	}
	last := sum.Last["b"]
	if last.ChainSeq == 0 {
		t.Fatalf("no last checkpoint of b in %+v", sum.Last)
	}
	again, err := ParseAnchor(last.String())
	if err != nil || again != last {
		t.Fatalf("ParseAnchor(%s) = %+v, %v", last, again, err)
	}
	if _, err := verify(lines, last, sum.Last["a"]); err != nil {
		t.Fatalf("the whole export with its own anchors: %v", err)
	}
	// Cut b's chain after its next-to-last checkpoint: the lines of b
	// from its last checkpoint on go.
	var cut []string
	for _, l := range lines {
		var x exported
		json.Unmarshal([]byte(l), &x)
		if string(x.Chain) == "b" && x.ChainSeq >= last.ChainSeq-1 {
			continue
		}
		cut = append(cut, l)
	}
	cut = renumberAll(t, cut)
	if _, err := verify(cut); err != nil {
		t.Fatalf("without an anchor the cut export should verify, as it is linked: %v", err)
	}
	_, err = verify(cut, last)
	if err == nil || !strings.Contains(err.Error(), "lacks checkpoint b:") || !strings.Contains(err.Error(), "removed from its end") {
		t.Fatalf("the cut export against b's logged checkpoint: %v", err)
	}
	wrong := last
	wrong.Hash = strings.Repeat("0", 64)
	if _, err := verify(lines, wrong); err == nil || !strings.Contains(err.Error(), "rewritten") {
		t.Fatalf("an anchor with another hash: %v", err)
	}
	for _, bad := range []string{"a:1", "a:x:" + last.Hash, "a:0:" + last.Hash, "a:1:zz"} {
		if _, err := ParseAnchor(bad); err == nil {
			t.Errorf("ParseAnchor(%q) accepted", bad)
		}
	}
}

// renumberAll gives the lines positions 1, 2, … in order, as someone
// hiding removals would.
func renumberAll(t *testing.T, lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		m["seq"] = i + 1
		b, _ := json.Marshal(m)
		out[i] = string(b)
	}
	return out
}
