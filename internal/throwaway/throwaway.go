// Package throwaway holds what the packages that start throwaway database
// servers from the machine's binaries (localpg, localmysql) share: a free
// port, a random password, a system user to run as when keygate runs as
// root, and the parent-death signal that leaves no server behind.
package throwaway

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// RandomHex returns n random bytes in hex: a throwaway password.
func RandomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Tail is the end of a log, at most n bytes, from a line's start.
func Tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// Unprivileged finds a system user, the first of users that exists, to run
// server (which refuses root) as when keygate runs as root.
func Unprivileged(server string, users ...string) (*syscall.Credential, error) {
	for _, name := range users {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, fmt.Errorf("%s will not run as root and there is no %v user to run it as: run as a normal user, or create one with `useradd --system %s`", server, users, users[0])
}

// ChownTree gives dir and everything in it to uid and gid.
func ChownTree(dir string, uid, gid int) error {
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// Stop asks a server to shut down with sig and kills it if it has not
// exited, which done reports, within 10 seconds.
func Stop(p *os.Process, done <-chan struct{}, sig os.Signal) {
	p.Signal(sig)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.Kill()
		<-done
	}
}

// OnFreePort runs start, which picks a free port and starts a server on
// it, up to three times while start fails with an error containing taken:
// a port picked free can be taken before the server binds it.
func OnFreePort(start func() error, taken string) error {
	for attempt := 1; ; attempt++ {
		err := start()
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), taken) {
			return err
		}
	}
}
