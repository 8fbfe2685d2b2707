package e2e

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"moonbit-registry/internal/testsupport"
	"moonbit-registry/internal/testupstream"
)

// TestMirrorOnATerminal runs mirror in a pseudo-terminal (util-linux
// script): the progress bar is one line redrawn in place, no log line is
// written between its redraws at the default level, and the summary comes
// at the end.
func TestMirrorOnATerminal(t *testing.T) {
	t.Parallel()
	script, err := exec.LookPath("script")
	if err != nil {
		testsupport.MissingTool(t, "util-linux script is needed for a pseudo-terminal: "+err.Error())
	}
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{testupstream.EveryVersion("moonbitlang/x")}})
	text := runMirrorInTerminal(t, script, up.URL())
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

// runMirrorInTerminal runs mirror on a fresh root in a pseudo-terminal
// and returns what the terminal showed, without colours.
func runMirrorInTerminal(t *testing.T, script, upstreamURL string) string {
	t.Helper()
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	command := strings.Join([]string{registryBin, "--dir", root, "mirror", "--strict", "--no-symbols", "moonbitlang/x"}, " ")
	cmd := exec.CommandContext(ctx, script, "-qfec", command, "/dev/null")
	cmd.Env = append(append(os.Environ(), noRaceExitSleep, "TERM=xterm", "COLUMNS=100", "LINES=30"), upstreamEnv(upstreamURL)...)
	out, _ := cmd.CombinedOutput() // a failed archive makes it exit 1
	return regexp.MustCompile(`\x1b\[[0-9;]*m`).ReplaceAllString(string(out), "")
}

// TestMirrorOnATerminalWarnings: an error during the run is written above
// the bar as a whole line of its own, and the bar goes on below it.
func TestMirrorOnATerminalWarnings(t *testing.T) {
	t.Parallel()
	script, err := exec.LookPath("script")
	if err != nil {
		testsupport.MissingTool(t, "util-linux script is needed for a pseudo-terminal: "+err.Error())
	}
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{testupstream.EveryVersion("moonbitlang/x")}})
	up.Faults.FailWith(404, testupstream.OnPrefix("/user/moonbitlang/x/0.4.6.zip"))
	text := runMirrorInTerminal(t, script, up.URL())
	found := false
	for _, line := range strings.Split(text, "\n") {
		if !strings.Contains(line, "archive fetch failed") {
			continue
		}
		found = true
		// What the terminal shows of that line: after its last carriage
		// return (the terminal ends lines with \r\n).
		line = strings.TrimRight(line, "\r")
		shown := line[strings.LastIndex(line, "\r")+1:]
		if !strings.Contains(shown, "ERR") || strings.Contains(shown, "mirroring") {
			t.Errorf("the error is not a line of its own above the bar: %q", shown)
		}
	}
	if !found {
		t.Fatalf("no error line for the failed archive:\n%q", text)
	}
	if !strings.Contains(text[strings.Index(text, "archive fetch failed"):], "mirroring") {
		t.Error("the bar is not drawn again after the error")
	}
	if !strings.Contains(text, "failed 1") || !strings.Contains(text, "failed: moonbitlang/x@0.4.6") {
		t.Errorf("the summary does not name the failure:\n%q", text[max(0, len(text)-600):])
	}
}
