package main

import (
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/rs/zerolog"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"

	"moonbit-registry/app"
	"moonbit-registry/cache"
	"moonbit-registry/config"
	"moonbit-registry/internal/human"
	"moonbit-registry/resolve"
)

func mirrorCommand() *cli.Command {
	return &cli.Command{
		Name:      "mirror",
		Usage:     "pre-warm the cache for offline use",
		ArgsUsage: "[PATTERN...]",
		Description: "Patterns: owner/name (every version), owner/name@version, owner/* (every module\n" +
			"of an owner, nested ones too), * (everything; needs --all). Without patterns,\n" +
			"[mirror] packages from the config. Dependencies are followed the way moon\n" +
			"resolves them unless --strict; yanked and deprecated versions are taken like any\n" +
			"other (moon can select them). symbols.zip is fetched too. Exits 0 only when\n" +
			"every selected archive is cached and verified, symbols.zip is kept, and no\n" +
			"dependency is unresolved.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "strict", Usage: "exactly what the patterns match, no dependencies"},
			&cli.BoolFlag{Name: "latest", Usage: "only the newest version of each matched module that is neither yanked nor deprecated (the ones passed over are listed)"},
			&cli.BoolFlag{Name: "all", Usage: "allow the pattern * (the whole index)"},
			&cli.StringFlag{Name: "from", Usage: "mirror what a project needs: its moon.mod, moon.mod.json or moon.work, or its directory", TakesFile: true},
			&cli.BoolFlag{Name: "offline", Usage: "do not sync the index first; use the local mirror as it is"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would be fetched and exit"},
			// The value comes from mirror.concurrency unless given; the help
			// shows that key's default, not the flag's zero.
			&cli.IntFlag{Name: "concurrency", Usage: "parallel downloads (mirror.concurrency)", DefaultText: strconv.Itoa(config.Defaults().Mirror.Concurrency)},
			&cli.BoolFlag{Name: "no-symbols", Usage: "do not fetch symbols.zip (moon update then warns offline)"},
		},
		Action: func(c *cli.Context) error {
			// On a terminal the progress bar owns the last line: log lines
			// are written above it, and at the default level only warnings
			// and errors are (the summary at the end tells the rest).
			logOut := io.Writer(c.App.ErrWriter)
			var above *aboveBar
			if isTerminal(c.App.ErrWriter) {
				above = &aboveBar{out: c.App.ErrWriter}
				logOut = above
			}
			patterns, err := patternArgs(c)
			if err != nil {
				return err
			}
			cfg, log, err := setupLogTo(c, overrides(c, map[string]string{"concurrency": "mirror.concurrency"}), logOut)
			if err != nil {
				return err
			}
			if above != nil && !c.IsSet("log-level") && log.GetLevel() < zerolog.WarnLevel {
				log = log.Level(zerolog.WarnLevel)
			}
			return app.Mirror(c.Context, cfg, log, app.MirrorRequest{
				Patterns:  patterns,
				From:      c.String("from"),
				Select:    resolve.SelectOptions{Strict: c.Bool("strict"), Latest: c.Bool("latest"), All: c.Bool("all")},
				Offline:   c.Bool("offline"),
				DryRun:    c.Bool("dry-run"),
				NoSymbols: c.Bool("no-symbols"),
				Progress:  func(total int) (func(cache.BatchEvent), func()) { return newProgress(c.App.ErrWriter, total, above) },
			}, c.App.Writer)
		},
	}
}

// newProgress shows a progress bar on a terminal (log lines then go
// through above) and plain lines otherwise. done finishes the bar.
func newProgress(w io.Writer, total int, above *aboveBar) (func(cache.BatchEvent), func()) {
	if above == nil {
		n := 0
		return func(ev cache.BatchEvent) {
			n++
			state := "fetched"
			if ev.Outcome == cache.OutcomeHit {
				state = "cached"
			}
			if ev.Err != nil {
				state = "FAILED: " + ev.Err.Error()
			}
			fmt.Fprintf(w, "[%d/%d] %s %s %s\n", n, total, ev.Archive, human.Bytes(ev.Bytes), state)
		}, func() {}
	}
	bar := progressbar.NewOptions(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("mirroring"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("archives"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionClearOnFinish(),
	)
	above.setBar(bar)
	var bytes int64
	return func(ev cache.BatchEvent) {
			above.mu.Lock()
			defer above.mu.Unlock()
			if ev.Outcome == cache.OutcomeMiss {
				bytes += ev.Bytes
			}
			bar.Describe("mirroring, " + human.Bytes(bytes) + " fetched")
			bar.Add(1)
		}, func() {
			above.mu.Lock()
			defer above.mu.Unlock()
			bar.Finish()
			above.bar = nil
		}
}

// aboveBar writes log lines above the progress bar: it clears the bar's
// line, writes, and draws the bar again. Its lock is held for every
// drawing of the bar, so a log line and a redraw never mix.
type aboveBar struct {
	mu  sync.Mutex
	out io.Writer
	bar *progressbar.ProgressBar
}

func (a *aboveBar) setBar(b *progressbar.ProgressBar) {
	a.mu.Lock()
	a.bar = b
	a.mu.Unlock()
}

func (a *aboveBar) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.bar != nil {
		a.bar.Clear()
	}
	n, err := a.out.Write(p)
	if a.bar != nil {
		a.bar.RenderBlank()
	}
	return n, err
}
