package pgwire

import (
	"bufio"
	"io"
	"sync"
)

// A session's buffers are borrowed from pools only while a message is on
// its way, so that an idle connection, which is what most of them are most
// of the time, holds a few hundred bytes per direction instead of a large
// buffer each way.
const (
	// bufSize is the size of a borrowed buffer. It bounds what keygate
	// peeks at in place: the names at the head of a Bind or Describe
	// (2×(maxName+1) bytes) and an upstream ErrorResponse whose text goes
	// into the audit.
	bufSize = 32 << 10
	// idleReadBuf is the buffer a reader keeps while it waits for the next
	// message: enough for a message header and a small message whole, so
	// that waiting costs no more read calls than a large buffer would.
	idleReadBuf = 512
)

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufSize) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufSize) }}
)

// pooledReader reads a connection through a small buffer of its own while
// nothing is pending, and through a borrowed one once a message arrives;
// it hands the borrowed one back when it is read empty. Waiting for a
// message therefore never holds a large buffer.
type pooledReader struct {
	// idle is what a wait for the next message reads into. The borrowed
	// reader reads from it, so nothing is ever read out of order.
	idle *bufio.Reader
	// br is the borrowed reader, nil while none is held.
	br *bufio.Reader
}

func newPooledReader(idle *bufio.Reader) *pooledReader { return &pooledReader{idle: idle} }

// reader returns the borrowed reader, borrowing it first if need be.
func (r *pooledReader) reader() *bufio.Reader {
	if r.br == nil {
		r.br = readerPool.Get().(*bufio.Reader)
		r.br.Reset(r.idle)
	}
	return r.br
}

// release hands the borrowed buffer back when nothing unread is left in it.
func (r *pooledReader) release() {
	if r.br != nil && r.br.Buffered() == 0 {
		r.br.Reset(nil)
		readerPool.Put(r.br)
		r.br = nil
	}
}

// Read reads through the borrowed buffer while it holds unread bytes, and
// otherwise through the idle one, so that a read that blocks holds no
// borrowed buffer.
func (r *pooledReader) Read(p []byte) (int, error) {
	r.release()
	if r.br != nil {
		return r.br.Read(p)
	}
	return r.idle.Read(p)
}

// Buffered is how many bytes can be read without reading the connection.
func (r *pooledReader) Buffered() int {
	n := r.idle.Buffered()
	if r.br != nil {
		n += r.br.Buffered()
	}
	return n
}

// Peek is bufio.Reader.Peek; n is at most bufSize.
func (r *pooledReader) Peek(n int) ([]byte, error) { return r.reader().Peek(n) }

// Discard is bufio.Reader.Discard.
func (r *pooledReader) Discard(n int) (int, error) { return r.reader().Discard(n) }

// ReadByte is bufio.Reader.ReadByte.
func (r *pooledReader) ReadByte() (byte, error) { return r.reader().ReadByte() }

// pooledWriter is a bufio.Writer that borrows its buffer at the first
// write and hands it back at a successful Flush. A write that fails keeps
// it, with its error, as bufio.Writer does.
type pooledWriter struct {
	w  io.Writer
	bw *bufio.Writer
}

func newPooledWriter(w io.Writer) *pooledWriter { return &pooledWriter{w: w} }

func (w *pooledWriter) writer() *bufio.Writer {
	if w.bw == nil {
		w.bw = writerPool.Get().(*bufio.Writer)
		w.bw.Reset(w.w)
	}
	return w.bw
}

func (w *pooledWriter) Write(p []byte) (int, error) { return w.writer().Write(p) }

func (w *pooledWriter) WriteByte(c byte) error { return w.writer().WriteByte(c) }

// idle reports whether nothing is buffered to write.
func (w *pooledWriter) idle() bool { return w.bw == nil || w.bw.Buffered() == 0 }

// Flush writes what is buffered and hands the buffer back.
func (w *pooledWriter) Flush() error {
	if w.bw == nil {
		return nil
	}
	if err := w.bw.Flush(); err != nil {
		return err
	}
	w.bw.Reset(nil)
	writerPool.Put(w.bw)
	w.bw = nil
	return nil
}
