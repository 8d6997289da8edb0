package mysqlproto

import (
	"fmt"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// Packet headers of the results a command can get.
const (
	HeaderOK        = 0x00
	HeaderLocalFile = 0xfb
	HeaderEOF       = 0xfe
	HeaderErr       = 0xff
)

// Server status flags keygate reads.
const (
	StatusInTrans           = mysql.SERVER_STATUS_IN_TRANS
	StatusAutocommit        = mysql.SERVER_STATUS_AUTOCOMMIT
	StatusMoreResults       = mysql.SERVER_MORE_RESULTS_EXISTS
	StatusCursorExists      = mysql.SERVER_STATUS_CURSOR_EXISTS
	StatusLastRowSent       = mysql.SERVER_STATUS_LAST_ROW_SEND
	maxEOFLen               = 9 // an EOF packet's payload is shorter than this; a row starting 0xfe is not
	defaultSQLState         = "HY000"
	sqlStateMarker     byte = '#'
)

// OK is an OK packet (or, with DEPRECATE_EOF, the EOF-as-OK that ends a
// result set).
type OK struct {
	AffectedRows uint64
	LastInsertID uint64
	Status       uint16
	Warnings     uint16
	Info         string
}

// IsEOF reports whether p is an EOF packet (or an OK packet in its place,
// header 0xfe) and not a row that happens to start with 0xfe.
func IsEOF(p []byte, deprecateEOF bool) bool {
	if len(p) == 0 || p[0] != HeaderEOF {
		return false
	}
	if deprecateEOF {
		return len(p) < MaxFrame
	}
	return len(p) < maxEOFLen
}

// DecodeOK parses an OK packet, or an OK sent in place of an EOF (header
// 0xfe). Info is what follows the status (the session state changes are
// not parsed).
func DecodeOK(p []byte) (*OK, error) {
	if len(p) == 0 || (p[0] != HeaderOK && p[0] != HeaderEOF) {
		return nil, malformed("not an OK packet")
	}
	c := cursor{b: p[1:]}
	ok := &OK{}
	ok.AffectedRows = c.lenInt("affected rows")
	ok.LastInsertID = c.lenInt("last insert id")
	ok.Status = c.uint16("status")
	ok.Warnings = c.uint16("warnings")
	if c.err != nil {
		return nil, c.err
	}
	ok.Info = string(c.b)
	return ok, nil
}

// EOFStatus is the status flags of an EOF packet (protocol 4.1).
func EOFStatus(p []byte) uint16 {
	if len(p) < 5 {
		return 0
	}
	return uint16(p[3]) | uint16(p[4])<<8
}

// Err is an ERR packet.
type Err struct {
	Code     uint16
	SQLState string
	Message  string
}

func (e *Err) Error() string {
	return fmt.Sprintf("ERROR %d (%s): %s", e.Code, e.SQLState, e.Message)
}

// DecodeErr parses an ERR packet. caps are the connection's capabilities:
// before protocol 4.1 there is no SQLSTATE; pass 0 during the handshake,
// where servers still send it.
func DecodeErr(p []byte, caps uint32) (*Err, error) {
	if len(p) < 3 || p[0] != HeaderErr {
		return nil, malformed("not an ERR packet")
	}
	e := &Err{Code: uint16(p[1]) | uint16(p[2])<<8, SQLState: defaultSQLState}
	rest := p[3:]
	if len(rest) >= 6 && rest[0] == sqlStateMarker {
		e.SQLState, rest = string(rest[1:6]), rest[6:]
	}
	e.Message = string(rest)
	return e, nil
}

// Encode returns the ERR packet's payload.
func (e *Err) Encode() []byte {
	state := e.SQLState
	if len(state) != 5 {
		state = defaultSQLState
	}
	b := append([]byte{HeaderErr}, byte(e.Code), byte(e.Code>>8), sqlStateMarker)
	b = append(b, state...)
	return append(b, e.Message...)
}

// EncodeOK returns an OK packet's payload with no rows affected.
func EncodeOK(status uint16) []byte {
	b := []byte{HeaderOK, 0, 0}
	b = appendUint16(b, status)
	return appendUint16(b, 0)
}

// EncodeEOF returns an EOF packet's payload (protocol 4.1).
func EncodeEOF(status uint16) []byte {
	b := []byte{HeaderEOF, 0, 0}
	return appendUint16(b, status)
}

// ColumnCount reads the column count that begins a result set.
func ColumnCount(p []byte) (uint64, error) {
	c := cursor{b: p}
	n := c.lenInt("column count")
	if c.err != nil {
		return 0, c.err
	}
	return n, nil
}

// PrepareOK is the first packet of COM_STMT_PREPARE's answer.
type PrepareOK struct {
	StatementID uint32
	Columns     uint16
	Params      uint16
	Warnings    uint16
}

// DecodePrepareOK parses COM_STMT_PREPARE_OK.
func DecodePrepareOK(p []byte) (*PrepareOK, error) {
	if len(p) < 9 || p[0] != HeaderOK {
		return nil, malformed("not a prepare OK packet")
	}
	c := cursor{b: p[1:]}
	r := &PrepareOK{StatementID: c.uint32("statement id"), Columns: c.uint16("column count"), Params: c.uint16("parameter count")}
	c.byte1("filler")
	if len(c.b) >= 2 {
		r.Warnings = c.uint16("warnings")
	}
	if c.err != nil {
		return nil, c.err
	}
	return r, nil
}
