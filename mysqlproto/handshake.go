package mysqlproto

import (
	"maps"
	"slices"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// Authentication methods keygate speaks.
const (
	CachingSHA2    = mysql.AUTH_CACHING_SHA2_PASSWORD
	ClearPassword  = mysql.AUTH_CLEAR_PASSWORD
	NativePassword = mysql.AUTH_NATIVE_PASSWORD
)

// Greeting is the server's first packet (Protocol::HandshakeV10).
type Greeting struct {
	Version  string
	ConnID   uint32
	Salt     []byte // 20 bytes
	Caps     uint32
	Charset  byte
	Status   uint16
	AuthName string
}

// Encode returns the greeting's payload.
func (g *Greeting) Encode() []byte {
	b := make([]byte, 0, 64+len(g.Version)+len(g.AuthName))
	b = append(b, 10)
	b = append(b, g.Version...)
	b = append(b, 0)
	b = appendUint32(b, g.ConnID)
	salt := g.Salt
	b = append(b, salt[:8]...)
	b = append(b, 0)
	b = appendUint16(b, uint16(g.Caps))
	b = append(b, g.Charset)
	b = appendUint16(b, g.Status)
	b = appendUint16(b, uint16(g.Caps>>16))
	b = append(b, byte(len(salt)+1))
	b = append(b, make([]byte, 10)...)
	b = append(b, salt[8:]...)
	b = append(b, 0)
	b = append(b, g.AuthName...)
	return append(b, 0)
}

// DecodeGreeting parses a server's greeting.
func DecodeGreeting(p []byte) (*Greeting, error) {
	c := cursor{b: p}
	if v := c.byte1("protocol version"); c.err == nil && v != 10 {
		if v == 0xff {
			e, err := DecodeErr(p, 0)
			if err == nil {
				return nil, e
			}
		}
		return nil, malformed("protocol version %d, want 10", v)
	}
	g := &Greeting{}
	g.Version = c.nulString()
	g.ConnID = c.uint32("connection id")
	g.Salt = append([]byte(nil), c.bytes(8, "salt")...)
	c.byte1("filler")
	g.Caps = uint32(c.uint16("capabilities"))
	if len(c.b) > 0 {
		g.Charset = c.byte1("character set")
		g.Status = c.uint16("status")
		g.Caps |= uint32(c.uint16("capabilities")) << 16
		saltLen := int(c.byte1("salt length"))
		c.bytes(10, "reserved")
		if g.Caps&mysql.CLIENT_SECURE_CONNECTION != 0 {
			n := max(13, saltLen-8)
			rest := c.bytes(n, "salt")
			if len(rest) > 0 && rest[len(rest)-1] == 0 {
				rest = rest[:len(rest)-1]
			}
			g.Salt = append(g.Salt, rest...)
		}
		if g.Caps&mysql.CLIENT_PLUGIN_AUTH != 0 {
			g.AuthName = c.nulString()
		}
	}
	if c.err != nil {
		return nil, c.err
	}
	return g, nil
}

// Response is a client's handshake response (Protocol::HandshakeResponse41),
// or, when SSL is set and nothing else was sent, its SSLRequest.
type Response struct {
	Caps      uint32
	MaxPacket uint32
	Charset   byte
	// SSLRequest: the packet ended after the fixed part, asking for TLS.
	SSLRequest bool
	User       string
	Auth       []byte
	Database   string
	AuthName   string
	Attrs      map[string]string
}

// sslRequestLen is the length of an SSLRequest, the fixed part of a
// handshake response.
const sslRequestLen = 4 + 4 + 1 + 23

// maxAttrs bounds the connection attributes kept from one handshake.
const maxAttrs = 64

// DecodeResponse parses a client's handshake response or SSLRequest.
func DecodeResponse(p []byte) (*Response, error) {
	c := cursor{b: p}
	r := &Response{}
	r.Caps = c.uint32("capabilities")
	if c.err == nil && r.Caps&mysql.CLIENT_PROTOCOL_41 == 0 {
		return nil, malformed("a client without CLIENT_PROTOCOL_41 (MySQL before 4.1)")
	}
	r.MaxPacket = c.uint32("max packet size")
	r.Charset = c.byte1("character set")
	c.bytes(23, "filler")
	if c.err != nil {
		return nil, c.err
	}
	if len(p) == sslRequestLen {
		if r.Caps&mysql.CLIENT_SSL == 0 {
			return nil, malformed("a handshake response without a user name")
		}
		r.SSLRequest = true
		return r, nil
	}
	r.User = c.nulString()
	switch {
	case r.Caps&mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0:
		r.Auth = c.lenBytes("authentication data")
	case r.Caps&mysql.CLIENT_SECURE_CONNECTION != 0:
		r.Auth = c.bytes(int(c.byte1("authentication data length")), "authentication data")
	default:
		r.Auth = []byte(c.nulString())
	}
	if r.Caps&mysql.CLIENT_CONNECT_WITH_DB != 0 && len(c.b) > 0 {
		r.Database = c.nulString()
	}
	if r.Caps&mysql.CLIENT_PLUGIN_AUTH != 0 && len(c.b) > 0 {
		r.AuthName = c.nulString()
	}
	if r.Caps&mysql.CLIENT_CONNECT_ATTRS != 0 && len(c.b) > 0 {
		attrs := cursor{b: c.lenBytes("connection attributes")}
		for len(attrs.b) > 0 && attrs.err == nil {
			k := attrs.lenBytes("attribute name")
			v := attrs.lenBytes("attribute value")
			if attrs.err == nil && len(r.Attrs) < maxAttrs {
				if r.Attrs == nil {
					r.Attrs = map[string]string{}
				}
				r.Attrs[string(k)] = string(v)
			}
		}
		if attrs.err != nil {
			return nil, attrs.err
		}
	}
	if c.err != nil {
		return nil, c.err
	}
	return r, nil
}

// Encode returns the response's payload: an SSLRequest when SSLRequest is
// set, else a full handshake response.
func (r *Response) Encode() []byte {
	caps := r.Caps
	if caps&mysql.CLIENT_SECURE_CONNECTION != 0 && len(r.Auth) > 255 {
		caps |= mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
	}
	b := make([]byte, 0, 128+len(r.Auth))
	b = appendUint32(b, caps)
	b = appendUint32(b, r.MaxPacket)
	b = append(b, r.Charset)
	b = append(b, make([]byte, 23)...)
	if r.SSLRequest {
		return b
	}
	b = append(b, r.User...)
	b = append(b, 0)
	switch {
	case caps&mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0:
		b = appendLenInt(b, uint64(len(r.Auth)))
		b = append(b, r.Auth...)
	case caps&mysql.CLIENT_SECURE_CONNECTION != 0:
		b = append(b, byte(len(r.Auth)))
		b = append(b, r.Auth...)
	default:
		b = append(b, r.Auth...)
		b = append(b, 0)
	}
	if caps&mysql.CLIENT_CONNECT_WITH_DB != 0 {
		b = append(b, r.Database...)
		b = append(b, 0)
	}
	if caps&mysql.CLIENT_PLUGIN_AUTH != 0 {
		b = append(b, r.AuthName...)
		b = append(b, 0)
	}
	if caps&mysql.CLIENT_CONNECT_ATTRS != 0 {
		var attrs []byte
		for _, k := range slices.Sorted(maps.Keys(r.Attrs)) {
			attrs = appendLenInt(attrs, uint64(len(k)))
			attrs = append(attrs, k...)
			attrs = appendLenInt(attrs, uint64(len(r.Attrs[k])))
			attrs = append(attrs, r.Attrs[k]...)
		}
		b = appendLenInt(b, uint64(len(attrs)))
		b = append(b, attrs...)
	}
	return b
}

// AuthSwitch is an AuthSwitchRequest: the server asks the client to
// authenticate with another method.
func AuthSwitch(method string, salt []byte) []byte {
	b := append([]byte{0xfe}, method...)
	b = append(b, 0)
	b = append(b, salt...)
	return append(b, 0)
}

// DecodeAuthSwitch parses an AuthSwitchRequest.
func DecodeAuthSwitch(p []byte) (method string, salt []byte, err error) {
	if len(p) == 0 || p[0] != 0xfe {
		return "", nil, malformed("not an authentication switch request")
	}
	c := cursor{b: p[1:]}
	method = c.nulString()
	salt = c.b
	if n := len(salt); n > 0 && salt[n-1] == 0 {
		salt = salt[:n-1]
	}
	return method, salt, nil
}

// FullAuthentication is caching_sha2_password's "perform full
// authentication" (AuthMoreData 0x04): over TLS, the client answers with
// its password in clear.
var FullAuthentication = []byte{0x01, 0x04}

// Password reads a password a client sent in clear (caching_sha2's full
// authentication over TLS, or mysql_clear_password): the bytes up to a
// NUL terminator.
func Password(p []byte) string {
	for i, b := range p {
		if b == 0 {
			return string(p[:i])
		}
	}
	return string(p)
}
