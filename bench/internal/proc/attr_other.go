//go:build !linux

package proc

import "syscall"

// sysProcAttr runs the child in its own process group, as cred when not
// nil. Without a parent-death signal outside Linux, a driver that dies
// leaves the child running.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred}
}
