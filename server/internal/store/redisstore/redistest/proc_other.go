//go:build !linux

package redistest

import "os/exec"

// setProcAttr does nothing where the kernel offers no parent-death signal;
// the servers are then killed by the tests' cleanups only.
func setProcAttr(*exec.Cmd) {}
