package proc

import "syscall"

// sysProcAttr runs the child in its own process group, as cred when not
// nil, and has the kernel send it SIGTERM if the driver dies.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM, Credential: cred}
}
