//go:build !linux

package throwaway

import "syscall"

// DieWithParent does nothing where the kernel has no parent-death signal;
// Stop, or the operating system's cleanup of temporary files, remains.
func DieWithParent(*syscall.SysProcAttr, syscall.Signal) {}
