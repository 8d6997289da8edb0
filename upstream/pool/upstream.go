package pool

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/keygate/keygate/upstream"
)

// Configured are the options of a database's pool as its config sets them.
// A MaxIdle left at 0 is set by SizeIdle once the upstream was reached.
func Configured(cfg upstream.Config) Options {
	return Options{Enabled: cfg.Pool, IdleTimeout: cfg.PoolIdleTimeout, MaxIdle: cfg.PoolMaxIdle,
		Max: cfg.MaxConnections, MaxPerPerson: cfg.MaxConnectionsPerPerson, QueueTimeout: cfg.QueueTimeout}
}

// Take returns a connection for key: the most recently idle one of key's
// that is still quiet (reused true), or else one that open logs in, within
// the budget (see Get). An idle connection that is no longer quiet is
// handed to drop, which closes it and its lease, and the next is tried. The
// lease is the connection's until Put or Close; when open fails, its slot
// is freed.
func (p *Pool[C]) Take(ctx context.Context, key Key, open func(context.Context) (C, error), quiet func(C) error, drop func(C, error)) (c C, l *Lease, reused bool, err error) {
	for {
		c, l, ok, err := p.Get(ctx, key)
		if err != nil {
			return c, nil, false, err
		}
		if !ok {
			c, err := open(ctx)
			if err != nil {
				p.Close(l)
				return c, nil, false, err
			}
			return c, l, false, nil
		}
		if err := quiet(c); err != nil {
			drop(c, err)
			continue
		}
		return c, l, true, nil
	}
}

// SizeIdle bounds the idle connections, when the config left MaxIdle to
// keygate, to half the connections the upstream accepts, as RDS Proxy's
// MaxIdleConnectionsPercent does: idle sessions never crowd out the
// server's other clients.
func (p *Pool[C]) SizeIdle(upstreamMax int) {
	if p.configuredIdle == 0 {
		p.SetMaxIdle(max(1, upstreamMax/2))
	}
}

// ErrSpoke means the upstream sent something on an idle connection.
var ErrSpoke = errors.New("the upstream sent something while the connection was idle")

// Quiet checks, without blocking or reading, that the upstream neither
// closed an idle connection nor sent anything on it since it went idle: a
// backend ended by an administrator, an idle timeout or a restart leaves
// an error message or the end of the stream, and such a connection must
// not serve the next session.
func Quiet(c net.Conn) error {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var n int
	var peekErr error
	err = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, peekErr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	})
	switch {
	case err != nil:
		return err
	case errors.Is(peekErr, syscall.EAGAIN), errors.Is(peekErr, syscall.EWOULDBLOCK):
		return nil
	case peekErr != nil:
		return peekErr
	case n == 0:
		return io.EOF
	}
	return ErrSpoke
}
