package mysqlproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// seedResponses are handshake responses as clients send them.
func seedResponses() [][]byte {
	caps := mysql.CLIENT_PROTOCOL_41 | mysql.CLIENT_SECURE_CONNECTION | mysql.CLIENT_PLUGIN_AUTH | mysql.CLIENT_CONNECT_WITH_DB |
		mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA | mysql.CLIENT_CONNECT_ATTRS
	full := &Response{Caps: caps, MaxPacket: 1 << 24, Charset: 45, User: "alice", Auth: []byte("kg1.token\x00"), Database: "orders_my",
		AuthName: ClearPassword, Attrs: map[string]string{"_client_name": "libmariadb", "program_name": "mariadb"}}
	ssl := &Response{Caps: caps | mysql.CLIENT_SSL, Charset: 45, SSLRequest: true}
	old := &Response{Caps: mysql.CLIENT_PROTOCOL_41, User: "bob", Auth: []byte("x")}
	return [][]byte{full.Encode(), ssl.Encode(), old.Encode(), {}, {0xff, 0xff, 0xff, 0xff}}
}

func FuzzDecodeResponse(f *testing.F) {
	for _, s := range seedResponses() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := DecodeResponse(p)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if r.SSLRequest {
			return
		}
		// What parses encodes back to something that parses alike.
		again, err := DecodeResponse(r.Encode())
		if err != nil {
			t.Fatalf("re-encoded response does not parse: %v", err)
		}
		if again.User != r.User || again.Database != r.Database || again.AuthName != r.AuthName {
			t.Fatalf("round trip changed %+v into %+v", r, again)
		}
	})
}

func FuzzDecodeGreeting(f *testing.F) {
	g := &Greeting{Version: "5.5.5-10.11.6-MariaDB", ConnID: 7, Salt: bytes.Repeat([]byte{'a'}, 20),
		Caps: mysql.CLIENT_PROTOCOL_41 | mysql.CLIENT_SECURE_CONNECTION | mysql.CLIENT_PLUGIN_AUTH | mysql.CLIENT_SSL, Charset: 45, AuthName: NativePassword}
	f.Add(g.Encode())
	f.Add((&Err{Code: 1040, SQLState: "08004", Message: "Too many connections"}).Encode())
	f.Add([]byte{10, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		g, err := DecodeGreeting(p)
		if err != nil {
			return
		}
		if len(g.Salt) < 8 {
			t.Fatalf("salt of %d bytes accepted", len(g.Salt))
		}
	})
}

func FuzzResults(f *testing.F) {
	f.Add(EncodeOK(StatusAutocommit | StatusMoreResults))
	f.Add(EncodeEOF(StatusCursorExists))
	f.Add((&Err{Code: 1142, SQLState: "42000", Message: "INSERT command denied"}).Encode())
	f.Add([]byte{0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00})
	f.Add([]byte{0xfc, 0x10})
	f.Fuzz(func(t *testing.T, p []byte) {
		DecodeOK(p)
		DecodeErr(p, mysql.CLIENT_PROTOCOL_41)
		DecodePrepareOK(p)
		ColumnCount(p)
		DecodeAuthSwitch(p)
		EOFStatus(p)
		IsEOF(p, true)
		IsEOF(p, false)
	})
}

func FuzzReader(f *testing.F) {
	var buf []byte
	buf, _ = Append(buf, 0, []byte{3, 'S', 'E', 'L'})
	f.Add(buf, 0)
	f.Add([]byte{0xff, 0xff, 0xff, 0, 1, 2}, 16)
	f.Add([]byte{1, 0, 0, 0}, 0)
	f.Fuzz(func(t *testing.T, stream []byte, max int) {
		r := NewReader(bufio.NewReader(bytes.NewReader(stream)))
		r.Max = max % (1 << 20)
		for range 64 {
			first, last, p, err := r.Read()
			if err != nil {
				if r.Max > 0 && errors.Is(err, ErrTooLarge) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrMalformed) {
					return
				}
				t.Fatalf("unexpected error %v", err)
			}
			if r.Max > 0 && len(p) > r.Max {
				t.Fatalf("a packet of %d bytes passed a limit of %d", len(p), r.Max)
			}
			out, end := Append(nil, first, p)
			if end != last {
				t.Fatalf("re-framed packet ends at sequence %d, read one ended at %d", end, last)
			}
			if len(out) < len(p)+4 {
				t.Fatalf("re-framed packet too short")
			}
		}
	})
}
