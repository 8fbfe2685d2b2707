package e2e

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"moonbit-registry/internal/testupstream"
)

// TestMirrorOnATerminal runs mirror in a pseudo-terminal (util-linux
// script): the progress bar is one line redrawn in place, no log line is
// written between its redraws at the default level, and the summary comes
// at the end.
func TestMirrorOnATerminal(t *testing.T) {
	script, err := exec.LookPath("script")
	if err != nil {
		t.Fatalf("util-linux script is needed for a pseudo-terminal: %v", err)
	}
	up := testupstream.Start(t, testupstream.Options{Archives: []testupstream.ModuleVersion{testupstream.EveryVersion("moonbitlang/x")}})
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	command := strings.Join([]string{registryBin, "--dir", root, "mirror", "--strict", "--no-symbols", "moonbitlang/x"}, " ")
	cmd := exec.CommandContext(ctx, script, "-qfec", command, "/dev/null")
	cmd.Env = append(append(os.Environ(), noRaceExitSleep, "TERM=xterm", "COLUMNS=100", "LINES=30"), upstreamEnv(up.URL())...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mirror in a terminal: %v\n%q", err, out)
	}
	// Without the colours of the console log format.
	text := regexp.MustCompile(`\x1b\[[0-9;]*m`).ReplaceAllString(string(out), "")
	redraws := strings.Count(text, "\r")
	if redraws < 5 || !strings.Contains(text, "mirroring") {
		t.Errorf("%d carriage returns: no progress line redrawn in place:\n%q", redraws, text)
	}
	// Between the first and the last redraw, only the bar: no log line.
	first, last := strings.Index(text, "mirroring"), strings.LastIndex(text, "mirroring")
	if logLine := regexp.MustCompile(`(INF|WRN|ERR|DBG) |"level":`); logLine.MatchString(text[first:last]) {
		t.Errorf("log lines interleaved with the progress bar:\n%q", text[first:last])
	}
	if !regexp.MustCompile(`selected 43, already cached 0, fetched 43 \([0-9.]+ KiB\), failed 0`).MatchString(text) {
		t.Errorf("no summary at the end:\n%q", text[max(0, len(text)-400):])
	}
}
