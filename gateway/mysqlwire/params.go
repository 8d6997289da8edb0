package mysqlwire

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/keygate/keygate/mysqlproto"
)

// Bounds on the parameter values an execute's audit event keeps.
const (
	maxParams     = 64
	maxParamValue = 256
)

// bind reads the parameter values of a COM_STMT_EXECUTE for the audit,
// from what follows its statement id, flags and iteration count. Values
// are cut to maxParamValue bytes and the list to maxParams; ok is false
// when the values did not parse (the upstream then refuses the execute).
func (p *prepared) bind(b []byte) (values []string, ok bool) {
	n := p.params
	if n == 0 {
		return nil, true
	}
	nullLen := (n + 7) / 8
	if len(b) < nullLen+1 {
		return []string{"[parameters did not parse]"}, false
	}
	nulls := b[:nullLen]
	b = b[nullLen:]
	if b[0] == 1 {
		b = b[1:]
		if len(b) < 2*n {
			return []string{"[parameters did not parse]"}, false
		}
		p.types = append(p.types[:0], b[:2*n]...)
		b = b[2*n:]
	} else {
		b = b[1:]
	}
	if len(p.types) != 2*n {
		return []string{"[parameter types were never sent]"}, false
	}
	for i := range n {
		if i == maxParams {
			values = append(values, fmt.Sprintf("[%d more]", n-maxParams))
			break
		}
		if nulls[i/8]&(1<<(i%8)) != 0 {
			values = append(values, "NULL")
			continue
		}
		if p.long[i] {
			values = append(values, "[sent with COM_STMT_SEND_LONG_DATA]")
			continue
		}
		v, rest, ok := binaryValue(p.types[2*i], p.types[2*i+1]&0x80 != 0, b)
		if !ok {
			return append(values, "[parameters did not parse]"), false
		}
		values = append(values, v)
		b = rest
	}
	return values, true
}

// binaryValue reads one value of the binary protocol.
func binaryValue(typ byte, unsigned bool, b []byte) (string, []byte, bool) {
	fixed := func(n int) ([]byte, []byte, bool) {
		if len(b) < n {
			return nil, nil, false
		}
		return b[:n], b[n:], true
	}
	switch typ {
	case gomysql.MYSQL_TYPE_NULL:
		return "NULL", b, true
	case gomysql.MYSQL_TYPE_TINY:
		v, rest, ok := fixed(1)
		if !ok {
			return "", nil, false
		}
		if unsigned {
			return strconv.FormatUint(uint64(v[0]), 10), rest, true
		}
		return strconv.FormatInt(int64(int8(v[0])), 10), rest, true
	case gomysql.MYSQL_TYPE_SHORT, gomysql.MYSQL_TYPE_YEAR:
		v, rest, ok := fixed(2)
		if !ok {
			return "", nil, false
		}
		u := binary.LittleEndian.Uint16(v)
		if unsigned {
			return strconv.FormatUint(uint64(u), 10), rest, true
		}
		return strconv.FormatInt(int64(int16(u)), 10), rest, true
	case gomysql.MYSQL_TYPE_LONG, gomysql.MYSQL_TYPE_INT24:
		v, rest, ok := fixed(4)
		if !ok {
			return "", nil, false
		}
		u := binary.LittleEndian.Uint32(v)
		if unsigned {
			return strconv.FormatUint(uint64(u), 10), rest, true
		}
		return strconv.FormatInt(int64(int32(u)), 10), rest, true
	case gomysql.MYSQL_TYPE_LONGLONG:
		v, rest, ok := fixed(8)
		if !ok {
			return "", nil, false
		}
		u := binary.LittleEndian.Uint64(v)
		if unsigned {
			return strconv.FormatUint(u, 10), rest, true
		}
		return strconv.FormatInt(int64(u), 10), rest, true
	case gomysql.MYSQL_TYPE_FLOAT:
		v, rest, ok := fixed(4)
		if !ok {
			return "", nil, false
		}
		return strconv.FormatFloat(float64(math.Float32frombits(binary.LittleEndian.Uint32(v))), 'g', -1, 32), rest, true
	case gomysql.MYSQL_TYPE_DOUBLE:
		v, rest, ok := fixed(8)
		if !ok {
			return "", nil, false
		}
		return strconv.FormatFloat(math.Float64frombits(binary.LittleEndian.Uint64(v)), 'g', -1, 64), rest, true
	case gomysql.MYSQL_TYPE_DATE, gomysql.MYSQL_TYPE_DATETIME, gomysql.MYSQL_TYPE_TIMESTAMP, gomysql.MYSQL_TYPE_TIME, gomysql.MYSQL_TYPE_NEWDATE:
		if len(b) < 1 || len(b) < 1+int(b[0]) {
			return "", nil, false
		}
		v, rest := b[1:1+int(b[0])], b[1+int(b[0]):]
		var s []byte
		var err error
		if typ == gomysql.MYSQL_TYPE_TIME {
			s, err = gomysql.FormatBinaryTime(len(v), v)
		} else if typ == gomysql.MYSQL_TYPE_DATE || typ == gomysql.MYSQL_TYPE_NEWDATE {
			s, err = gomysql.FormatBinaryDate(len(v), v)
		} else {
			s, err = gomysql.FormatBinaryDateTime(len(v), v)
		}
		if err != nil {
			return "[an invalid date or time]", rest, true
		}
		return "'" + string(s) + "'", rest, true
	default:
		// Strings, blobs, decimals, bits, JSON, geometry: length-encoded.
		n, used, ok := mysqlproto.LenInt(b)
		if !ok || uint64(len(b)-used) < n {
			return "", nil, false
		}
		return quoteValue(b[used : used+int(n)]), b[used+int(n):], true
	}
}

// quoteValue writes a string value for the audit, cut to maxParamValue
// bytes; a value that is not UTF-8 is shown in hex.
func quoteValue(v []byte) string {
	if len(v) <= maxParamValue {
		if utf8.Valid(v) {
			return strconv.Quote(string(v))
		}
		return "x'" + hex.EncodeToString(v) + "'"
	}
	more := fmt.Sprintf("…[%d bytes in all]", len(v))
	head := v[:maxParamValue]
	// The cut may split a character: drop its start.
	for i := 0; i < utf8.UTFMax-1 && !utf8.Valid(head); i++ {
		head = head[:len(head)-1]
	}
	if utf8.Valid(head) {
		return strconv.Quote(string(head)) + more
	}
	return "x'" + hex.EncodeToString(v[:maxParamValue]) + "'" + more
}
