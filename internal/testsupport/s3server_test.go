package testsupport

import (
	"os"
	"testing"
)

// The script that builds versitygw and the tests that look for it name
// the same version.
func TestVersitygwVersionAgrees(t *testing.T) {
	script, err := os.ReadFile("../../.ci/tools.sh")
	if err != nil {
		t.Fatal(err)
	}
	if !versionIn(script, VersitygwVersion) {
		t.Errorf(".ci/tools.sh does not build versitygw %s", VersitygwVersion)
	}
}
