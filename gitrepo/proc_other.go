//go:build !unix

package gitrepo

import "os/exec"

// killGroup is a no-op where process groups do not exist; exec.CommandContext
// still kills git itself.
func killGroup(cmd *exec.Cmd) {}
