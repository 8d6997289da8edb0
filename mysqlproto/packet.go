// Package mysqlproto reads and writes the MySQL client/server protocol's
// packets as keygate needs them on both of its sides: framing, the
// connection phase (greeting, handshake response, authentication
// exchange), and the OK and ERR packets that end a command. It builds on
// go-mysql's protocol constants and length-encoded integer helpers; the
// conversation itself is the gateway's and the upstream connector's.
//
// Everything here parses bytes from outside keygate, before and after
// authentication: every decoder checks lengths and returns an error,
// never panics, on a short or malformed packet.
package mysqlproto

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
)

// MaxFrame is the largest payload of one frame; a packet of that size or
// more continues in the next frame.
const MaxFrame = 1<<24 - 1

// ErrMalformed marks a packet that does not parse.
var ErrMalformed = errors.New("malformed packet")

// ErrTooLarge marks a packet longer than the reader allows.
var ErrTooLarge = errors.New("packet too large")

// malformed wraps ErrMalformed with what was wrong.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Reader reads packets, joining the frames of one that spans several.
type Reader struct {
	r *bufio.Reader
	// Max bounds a packet's length; 0 means no bound.
	Max int
	// Reuse makes Read return its payload in a buffer it reuses: the
	// payload is valid until the next Read. A relay that looks at each
	// packet and passes it on allocates nothing per packet then.
	Reuse bool
	hdr   [4]byte
	buf   []byte
}

// maxReused bounds the buffer a Reader keeps between packets: one large
// value must not pin its size for the rest of the connection.
const maxReused = 1 << 20

// NewReader reads packets from r.
func NewReader(r *bufio.Reader) *Reader { return &Reader{r: r} }

// Buffered is how many bytes are read but not yet returned: a relay
// flushes what it wrote when nothing more is waiting.
func (r *Reader) Buffered() int { return r.r.Buffered() }

// Read reads one packet, returning the sequence id of its first frame and
// of its last, and its payload. The payload is freshly allocated.
func (r *Reader) Read() (first, last byte, payload []byte, err error) {
	if r.Reuse {
		payload = r.buf[:0]
		defer func() {
			if cap(payload) <= maxReused {
				r.buf = payload
			}
		}()
	}
	for n := 0; ; n++ {
		if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
			if n > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, 0, nil, err
		}
		size := int(r.hdr[0]) | int(r.hdr[1])<<8 | int(r.hdr[2])<<16
		if n == 0 {
			first = r.hdr[3]
		} else if r.hdr[3] != last+1 {
			return 0, 0, nil, malformed("frame %d of a packet has sequence id %d after %d", n, r.hdr[3], last)
		}
		last = r.hdr[3]
		if r.Max > 0 && len(payload)+size > r.Max {
			return 0, 0, nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, r.Max)
		}
		start := len(payload)
		payload = slices.Grow(payload, size)[:start+size]
		if _, err := io.ReadFull(r.r, payload[start:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, 0, nil, err
		}
		if size < MaxFrame {
			return first, last, payload, nil
		}
	}
}

// Append appends payload to buf as a packet starting at sequence id seq,
// split into frames as the protocol requires, and returns buf and the
// sequence id of the packet's last frame.
func Append(buf []byte, seq byte, payload []byte) ([]byte, byte) {
	for {
		n := min(len(payload), MaxFrame)
		buf = append(buf, byte(n), byte(n>>8), byte(n>>16), seq)
		buf = append(buf, payload[:n]...)
		payload = payload[n:]
		if n < MaxFrame {
			return buf, seq
		}
		seq++
	}
}

// WriteTo writes payload as a packet starting at sequence id seq to a
// buffered writer, without copying it first, and returns the sequence id
// of its last frame.
func WriteTo(w *bufio.Writer, seq byte, payload []byte) (byte, error) {
	for {
		n := min(len(payload), MaxFrame)
		for _, b := range [4]byte{byte(n), byte(n >> 8), byte(n >> 16), seq} {
			if err := w.WriteByte(b); err != nil {
				return seq, err
			}
		}
		if _, err := w.Write(payload[:n]); err != nil {
			return seq, err
		}
		payload = payload[n:]
		if n < MaxFrame {
			return seq, nil
		}
		seq++
	}
}

// Write writes payload as a packet starting at sequence id seq and
// returns the sequence id of its last frame.
func Write(w io.Writer, seq byte, payload []byte) (byte, error) {
	buf, last := Append(make([]byte, 0, len(payload)+4), seq, payload)
	_, err := w.Write(buf)
	return last, err
}

// cursor reads a packet's fields in order, remembering the first error.
type cursor struct {
	b   []byte
	err error
}

func (c *cursor) fail(what string) {
	if c.err == nil {
		c.err = malformed("%s is cut short", what)
	}
	c.b = nil
}

func (c *cursor) bytes(n int, what string) []byte {
	if n < 0 || len(c.b) < n {
		c.fail(what)
		return nil
	}
	v := c.b[:n:n]
	c.b = c.b[n:]
	return v
}

func (c *cursor) byte1(what string) byte {
	v := c.bytes(1, what)
	if v == nil {
		return 0
	}
	return v[0]
}

func (c *cursor) uint16(what string) uint16 {
	v := c.bytes(2, what)
	if v == nil {
		return 0
	}
	return uint16(v[0]) | uint16(v[1])<<8
}

func (c *cursor) uint32(what string) uint32 {
	v := c.bytes(4, what)
	if v == nil {
		return 0
	}
	return uint32(v[0]) | uint32(v[1])<<8 | uint32(v[2])<<16 | uint32(v[3])<<24
}

// nulString reads a NUL-terminated string; at the end of the packet the
// rest counts as the string, as servers accept.
func (c *cursor) nulString() string {
	for i, b := range c.b {
		if b == 0 {
			s := string(c.b[:i])
			c.b = c.b[i+1:]
			return s
		}
	}
	s := string(c.b)
	c.b = nil
	return s
}

// lenInt reads a length-encoded integer.
func (c *cursor) lenInt(what string) uint64 {
	if len(c.b) == 0 {
		c.fail(what)
		return 0
	}
	switch first := c.b[0]; {
	case first < 0xfb:
		c.b = c.b[1:]
		return uint64(first)
	case first == 0xfc:
		v := c.bytes(3, what)
		if v == nil {
			return 0
		}
		return uint64(v[1]) | uint64(v[2])<<8
	case first == 0xfd:
		v := c.bytes(4, what)
		if v == nil {
			return 0
		}
		return uint64(v[1]) | uint64(v[2])<<8 | uint64(v[3])<<16
	case first == 0xfe:
		v := c.bytes(9, what)
		if v == nil {
			return 0
		}
		var n uint64
		for i := 8; i >= 1; i-- {
			n = n<<8 | uint64(v[i])
		}
		return n
	default:
		c.fail(what + " (a NULL or invalid length)")
		return 0
	}
}

// lenBytes reads a length-encoded string.
func (c *cursor) lenBytes(what string) []byte {
	n := c.lenInt(what)
	if c.err != nil {
		return nil
	}
	if n > uint64(len(c.b)) {
		c.fail(what)
		return nil
	}
	return c.bytes(int(n), what)
}

// appendLenInt appends a length-encoded integer.
func appendLenInt(b []byte, n uint64) []byte {
	switch {
	case n < 0xfb:
		return append(b, byte(n))
	case n < 1<<16:
		return append(b, 0xfc, byte(n), byte(n>>8))
	case n < 1<<24:
		return append(b, 0xfd, byte(n), byte(n>>8), byte(n>>16))
	default:
		return append(b, 0xfe, byte(n), byte(n>>8), byte(n>>16), byte(n>>24), byte(n>>32), byte(n>>40), byte(n>>48), byte(n>>56))
	}
}

func appendUint16(b []byte, v uint16) []byte { return append(b, byte(v), byte(v>>8)) }

func appendUint32(b []byte, v uint32) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

// LenInt reads a length-encoded integer from the start of b and says how
// many bytes it took; ok is false for a short or NULL one.
func LenInt(b []byte) (n uint64, used int, ok bool) {
	c := cursor{b: b}
	n = c.lenInt("length")
	if c.err != nil {
		return 0, 0, false
	}
	return n, len(b) - len(c.b), true
}
