package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"moonbit-registry/internal/testsupport"
	"moonbit-registry/internal/testupstream"
)

// browser starts headless Chromium (Debian's) for one test, collecting
// console errors and uncaught exceptions.
func browser(t *testing.T, width, height int64) (context.Context, func() []string) {
	t.Helper()
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		testsupport.MissingTool(t, "no Chromium on PATH: bash .ci/tools.sh installs Debian's chromium")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.WindowSize(int(width), int(height)),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	var mu sync.Mutex
	var problems []string
	err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value))
				}
				problems = append(problems, "console.error: "+strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+ev.ExceptionDetails.Text)
		}
	})
	if err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), problems...) }
}

// artifactDir is where the browser tests keep their screenshots: the
// directory $MOONBIT_REGISTRY_ARTIFACTS names, else a temporary one.
func artifactDir(t *testing.T) string {
	if d := os.Getenv("MOONBIT_REGISTRY_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// TestWebPages: in a real headless Chromium the status page loads without
// console errors and tells the index commit, a search finds a module of the
// real index snapshot, its page lists its versions (deprecated ones marked)
// and what is cached; on a phone-wide window nothing overflows. Screenshots
// are kept as artifacts.
func TestWebPages(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{{Module: "mizchi/git", Version: "0.1.2"}}})
	reg := startRegistry(t, registryOptions{UpstreamURL: up.URL()})
	// One archive cached, so the module page has something to show.
	if res := arcFetch(t, http.MethodGet, arcOneSegmentURL(reg.URL, "mizchi/git", "0.1.2"), nil); res.status != http.StatusOK {
		t.Fatalf("warm an archive: %d", res.status)
	}
	var status struct {
		Index struct {
			Commit string `json:"commit"`
		} `json:"index"`
		Store struct {
			Archives int64 `json:"archives"`
		} `json:"store"`
	}
	json.Unmarshal(arcFetch(t, http.MethodGet, reg.URL+"/-/status.json", nil).body, &status)
	if status.Index.Commit == "" || status.Store.Archives != 1 {
		t.Fatalf("/-/status.json: %+v", status)
	}

	// A module the index does not have is a 404 page, a bad name a 400.
	for path, want := range map[string]int{"/-/modules/nobody/nothing": 404, "/-/modules/..%2Fetc": 400} {
		if res := arcFetch(t, http.MethodGet, reg.URL+path, nil); res.status != want {
			t.Errorf("GET %s: %d, want %d", path, res.status, want)
		}
	}

	dir := artifactDir(t)
	for _, size := range []struct {
		name          string
		width, height int64
	}{{"desktop", 1200, 900}, {"phone", 360, 740}} {
		t.Run(size.name, func(t *testing.T) {
			ctx, problems := browser(t, size.width, size.height)
			step := func(what string, err error) {
				t.Helper()
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
			}
			moduleLink := chromedp.CSS(`a[href="/-/modules/mizchi/git"]`)
			// Chromium windows are at least 500px wide: a phone's width is emulated.
			step("set the viewport", chromedp.Do(ctx, chromedp.EmulateViewport(size.width, size.height)))
			step("open the status page", chromedp.Do(ctx, chromedp.Navigate(reg.URL+"/"), chromedp.WaitVisible(chromedp.ID("index-commit"))))
			font, err := chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.body).fontFamily`))
			step("read the page's font", err)
			if !strings.Contains(font, "system-ui") {
				t.Errorf("the stylesheet did not apply (body font %q)", font)
			}
			commitText, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("index-commit")))
			step("read the commit", err)
			title, err := chromedp.Run(ctx, chromedp.Title())
			step("read the title", err)
			scrollWidth, err := chromedp.Run(ctx, chromedp.Evaluate[int64](`document.documentElement.scrollWidth`))
			step("measure the page", err)
			innerWidth, err := chromedp.Run(ctx, chromedp.Evaluate[int64](`window.innerWidth`))
			step("measure the window", err)
			shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			step("screenshot", err)
			// Search through the form, as a person would.
			step("search", chromedp.Do(ctx,
				chromedp.SendKeys(chromedp.ID("q"), "git"),
				chromedp.Submit(chromedp.ID("q")),
				chromedp.WaitVisible(moduleLink)))
			searchShot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			step("screenshot", err)
			step("open the module", chromedp.Do(ctx, chromedp.Click(moduleLink), chromedp.WaitVisible(chromedp.CSS("table"))))
			body, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
			step("read the module page", err)
			addLine, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("add")))
			step("read the moon add line", err)
			moduleShot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			step("screenshot", err)
			if !strings.HasPrefix(status.Index.Commit, strings.TrimSpace(commitText)) || title != "moonbit-registry" {
				t.Errorf("status page: title %q, commit %q; the index is at %s", title, commitText, status.Index.Commit)
			}
			for _, want := range []string{"0.2.0", "0.1.2", "0.1.1", "deprecated", "yes"} {
				if !strings.Contains(body, want) {
					t.Errorf("module page lacks %q:\n%s", want, body)
				}
			}
			if addLine != "moon add mizchi/git@0.2.0" {
				t.Errorf("the moon add line: %q", addLine)
			}
			if scrollWidth > innerWidth {
				t.Errorf("the status page is %dpx wide in a %dpx window", scrollWidth, innerWidth)
			}
			if p := problems(); len(p) > 0 {
				t.Errorf("console errors: %q", p)
			}
			for name, png := range map[string][]byte{"status": shot, "search": searchShot, "module": moduleShot} {
				path := filepath.Join(dir, fmt.Sprintf("web-%s-%s.png", name, size.name))
				if err := os.WriteFile(path, png, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("screenshots in %s", dir)
		})
	}
}
