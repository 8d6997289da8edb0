package pgwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// body builds a startup packet body: the request code, then parts.
func body(code uint32, parts ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, code)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// framed prefixes b with its length word, as a startup packet.
func framed(b []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(b)+4)), b...)
}

func encode(t testing.TB, m pgproto3.FrontendMessage) []byte {
	t.Helper()
	b, err := m.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseStartupPacket(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		want *startupPacket
	}{
		{"ssl", body(codeSSL), &startupPacket{kind: kindSSL}},
		{"gssenc", body(codeGSSENC), &startupPacket{kind: kindGSSENC}},
		{"cancel 3.0", body(codeCancel, "\x00\x00\x30\x39", "\xde\xad\xbe\xef"),
			&startupPacket{kind: kindCancel, cancelPID: 12345, cancelSecret: []byte{0xde, 0xad, 0xbe, 0xef}}},
		{"cancel 3.2 long key", body(codeCancel, "\x7f\xff\xff\xff", strings.Repeat("k", 32)),
			&startupPacket{kind: kindCancel, cancelPID: 0x7fffffff, cancelSecret: []byte(strings.Repeat("k", 32))}},
		{"cancel 256-byte key", body(codeCancel, "\x00\x00\x00\x01", strings.Repeat("\xff", 256)),
			&startupPacket{kind: kindCancel, cancelPID: 1, cancelSecret: bytes.Repeat([]byte{0xff}, 256)}},
		{"startup 3.0", body(protocolV3, "user\x00alice\x00database\x00orders\x00application_name\x00psql\x00\x00"),
			&startupPacket{kind: kindStartup, params: map[string]string{"user": "alice", "database": "orders", "application_name": "psql"}}},
		{"startup 3.2", body(protocolV3|2, "user\x00alice\x00_pq_.feature\x00on\x00\x00"),
			&startupPacket{kind: kindStartup, minor: 2, params: map[string]string{"user": "alice", "_pq_.feature": "on"}}},
		{"startup 3.9999", body(protocolV3|9999, "user\x00alice\x00\x00"),
			&startupPacket{kind: kindStartup, minor: 9999, params: map[string]string{"user": "alice"}}},
		{"startup no params", body(protocolV3, "\x00"),
			&startupPacket{kind: kindStartup, params: map[string]string{}}},
		{"startup empty value", body(protocolV3, "user\x00\x00options\x00\x00\x00"),
			&startupPacket{kind: kindStartup, params: map[string]string{"user": "", "options": ""}}},
		{"startup utf-8", body(protocolV3, "user\x00zoë\x00\x00"),
			&startupPacket{kind: kindStartup, params: map[string]string{"user": "zoë"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStartupPacket(tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if got.kind != tt.want.kind || got.minor != tt.want.minor || !maps.Equal(got.params, tt.want.params) ||
				got.cancelPID != tt.want.cancelPID || !bytes.Equal(got.cancelSecret, tt.want.cancelSecret) {
				t.Errorf("parseStartupPacket = %+v, want %+v", got, tt.want)
			}
			// The same through the framed reader, which reads no further.
			r := bytes.NewReader(append(framed(tt.body), "next"...))
			got2, err := readStartupPacket(r)
			if err != nil {
				t.Fatalf("readStartupPacket: %v", err)
			}
			if got2.kind != got.kind || !maps.Equal(got2.params, got.params) || !bytes.Equal(got2.cancelSecret, got.cancelSecret) {
				t.Errorf("readStartupPacket = %+v, parseStartupPacket = %+v", got2, got)
			}
			if r.Len() != len("next") {
				t.Errorf("readStartupPacket left %d bytes, want the 4 of the next packet", r.Len())
			}
		})
	}
}

func TestParseStartupPacketCancelKeyIsCopied(t *testing.T) {
	b := body(codeCancel, "\x00\x00\x00\x01", "\x01\x02\x03\x04")
	pkt, err := parseStartupPacket(b)
	if err != nil {
		t.Fatal(err)
	}
	b[8] = 0xff
	if pkt.cancelSecret[0] != 0x01 {
		t.Error("the cancel secret aliases the read buffer")
	}
}

func TestParseStartupPacketRejects(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		msg  string
	}{
		{"empty", nil, "short startup packet"},
		{"three bytes", []byte{0, 3, 0}, "short startup packet"},
		{"ssl with a body", body(codeSSL, "\x00"), "encryption request with a body"},
		{"gssenc with a body", body(codeGSSENC, "\x00\x00\x00\x00"), "encryption request with a body"},
		{"cancel without key", body(codeCancel, "\x00\x00\x00\x01"), "cancel request"},
		{"cancel short pid", body(codeCancel, "\x00\x01"), "cancel request"},
		{"cancel empty", body(codeCancel), "cancel request"},
		{"cancel 3-byte key", body(codeCancel, "\x00\x00\x00\x01", "kkk"), "cancel request"},
		{"cancel 257-byte key", body(codeCancel, "\x00\x00\x00\x01", strings.Repeat("k", 257)), "cancel request"},
		{"protocol 2", body(2<<16, "user\x00alice\x00\x00"), "unsupported protocol 2.0"},
		{"protocol 4", body(4<<16, "user\x00alice\x00\x00"), "unsupported protocol 4.0"},
		{"protocol 1234.5690", body(1234<<16|5690, "\x00"), "unsupported protocol 1234.5690"},
		{"unknown request code", body(80877105), "unsupported protocol"},
		{"startup without terminator", body(protocolV3, "user\x00alice\x00"), "unterminated startup parameter"},
		{"startup empty", body(protocolV3), "unterminated startup parameter"},
		{"unterminated name", body(protocolV3, "user"), "unterminated startup parameter"},
		{"unterminated value", body(protocolV3, "user\x00alice"), `startup parameter "user" has no value`},
		{"name without value", body(protocolV3, "user\x00"), `startup parameter "user" has no value`},
		{"duplicate", body(protocolV3, "user\x00alice\x00user\x00postgres\x00\x00"), `startup parameter "user" given twice`},
		{"duplicate same value", body(protocolV3, "database\x00a\x00database\x00a\x00\x00"), `"database" given twice`},
		{"trailing garbage", body(protocolV3, "user\x00alice\x00\x00junk"), "data after startup parameters"},
		{"trailing nul", body(protocolV3, "user\x00alice\x00\x00\x00"), "data after startup parameters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt, err := parseStartupPacket(tt.body)
			if err == nil {
				t.Fatalf("parseStartupPacket = %+v, want an error", pkt)
			}
			if !errors.Is(err, errProtocol) {
				t.Errorf("error %v is not a protocol violation", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
		})
	}
}

func TestReadStartupPacketLength(t *testing.T) {
	withLength := func(n uint32, rest []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, n), rest...)
	}
	// A 10000-byte packet, PostgreSQL's maximum, is fine.
	pad := strings.Repeat("x", maxStartup-4-4-len("user\x00alice\x00a\x00\x00\x00"))
	biggest := framed(body(protocolV3, "user\x00alice\x00a\x00"+pad+"\x00\x00"))
	if len(biggest) != maxStartup {
		t.Fatalf("test packet is %d bytes", len(biggest))
	}
	if pkt, err := readStartupPacket(bytes.NewReader(biggest)); err != nil || len(pkt.params["a"]) != len(pad) {
		t.Errorf("packet of exactly %d bytes: %v", maxStartup, err)
	}

	for _, n := range []uint32{0, 4, 7, maxStartup + 1, 1 << 30, 0xffffffff} {
		// The reader must refuse on the length alone, without waiting
		// for a body that never comes.
		r := &countingReader{r: bytes.NewReader(withLength(n, bytes.Repeat([]byte{0}, 16)))}
		_, err := readStartupPacket(r)
		if !errors.Is(err, errProtocol) || !strings.Contains(err.Error(), "startup packet length") {
			t.Errorf("length %d: %v, want a protocol violation about the length", n, err)
		}
		if r.n != 4 {
			t.Errorf("length %d: read %d bytes, want only the length word", n, r.n)
		}
	}

	// Minimum: 8 bytes is an SSLRequest.
	if pkt, err := readStartupPacket(bytes.NewReader(encodeSSL(t))); err != nil || pkt.kind != kindSSL {
		t.Errorf("SSLRequest: %+v, %v", pkt, err)
	}

	// Truncated input is an I/O error, not a protocol violation: the
	// client went away.
	for _, in := range [][]byte{nil, {0, 0}, withLength(16, body(protocolV3, "user"))} {
		_, err := readStartupPacket(bytes.NewReader(in))
		if err == nil || errors.Is(err, errProtocol) {
			t.Errorf("truncated %q: %v, want an I/O error", in, err)
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("truncated %q: %v, want EOF", in, err)
		}
	}
}

func encodeSSL(t testing.TB) []byte { return encode(t, &pgproto3.SSLRequest{}) }

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestReadStartupPacketMatchesPgproto3(t *testing.T) {
	for _, m := range []pgproto3.FrontendMessage{
		&pgproto3.SSLRequest{},
		&pgproto3.GSSEncRequest{},
		&pgproto3.CancelRequest{ProcessID: 42, SecretKey: []byte{1, 2, 3, 4}},
		&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "alice", "database": "orders", "client_encoding": "UTF8"}},
		&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion32, Parameters: map[string]string{"user": "alice"}},
	} {
		pkt, err := readStartupPacket(bytes.NewReader(encode(t, m)))
		if err != nil {
			t.Errorf("%T: %v", m, err)
			continue
		}
		switch m := m.(type) {
		case *pgproto3.SSLRequest:
			if pkt.kind != kindSSL {
				t.Errorf("SSLRequest parsed as %+v", pkt)
			}
		case *pgproto3.GSSEncRequest:
			if pkt.kind != kindGSSENC {
				t.Errorf("GSSEncRequest parsed as %+v", pkt)
			}
		case *pgproto3.CancelRequest:
			if pkt.kind != kindCancel || pkt.cancelPID != m.ProcessID || !bytes.Equal(pkt.cancelSecret, m.SecretKey) {
				t.Errorf("CancelRequest parsed as %+v", pkt)
			}
			if cancelSecret(pkt.cancelSecret) != 0x01020304 {
				t.Errorf("cancelSecret = %#x", cancelSecret(pkt.cancelSecret))
			}
		case *pgproto3.StartupMessage:
			if pkt.kind != kindStartup || uint32(pkt.minor) != m.ProtocolVersion&0xffff || !maps.Equal(pkt.params, m.Parameters) {
				t.Errorf("StartupMessage parsed as %+v", pkt)
			}
		}
	}
}

func TestCancelSecret(t *testing.T) {
	for _, tt := range []struct {
		key  []byte
		want uint32
	}{
		{[]byte{0xde, 0xad, 0xbe, 0xef}, 0xdeadbeef},
		{[]byte{0, 0, 0, 1}, 1},
		// Keys of other lengths were never handed out by keygate.
		{[]byte{0xde, 0xad, 0xbe}, 0},
		{[]byte{0xde, 0xad, 0xbe, 0xef, 0}, 0},
		{nil, 0},
	} {
		if got := cancelSecret(tt.key); got != tt.want {
			t.Errorf("cancelSecret(%x) = %#x, want %#x", tt.key, got, tt.want)
		}
	}
}

func TestParsePassword(t *testing.T) {
	for _, tt := range []struct {
		body string
		want string
		ok   bool
	}{
		{"v4.public.abc\x00", "v4.public.abc", true},
		{"\x00", "", true},
		{"pässword with spaces\x00", "pässword with spaces", true},
		{"", "", false},
		{"no terminator", "", false},
		{"two\x00strings\x00", "", false},
		{"trailing\x00\x00", "", false},
	} {
		got, err := parsePassword([]byte(tt.body))
		if tt.ok && (err != nil || got != tt.want) {
			t.Errorf("parsePassword(%q) = %q, %v, want %q", tt.body, got, err, tt.want)
		}
		if !tt.ok && (err == nil || !errors.Is(err, errProtocol)) {
			t.Errorf("parsePassword(%q) = %q, %v, want a protocol violation", tt.body, got, err)
		}
	}
}

func TestReadPassword(t *testing.T) {
	pw := encode(t, &pgproto3.PasswordMessage{Password: "v4.public.token"})
	r := bytes.NewReader(append(pw, 'Q'))
	got, err := readPassword(r)
	if err != nil || got != "v4.public.token" {
		t.Errorf("readPassword = %q, %v", got, err)
	}
	if r.Len() != 1 {
		t.Errorf("readPassword left %d bytes, want 1", r.Len())
	}

	msg := func(typ byte, n uint32, rest string) []byte {
		return append(binary.BigEndian.AppendUint32([]byte{typ}, n), rest...)
	}
	for _, tt := range []struct {
		name string
		in   []byte
	}{
		{"query instead of password", encode(t, &pgproto3.Query{String: "SELECT 1"})},
		{"startup message", encode(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "a"}})},
		{"length 4", msg('p', 4, "")},
		{"length 0", msg('p', 0, "")},
		{"length too big", msg('p', maxPassword+1, "x\x00")},
		{"length huge", msg('p', 0xffffffff, "x\x00")},
		{"no terminator", msg('p', 5, "x")},
		{"trailing data", msg('p', 7, "x\x00y\x00")[:8]},
	} {
		r := &countingReader{r: bytes.NewReader(tt.in)}
		got, err := readPassword(r)
		if !errors.Is(err, errProtocol) {
			t.Errorf("%s: readPassword = %q, %v, want a protocol violation", tt.name, got, err)
		}
		if r.n > 5+maxPassword {
			t.Errorf("%s: read %d bytes", tt.name, r.n)
		}
	}
	// A maximal password is fine.
	big := strings.Repeat("x", maxPassword-5)
	if got, err := readPassword(bytes.NewReader(encode(t, &pgproto3.PasswordMessage{Password: big}))); err != nil || got != big {
		t.Errorf("password of %d bytes: %v", len(big), err)
	}
	// Truncated: the client went away.
	if _, err := readPassword(bytes.NewReader(pw[:len(pw)-1])); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated password message: %v, want io.ErrUnexpectedEOF", err)
	}
}
