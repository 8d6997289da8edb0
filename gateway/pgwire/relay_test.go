package pgwire

import (
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keygate/keygate/audit"
)

// conversation drives a statements tracker with client messages and server
// replies, and collects what it records.
type conversation struct {
	t        *testing.T
	st       statements
	recorded []string
}

func newConversation(t *testing.T) *conversation {
	c := &conversation{t: t}
	c.st.record = func(text string) { c.recorded = append(c.recorded, text) }
	return c
}

func (c *conversation) send(msgs ...pgproto3.FrontendMessage) {
	c.t.Helper()
	for _, m := range msgs {
		raw := encode(c.t, m)
		c.st.client(raw[0], raw[5:], len(raw)-5)
	}
}

// reply feeds server message types: '1' ParseComplete, '2' BindComplete,
// '3' CloseComplete, 'E' ErrorResponse, 'Z' ReadyForQuery, others ignored.
func (c *conversation) reply(types string) {
	for i := range len(types) {
		c.st.server(types[i])
	}
}

func (c *conversation) want(want ...string) {
	c.t.Helper()
	if !slices.Equal(c.recorded, want) {
		c.t.Fatalf("recorded\n%q\nwant\n%q", c.recorded, want)
	}
}

func TestStatementsRecordQueriesParsesAndExecutions(t *testing.T) {
	c := newConversation(t)
	c.send(&pgproto3.Query{String: "SELECT 1"})
	c.reply("TDCZ")
	// Unnamed: recorded at its Parse only.
	c.send(&pgproto3.Parse{Query: "SELECT $1::int /* unnamed */"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	c.reply("12DCZ")
	// Named (pgx's statement cache): the Parse, then every execution.
	c.send(&pgproto3.Parse{Name: "stmtcache_1", Query: "SELECT $1::int /* named */"}, &pgproto3.Describe{ObjectType: 'S', Name: "stmtcache_1"}, &pgproto3.Sync{})
	c.reply("1tTZ")
	for range 3 {
		c.send(&pgproto3.Bind{PreparedStatement: "stmtcache_1", Parameters: [][]byte{[]byte("7")}}, &pgproto3.Execute{}, &pgproto3.Sync{})
		c.reply("2DCZ")
	}
	// Prepared with SQL PREPARE: known by name only.
	c.send(&pgproto3.Bind{PreparedStatement: "from_sql"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	c.reply("2CZ")
	// A pipelined Parse and Bind of a new name in one batch.
	c.send(&pgproto3.Parse{Name: "p2", Query: "SELECT 2"}, &pgproto3.Bind{PreparedStatement: "p2"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	c.reply("12DCZ")
	c.send(&pgproto3.FunctionCall{Function: 764})
	c.reply("VZ")
	c.want("SELECT 1", "SELECT $1::int /* unnamed */", "SELECT $1::int /* named */",
		"SELECT $1::int /* named */", "SELECT $1::int /* named */", "SELECT $1::int /* named */",
		`[execute prepared statement "from_sql"]`, "SELECT 2", "SELECT 2", "[function call: oid 764]")
}

// A Parse the server rejects does not change what a name runs.
func TestStatementsRejectedParseDoesNotRename(t *testing.T) {
	c := newConversation(t)
	c.send(&pgproto3.Parse{Name: "s1", Query: "DELETE FROM t"}, &pgproto3.Sync{})
	c.reply("1Z")
	// 42P05: s1 already exists.
	c.send(&pgproto3.Parse{Name: "s1", Query: "SELECT 1"}, &pgproto3.Sync{})
	c.reply("EZ")
	c.send(&pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	c.reply("2CZ")
	c.want("DELETE FROM t", "SELECT 1", "DELETE FROM t")
}

// A Close the server skips, after an earlier error in its batch, does not
// forget the statement; a Close it carries out does.
func TestStatementsSkippedClose(t *testing.T) {
	c := newConversation(t)
	c.send(&pgproto3.Parse{Name: "s1", Query: "DELETE FROM t"}, &pgproto3.Sync{})
	c.reply("1Z")
	c.send(&pgproto3.Parse{Query: "SELEKT"}, &pgproto3.Close{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{})
	c.reply("EZ")
	c.send(&pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	c.reply("2CZ")
	c.send(&pgproto3.Close{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{})
	c.reply("3Z")
	c.send(&pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	c.reply("2CZ")
	c.want("DELETE FROM t", "SELEKT", "DELETE FROM t", `[execute prepared statement "s1"]`)
}

// A client that pipelines without reading replies cannot make keygate hold
// its messages without limit; executions are then recorded by name.
func TestStatementsOverflow(t *testing.T) {
	c := newConversation(t)
	for range maxPending + 1 {
		c.send(&pgproto3.Sync{})
	}
	c.send(&pgproto3.Bind{PreparedStatement: "s9"})
	if len(c.st.pending) != 0 || !c.st.lost {
		t.Fatalf("pending %d, lost %t", len(c.st.pending), c.st.lost)
	}
	c.want(`[execute prepared statement "s9"]`)
}

func TestStatementText(t *testing.T) {
	if got := statementText([]byte("SELECT 1\x00"), 9); got != "SELECT 1" {
		t.Fatalf("whole statement: %q", got)
	}
	got := statementText([]byte(strings.Repeat("x", 10)), 100)
	if got != strings.Repeat("x", 10)+"…[statement of more than 10 bytes; first 10 kept]" {
		t.Fatalf("prefix: %q", got)
	}
	long := strings.Repeat("é", audit.MaxQueryLen)
	got = statementText([]byte(long+"\x00"), len(long)+1)
	if len(got) > audit.MaxQueryLen || !strings.Contains(got, "statement of 131072 bytes") || !strings.HasPrefix(got, "é") {
		t.Fatalf("over the audit limit: %d bytes, ends %q", len(got), got[len(got)-60:])
	}
	if strings.ContainsRune(got, '\uFFFD') {
		t.Fatal("cut inside a character")
	}
}
