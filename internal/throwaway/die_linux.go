package throwaway

import "syscall"

// DieWithParent asks the kernel to send the server sig if keygate dies, so
// that a crash leaves no throwaway server behind.
func DieWithParent(attr *syscall.SysProcAttr, sig syscall.Signal) {
	attr.Pdeathsig = sig
}
