package pgwire

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keygate/keygate/gateway"
	"github.com/keygate/keygate/upstream/postgres"
)

// maxMessage is PostgreSQL's own limit on a message.
const maxMessage = 1 << 30

const (
	// killWriteGrace is how long an ending session may still take to
	// write to its client.
	killWriteGrace = 5 * time.Second
	// terminateTimeout bounds ending a backend and confirming it gone.
	terminateTimeout = 5 * time.Second
	// closeGrace is how long a backend may take to exit after a
	// Terminate before keygate ends it.
	closeGrace = 2 * time.Second
)

// session relays one authenticated connection.
type session struct {
	srv    *Server
	gw     *gateway.Gateway
	gs     *gateway.Session
	up     Upstream
	upc    *postgres.Conn
	client net.Conn
	cr     *pooledReader
	ur     *pooledReader
	uw     *pooledWriter
	st     *tracker

	// wmu guards cw: the relay of upstream messages and the replies
	// keygate gives itself both write to the client.
	wmu sync.Mutex
	cw  *pooledWriter

	// buf holds whole client messages that keygate reads before relaying.
	buf []byte
	// skipping is set after keygate answered an extended-protocol
	// message with an error itself: like PostgreSQL, it then ignores the
	// client's messages up to Sync. Only fromClient touches it.
	skipping bool
	// pending is an unnamed statement parsed but not yet executed: its
	// text goes into the audit with its first execution, or at the next
	// Sync or Flush if none comes. Only fromClient touches it.
	pending *stmt

	// stopped is closed when the session must end before the client
	// ends it: revoked, over its session_duration, shutting down, or a
	// statement refused. fatal says what the client is told.
	stopped  chan struct{}
	stopOnce sync.Once
	// stopCtx ends when stopped is closed, for waits that must give up
	// then.
	stopCtx    context.Context
	cancelStop context.CancelFunc
	fatal      atomic.Pointer[pgproto3.ErrorResponse]

	// ended is closed once the backend is gone or keygate gave up on
	// confirming it, with end saying which.
	termOnce sync.Once
	ended    chan struct{}
	end      gateway.BackendEnd

	// upEOF is when the upstream closed the connection (Unix ns), 0 if it
	// has not.
	upEOF atomic.Int64

	// detaching asks toClient to stop at the next message boundary
	// without the upstream closing, so that the connection can serve the
	// person's next session; detached says it did.
	detaching atomic.Bool
	detached  atomic.Bool
}

func newSession(h *handshake, up *postgres.Conn, upstream Upstream) *session {
	s := &session{
		srv:     h.srv,
		gw:      h.srv.Gateway,
		up:      upstream,
		upc:     up,
		client:  h.conn,
		cr:      newPooledReader(h.r),
		cw:      newPooledWriter(h.conn),
		ur:      newPooledReader(bufio.NewReaderSize(up, idleReadBuf)),
		uw:      newPooledWriter(up),
		st:      newTracker(),
		stopped: make(chan struct{}),
		ended:   make(chan struct{}),
	}
	s.stopCtx, s.cancelStop = context.WithCancel(context.Background())
	s.st.txStatus = up.TxStatus
	s.gs = &gateway.Session{Engine: EngineName, Client: h.client, UpstreamRole: up.Role, UpstreamPID: up.PID, UpstreamReused: up.Reused, Control: s}
	return s
}

// Kill implements gateway.Control.
func (s *session) Kill(reason string) { s.stop(fatal57P01(reason)) }

// CancelUpstream implements gateway.Control: PostgreSQL's cancel request,
// with the backend's own key, on a connection of its own.
func (s *session) CancelUpstream(ctx context.Context) error {
	return s.up.Cancel(ctx, s.upc)
}

// fatal57P01 is what a client is told when keygate ends its session.
func fatal57P01(reason string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01", Message: "keygate: " + reason}
}

// stop ends the session from keygate's side: nothing more the client sends
// reaches the upstream, and the backend is ended (see terminate). It does
// not block.
func (s *session) stop(why *pgproto3.ErrorResponse) {
	s.stopOnce.Do(func() {
		s.fatal.Store(why)
		close(s.stopped)
		s.cancelStop()
		s.client.SetReadDeadline(time.Now())
		// A client that stops reading must not keep the session (and a
		// shutdown) waiting: a write to it gives up after a grace period.
		s.client.SetWriteDeadline(time.Now().Add(killWriteGrace))
		// A message waiting for an earlier batch's replies gives up.
		s.st.close()
		go s.terminate()
	})
}

func (s *session) isStopped() bool {
	select {
	case <-s.stopped:
		return true
	default:
		return false
	}
}

// terminate ends the backend from keygate's admin connection and waits
// until it is gone: closing the socket and sending a cancel would leave a
// statement that swallows cancels running and committing. Then it closes
// the upstream connection, which ends the relay of its messages.
func (s *session) terminate() {
	s.termOnce.Do(func() {
		s.endUpstream()
		close(s.ended)
	})
}

// endUpstream ends the backend and closes the connection, recording how.
func (s *session) endUpstream() {
	ctx, cancel := context.WithTimeout(context.Background(), terminateTimeout)
	defer cancel()
	at, err := s.up.Terminate(ctx, s.upc)
	if err != nil {
		s.end = gateway.BackendEnd{How: gateway.BackendUnconfirmed, Err: err}
	} else {
		s.end = gateway.BackendEnd{At: at, How: gateway.BackendTerminated}
	}
	s.upc.Close()
}

// pool hands the backend of a session that ended idle to the person's
// pool, in place of ending it; terminate does nothing after it. The backend
// of a session keygate stopped meanwhile is ended as usual; one the pool
// did not keep is told Terminate, as its client would have.
func (s *session) pool() {
	s.termOnce.Do(func() {
		switch {
		case s.isStopped():
			s.endUpstream()
		case s.up.Release(s.upc, true):
			s.end = gateway.BackendEnd{At: time.Now(), How: gateway.BackendPooled}
		default:
			s.endIdle()
		}
		close(s.ended)
	})
}

// endIdle ends an idle backend the way a client does, which costs the
// upstream less than keygate ending it, and matters when thousands of
// sessions end at once: a Terminate message, then the connection closing
// says it is gone. One that has not closed within closeGrace is ended from
// keygate's side.
func (s *session) endIdle() {
	s.upc.SetDeadline(time.Now().Add(closeGrace))
	if _, err := s.upc.Write([]byte{'X', 0, 0, 0, 4}); err == nil {
		if _, err := io.Copy(io.Discard, s.upc); err == nil {
			s.end = gateway.BackendEnd{At: time.Now(), How: gateway.BackendClosed}
			s.upc.Close()
			return
		}
	}
	s.endUpstream()
}

// Abort implements gateway.Control.
func (s *session) Abort() gateway.BackendEnd { return s.endBackend() }

// endBackend ends the backend of a session that never got to relay, and
// hands the connection back.
func (s *session) endBackend() gateway.BackendEnd {
	s.terminate()
	<-s.ended
	s.up.Release(s.upc, false)
	return s.end
}

// greet finishes start-up: authentication is done, here are the server's
// parameters, the cancel key (keygate's own) and the first ReadyForQuery.
func (s *session) greet() error {
	var buf []byte
	buf, _ = (&pgproto3.AuthenticationOk{}).Encode(buf)
	for k, v := range s.upc.Params {
		buf, _ = (&pgproto3.ParameterStatus{Name: k, Value: v}).Encode(buf)
	}
	buf, _ = (&pgproto3.BackendKeyData{ProcessID: s.gs.CancelID, SecretKey: binary.BigEndian.AppendUint32(nil, s.gs.CancelSecret)}).Encode(buf)
	buf, _ = (&pgproto3.ReadyForQuery{TxStatus: s.upc.TxStatus}).Encode(buf)
	_, err := s.client.Write(buf)
	return err
}

// relay copies messages both ways until either side ends, makes sure the
// backend is gone, and only then audits the session's end.
func (s *session) relay() {
	upDone := make(chan bool, 1)
	go func() { upDone <- s.toClient() }()
	clientErr := s.fromClient()
	s.st.close()
	reason := s.reason(clientErr)
	end, atBoundary := s.finish(clientErr, upDone)
	fatal := s.fatal.Load()
	if fatal != nil {
		reason = strings.TrimPrefix(fatal.Message, "keygate: ")
	}
	s.auditUnfinished(reason)
	s.gw.Unregister(s.gs, reason, end)
	// The backend is gone, so the connection cannot serve again; handing
	// it back may put the role at rest, which need not delay the audit.
	s.up.Release(s.upc, false)
	if fatal != nil && atBoundary {
		// The client hears why only now, so that whoever sees the end
		// also finds it in the audit log.
		s.client.SetWriteDeadline(time.Now().Add(killWriteGrace))
		buf, _ := fatal.Encode(nil)
		s.cw.Write(buf)
		s.cw.Flush()
	}
	s.client.Close()
	s.cancelStop()
}

// auditUnfinished writes the events of the statements that got no result,
// or whose batch did not end, before the session's end is audited.
func (s *session) auditUnfinished(reason string) {
	pending, finished := s.st.unfinished()
	for _, st := range finished {
		st.Done()
	}
	for _, st := range pending {
		st.Unfinished("the session ended before the result came: " + reason)
	}
}

var (
	errClientTerminated = errors.New("client sent Terminate")
	errStopped          = errors.New("session stopped by keygate")
)

// reason is why the session ended, when keygate did not end it.
func (s *session) reason(clientErr error) string {
	switch {
	case errors.Is(clientErr, errClientTerminated):
		return "client closed the session"
	case s.upEOF.Load() != 0:
		return "upstream closed the connection"
	case errors.Is(clientErr, errProtocol):
		return clientErr.Error()
	}
	return "client disconnected"
}

// finish makes sure the backend is gone, or pooled, once the client side
// is done. A session that ended between statements, outside a transaction,
// leaves its backend to the person's pool; otherwise a backend told
// Terminate (because the client said it, or vanished between statements)
// exits by itself, and its connection closing says so; any other is ended
// with terminate.
func (s *session) finish(clientErr error, upDone <-chan bool) (gateway.BackendEnd, bool) {
	var atBoundary, upReturned bool
	select {
	case atBoundary = <-upDone:
		upReturned = true
	default:
	}
	if !s.isStopped() {
		clean := !upReturned && (errors.Is(clientErr, errClientTerminated) || atMessageBoundary(clientErr)) && s.st.idle()
		if clean && s.up.Pooling() && s.st.status() == 'I' {
			atBoundary, upReturned = s.detach(upDone), true
			if s.detached.Load() {
				s.pool()
				<-s.ended
				return s.end, atBoundary
			}
			clean = false
		}
		graceful := clean && s.sendTerminate() == nil
		if graceful {
			select {
			case atBoundary = <-upDone:
				upReturned = true
			case <-time.After(closeGrace):
			case <-s.stopped:
			}
		}
		if at := s.upEOF.Load(); at != 0 && !s.isStopped() {
			return gateway.BackendEnd{At: time.Unix(0, at), How: gateway.BackendClosed}, atBoundary
		}
	}
	s.terminate()
	<-s.ended
	if !upReturned {
		atBoundary = <-upDone
	}
	return s.end, atBoundary
}

// detach stops the relay of upstream messages at the next message
// boundary, keeping the connection open: the read that toClient waits in
// is woken with a deadline. It returns what toClient returned;
// s.detached says whether it stopped cleanly, with nothing of the
// upstream's read or half read.
func (s *session) detach(upDone <-chan bool) bool {
	s.detaching.Store(true)
	s.upc.SetReadDeadline(time.Now())
	return <-upDone
}

// atMessageBoundary reports whether the client's stream ended between
// messages, so that nothing half sent sits upstream.
func atMessageBoundary(clientErr error) bool {
	return errors.Is(clientErr, io.EOF) || errors.Is(clientErr, net.ErrClosed)
}

// sendTerminate ends the backend the way a client does.
func (s *session) sendTerminate() error {
	if _, err := s.uw.Write([]byte{'X', 0, 0, 0, 4}); err != nil {
		return err
	}
	return s.uw.Flush()
}

// toClient relays upstream messages to the client whole, so that an ending
// session can always append a clean FATAL error. It returns once the
// upstream connection is closed, saying whether the stream to the client
// ended between messages; when the client is gone it goes on reading the
// upstream, so that the backend is never stuck writing.
func (s *session) toClient() (atBoundary bool) {
	var hdr [5]byte
	clientGone := false
	for {
		if n, err := io.ReadFull(s.ur, hdr[:]); err != nil {
			s.flushClient()
			if n == 0 && s.detaching.Load() && errors.Is(err, os.ErrDeadlineExceeded) && s.ur.Buffered() == 0 && s.uw.idle() {
				s.ur.release()
				s.detached.Store(true)
				return true
			}
			s.upstreamEnded(err)
			return true
		}
		n := int(binary.BigEndian.Uint32(hdr[1:])) - 4
		if n < 0 || n > maxMessage {
			s.flushClient()
			s.gw.Logger().Error("upstream sent a message of impossible length; ending the session", "session", s.gs.ID, "length", n+4)
			s.stop(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "08P01", Message: "keygate: the upstream sent a malformed message"})
			s.discardUpstream()
			return true
		}
		var status byte
		var body []byte
		switch hdr[0] {
		case 'Z':
			if b, err := s.ur.Peek(1); err == nil && n == 1 {
				status = b[0]
			}
		case 'C', 'E':
			// Small enough to read in place; an ErrorResponse longer than
			// the buffer leaves its statement's error unread.
			if n <= bufSize {
				body, _ = s.ur.Peek(n)
			}
		}
		relay, err := s.st.reply(hdr[0], status, body)
		s.st.writeReady()
		if s.st.unstored.Swap(false) {
			// The client hears that a statement finished only once its
			// event is stored.
			s.gw.Stored(s.stopCtx)
		}
		if err != nil {
			s.gw.Logger().Error("ending a session whose replies no longer match its messages", "session", s.gs.ID, "err", err)
			s.stop(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "XX000", Message: "keygate: " + errDesync.Error() + "; reconnect"})
			s.discardUpstream()
			return true
		}
		// Once keygate ends the session, the client hears nothing more of
		// the upstream, not even the FATAL its backend sends as it goes:
		// only keygate's own, which says why.
		if !relay || clientGone || s.isStopped() {
			if _, err := s.ur.Discard(n); err != nil {
				s.upstreamEnded(err)
				return true
			}
		} else {
			s.wmu.Lock()
			s.cw.Write(hdr[:])
			upErr, clientErr := copyN(s.cw, s.ur.reader(), n)
			if clientErr == nil && s.ur.Buffered() == 0 {
				clientErr = s.cw.Flush()
			}
			s.wmu.Unlock()
			if upErr != nil {
				s.upstreamEnded(upErr)
				return false
			}
			if clientErr != nil {
				// The client is gone; fromClient finds out on its next
				// read, and the backend is ended once it does.
				clientGone = true
				s.client.SetReadDeadline(time.Now())
			}
		}
		s.gs.BytesToClient.Add(int64(n + 5))
		if !clientGone {
			s.sendReplies()
		}
	}
}

// upstreamEnded records that the upstream connection ended, and stops
// reading the client unless keygate is already ending the session.
func (s *session) upstreamEnded(err error) {
	if errors.Is(err, io.EOF) {
		s.upEOF.CompareAndSwap(0, time.Now().UnixNano())
	}
	if !s.isStopped() {
		s.client.SetReadDeadline(time.Now())
	}
}

// discardUpstream reads the upstream until it closes.
func (s *session) discardUpstream() {
	io.Copy(io.Discard, s.ur)
}

// sendReplies sends the replies keygate gives itself whose turn has come.
// Taking them and writing them is one step, under wmu, so that two
// goroutines never send them out of order.
func (s *session) sendReplies() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if out := s.st.takeReplies(); out != nil {
		if _, err := s.cw.Write(out); err == nil {
			s.cw.Flush()
		}
	}
}

func (s *session) flushClient() {
	s.wmu.Lock()
	s.cw.Flush()
	s.wmu.Unlock()
}

// copyN moves n bytes from r to w through r's buffer, without allocating,
// and says which side failed.
func copyN(w io.Writer, r *bufio.Reader, n int) (readErr, writeErr error) {
	for n > 0 {
		k := r.Buffered()
		if k == 0 {
			if _, err := r.Peek(1); err != nil {
				return err, nil
			}
			k = r.Buffered()
		}
		k = min(k, n)
		b, _ := r.Peek(k)
		if _, err := w.Write(b); err != nil {
			return nil, err
		}
		r.Discard(k)
		n -= k
	}
	return nil, nil
}

// errorMessage encodes an ERROR (not FATAL) response.
func errorMessage(code, msg string) []byte {
	b, _ := (&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: msg}).Encode(nil)
	return b
}
