package pgwire

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/gateway"
	"github.com/keygate/keygate/upstream/postgres"
)

// Buffer sizes. The client reader must hold a whole audited prefix of a
// statement so that it can be read in place.
const (
	clientReadBuf  = audit.MaxQueryLen + 5
	upstreamBuf    = 64 << 10
	clientWriteBuf = 64 << 10
	// maxMessage is PostgreSQL's own limit on a message.
	maxMessage = 1 << 30
)

// killWriteGrace is how long a killed session may still take to write to
// its client.
const killWriteGrace = 5 * time.Second

// session relays one authenticated connection.
type session struct {
	gw     *gateway.Gateway
	gs     *gateway.Session
	client net.Conn
	cr     *bufio.Reader
	cw     *bufio.Writer
	up     *postgres.Conn
	ur     *bufio.Reader
	uw     *bufio.Writer

	killReason atomic.Pointer[string]
	st         statements
}

func newSession(h *handshake, up *postgres.Conn, upstream Upstream) *session {
	s := &session{
		gw:     h.srv.Gateway,
		client: h.conn,
		cr:     bufio.NewReaderSize(h.r, clientReadBuf),
		cw:     bufio.NewWriterSize(h.conn, clientWriteBuf),
		up:     up,
		ur:     bufio.NewReaderSize(up, upstreamBuf),
		uw:     bufio.NewWriterSize(up, upstreamBuf),
	}
	s.gs = &gateway.Session{Client: h.client, UpstreamRole: up.Role}
	s.st.record = func(text string) { s.gw.Statement(s.gs, text) }
	s.gs.Kill = s.kill
	s.gs.CancelUpstream = func(ctx context.Context) error { return upstream.Cancel(ctx, up.PID, up.SecretKey) }
	return s
}

// kill ends the session: closing the upstream connection stops the relay at
// a message boundary, where the client is told why; the cancel stops a
// statement the backend would otherwise run to completion.
func (s *session) kill(reason string) {
	s.killReason.Store(&reason)
	s.up.Close()
	// A client that stops reading must not keep the session (and a
	// shutdown) waiting: its pending write gives up after a grace period.
	s.client.SetWriteDeadline(time.Now().Add(killWriteGrace))
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.gs.CancelUpstream(ctx); err != nil {
			s.gw.Logger().Debug("cancel after kill failed", "session", s.gs.ID, "err", err)
		}
	}()
}

// greet finishes start-up: authentication is done, here are the server's
// parameters, the cancel key (keygate's own) and the first ReadyForQuery.
func (s *session) greet() error {
	var buf []byte
	buf, _ = (&pgproto3.AuthenticationOk{}).Encode(buf)
	for k, v := range s.up.Params {
		buf, _ = (&pgproto3.ParameterStatus{Name: k, Value: v}).Encode(buf)
	}
	buf, _ = (&pgproto3.BackendKeyData{ProcessID: s.gs.PID, SecretKey: binary.BigEndian.AppendUint32(nil, s.gs.Secret)}).Encode(buf)
	buf, _ = (&pgproto3.ReadyForQuery{TxStatus: s.up.TxStatus}).Encode(buf)
	_, err := s.client.Write(buf)
	return err
}

// relay copies messages both ways until either side ends.
func (s *session) relay() {
	var wg sync.WaitGroup
	var clientErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		clientErr = s.fromClient()
		// The client is done: let upstream know, which ends toClient.
		s.up.Close()
	}()
	atBoundary, upErr := s.toClient()
	killed := s.killReason.Load()
	if killed != nil {
		// Stop reading the client but keep the connection: it is told why
		// only once the session's end is on record, so that whoever sees
		// the revocation also finds it in the audit log.
		s.client.SetReadDeadline(time.Now())
	} else {
		s.client.Close()
	}
	wg.Wait()

	reason := "client disconnected"
	switch {
	case killed != nil:
		reason = *killed
	case errors.Is(clientErr, errClientTerminated):
		reason = "client closed the session"
	case upErr != nil && !errors.Is(upErr, net.ErrClosed) && clientErr == nil:
		reason = "upstream closed the connection"
	case errors.Is(clientErr, errProtocol):
		reason = clientErr.Error()
	}
	s.gw.Unregister(s.gs, reason)
	if killed != nil {
		if atBoundary {
			s.client.SetWriteDeadline(time.Now().Add(killWriteGrace))
			buf, _ := (&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01", Message: "keygate: " + *killed}).Encode(nil)
			s.cw.Write(buf)
			s.cw.Flush()
		}
		s.client.Close()
	}
}

var errClientTerminated = errors.New("client sent Terminate")

// fromClient relays client messages upstream, auditing statement text.
func (s *session) fromClient() error {
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(s.cr, hdr[:]); err != nil {
			return err
		}
		typ, n := hdr[0], int(binary.BigEndian.Uint32(hdr[1:]))-4
		if n < 0 || n > maxMessage {
			return fmt.Errorf("%w: message %q of length %d", errProtocol, typ, n+4)
		}
		switch typ {
		case 'Q', 'P', 'B', 'C', 'S', 'F':
			body, err := s.cr.Peek(min(n, s.cr.Size()))
			if err != nil {
				return err
			}
			s.st.client(typ, body, n)
		}
		if _, err := s.uw.Write(hdr[:]); err != nil {
			return err
		}
		if err := copyN(s.uw, s.cr, n); err != nil {
			return err
		}
		s.gs.BytesFromClient.Add(int64(n + 5))
		if s.cr.Buffered() == 0 || typ == 'X' {
			if err := s.uw.Flush(); err != nil {
				return err
			}
		}
		if typ == 'X' {
			return errClientTerminated
		}
	}
}

// toClient relays upstream messages to the client whole, so that a kill
// can always append a clean FATAL error. atBoundary reports whether the
// stream to the client ended between messages.
func (s *session) toClient() (atBoundary bool, err error) {
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(s.ur, hdr[:]); err != nil {
			s.cw.Flush()
			return true, err
		}
		n := int(binary.BigEndian.Uint32(hdr[1:])) - 4
		if n < 0 || n > maxMessage {
			s.cw.Flush()
			return true, fmt.Errorf("upstream sent a message of length %d", n+4)
		}
		s.st.server(hdr[0])
		s.cw.Write(hdr[:])
		if err := copyN(s.cw, s.ur, n); err != nil {
			return false, err
		}
		s.gs.BytesToClient.Add(int64(n + 5))
		if s.ur.Buffered() == 0 {
			if err := s.cw.Flush(); err != nil {
				return false, err
			}
		}
	}
}

// copyN moves n bytes from r to w through r's buffer, without allocating.
func copyN(w *bufio.Writer, r *bufio.Reader, n int) error {
	for n > 0 {
		k := r.Buffered()
		if k == 0 {
			if _, err := r.Peek(1); err != nil {
				return err
			}
			k = r.Buffered()
		}
		k = min(k, n)
		b, _ := r.Peek(k)
		if _, err := w.Write(b); err != nil {
			return err
		}
		r.Discard(k)
		n -= k
	}
	return nil
}
