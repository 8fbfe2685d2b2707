//go:build unix

package gitrepo

import (
	"os/exec"
	"syscall"
)

// killGroup makes a timed-out git take its children (remote helpers,
// pack-objects) with it: git runs in its own process group and the whole
// group is killed on cancellation.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
