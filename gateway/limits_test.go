package gateway

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/token"
)

var emptyClaims token.Claims

// engine holds every connection until it is told to admit or drop it, and
// records what it was told to reject.
type engine struct {
	mu       sync.Mutex
	rejected []string
	admit    chan struct{}
}

func (e *engine) Serve(_ context.Context, conn net.Conn, admitted func()) {
	buf := make([]byte, 1)
	if _, err := conn.Read(buf); err == nil {
		admitted()
		<-e.admit
	}
}

func (e *engine) Reject(_ net.Conn, r *Refusal) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rejected = append(e.rejected, r.Reason)
}

func (e *engine) rejections() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.rejected...)
}

// addrConn is one end of a pipe that says it comes from addr.
type addrConn struct {
	net.Conn
	addr net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.addr }

func (f *fixture) connFrom(t *testing.T, e *engine, ip string) (client net.Conn, done chan struct{}) {
	t.Helper()
	c, s := net.Pipe()
	done = make(chan struct{})
	go func() {
		defer close(done)
		f.gw.ServeConn(context.Background(), addrConn{s, &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}}, e)
	}()
	t.Cleanup(func() { c.Close() })
	return c, done
}

// Connections still starting up are bounded per source address and in
// all; authenticating frees the slot.
func TestPreauthLimits(t *testing.T) {
	f := newFixture(t)
	f.gw.MaxHandshakes, f.gw.MaxHandshakesPerAddress = 5, 2
	e := &engine{admit: make(chan struct{})}
	defer close(e.admit)
	waitHandshakes := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for f.gw.Handshakes() != n {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections starting up, want %d", f.gw.Handshakes(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	a1, _ := f.connFrom(t, e, "10.0.0.1")
	f.connFrom(t, e, "10.0.0.1")
	waitHandshakes(2)
	_, done := f.connFrom(t, e, "10.0.0.1")
	<-done
	if got := e.rejections(); len(got) != 1 || !strings.Contains(got[0], "from your address") {
		t.Fatalf("third connection from one address: rejections %q", got)
	}
	// Another address still gets in, up to the limit in all.
	f.connFrom(t, e, "10.0.0.2")
	f.connFrom(t, e, "10.0.0.2")
	f.connFrom(t, e, "10.0.0.3")
	waitHandshakes(5)
	_, done = f.connFrom(t, e, "10.0.0.4")
	<-done
	if got := e.rejections(); len(got) != 2 || !strings.Contains(got[1], "too many connections are starting at once") || strings.Contains(got[1], "your address") {
		t.Fatalf("sixth connection: rejections %q", got)
	}
	// Authenticating frees a slot for the first address.
	a1.Write([]byte{0})
	waitHandshakes(4)
	f.connFrom(t, e, "10.0.0.1")
	waitHandshakes(5)
	if got := e.rejections(); len(got) != 2 {
		t.Fatalf("a freed slot was refused: %q", got)
	}
}

func TestSampler(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newSampler(3, 10*time.Second, func() time.Time { return now })
	allowed := 0
	for range 50 {
		if ok, _ := s.allow("10.0.0.1"); ok {
			allowed++
		}
	}
	if allowed != 3 {
		t.Fatalf("%d of 50 allowed in one window, want 3", allowed)
	}
	if ok, _ := s.allow("10.0.0.2"); !ok {
		t.Fatal("another source was held back")
	}
	now = now.Add(10 * time.Second)
	ok, suppressed := s.allow("10.0.0.1")
	if !ok || suppressed != 47 {
		t.Fatalf("next window: allowed %v, suppressed %d, want 47", ok, suppressed)
	}
	// Past maxSampledKeys sources, new ones share one budget.
	for i := range maxSampledKeys + 10 {
		s.allow(net.IPv4(11, byte(i>>16), byte(i>>8), byte(i)).String())
	}
	if len(s.keys) > maxSampledKeys+1 {
		t.Fatalf("the sampler holds %d sources", len(s.keys))
	}
}

// While the audit store refuses writes, no session starts.
func TestNoSessionWhileTheAuditFails(t *testing.T) {
	f := newFixture(t)
	alice := f.token(t, "alice", "orders", 15*time.Minute)
	f.audit.SetErr(errors.New("disk full"))
	_, _, err := f.gw.Authenticate(context.Background(), Hello{User: "alice", Database: "orders", Token: alice})
	var r *Refusal
	if !errors.As(err, &r) || r.Kind != RefusedUnavailable || !strings.Contains(r.Reason, "cannot write its audit log") || strings.Contains(r.Reason, "disk") {
		t.Fatalf("with the audit failing: %v", err)
	}
	f.audit.SetErr(nil)
	if _, _, err := f.gw.Authenticate(context.Background(), Hello{User: "alice", Database: "orders", Token: alice}); err != nil {
		t.Fatalf("once the audit works again: %v", err)
	}
}

// Refusals for breaking the protocol are sampled per source; the next one
// recorded says how many were not.
func TestProtocolRefusalsAreSampled(t *testing.T) {
	f := newFixture(t)
	for range 20 {
		f.gw.Refuse(Hello{Client: "10.0.0.9:1234"}, emptyClaims, &Refusal{Kind: RefusedProtocol, Reason: "invalid start-up packet"})
	}
	if n := len(f.audit.OfType(audit.ConnectRefused)); n != sampleBurst {
		t.Fatalf("%d refusals audited, want %d", n, sampleBurst)
	}
	f.now = f.now.Add(sampleWindow)
	f.gw.Refuse(Hello{Client: "10.0.0.9:1234"}, emptyClaims, &Refusal{Kind: RefusedProtocol, Reason: "invalid start-up packet"})
	ev := f.audit.OfType(audit.ConnectRefused)
	if last := ev[len(ev)-1]; last.Detail["suppressed"] != 20-sampleBurst {
		t.Fatalf("the refusal after the window says %v suppressed", last.Detail["suppressed"])
	}
}
