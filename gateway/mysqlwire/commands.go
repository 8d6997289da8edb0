package mysqlwire

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/gateway"
	"github.com/keygate/keygate/mysqlproto"
)

// prepared is a statement the session prepared, as keygate saw it.
type prepared struct {
	text   string // what the audit shows
	detail map[string]any
	params int
	// types are the parameter types of the last execute that sent them.
	types []byte
	// long marks parameters whose value came in COM_STMT_SEND_LONG_DATA.
	long map[int]bool
}

// Bounds on what a session keeps of its prepared statements: the
// upstream's own max_prepared_stmt_count is 16382 by default.
const (
	maxStatements    = 16384
	maxStatementText = 64 << 20
)

// erMaxPreparedStmts is ER_MAX_PREPARED_STMT_COUNT_REACHED.
const erMaxPreparedStmts = 1461

// auditText is what the audit keeps of a statement's text, or a refusal
// when it is too long to keep and the config does not allow truncating.
func (s *session) auditText(pk packet, text string, proto string) (string, map[string]any, bool, error) {
	if len(text) <= s.srv.maxStatement {
		return text, map[string]any{"protocol": proto}, true, nil
	}
	if s.srv.truncate && len(text) <= audit.MaxQueryLen {
		kept, detail := gateway.AuditForm(text, s.srv.maxStatement)
		detail["protocol"] = proto
		return kept, detail, true, nil
	}
	d := gateway.NewDigest(1 << 10)
	io.WriteString(d, text)
	head, detail := d.Summary()
	detail["protocol"] = proto
	delete(detail, "truncated")
	reason := fmt.Sprintf("statement of %d bytes refused: the audit keeps statements of up to %d bytes whole (audit.max_statement_size); send it in smaller statements, or ask the operator to set audit.oversized_statements: truncate",
		len(text), s.srv.maxStatement)
	s.gw.RefuseStatement(s.gs, reason, head, detail)
	return "", nil, false, s.reply(pk.seq+1, (&mysqlproto.Err{Code: erNetPacketTooLarge, SQLState: "08S01", Message: "keygate: " + reason}).Encode())
}

// killStatement matches the KILL statements keygate answers itself: their
// id is a connection id keygate handed out, not the upstream's.
var killStatement = regexp.MustCompile(`(?is)^\s*KILL\s+(?:(?:HARD|SOFT)\s+)?(CONNECTION\s+|QUERY\s+)?(\d{1,10})\s*;?\s*$`)

func (s *session) onQuery(ctx context.Context, pk packet) error {
	text := string(pk.p[1:])
	if m := killStatement.FindStringSubmatch(text); m != nil {
		id, err := strconv.ParseUint(m[2], 10, 32)
		if err == nil {
			return s.kill(ctx, pk, uint32(id), strings.EqualFold(strings.TrimSpace(m[1]), "QUERY"))
		}
	}
	kept, detail, ok, err := s.auditText(pk, text, "text")
	if !ok {
		return err
	}
	if phrase := accountChange(text); phrase != "" {
		return s.refuse(pk, accountRefusal(phrase), kept, erSpecificAccess, "42000")
	}
	st := s.gw.StatementSent(s.gs, kept, detail)
	if err := s.forward(pk); err != nil {
		st.Unfinished(s.why("the upstream connection failed"))
		return err
	}
	return s.relayResults(st, false)
}

// onInitDB lets a session change only to its own database: keygate's
// name of it, which stands for its first schema, or one of its schemas.
func (s *session) onInitDB(pk packet, name string) error {
	schemas := s.up.Schemas()
	target := name
	if name == s.db {
		target = schemas[0]
	}
	if !slices.Contains(schemas, target) {
		reason := fmt.Sprintf("this session may use database %s only (upstream schemas %s): your token is for %s", s.db, strings.Join(schemas, ", "), s.db)
		return s.refuse(pk, reason, "USE "+name, erDBAccessDenied, "42000")
	}
	st := s.gw.StatementSent(s.gs, "USE "+quoteIdent(target), map[string]any{"protocol": "init_db", "database": name})
	if _, err := mysqlproto.Write(s.uc, pk.seq, append([]byte{gomysql.COM_INIT_DB}, target...)); err != nil {
		st.Unfinished(s.why("the upstream connection failed"))
		return err
	}
	return s.relayResults(st, false)
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

func (s *session) onPrepare(pk packet) error {
	text := string(pk.p[1:])
	kept, detail, ok, err := s.auditText(pk, text, "prepare")
	if !ok {
		return err
	}
	if phrase := accountChange(text); phrase != "" {
		return s.refuse(pk, accountRefusal(phrase), kept, erSpecificAccess, "42000")
	}
	if len(s.stmts) >= maxStatements || s.stmtBytes()+len(kept) > maxStatementText {
		reason := fmt.Sprintf("this session holds too many prepared statements (%d); close some with COM_STMT_CLOSE", len(s.stmts))
		return s.refuse(pk, reason, kept, erMaxPreparedStmts, "42000")
	}
	st := s.gw.StatementSent(s.gs, kept, detail)
	seq, p, err := s.ask(st, pk)
	if err != nil {
		return err
	}
	if err := s.reply(seq, p); err != nil {
		st.Unfinished("the client went away")
		return err
	}
	if p[0] == mysqlproto.HeaderErr {
		st.Add(errOutcome(p, s.caps))
		st.Done()
		return nil
	}
	ok2, err := mysqlproto.DecodePrepareOK(p)
	if err != nil {
		st.Unfinished("the upstream's answer did not parse")
		return fmt.Errorf("upstream: %w", err)
	}
	s.stmts[ok2.StatementID] = &prepared{text: kept, detail: detail, params: int(ok2.Params)}
	st.Add(gateway.Outcome{Tag: "PREPARE " + strconv.FormatUint(uint64(ok2.StatementID), 10)})
	st.Done()
	for _, n := range []uint16{ok2.Params, ok2.Columns} {
		if n == 0 {
			continue
		}
		if err := s.relayDefinitions(int(n)); err != nil {
			return err
		}
	}
	return nil
}

// ask sends a command upstream and reads the first packet of its answer;
// on failure it ends st.
func (s *session) ask(st *gateway.SentStatement, pk packet) (byte, []byte, error) {
	if err := s.forward(pk); err != nil {
		st.Unfinished(s.why("the upstream connection failed"))
		return 0, nil, err
	}
	seq, p, err := s.fromUpstream()
	if err != nil {
		st.Unfinished(s.why("the upstream connection failed"))
		return 0, nil, err
	}
	return seq, p, nil
}

// stmtBytes is the text the session keeps of its prepared statements.
func (s *session) stmtBytes() int {
	n := 0
	for _, p := range s.stmts {
		n += len(p.text)
	}
	return n
}

// relayDefinitions relays n column (or parameter) definitions and, unless
// the connection deprecated it, the EOF after them, held for the end of
// the prepare.
func (s *session) relayDefinitions(n int) error {
	if s.caps&gomysql.CLIENT_DEPRECATE_EOF == 0 {
		n++
	}
	for range n {
		if _, err := s.relayHeld(); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) onExecute(pk packet) error {
	body := pk.p[1:]
	if len(body) < 9 {
		return s.refuse(pk, "a malformed COM_STMT_EXECUTE", "", erUnknownCom, "08S01")
	}
	id := le32(body)
	detail := map[string]any{"protocol": "execute", "statement_id": id}
	text := fmt.Sprintf("[execute of statement %d, which this session did not prepare]", id)
	if p := s.stmts[id]; p != nil {
		text = p.text
		for k, v := range p.detail {
			if k != "protocol" {
				detail[k] = v
			}
		}
		if params, ok := p.bind(body[9:]); len(params) > 0 || !ok {
			detail["params"] = params
		}
	}
	st := s.gw.StatementSent(s.gs, text, detail)
	if err := s.forward(pk); err != nil {
		st.Unfinished(s.why("the upstream connection failed"))
		return err
	}
	return s.relayResults(st, true)
}

func (s *session) onLongData(body []byte) {
	if len(body) < 6 {
		return
	}
	if p := s.stmts[le32(body)]; p != nil {
		if p.long == nil {
			p.long = map[int]bool{}
		}
		p.long[int(body[4])|int(body[5])<<8] = true
	}
}

// onReset relays COM_RESET_CONNECTION, then starts the session again
// upstream: the reset leaves the role and the schema as the session last
// set them (SET ROLE NONE, USE), not as keygate started it.
func (s *session) onReset(pk packet) error {
	st := s.gw.StatementSent(s.gs, "COM_RESET_CONNECTION", map[string]any{"protocol": "reset_connection"})
	seq, p, err := s.ask(st, pk)
	if err != nil {
		return err
	}
	// The statements below read the upstream again, into p's buffer.
	p = bytes.Clone(p)
	if p[0] == mysqlproto.HeaderOK {
		for _, stmt := range s.up.SessionStart(s.level) {
			if err := s.uc.Exec(stmt); err != nil {
				st.Add(gateway.Outcome{Error: "keygate could not start the session again: " + err.Error()})
				st.Done()
				return &sessionEnd{reason: "could not restore the session after COM_RESET_CONNECTION: " + err.Error(),
					err: &mysqlproto.Err{Code: erConCount, SQLState: "08004", Message: "keygate: the session could not be reset; reconnect"}}
			}
		}
		clear(s.stmts)
		s.status = s.uc.Status
		st.Add(gateway.Outcome{Tag: "RESET"})
	} else {
		st.Add(errOutcome(p, s.caps))
	}
	st.Done()
	return s.reply(seq, p)
}

// kill answers KILL [QUERY|CONNECTION] id for a session of the same
// person, by keygate's connection id or its upstream thread id; any other
// id is unknown, as the server says of a thread it does not show.
func (s *session) kill(ctx context.Context, pk packet, id uint32, queryOnly bool) error {
	what := "KILL CONNECTION "
	if queryOnly {
		what = "KILL QUERY "
	}
	text := what + strconv.FormatUint(uint64(id), 10)
	target := s.gw.Lookup(EngineName, id)
	if target == nil {
		for _, gs := range s.gw.Sessions() {
			if gs.Engine == EngineName && gs.UpstreamPID == id && gs.Database == s.gs.Database {
				target = gs
				break
			}
		}
	}
	if target == nil || !strings.EqualFold(target.User, s.gs.User) {
		return s.refuse(pk, fmt.Sprintf("Unknown thread id: %d", id), text, erNoSuchThread, "HY000")
	}
	st := s.gw.StatementSent(s.gs, text, map[string]any{"protocol": "text", "answered_by": "keygate", "target_session": target.ID})
	switch {
	case queryOnly:
		if !s.gw.CancelSession(ctx, target, s.gs.Client) {
			st.Add(gateway.Outcome{Error: "the cancel did not reach the upstream"})
			st.Done()
			return s.reply(pk.seq+1, (&mysqlproto.Err{Code: erNoSuchThread, SQLState: "HY000", Message: "keygate: the query could not be cancelled; the keygate log says why"}).Encode())
		}
	case target == s.gs:
		st.Add(gateway.Outcome{Tag: "KILL"})
		st.Done()
		return &sessionEnd{reason: "the session ended itself with KILL CONNECTION",
			err: &mysqlproto.Err{Code: erConnectionKilled, SQLState: "70100", Message: "Connection was killed"}}
	default:
		s.gw.End(target, fmt.Sprintf("ended by KILL CONNECTION from session %s of the same person", s.gs.ID))
	}
	st.Add(gateway.Outcome{Tag: "KILL"})
	st.Done()
	return s.reply(pk.seq+1, mysqlproto.EncodeOK(mysqlproto.StatusAutocommit))
}

// mayLoadLocal says why a LOAD DATA LOCAL INFILE is refused, or "".
func (s *session) mayLoadLocal() string {
	switch {
	case !s.up.LocalInfile():
		return fmt.Sprintf("LOAD DATA LOCAL INFILE is refused: database %s does not allow it (local_infile: true in keygate's config turns it on)", s.db)
	case s.level == access.ReadOnly:
		return "LOAD DATA LOCAL INFILE is refused: it writes, and this session is read-only"
	}
	return ""
}

// accountStatement finds statements that change the session's own
// account, which the server allows every user (SET PASSWORD, ALTER USER):
// keygate manages the upstream accounts. Ordinary comments are skipped;
// the body of an executable comment (/*! ... */) counts, since the server
// runs it. String literals are searched too, so that dynamic SQL
// (PREPARE ... FROM '...', EXECUTE IMMEDIATE) is caught; the account's
// lock between keygate's logins is what holds when text is built some
// other way.
var accountStatement = regexp.MustCompile(`(?i)\bSET\s+PASSWORD\b|\bALTER\s+USER\b|\bIDENTIFIED\s+(?:BY|WITH|VIA)\b`)

// plainComments matches the comments the server ignores; executable ones
// (/*!, /*M!) are kept.
var plainComments = regexp.MustCompile(`(?s)/\*[^!M].*?\*/|/\*M?\*/|/\*M[^!].*?\*/|(?m)(?:#|--\s).*$`)

func accountRefusal(phrase string) string {
	return fmt.Sprintf("%s is refused: keygate manages the upstream accounts, and your password is the token from keygate db token", strings.ToUpper(strings.Join(strings.Fields(phrase), " ")))
}

// accountChange says which account-changing phrase text holds, or "".
func accountChange(text string) string {
	code := plainComments.ReplaceAllString(text, " ")
	code = strings.NewReplacer("/*!", " ", "/*M!", " ", "*/", " ").Replace(code)
	return accountStatement.FindString(code)
}
