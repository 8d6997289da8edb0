package upstream

import (
	"context"
	"strings"
	"testing"
)

type fakeProvisioner struct{ o Options }

func (p fakeProvisioner) Open(Config) (Database, error) { return nil, nil }
func (p fakeProvisioner) Watch(context.Context)         {}

// Provisioners are found by engine name and made with the options given,
// a logger always among them; a second registration of a name, or a nil
// factory, panics.
func TestRegistry(t *testing.T) {
	Register("registry-test", func(o Options) Provisioner { return fakeProvisioner{o} })
	p, err := NewProvisioner("registry-test", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.(fakeProvisioner).o.Log == nil {
		t.Error("made without a logger")
	}
	if _, err := NewProvisioner("nosuch", Options{}); err == nil || !strings.Contains(err.Error(), "registry-test") {
		t.Errorf("unknown engine: %v, want the list of engines", err)
	}
	for name, f := range map[string]Factory{
		"registry-test":     func(Options) Provisioner { return fakeProvisioner{} },
		"registry-test-nil": nil,
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%q) did not panic", name)
				}
			}()
			Register(name, f)
		}()
	}
}
