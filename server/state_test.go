package server

import (
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/keygate/keygate/gateway"
)

// A relayed cancel request reads back as it was sent; anything else is
// not read at all.
func TestReceiveCancel(t *testing.T) {
	proof := gateway.CancelProof("postgres", 4242, 99)
	engine, id, got, ok := receiveCancel(fmt.Sprintf("postgres 4242 %s", hex.EncodeToString(proof[:])))
	if !ok || engine != "postgres" || id != 4242 || got != proof {
		t.Fatalf("receiveCancel = %q %d %x %v", engine, id, got, ok)
	}
	if other := gateway.CancelProof("postgres", 4242, 98); other == proof {
		t.Fatal("two secrets make one proof")
	}
	for _, bad := range []string{"", "postgres", "postgres 4242", "postgres x " + hex.EncodeToString(proof[:]),
		"postgres 99999999999 " + hex.EncodeToString(proof[:]), "postgres 1 abcd", "postgres 1 zz"} {
		if _, _, _, ok := receiveCancel(bad); ok {
			t.Errorf("receiveCancel(%q) read it", bad)
		}
	}
}
