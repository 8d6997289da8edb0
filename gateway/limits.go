package gateway

import (
	"sync"
	"time"
)

// Defaults for the limits on connections that have not authenticated yet.
const (
	// DefaultMaxHandshakes bounds connections still starting up, so that
	// nobody can hold all of keygate's file descriptors without a token.
	DefaultMaxHandshakes = 1024
	// DefaultMaxHandshakesPerAddress bounds those from one address, so that
	// one source cannot take all of DefaultMaxHandshakes: an office behind
	// one NAT address still gets dozens of logins at the same instant.
	DefaultMaxHandshakesPerAddress = 32
	// DefaultHandshakeTimeout bounds everything before a session starts.
	DefaultHandshakeTimeout = 30 * time.Second
)

// preauth counts connections that have not authenticated, in all and per
// source address.
type preauth struct {
	mu     sync.Mutex
	total  int
	byAddr map[string]int
}

// acquire takes a slot for a connection from addr, or says which limit is
// reached.
func (p *preauth) acquire(addr string, maxTotal, maxPerAddr int) (release func(), refusal *Refusal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.total >= maxTotal:
		return nil, &Refusal{Kind: RefusedUnavailable, Reason: "too many connections are starting at once; try again"}
	case p.byAddr[addr] >= maxPerAddr:
		return nil, &Refusal{Kind: RefusedUnavailable, Reason: "too many connections are starting at once from your address; try again"}
	}
	p.total++
	p.byAddr[addr]++
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.total--
			if p.byAddr[addr]--; p.byAddr[addr] <= 0 {
				delete(p.byAddr, addr)
			}
		})
	}, nil
}

// sampler lets a few events per key through in each window and counts the
// rest, so that a flood from one source costs a log line or an audit event
// now and then rather than one per packet.
type sampler struct {
	burst  int
	window time.Duration
	now    func() time.Time

	mu   sync.Mutex
	keys map[string]*sample
}

type sample struct {
	start      time.Time
	n          int
	suppressed int
}

// maxSampledKeys bounds the sampler's memory; past it, sources share one
// budget until their windows expire.
const maxSampledKeys = 4096

func newSampler(burst int, window time.Duration, now func() time.Time) *sampler {
	return &sampler{burst: burst, window: window, now: now, keys: map[string]*sample{}}
}

// allow reports whether an event for key should be recorded, and how many
// events for key were not recorded since the last that was.
func (s *sampler) allow(key string) (ok bool, suppressed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	e, found := s.keys[key]
	if !found {
		if len(s.keys) >= maxSampledKeys {
			for k, v := range s.keys {
				if now.Sub(v.start) >= s.window {
					delete(s.keys, k)
				}
			}
		}
		if len(s.keys) >= maxSampledKeys {
			key = "*"
			e = s.keys[key]
		}
		if e == nil {
			e = &sample{start: now}
			s.keys[key] = e
		}
	}
	if now.Sub(e.start) >= s.window {
		e.start, e.n = now, 0
	}
	if e.n >= s.burst {
		e.suppressed++
		return false, 0
	}
	e.n++
	suppressed, e.suppressed = e.suppressed, 0
	return true, suppressed
}
