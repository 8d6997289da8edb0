package mysqlwire

import (
	"fmt"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/keygate/keygate/gateway"
	"github.com/keygate/keygate/mysqlproto"
)

// maxErrorText bounds the error message an outcome keeps.
const maxErrorText = 512

func errOutcome(p []byte, caps uint32) gateway.Outcome {
	e, err := mysqlproto.DecodeErr(p, caps)
	if err != nil {
		return gateway.Outcome{Unknown: "the upstream's error did not parse"}
	}
	msg := e.Message
	if len(msg) > maxErrorText {
		msg = msg[:maxErrorText] + "…"
	}
	return gateway.Outcome{SQLState: e.SQLState, Error: fmt.Sprintf("%s (error %d)", msg, e.Code)}
}

func okTag(ok *mysqlproto.OK) string {
	if ok.AffectedRows == 1 {
		return "OK, 1 row affected"
	}
	return fmt.Sprintf("OK, %d rows affected", ok.AffectedRows)
}

// relayResults relays the answer to a query or an execute: one result or
// more, each an OK, an ERR, a LOCAL INFILE request or a result set, and
// notes each one's outcome.
func (s *session) relayResults(st *gateway.SentStatement, binary bool) error {
	for {
		seq, p, err := s.fromUpstream()
		if err != nil {
			st.Unfinished(s.why("the upstream connection ended"))
			return err
		}
		var status uint16
		switch {
		case p[0] == mysqlproto.HeaderOK:
			ok, err := mysqlproto.DecodeOK(p)
			if err != nil {
				st.Unfinished("the upstream's answer did not parse")
				return fmt.Errorf("upstream: %w", err)
			}
			st.Add(gateway.Outcome{Tag: okTag(ok)})
			status = ok.Status
			// An answer's last packet waits in cw for the command's end,
			// when its event is stored; the client hears the rest as it
			// comes.
			if err := s.reply(seq, p); err != nil {
				st.Unfinished("the client went away")
				return err
			}
		case p[0] == mysqlproto.HeaderErr:
			st.Add(errOutcome(p, s.caps))
			st.Done()
			return s.reply(seq, p)
		case p[0] == mysqlproto.HeaderLocalFile && !binary:
			done, err := s.localInfile(st, seq, p)
			if err != nil || done {
				return err
			}
			continue
		default:
			if err := s.toClient(seq, p); err != nil {
				st.Unfinished("the client went away")
				return err
			}
			n, err := mysqlproto.ColumnCount(p)
			if err != nil || n == 0 {
				st.Unfinished("the upstream's answer did not parse")
				return fmt.Errorf("upstream: a result set without columns: %w", err)
			}
			if err := s.relayColumns(int(n)); err != nil {
				st.Unfinished(s.why("the upstream connection ended"))
				return err
			}
			var rows int
			rows, status, err = s.relayRowsOf(st, binary)
			if err != nil {
				return err
			}
			if rows < 0 {
				// An error ended the result set, and the statement.
				st.Done()
				return nil
			}
		}
		s.status = status
		if status&mysqlproto.StatusMoreResults == 0 {
			st.Done()
			return nil
		}
	}
}

// relayColumns relays a result set's n column definitions (and the EOF
// after them where the connection has one).
func (s *session) relayColumns(n int) error {
	for range n {
		if _, err := s.relayOne(); err != nil {
			return err
		}
	}
	return nil
}

// relayRowsOf relays a result set's rows after its columns, and its end,
// noting the outcome; rows is -1 when an error ended it. A cursor opened
// by an execute ends the answer at once: its rows come with
// COM_STMT_FETCH.
func (s *session) relayRowsOf(st *gateway.SentStatement, binary bool) (rows int, status uint16, err error) {
	deprecateEOF := s.caps&gomysql.CLIENT_DEPRECATE_EOF != 0
	if !deprecateEOF {
		p, err := s.relayOne()
		if err != nil {
			st.Unfinished(s.why("the upstream connection ended"))
			return 0, 0, err
		}
		status = mysqlproto.EOFStatus(p)
		if binary && status&mysqlproto.StatusCursorExists != 0 {
			st.Add(gateway.Outcome{Tag: "cursor opened"})
			return 0, status &^ mysqlproto.StatusMoreResults, nil
		}
	}
	for {
		seq, p, err := s.fromUpstream()
		if err != nil {
			st.Unfinished(s.why("the upstream connection ended"))
			return 0, 0, err
		}
		send := s.toClient
		if p[0] == mysqlproto.HeaderErr || mysqlproto.IsEOF(p, deprecateEOF) {
			send = s.reply
		}
		if err := send(seq, p); err != nil {
			st.Unfinished("the client went away")
			return 0, 0, err
		}
		switch {
		case p[0] == mysqlproto.HeaderErr:
			st.Add(errOutcome(p, s.caps))
			return -1, 0, nil
		case mysqlproto.IsEOF(p, deprecateEOF):
			status = s.endStatus(p)
			if binary && rows == 0 && status&mysqlproto.StatusCursorExists != 0 {
				st.Add(gateway.Outcome{Tag: "cursor opened"})
				return 0, status &^ mysqlproto.StatusMoreResults, nil
			}
			st.Add(gateway.Outcome{Tag: fmt.Sprintf("%d rows", rows)})
			return rows, status, nil
		}
		rows++
	}
}

// endStatus is the status of the packet that ends a result set: an EOF,
// or an OK in its place.
func (s *session) endStatus(p []byte) uint16 {
	if s.caps&gomysql.CLIENT_DEPRECATE_EOF == 0 {
		return mysqlproto.EOFStatus(p)
	}
	if ok, err := mysqlproto.DecodeOK(p); err == nil {
		return ok.Status
	}
	return 0
}

// relayRows relays the answer to COM_STMT_FETCH: rows and their end, or
// an error.
func (s *session) relayRows() error {
	deprecateEOF := s.caps&gomysql.CLIENT_DEPRECATE_EOF != 0
	for {
		p, err := s.relayOne()
		if err != nil {
			return err
		}
		if p[0] == mysqlproto.HeaderErr {
			return nil
		}
		if mysqlproto.IsEOF(p, deprecateEOF) {
			s.status = s.endStatus(p)
			return nil
		}
	}
}

// relayFields relays the answer to COM_FIELD_LIST: column definitions up
// to an EOF, or an error, held for the end of the command.
func (s *session) relayFields(st *gateway.SentStatement) error {
	n := 0
	for {
		p, err := s.relayHeld()
		if err != nil {
			st.Unfinished(s.why("the upstream connection ended"))
			return err
		}
		switch p[0] {
		case mysqlproto.HeaderErr:
			st.Add(errOutcome(p, s.caps))
			st.Done()
			return nil
		case mysqlproto.HeaderEOF:
			st.Add(gateway.Outcome{Tag: fmt.Sprintf("%d columns", n)})
			st.Done()
			return nil
		}
		n++
	}
}

// localInfile handles the upstream's request for a client file (LOAD
// DATA LOCAL INFILE). Where the session may, the request goes to the
// client and its file upstream; otherwise the upstream is told there is
// no file, the rest of its answer is dropped, and the client gets an
// error. done says the statement's answer is over.
func (s *session) localInfile(st *gateway.SentStatement, seq byte, p []byte) (done bool, err error) {
	name := string(p[1:])
	if reason := s.mayLoadLocal(); reason != "" {
		s.gw.RefuseStatement(s.gs, reason, "", map[string]any{"protocol": "local_infile", "file": name})
		st.Add(gateway.Outcome{Skipped: reason})
		if _, err := mysqlproto.Write(s.uc, seq+1, nil); err != nil {
			st.Unfinished(s.why("the upstream connection failed"))
			return true, err
		}
		if err := s.drain(); err != nil {
			st.Unfinished(s.why("the upstream connection failed"))
			return true, err
		}
		st.Done()
		return true, s.reply(seq, (&mysqlproto.Err{Code: erNotAllowedCommand, SQLState: "42000", Message: "keygate: " + reason}).Encode())
	}
	if err := s.toClient(seq, p); err != nil {
		st.Unfinished("the client went away")
		return true, err
	}
	if err := s.cw.Flush(); err != nil {
		st.Unfinished("the client went away")
		return true, err
	}
	var sent int64
	for {
		pk, err := s.next()
		if err != nil {
			st.Unfinished("the client went away while sending its file")
			return true, err
		}
		sent += int64(len(pk.p))
		if err := s.forward(pk); err != nil {
			st.Unfinished(s.why("the upstream connection failed"))
			return true, err
		}
		if len(pk.p) == 0 {
			break
		}
	}
	st.Add(gateway.Outcome{Tag: fmt.Sprintf("local file %q sent, %d bytes", name, sent)})
	return false, nil
}

// drain reads and drops the rest of an answer the client will not see.
func (s *session) drain() error {
	deprecateEOF := s.caps&gomysql.CLIENT_DEPRECATE_EOF != 0
	for {
		seq, p, err := s.fromUpstream()
		if err != nil {
			return err
		}
		var status uint16
		switch p[0] {
		case mysqlproto.HeaderErr:
			return nil
		case mysqlproto.HeaderOK:
			ok, err := mysqlproto.DecodeOK(p)
			if err != nil {
				return err
			}
			status = ok.Status
		case mysqlproto.HeaderLocalFile:
			if _, err := mysqlproto.Write(s.uc, seq+1, nil); err != nil {
				return err
			}
			continue
		default:
			n, err := mysqlproto.ColumnCount(p)
			if err != nil {
				return fmt.Errorf("upstream: %w", err)
			}
			if !deprecateEOF {
				n++
			}
			for range n {
				if _, _, err := s.fromUpstream(); err != nil {
					return err
				}
			}
			for {
				_, p, err := s.fromUpstream()
				if err != nil {
					return err
				}
				if p[0] == mysqlproto.HeaderErr {
					return nil
				}
				if mysqlproto.IsEOF(p, deprecateEOF) {
					status = s.endStatus(p)
					break
				}
			}
		}
		s.status = status
		if status&mysqlproto.StatusMoreResults == 0 {
			return nil
		}
	}
}
