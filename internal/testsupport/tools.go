package testsupport

import (
	"os"
	"testing"
)

// MissingTool ends a test that needs a program this machine lacks: in CI
// (CI set) the test fails, since CI's .ci/tools.sh installs every such
// program and a missing one is a broken setup; elsewhere it is skipped with
// the reason, so a clone runs on a machine that has only Go and git.
func MissingTool(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(reason)
	}
	t.Skip(reason + " (skipped: CI is not set)")
}
