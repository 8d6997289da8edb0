package gateway

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// failingListener fails its first accepts as a process out of file
// descriptors does, then accepts for real: a fault a real listener
// cannot be made to produce on demand.
type failingListener struct {
	net.Listener
	failures atomic.Int32
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.failures.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

// countingEngine counts the connections it is handed.
type countingEngine struct{ served atomic.Int32 }

func (e *countingEngine) Serve(_ context.Context, conn net.Conn, admitted func()) {
	e.served.Add(1)
	admitted()
}

func (e *countingEngine) Reject(net.Conn, *Refusal) {}

// Running out of file descriptors for a moment does not stop the gateway:
// it backs off and accepts again once it can.
func TestServeOutlastsAcceptErrors(t *testing.T) {
	f := newFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &failingListener{Listener: ln}
	fl.failures.Store(5)
	e := &countingEngine{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.gw.Serve(ctx, fl, e) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for e.served.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no connection served after accept errors")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	ln.Close()
	if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve: %v", err)
	}
}
