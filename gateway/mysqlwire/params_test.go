package mysqlwire

import (
	"slices"
	"strings"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

func TestBindReadsEveryType(t *testing.T) {
	p := &prepared{params: 7, long: map[int]bool{5: true}}
	body := []byte{
		0x40, // NULL bitmap: parameter 6 is NULL
		1,    // types follow
		gomysql.MYSQL_TYPE_TINY, 0, gomysql.MYSQL_TYPE_LONG, 0x80, gomysql.MYSQL_TYPE_DOUBLE, 0,
		gomysql.MYSQL_TYPE_DATETIME, 0, gomysql.MYSQL_TYPE_VAR_STRING, 0, gomysql.MYSQL_TYPE_BLOB, 0, gomysql.MYSQL_TYPE_LONG, 0,
		0xff,                   // TINY -1
		0xff, 0xff, 0xff, 0xff, // LONG unsigned 4294967295
		0, 0, 0, 0, 0, 0, 0xf8, 0x3f, // DOUBLE 1.5
		7, 0xea, 0x07, 12, 5, 8, 30, 0, // DATETIME 2026-12-05 08:30:00
		2, 0xff, 'a', // VAR_STRING, not UTF-8
	}
	got, ok := p.bind(body)
	want := []string{"-1", "4294967295", "1.5", "'2026-12-05 08:30:00'", "x'ff61'", "[sent with COM_STMT_SEND_LONG_DATA]", "NULL"}
	if !ok || !slices.Equal(got, want) {
		t.Fatalf("bind = %q, %v; want %q", got, ok, want)
	}
	// A later execute that does not send types again uses the last ones.
	if _, ok := p.bind(append([]byte{0x7f, 0}, 1)); !ok {
		t.Fatal("an execute without types after one with them did not parse")
	}
}

func TestQuoteValueIsBounded(t *testing.T) {
	long := strings.Repeat("é", maxParamValue)
	got := quoteValue([]byte(long))
	if !strings.HasSuffix(got, "bytes in all]") || len(got) > maxParamValue+64 {
		t.Fatalf("quoteValue of %d bytes = %d bytes: %.40q…", len(long), len(got), got)
	}
	if got := quoteValue([]byte("it's")); got != `"it's"` {
		t.Fatalf("quoteValue = %s", got)
	}
}
