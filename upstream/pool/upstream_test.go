package pool

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// Left to keygate, the idle bound is half the upstream's max_connections;
// set in the config, it stays.
func TestSizeIdle(t *testing.T) {
	for _, tc := range []struct{ configured, upstreamMax, want int }{
		{0, 100, 50},
		{0, 1, 1},
		{7, 100, 7},
	} {
		p := New[int](Options{Enabled: true, MaxIdle: tc.configured}, func(int) {})
		p.SizeIdle(tc.upstreamMax)
		p.mu.Lock()
		got := p.o.MaxIdle
		p.mu.Unlock()
		if got != tc.want {
			t.Errorf("configured %d, upstream max %d: MaxIdle %d, want %d", tc.configured, tc.upstreamMax, got, tc.want)
		}
		p.Shutdown()
	}
}

// Quiet tells an idle connection from one the upstream spoke on or closed,
// without reading what was sent.
func TestQuiet(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pair := func() (client, server net.Conn) {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(); s.Close() })
		return c, s
	}
	c, _ := pair()
	if err := Quiet(c); err != nil {
		t.Errorf("an idle connection: %v", err)
	}
	c, s := pair()
	s.Write([]byte("E"))
	waitFor(t, func() bool { return errors.Is(Quiet(c), ErrSpoke) })
	var b [1]byte
	c.SetReadDeadline(time.Now().Add(time.Second))
	if n, _ := c.Read(b[:]); n != 1 || b[0] != 'E' {
		t.Error("Quiet consumed what the upstream sent")
	}
	c, s = pair()
	s.Close()
	waitFor(t, func() bool { return errors.Is(Quiet(c), io.EOF) })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 2s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
