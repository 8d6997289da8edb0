package throwaway

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestFreePortIsFree(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("port %d is not free: %v", port, err)
	}
	l.Close()
}

func TestTailStartsAtALine(t *testing.T) {
	log := []byte("first line\nsecond line\nthird line\n")
	if got := Tail(log, 15); got != "third line\n" {
		t.Errorf("Tail = %q", got)
	}
	if got := Tail(log, 1000); got != string(log) {
		t.Errorf("Tail of a short log = %q", got)
	}
}

func TestRandomHex(t *testing.T) {
	a, b := RandomHex(16), RandomHex(16)
	if len(a) != 32 || a == b {
		t.Errorf("RandomHex: %q, %q", a, b)
	}
}

func TestUnprivilegedNamesTheFix(t *testing.T) {
	_, err := Unprivileged("TestDB", "no-such-user-here")
	if err == nil || !strings.Contains(err.Error(), "useradd --system no-such-user-here") {
		t.Errorf("Unprivileged: %v", err)
	}
}
