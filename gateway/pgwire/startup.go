package pgwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Startup-phase request codes (the int32 after the length).
const (
	codeCancel  = 80877102
	codeSSL     = 80877103
	codeGSSENC  = 80877104
	protocolV3  = 3 << 16
	maxStartup  = 10000 // PostgreSQL's MAX_STARTUP_PACKET_LENGTH
	maxPassword = 16 << 10
)

type packetKind int

const (
	kindStartup packetKind = iota + 1
	kindSSL
	kindGSSENC
	kindCancel
)

// startupPacket is one decoded startup-phase packet.
type startupPacket struct {
	kind         packetKind
	minor        uint16            // kindStartup: requested minor protocol version
	params       map[string]string // kindStartup
	cancelPID    uint32            // kindCancel
	cancelSecret []byte            // kindCancel
}

var errProtocol = errors.New("protocol violation")

// readStartupPacket reads one length-prefixed startup-phase packet.
func readStartupPacket(r io.Reader) (*startupPacket, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 8 || n > maxStartup {
		return nil, fmt.Errorf("%w: startup packet length %d", errProtocol, n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return parseStartupPacket(body)
}

// parseStartupPacket decodes a startup-phase packet body (everything after
// the length word). It is the entry point of untrusted bytes and is fuzzed.
func parseStartupPacket(body []byte) (*startupPacket, error) {
	if len(body) < 4 {
		return nil, fmt.Errorf("%w: short startup packet", errProtocol)
	}
	code := binary.BigEndian.Uint32(body)
	rest := body[4:]
	switch {
	case code == codeSSL || code == codeGSSENC:
		if len(rest) != 0 {
			return nil, fmt.Errorf("%w: encryption request with a body", errProtocol)
		}
		if code == codeSSL {
			return &startupPacket{kind: kindSSL}, nil
		}
		return &startupPacket{kind: kindGSSENC}, nil
	case code == codeCancel:
		// Protocol 3.0 keys are 4 bytes; 3.2 allows up to 256.
		if len(rest) < 8 || len(rest) > 4+256 {
			return nil, fmt.Errorf("%w: cancel request of %d bytes", errProtocol, len(body))
		}
		return &startupPacket{kind: kindCancel, cancelPID: binary.BigEndian.Uint32(rest), cancelSecret: bytes.Clone(rest[4:])}, nil
	case code>>16 == 3:
		params, err := parseParams(rest)
		if err != nil {
			return nil, err
		}
		return &startupPacket{kind: kindStartup, minor: uint16(code), params: params}, nil
	}
	return nil, fmt.Errorf("%w: unsupported protocol %d.%d", errProtocol, code>>16, code&0xffff)
}

// parseParams decodes the name/value C strings of a StartupMessage, which
// end with an empty name.
func parseParams(b []byte) (map[string]string, error) {
	params := map[string]string{}
	for {
		rawName, rest, ok := cstring(b)
		if !ok {
			return nil, fmt.Errorf("%w: unterminated startup parameter", errProtocol)
		}
		name := string(rawName)
		if name == "" {
			if len(rest) != 0 {
				return nil, fmt.Errorf("%w: data after startup parameters", errProtocol)
			}
			return params, nil
		}
		value, rest2, ok := cstring(rest)
		if !ok {
			return nil, fmt.Errorf("%w: startup parameter %q has no value", errProtocol, name)
		}
		if _, dup := params[name]; dup {
			return nil, fmt.Errorf("%w: startup parameter %q given twice", errProtocol, name)
		}
		params[name] = string(value)
		b = rest2
	}
}

// cstring splits a NUL-terminated string off b, without copying.
func cstring(b []byte) ([]byte, []byte, bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return nil, nil, false
	}
	return b[:i], b[i+1:], true
}

// readPassword reads a PasswordMessage and returns the password.
func readPassword(r io.Reader) (string, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return "", err
	}
	if hdr[0] != 'p' {
		return "", fmt.Errorf("%w: expected a password message, got %q", errProtocol, hdr[0])
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n < 5 || n > maxPassword {
		return "", fmt.Errorf("%w: password message length %d", errProtocol, n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return "", err
	}
	return parsePassword(body)
}

// parsePassword decodes a PasswordMessage body.
func parsePassword(body []byte) (string, error) {
	pw, rest, ok := cstring(body)
	if !ok || len(rest) != 0 {
		return "", fmt.Errorf("%w: malformed password message", errProtocol)
	}
	return string(pw), nil
}
