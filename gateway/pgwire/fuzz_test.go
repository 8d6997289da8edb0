package pgwire

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/token"
)

func FuzzParseStartupPacket(f *testing.F) {
	for _, b := range [][]byte{
		body(codeSSL),
		body(codeGSSENC),
		body(codeCancel, "\x00\x00\x30\x39\xde\xad\xbe\xef"),
		body(codeCancel, "\x00\x00\x30\x39", strings.Repeat("k", 32)),
		body(protocolV3, "user\x00alice\x00database\x00orders\x00application_name\x00psql\x00\x00"),
		body(protocolV3|2, "user\x00alice\x00_pq_.x\x00y\x00\x00"),
		body(protocolV3, "user\x00alice\x00user\x00bob\x00\x00"),
		body(protocolV3, "user\x00alice\x00\x00trailing"),
		body(protocolV3, "user\x00alice"),
		body(2<<16, "\x00"),
		{0, 3},
		nil,
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pkt, err := parseStartupPacket(b)
		if err != nil {
			if !errors.Is(err, errProtocol) {
				t.Fatalf("error %v is not a protocol violation", err)
			}
			if pkt != nil {
				t.Fatalf("packet %+v returned with error %v", pkt, err)
			}
		} else {
			checkPacket(t, b, pkt)
		}

		// The framed reader agrees with the parser whenever the length is
		// within bounds, and reads exactly one packet.
		in := append(framed(b), "tail"...)
		r := bytes.NewReader(in)
		pkt2, err2 := readStartupPacket(r)
		if len(b)+4 < 8 || len(b)+4 > maxStartup {
			if !errors.Is(err2, errProtocol) {
				t.Fatalf("readStartupPacket of a %d-byte packet: %v, want a protocol violation", len(b)+4, err2)
			}
			return
		}
		if (err == nil) != (err2 == nil) {
			t.Fatalf("parseStartupPacket: %v; readStartupPacket: %v", err, err2)
		}
		if err2 == nil {
			if pkt2.kind != pkt.kind || pkt2.minor != pkt.minor || !maps.Equal(pkt2.params, pkt.params) ||
				pkt2.cancelPID != pkt.cancelPID || !bytes.Equal(pkt2.cancelSecret, pkt.cancelSecret) {
				t.Fatalf("readStartupPacket = %+v, parseStartupPacket = %+v", pkt2, pkt)
			}
			if r.Len() != len("tail") {
				t.Fatalf("readStartupPacket left %d bytes, want 4", r.Len())
			}
		}
	})
}

// checkPacket checks what a successful parse of b promises.
func checkPacket(t *testing.T, b []byte, pkt *startupPacket) {
	t.Helper()
	code := binary.BigEndian.Uint32(b)
	switch pkt.kind {
	case kindSSL, kindGSSENC:
		if len(b) != 4 || (pkt.kind == kindSSL) != (code == codeSSL) {
			t.Fatalf("%x parsed as encryption request %+v", b, pkt)
		}
	case kindCancel:
		if code != codeCancel || len(pkt.cancelSecret) < 4 || len(pkt.cancelSecret) > 256 ||
			pkt.cancelPID != binary.BigEndian.Uint32(b[4:]) || !bytes.Equal(pkt.cancelSecret, b[8:]) {
			t.Fatalf("%x parsed as cancel request %+v", b, pkt)
		}
	case kindStartup:
		if code>>16 != 3 || pkt.minor != uint16(code) || pkt.params == nil {
			t.Fatalf("%x parsed as startup %+v", b, pkt)
		}
		// The parameters account for every byte: names, values, their
		// terminators and the final empty name.
		n := 4 + 1
		for k, v := range pkt.params {
			if k == "" {
				t.Fatalf("empty parameter name in %q", b)
			}
			if strings.IndexByte(k, 0) >= 0 || strings.IndexByte(v, 0) >= 0 {
				t.Fatalf("parameter %q=%q holds a NUL byte", k, v)
			}
			n += len(k) + 1 + len(v) + 1
		}
		if n != len(b) {
			t.Fatalf("parameters %q account for %d of %d bytes", pkt.params, n, len(b))
		}
	default:
		t.Fatalf("unknown packet kind %d", pkt.kind)
	}
}

// FuzzHandshake drives the server side of start-up with arbitrary client
// bytes, sent in plaintext or, if overTLS, inside a TLS session that the
// harness negotiates first. Whatever the bytes, Serve returns promptly,
// never panics and never starts a session.
func FuzzHandshake(f *testing.F) {
	p := newPKI(f)
	tok := p.mint(f, "alice")
	frontend := func(msgs ...pgproto3.FrontendMessage) []byte { return encodeFrontend(f, msgs...) }
	hello := startup(map[string]string{"user": "alice", "database": "orders", "application_name": "psql"})
	for _, seed := range []struct {
		data    []byte
		overTLS bool
	}{
		{frontend(hello), false},
		{frontend(&pgproto3.SSLRequest{}), false},
		{frontend(&pgproto3.SSLRequest{}, hello), false},
		{frontend(&pgproto3.GSSEncRequest{}, hello), false},
		{frontend(&pgproto3.GSSEncRequest{}, &pgproto3.GSSEncRequest{}, &pgproto3.GSSEncRequest{}, &pgproto3.GSSEncRequest{}), false},
		{frontend(&pgproto3.CancelRequest{ProcessID: 7, SecretKey: []byte{1, 2, 3, 4}}), false},
		{[]byte{0x16, 0x03, 0x01, 0x00, 0x10, 0x01, 0x00, 0x00, 0x0c, 0x03, 0x03}, false},
		{[]byte{0, 0, 0x27, 0x11}, false},
		{frontend(hello, &pgproto3.PasswordMessage{Password: tok}), true},
		{frontend(hello, &pgproto3.PasswordMessage{Password: "hunter2"}), true},
		{frontend(hello, &pgproto3.PasswordMessage{Password: tok}, &pgproto3.Query{String: "SELECT 1"}), true},
		{frontend(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion32, Parameters: map[string]string{"user": "alice", "_pq_.x": "1"}}, &pgproto3.PasswordMessage{Password: tok}), true},
		{frontend(startup(map[string]string{"user": "alice", "replication": "database"})), true},
		{frontend(startup(map[string]string{"database": "orders"})), true},
		{frontend(startup(map[string]string{"user": tok})), true},
		{frontend(&pgproto3.SSLRequest{}), true},
		{frontend(&pgproto3.CancelRequest{ProcessID: 7, SecretKey: []byte{1, 2, 3, 4}}), true},
		{frontend(hello, &pgproto3.Query{String: "SELECT 1"}), true},
	} {
		f.Add(seed.data, seed.overTLS)
	}

	f.Fuzz(func(t *testing.T, data []byte, overTLS bool) {
		g := newGateway(t, p, authorizer{allow: true}, io.Discard)
		g.srv.Gateway.HandshakeTimeout = time.Second
		client, server := net.Pipe()
		defer client.Close()
		client.SetDeadline(time.Now().Add(5 * time.Second))
		done := make(chan struct{})
		go func() {
			defer close(done)
			g.srv.Gateway.ServeConn(context.Background(), server, g.srv)
		}()

		var conn net.Conn = client
		var tc *tls.Conn
		if overTLS {
			tc = g.startTLS(t, client)
			conn = tc
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			// Everything the client sends, then the end of its side.
			defer wg.Done()
			conn.Write(data)
			if tc != nil {
				tc.CloseWrite()
			} else {
				client.Close()
			}
		}()
		go func() {
			defer wg.Done()
			io.Copy(io.Discard, conn)
		}()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			t.Fatalf("Serve did not return within 3s (handshake timeout %s)", g.srv.Gateway.HandshakeTimeout)
		}
		client.Close()
		wg.Wait()

		if ev := g.audit.OfType(audit.SessionStart); len(ev) != 0 {
			t.Fatalf("a session started: %+v", ev)
		}
		if s := g.srv.Gateway.Sessions(); len(s) != 0 {
			t.Fatalf("%d live sessions", len(s))
		}
		if len(g.srv.Upstreams) != 0 {
			t.Fatalf("upstreams appeared: %v", g.srv.Upstreams)
		}
	})
}

// FuzzRelay sends arbitrary messages through an authenticated session to a
// real PostgreSQL: whatever the client sends, keygate neither panics nor
// loses track of the conversation in a way that hangs, and the session
// and its backend end when the client goes.
func FuzzRelay(f *testing.F) {
	r := newRelay(f, "pw_fuzz")
	encode := func(msgs ...pgproto3.FrontendMessage) []byte { return encodeFrontend(f, msgs...) }
	for _, seed := range [][]byte{
		encode(&pgproto3.Query{String: "SELECT 1"}),
		encode(&pgproto3.Parse{Name: "s1", Query: "SELECT $1::int"}, &pgproto3.Describe{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{},
			&pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("1")}}, &pgproto3.Execute{}, &pgproto3.Sync{}),
		encode(&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{DestinationPortal: "p"}, &pgproto3.Execute{Portal: "p", MaxRows: 1},
			&pgproto3.Close{ObjectType: 'P', Name: "p"}, &pgproto3.Flush{}, &pgproto3.Sync{}),
		encode(&pgproto3.Parse{Name: "s1", Query: "SELECT 1"}, &pgproto3.Parse{Name: "s1", Query: "SELECT 2"}, &pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Sync{}),
		encode(&pgproto3.Query{String: "DEALLOCATE s1"}, &pgproto3.Query{String: "BEGIN; DECLARE c CURSOR FOR SELECT 1"}, &pgproto3.Execute{Portal: "c"}, &pgproto3.Sync{}),
		encode(&pgproto3.FunctionCall{Function: 957, ArgFormatCodes: []uint16{1}, Arguments: [][]byte{{0, 0, 0, 1}}}, &pgproto3.FunctionCall{Function: 2924}),
		encode(&pgproto3.Query{String: "COPY (SELECT 1) TO STDOUT"}, &pgproto3.CopyData{Data: []byte("x")}, &pgproto3.CopyDone{}),
		{'B', 0, 0, 0, 4},
		{'E', 0, 0, 0, 5, 0},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, done := r.serve(t)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		tc := r.startTLS(t, c)
		be := newBackend(t, tc)
		tok, _, err := r.issuer.Mint(token.Claims{User: "fuzz", Database: "orders", Access: access.ReadOnly, Expires: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		be.send(startup(map[string]string{"user": "fuzz", "database": "orders"}))
		be.next()
		be.send(&pgproto3.PasswordMessage{Password: tok})
		be.until(t, "login")
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.Copy(io.Discard, tc)
		}()
		tc.Write(data)
		tc.Write([]byte{'S', 0, 0, 0, 4})
		time.Sleep(20 * time.Millisecond)
		c.Close()
		waitServe(t, done, 15*time.Second)
		wg.Wait()
		if n := r.srv.Gateway.SessionCount(); n != 0 {
			t.Fatalf("%d sessions live after the client went", n)
		}
	})
}

// encodeFrontend encodes client messages back to back.
func encodeFrontend(tb testing.TB, msgs ...pgproto3.FrontendMessage) []byte {
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			tb.Fatal(err)
		}
	}
	return b
}

// FuzzDescribeCall feeds arbitrary FunctionCall bodies to what the audit
// says of a large-object call: it never panics, names the function, and
// stays short whatever the arguments.
func FuzzDescribeCall(f *testing.F) {
	for _, fc := range []*pgproto3.FunctionCall{
		{Function: 952, ArgFormatCodes: []uint16{1}, Arguments: [][]byte{{0, 0, 0x40, 0x06}, {0, 2, 0, 0}}},
		{Function: 955, ArgFormatCodes: []uint16{1}, Arguments: [][]byte{{0, 0, 0, 0}, make([]byte, 100)}},
		{Function: 957, Arguments: [][]byte{[]byte("-1")}},
		{Function: 3170, ArgFormatCodes: []uint16{0, 1, 1}, Arguments: [][]byte{[]byte("1"), {0, 0, 0, 0, 0, 0, 1, 0}, nil}},
	} {
		b := encodeFrontend(f, fc)
		f.Add(b[5:])
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) < 4 {
			return
		}
		for oid, fn := range largeObjects {
			b := append(binary.BigEndian.AppendUint32(nil, oid), body[4:]...)
			got := fn.describe(b)
			if !strings.HasPrefix(got, fn.name+"(") || !strings.HasSuffix(got, ")") {
				t.Fatalf("describe = %q", got)
			}
			if len(got) > len(fn.name)+2+len(fn.args)*140+8 {
				t.Fatalf("describe of %d bytes gave %d bytes: %q", len(b), len(got), got)
			}
		}
	})
}
