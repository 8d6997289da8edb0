package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"unicode/utf8"
)

// Digest follows a statement too long to keep whole: its length, SHA-256,
// head and tail.
type Digest struct {
	keep       int // bytes of head and of tail
	n          int
	sum        hashWriter
	head, tail []byte
}

type hashWriter interface {
	io.Writer
	Sum([]byte) []byte
}

// NewDigest keeps about limit bytes of the text in all.
func NewDigest(limit int) *Digest {
	keep := max((limit-256)/2, 64)
	return &Digest{keep: keep, sum: sha256.New()}
}

func (d *Digest) Write(p []byte) (int, error) {
	d.n += len(p)
	d.sum.Write(p)
	if room := d.keep - len(d.head); room > 0 {
		d.head = append(d.head, p[:min(room, len(p))]...)
	}
	d.tail = append(d.tail, p...)
	if len(d.tail) > 2*d.keep {
		d.tail = append(d.tail[:0], d.tail[len(d.tail)-d.keep:]...)
	}
	return len(p), nil
}

// Summary is what the audit says of the text: head, a marker and tail,
// with the full length and SHA-256 in the detail.
func (d *Digest) Summary() (string, map[string]any) {
	detail := map[string]any{"truncated": true, "length": d.n, "sha256": hex.EncodeToString(d.sum.Sum(nil))}
	tail := d.tail
	if len(tail) > d.keep {
		tail = tail[len(tail)-d.keep:]
	}
	if d.n <= 2*d.keep {
		// Head and tail overlap: the whole text is here.
		return string(d.tail[max(len(d.tail)-d.n, 0):]), detail
	}
	head := cutRunes(d.head, true)
	tail = cutRunes(tail, false)
	omitted := d.n - len(head) - len(tail)
	return string(head) + fmt.Sprintf("…[%d bytes omitted; %d in all, sha256 %s]…", omitted, d.n, detail["sha256"]) + string(tail), detail
}

// cutRunes trims a partial UTF-8 sequence off the end of a head, or off the
// start of a tail.
func cutRunes(b []byte, head bool) []byte {
	if head {
		for i := 0; i < utf8.UTFMax && len(b) > 0; i++ {
			if r, _ := utf8.DecodeLastRune(b); r != utf8.RuneError {
				break
			}
			b = b[:len(b)-1]
		}
		return b
	}
	for len(b) > 0 && !utf8.RuneStart(b[0]) {
		b = b[1:]
	}
	return b
}

// AuditForm is what the audit keeps of a statement read whole: the text,
// or its digest when it is longer than limit.
func AuditForm(text string, limit int) (string, map[string]any) {
	if len(text) <= limit {
		return text, nil
	}
	d := NewDigest(limit)
	io.WriteString(d, text)
	return d.Summary()
}

// Len is the length of the text written so far.
func (d *Digest) Len() int { return d.n }
