//go:build !linux

package localmysql

import "syscall"

// dieWithParent does nothing where the kernel has no parent-death signal
// (macOS, the BSDs): there, Stop is the only thing that ends the server.
func dieWithParent(*syscall.SysProcAttr) {}
