package localpg

import "syscall"

// dieWithParent asks the kernel to stop the server with SIGQUIT (an
// immediate shutdown) if keygate dies, so that a crash leaves no
// throwaway PostgreSQL behind.
func dieWithParent(attr *syscall.SysProcAttr) {
	attr.Pdeathsig = syscall.SIGQUIT
}
