package mysqlwire

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/keygate/keygate/access"
	"github.com/keygate/keygate/gateway"
	"github.com/keygate/keygate/mysqlproto"
	"github.com/keygate/keygate/upstream/mysql"
)

// session relays one admitted connection.
type session struct {
	srv    *Server
	gw     *gateway.Gateway
	gs     *gateway.Session
	up     Upstream
	uc     *mysql.Conn
	client net.Conn
	cr     *mysqlproto.Reader
	cw     *bufio.Writer
	caps   uint32
	db     string // keygate's name
	level  access.Level

	// stmts are the prepared statements of the session, by id.
	stmts map[uint32]*prepared

	// packets carries the client's packets from its reader.
	packets chan packet
	// stopped is closed when the relay ends, for the client's reader.
	stopped chan struct{}
	// busy is set while a command runs upstream: a client that goes away
	// then leaves a statement running, which keygate ends.
	busy atomic.Bool

	// seq is the sequence id the client expects next: keygate's last
	// word in a command goes there.
	seq byte

	// status is the server status flags of the last OK or EOF that
	// ended an answer upstream: whether a transaction is open.
	status uint16

	// handMu guards handed, which says the relay took the upstream
	// connection back to end it or pool it: Kill no longer closes it,
	// since it may already serve another session.
	handMu sync.Mutex
	handed bool

	killOnce   sync.Once
	killed     chan struct{}
	killReason string
	// killCtx ends when killed is closed, for waits that must give up
	// then.
	killCtx    context.Context
	cancelKill context.CancelFunc
	// stored is the count of the session's statements whose events were
	// stored before the client heard their end (see gateway.Stored).
	stored int64
}

// packet is one packet from the client, or why none came.
type packet struct {
	seq byte
	p   []byte
	err error
}

func newSession(h *handshake, up Upstream, uc *mysql.Conn, db string, level access.Level) *session {
	s := &session{srv: h.srv, gw: h.srv.gw, up: up, uc: uc, client: h.conn, cr: h.r, cw: bufio.NewWriterSize(h.conn, 32<<10),
		caps: uc.Caps, db: db, level: level, status: uc.Status, stmts: map[uint32]*prepared{}, packets: make(chan packet), killed: make(chan struct{}), stopped: make(chan struct{})}
	s.cr.Max = 0
	s.killCtx, s.cancelKill = context.WithCancel(context.Background())
	s.gs = &gateway.Session{Engine: EngineName, Client: h.client, Control: s, UpstreamRole: uc.User, UpstreamPID: uc.ThreadID,
		UpstreamReused: uc.Reused, CancelID: h.id, Auth: h.auth}
	return s
}

// Kill implements gateway.Control: the relay stops, tells the client
// why, and ends the upstream connection.
func (s *session) Kill(reason string) {
	s.killOnce.Do(func() {
		s.handMu.Lock()
		s.killReason = reason
		close(s.killed)
		s.cancelKill()
		// Unblock the relay wherever it waits.
		if !s.handed {
			s.uc.Close()
		}
		s.handMu.Unlock()
		s.client.SetReadDeadline(time.Now())
	})
}

// CancelUpstream implements gateway.Control.
func (s *session) CancelUpstream(ctx context.Context) error { return s.up.Cancel(ctx, s.uc) }

// Abort implements gateway.Control.
func (s *session) Abort() gateway.BackendEnd { return s.endBackend() }

// endBackend ends the upstream connection and says how.
func (s *session) endBackend() gateway.BackendEnd {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	at, err := s.up.Terminate(ctx, s.uc)
	if err != nil {
		return gateway.BackendEnd{How: gateway.BackendUnconfirmed, Err: err}
	}
	return gateway.BackendEnd{At: at, How: gateway.BackendTerminated}
}

// errQuit ends a relay on the client's COM_QUIT.
var errQuit = errors.New("client quit")

// relay runs the session until either side ends it.
func (s *session) relay(ctx context.Context) {
	go s.readClient()
	err := s.commands(ctx)
	close(s.stopped)
	reason := "client closed the connection"
	var last *mysqlproto.Err
	var end gateway.BackendEnd
	select {
	case <-s.killed:
		reason = s.killReason
		last = &mysqlproto.Err{Code: erConnectionKilled, SQLState: "70100", Message: "keygate: " + reason}
		end = s.endBackend()
	default:
		var se *sessionEnd
		switch {
		case errors.Is(err, errQuit), errors.Is(err, errEOF) && !s.busy.Load():
			end = s.finish(errors.Is(err, errQuit))
		case errors.As(err, &se):
			reason, last = se.reason, se.err
			end = s.endBackend()
		default:
			if err != nil && !isClosed(err) {
				reason = "relay failed: " + err.Error()
			}
			end = s.endBackend()
		}
	}
	// The end is on record, its backend gone, by the time the client
	// hears of it.
	s.gw.Unregister(s.gs, reason, end)
	s.tellClient(last)
	s.client.Close()
	s.cancelKill()
}

// finish ends the upstream side of a session that ended between
// commands: the client quit, or went away. Outside a transaction, the
// connection goes to the person's pool, and one the pool does not keep
// quits, as its client would have (which costs the server less than a
// KILL when thousands of sessions end at once). That of a session keygate
// ended meanwhile is ended and confirmed gone. A client's COM_QUIT in a
// transaction quits upstream too, which rolls back.
func (s *session) finish(quit bool) gateway.BackendEnd {
	if !s.handOver() {
		return s.endBackend()
	}
	if s.up.Pooling() && s.status&mysqlproto.StatusInTrans == 0 {
		if s.up.Release(s.uc, true) {
			return gateway.BackendEnd{At: time.Now(), How: gateway.BackendPooled}
		}
		s.up.Release(s.uc, false)
		return gateway.BackendEnd{At: time.Now(), How: gateway.BackendClosed}
	}
	if quit {
		s.up.Release(s.uc, false)
		return gateway.BackendEnd{At: time.Now(), How: gateway.BackendClosed}
	}
	return s.endBackend()
}

// handOver takes the upstream connection back from Kill's reach; it
// fails when keygate ended the session first.
func (s *session) handOver() bool {
	s.handMu.Lock()
	defer s.handMu.Unlock()
	select {
	case <-s.killed:
		return false
	default:
	}
	s.handed = true
	return true
}

// noteEnd keeps the status flags of p when it is the OK or EOF that ends
// an answer.
func (s *session) noteEnd(p []byte) {
	if status, ok := mysql.EndStatus(p, s.caps); ok {
		s.status = status
	}
}

// why is what to record of a statement cut short by the session's end:
// the reason it was ended, if it was.
func (s *session) why(otherwise string) string {
	select {
	case <-s.killed:
		return "the session was ended: " + s.killReason
	default:
		return otherwise
	}
}

// sessionEnd ends a session with an error for the client.
type sessionEnd struct {
	reason string
	err    *mysqlproto.Err
}

func (e *sessionEnd) Error() string { return e.reason }

// tellClient sends a last error: in the answer to the command that runs,
// or with sequence id 0 between commands, as a server does; a client
// reads that as the answer to its next one.
func (s *session) tellClient(e *mysqlproto.Err) {
	if e == nil {
		return
	}
	seq := byte(0)
	if s.busy.Load() {
		seq = s.seq
	}
	s.client.SetWriteDeadline(time.Now().Add(time.Second))
	s.cw.Flush()
	mysqlproto.Write(s.client, seq, e.Encode())
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, errEOF)
}

// errEOF is the client's or the upstream's end of stream.
var errEOF = errors.New("connection closed")

// readClient reads the client's packets for the relay. When the client
// goes away while a command runs, the statement is ended upstream: the
// relay, waiting for the upstream's answer, would not notice.
func (s *session) readClient() {
	defer close(s.packets)
	for {
		first, _, p, err := s.cr.Read()
		if err != nil && s.busy.Load() {
			select {
			case <-s.killed:
			case <-s.stopped:
			default:
				s.gw.End(s.gs, "client closed the connection while a statement ran")
			}
		}
		select {
		case s.packets <- packet{seq: first, p: p, err: err}:
		case <-s.killed:
			return
		case <-s.stopped:
			return
		}
		if err != nil {
			return
		}
	}
}

// next returns the client's next packet.
func (s *session) next() (packet, error) {
	select {
	case pk, ok := <-s.packets:
		if !ok {
			return packet{}, errEOF
		}
		if pk.err != nil {
			return packet{}, fmt.Errorf("%w: %w", errEOF, pk.err)
		}
		s.gs.BytesFromClient.Add(int64(len(pk.p) + 4))
		return pk, nil
	case <-s.killed:
		return packet{}, errEOF
	}
}

// commands relays the client's commands until the session ends.
func (s *session) commands(ctx context.Context) error {
	for {
		pk, err := s.next()
		if err != nil {
			return err
		}
		if len(pk.p) == 0 {
			return &sessionEnd{reason: "client sent an empty command", err: &mysqlproto.Err{Code: erUnknownCom, SQLState: "08S01", Message: "keygate: empty command"}}
		}
		if pk.p[0] == gomysql.COM_QUIT {
			return errQuit
		}
		s.seq = pk.seq + 1
		s.busy.Store(true)
		err = s.command(ctx, pk)
		if err != nil {
			return err
		}
		s.busy.Store(false)
		if n := s.gs.Statements.Load(); n != s.stored {
			// The client hears that a statement finished only once its
			// event is stored: the packet that ends its answer waits in
			// cw until then.
			s.gw.Stored(s.killCtx)
			s.stored = n
		}
		if err := s.cw.Flush(); err != nil {
			return err
		}
	}
}

// command handles one command from the client.
func (s *session) command(ctx context.Context, pk packet) error {
	body := pk.p[1:]
	switch cmd := pk.p[0]; cmd {
	case gomysql.COM_QUERY:
		return s.onQuery(ctx, pk)
	case gomysql.COM_INIT_DB:
		return s.onInitDB(pk, string(body))
	case gomysql.COM_STMT_PREPARE:
		return s.onPrepare(pk)
	case gomysql.COM_STMT_EXECUTE:
		return s.onExecute(pk)
	case gomysql.COM_STMT_SEND_LONG_DATA:
		s.onLongData(body)
		return s.forward(pk)
	case gomysql.COM_STMT_CLOSE:
		if len(body) >= 4 {
			delete(s.stmts, le32(body))
		}
		return s.forward(pk)
	case gomysql.COM_STMT_RESET, gomysql.COM_PING, gomysql.COM_SET_OPTION, gomysql.COM_STATISTICS:
		if err := s.forward(pk); err != nil {
			return err
		}
		p, err := s.relayOne()
		if err == nil && cmd != gomysql.COM_STATISTICS {
			s.noteEnd(p)
		}
		return err
	case gomysql.COM_STMT_FETCH:
		if err := s.forward(pk); err != nil {
			return err
		}
		return s.relayRows()
	case gomysql.COM_FIELD_LIST:
		table, _, _ := strings.Cut(string(body), "\x00")
		st := s.gw.StatementSent(s.gs, "SHOW COLUMNS FROM "+quoteIdent(table), map[string]any{"protocol": "field_list"})
		if err := s.forward(pk); err != nil {
			st.Unfinished("the upstream connection failed")
			return err
		}
		return s.relayFields(st)
	case gomysql.COM_RESET_CONNECTION:
		return s.onReset(pk)
	case gomysql.COM_PROCESS_KILL:
		if len(body) < 4 {
			return s.refuse(pk, "a malformed COM_PROCESS_KILL", "", erUnknownCom, "08S01")
		}
		return s.kill(ctx, pk, le32(body), false)
	case gomysql.COM_CHANGE_USER:
		reason := "COM_CHANGE_USER is refused: keygate sessions belong to one person, at one level; open a new connection with that person's token"
		s.gw.RefuseStatement(s.gs, reason, "COM_CHANGE_USER", map[string]any{"command": "change_user"})
		return &sessionEnd{reason: reason, err: &mysqlproto.Err{Code: erNotAllowedCommand, SQLState: "42000", Message: "keygate: " + reason}}
	default:
		name := fmt.Sprintf("command %#02x", cmd)
		return s.refuse(pk, fmt.Sprintf("keygate does not relay %s", name), name, erUnknownCom, "08S01")
	}
}

// forward sends a client packet upstream unchanged.
func (s *session) forward(pk packet) error {
	_, err := mysqlproto.Write(s.uc, pk.seq, pk.p)
	return err
}

// refuse answers a command with an error without sending it upstream,
// and audits the refusal.
func (s *session) refuse(pk packet, reason, text string, code uint16, state string) error {
	s.gw.RefuseStatement(s.gs, reason, text, nil)
	return s.reply(pk.seq+1, (&mysqlproto.Err{Code: code, SQLState: state, Message: "keygate: " + reason}).Encode())
}

// reply sends keygate's own packet to the client.
func (s *session) reply(seq byte, p []byte) error {
	last, err := mysqlproto.WriteTo(s.cw, seq, p)
	s.seq = last + 1
	s.gs.BytesToClient.Add(int64(len(p) + 4*(int(last-seq)+1)))
	return err
}

// toClient relays an upstream packet to the client as it came.
func (s *session) toClient(seq byte, p []byte) error {
	if err := s.reply(seq, p); err != nil {
		return err
	}
	if s.uc.R.Buffered() == 0 {
		// Nothing more is waiting upstream: let the client have it.
		return s.cw.Flush()
	}
	return nil
}

// fromUpstream reads the upstream's next packet.
func (s *session) fromUpstream() (byte, []byte, error) {
	first, _, p, err := s.uc.R.Read()
	if err != nil {
		return 0, nil, fmt.Errorf("upstream: %w", err)
	}
	if len(p) == 0 {
		return 0, nil, fmt.Errorf("upstream: an empty packet")
	}
	return first, p, nil
}

// relayOne relays a one-packet answer.
func (s *session) relayOne() ([]byte, error) {
	seq, p, err := s.fromUpstream()
	if err != nil {
		return nil, err
	}
	return p, s.toClient(seq, p)
}

// relayHeld relays the upstream's next packet into cw without flushing
// it: the whole answer of a small command waits there for the command's
// end, when its audit event is stored.
func (s *session) relayHeld() ([]byte, error) {
	seq, p, err := s.fromUpstream()
	if err != nil {
		return nil, err
	}
	return p, s.reply(seq, p)
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
