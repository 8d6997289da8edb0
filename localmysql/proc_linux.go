package localmysql

import "syscall"

// dieWithParent asks the kernel to kill the server if keygate dies, so that
// a crash leaves no throwaway MariaDB behind. SIGKILL rather than a clean
// shutdown: nothing in a throwaway data directory is worth saving, and a
// killed mariadbd holds no shared memory or other state beyond it.
func dieWithParent(attr *syscall.SysProcAttr) {
	attr.Pdeathsig = syscall.SIGKILL
}
