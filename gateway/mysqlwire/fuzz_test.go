package mysqlwire

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/keygate/keygate/audit/audittest"
	"github.com/keygate/keygate/gateway"
	"github.com/keygate/keygate/mysqlproto"
	"github.com/keygate/keygate/token"
)

// FuzzHandshake feeds what a client sends before TLS to the server side
// of the connection phase: whatever it is, the server answers or closes,
// never panics, and never admits.
func FuzzHandshake(f *testing.F) {
	caps := gomysql.CLIENT_PROTOCOL_41 | gomysql.CLIENT_SECURE_CONNECTION | gomysql.CLIENT_PLUGIN_AUTH | gomysql.CLIENT_CONNECT_WITH_DB
	seed := func(r *mysqlproto.Response) []byte {
		b, _ := mysqlproto.Append(nil, 1, r.Encode())
		return b
	}
	f.Add(seed(&mysqlproto.Response{Caps: caps, User: "alice", Auth: []byte("kg1.x\x00"), Database: "orders_my", AuthName: mysqlproto.ClearPassword}))
	f.Add(seed(&mysqlproto.Response{Caps: caps | gomysql.CLIENT_SSL, SSLRequest: true}))
	f.Add(seed(&mysqlproto.Response{Caps: caps, User: "bob", Auth: make([]byte, 20), AuthName: mysqlproto.CachingSHA2}))
	f.Add([]byte{0xff, 0xff, 0xff, 1, 0, 0})
	f.Add([]byte{})
	keys := token.NewMemoryKeys()
	gw := gateway.New(&token.Verifier{Keys: keys, Now: time.Now}, &switchable{denied: map[string]string{}}, &audittest.Recorder{}, slog.New(slog.DiscardHandler), nil)
	srv := New(gw, func() *tls.Config { return &tls.Config{} }, map[string]Upstream{}, 0, false)
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			h := &handshake{srv: srv, raw: server, client: "fuzz:1", id: 1}
			server.SetDeadline(time.Now().Add(time.Second))
			if s, err := h.run(context.Background()); err == nil {
				t.Errorf("admitted a session %+v", s.gs)
			}
			server.Close()
		}()
		go io.Copy(io.Discard, client)
		client.SetDeadline(time.Now().Add(time.Second))
		client.Write(in)
		client.Close()
		<-done
	})
}

// FuzzBind reads execute parameters for the audit: any bytes, any types.
func FuzzBind(f *testing.F) {
	f.Add(3, []byte{0x00, 1, gomysql.MYSQL_TYPE_LONGLONG, 0, gomysql.MYSQL_TYPE_VAR_STRING, 0, gomysql.MYSQL_TYPE_DATETIME, 0,
		2, 0, 0, 0, 0, 0, 0, 0, 3, 'a', 'b', 'c', 7, 0xea, 0x07, 12, 5, 8, 0, 0})
	f.Add(1, []byte{0x01, 1, gomysql.MYSQL_TYPE_NULL, 0})
	f.Add(2, []byte{0x00, 0})
	f.Fuzz(func(t *testing.T, n int, body []byte) {
		p := &prepared{params: int(uint16(n)) % 300}
		values, _ := p.bind(body)
		if len(values) > maxParams+1 {
			t.Fatalf("%d values kept", len(values))
		}
		for _, v := range values {
			if len(v) > 4*maxParamValue+64 {
				t.Fatalf("a value of %d bytes kept", len(v))
			}
		}
	})
}

// FuzzStatements checks the statement filters keygate applies before
// relaying: they never panic, and an account change the server would run
// is always found, however it is commented or cased.
func FuzzStatements(f *testing.F) {
	for _, s := range []string{"SET PASSWORD = PASSWORD('x')", "/*!ALTER USER CURRENT_USER() IDENTIFIED BY 'x' */", "KILL QUERY 12",
		"select 1 -- set password", "/* set password */ select 1", "KILL 4294967295", "SeT\tpassword='x'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		accountChange(text)
		killStatement.FindStringSubmatch(text)
		if !strings.ContainsAny(text, "#-/*") && strings.Contains(strings.ToUpper(text), " SET PASSWORD ") && accountChange(text) == "" {
			t.Fatalf("SET PASSWORD not found in %q", text)
		}
	})
}

// FuzzAuthExchange feeds the connection phase after TLS: a handshake
// response and what the client sends after it (an answer to the method
// switch, the password). However it goes, keygate never panics, and the
// token it takes is only ever what the client sent.
func FuzzAuthExchange(f *testing.F) {
	caps := gomysql.CLIENT_PROTOCOL_41 | gomysql.CLIENT_SECURE_CONNECTION | gomysql.CLIENT_PLUGIN_AUTH | gomysql.CLIENT_CONNECT_WITH_DB
	packet := func(seq byte, p []byte) []byte {
		b, _ := mysqlproto.Append(nil, seq, p)
		return b
	}
	sha2 := (&mysqlproto.Response{Caps: caps, User: "alice", Auth: make([]byte, 32), AuthName: mysqlproto.CachingSHA2}).Encode()
	native := (&mysqlproto.Response{Caps: caps, User: "alice", Auth: make([]byte, 20), AuthName: mysqlproto.NativePassword}).Encode()
	clear := (&mysqlproto.Response{Caps: caps, User: "alice", Auth: []byte("kg1.t\x00"), AuthName: mysqlproto.ClearPassword}).Encode()
	f.Add(sha2, packet(4, []byte("kg1.token\x00")))
	f.Add(native, append(packet(4, make([]byte, 32)), packet(6, []byte("kg1.token\x00"))...))
	f.Add(clear, []byte{})
	f.Add([]byte{}, []byte{0xff, 0xff, 0xff})
	keys := token.NewMemoryKeys()
	gw := gateway.New(&token.Verifier{Keys: keys, Now: time.Now}, &switchable{denied: map[string]string{}}, &audittest.Recorder{}, slog.New(slog.DiscardHandler), nil)
	srv := New(gw, func() *tls.Config { return &tls.Config{} }, map[string]Upstream{}, 0, false)
	f.Fuzz(func(t *testing.T, response, rest []byte) {
		resp, err := mysqlproto.DecodeResponse(response)
		if err != nil || resp.SSLRequest {
			return
		}
		client, server := net.Pipe()
		defer client.Close()
		go io.Copy(io.Discard, client)
		go func() {
			client.SetDeadline(time.Now().Add(time.Second))
			client.Write(rest)
		}()
		server.SetDeadline(time.Now().Add(time.Second))
		h := &handshake{srv: srv, raw: server, conn: server, client: "fuzz:1", id: 1, seq: 3, resp: resp,
			r: mysqlproto.NewReader(bufio.NewReader(server))}
		h.r.Max = maxHandshakePacket
		tok, err := h.token([]byte("01234567890123456789"))
		server.Close()
		if err == nil && tok != "" && !strings.Contains(string(response)+string(rest), tok) {
			t.Fatalf("token %q is not something the client sent", tok)
		}
	})
}
