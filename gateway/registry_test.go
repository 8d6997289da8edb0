package gateway

import (
	"context"
	"net"
	"strings"
	"testing"
)

type namedEngine struct{ upstreams map[string]any }

func (namedEngine) Serve(context.Context, net.Conn, func()) {}
func (namedEngine) Reject(net.Conn, *Refusal)               {}

// Engines are found by name, made with the options given; a second
// registration of a name, or a nil factory, panics.
func TestEngineRegistry(t *testing.T) {
	RegisterEngine("registry-test", func(o EngineOptions) (Engine, error) { return namedEngine{o.Upstreams}, nil })
	e, err := NewEngine("registry-test", EngineOptions{Upstreams: map[string]any{"orders": 1}})
	if err != nil {
		t.Fatal(err)
	}
	if e.(namedEngine).upstreams["orders"] != 1 {
		t.Fatalf("engine made with %+v", e)
	}
	if _, err := NewEngine("nosuch", EngineOptions{}); err == nil || !strings.Contains(err.Error(), "registry-test") {
		t.Errorf("unknown engine: %v, want the list of engines", err)
	}
	for name, f := range map[string]EngineFactory{
		"registry-test":     func(EngineOptions) (Engine, error) { return namedEngine{}, nil },
		"registry-test-nil": nil,
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RegisterEngine(%q) did not panic", name)
				}
			}()
			RegisterEngine(name, f)
		}()
	}
}
