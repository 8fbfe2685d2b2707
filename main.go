// Command moonbit-registry is a caching pull-through proxy and offline mirror
// for the MoonBit package registry (mooncakes.io). This file only wires the
// command line to the packages that do the work.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"moonbit-registry/cache"
	"moonbit-registry/config"
	"moonbit-registry/indexsync"
	"moonbit-registry/module"
	"moonbit-registry/proxy"
	"moonbit-registry/store/disk"
	"moonbit-registry/upstream"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newApp().RunContext(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "moonbit-registry:", err)
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "moonbit-registry",
		Usage: "caching pull-through proxy and offline mirror for the MoonBit package registry",
		Description: "Point moon clients at it with MOONCAKES_REGISTRY=<base_url>. It serves the package\n" +
			"index over git smart HTTP and every archive from its cache, fetching a miss from\n" +
			"upstream once and verifying it against the index checksum.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Value: ".", Usage: "registry root: registry.toml and data/ live here", EnvVars: []string{"MOONBIT_REGISTRY_DIR"}},
			&cli.StringFlag{Name: "config", Usage: "configuration file (default: <dir>/registry.toml; missing means defaults)", EnvVars: []string{"MOONBIT_REGISTRY_CONFIG"}},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: []string{"MOONBIT_REGISTRY_LOG_LEVEL"}},
			&cli.StringFlag{Name: "log-format", Usage: "json or console (default: console when stderr is a terminal)", EnvVars: []string{"MOONBIT_REGISTRY_LOG_FORMAT"}},
		},
		Commands: []*cli.Command{
			initCommand(),
			serveCommand(),
			syncCommand(),
			mirrorCommand(),
			verifyCommand(),
			updateCommand(),
			authCommand(),
		},
		HideHelpCommand: true,
	}
}

func initCommand() *cli.Command {
	return &cli.Command{
		Name:      "init",
		Usage:     "create registry.toml (every key at its default) and the data directories",
		ArgsUsage: "[DIR]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "overwrite an existing registry.toml"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return cli.Exit("init takes at most one directory", 2)
			}
			dir := c.String("dir")
			if c.NArg() == 1 {
				dir = c.Args().First()
			}
			res, err := config.Init(dir, c.Bool("force"))
			if err != nil {
				return err
			}
			verb := "wrote"
			if res.Overwritten {
				verb = "overwrote"
			}
			fmt.Fprintf(c.App.Writer, "%s %s\n", verb, res.File)
			for _, d := range res.Dirs {
				fmt.Fprintf(c.App.Writer, "directory %s\n", d)
			}
			return nil
		},
	}
}

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the proxy: index over git smart HTTP, archives from the cache",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Usage: "address to listen on (server.listen)"},
			&cli.StringFlag{Name: "base-url", Usage: "URL clients use to reach this server (server.base_url)"},
			&cli.BoolFlag{Name: "offline", Usage: "never contact upstream (server.offline)"},
		},
		Action: func(c *cli.Context) error {
			cfg, log, err := setup(c, overrides(c, map[string]string{
				"listen": "server.listen", "base-url": "server.base_url", "offline": "server.offline",
			}))
			if err != nil {
				return err
			}
			// A missing or mismatched key pair stops start-up, not the first
			// client's handshake.
			tlsConfig, err := cfg.Server.LoadTLS()
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			var (
				index    *indexsync.Mirror
				archives *cache.Cache
			)
			metrics := proxy.NewMetrics(proxy.MetricsSources{
				Cache: func() cache.Stats { return archives.Stats() },
				Index: func() proxy.IndexHealth {
					st := index.Status()
					return proxy.IndexHealth{LastSync: st.LastSync, LastSuccess: st.LastSuccess,
						LastOK: !st.LastSync.IsZero() && st.LastError == nil, Syncs: st.Syncs, Failures: st.Failures}
				},
			})
			index, archives, err = openRegistry(cfg, cacheUse{fetch: !cfg.Server.Offline, evict: true, onFetch: metrics.ObserveFetch}, log)
			if err != nil {
				return err
			}
			passthrough, err := openPassthrough(cfg, cfg.Server.Offline, log)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", cfg.Server.Listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", cfg.Server.Listen, err)
			}
			if tlsConfig != nil {
				ln = tls.NewListener(ln, tlsConfig)
			}
			// Run ends when the signal cancels c.Context; Close below waits for
			// any sync it started, so no git outlives the process.
			defer index.Close()
			if cfg.Server.Offline {
				log.Warn().Msg("offline: the index is served as it is and upstream is never contacted")
			} else {
				go index.Run(c.Context)
			}
			srv := proxy.New(proxy.Options{
				ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout.D(),
				ReadTimeout:       cfg.Server.ReadTimeout.D(),
				WriteTimeout:      cfg.Server.WriteTimeout.D(),
				IdleTimeout:       cfg.Server.IdleTimeout.D(),
				ShutdownTimeout:   cfg.Server.ShutdownTimeout.D(),
				DrainDelay:        cfg.Server.DrainDelay.D(),
				IndexDir:          cfg.Index.Dir,
				Archives:          archives,
				Passthrough:       passthrough,
				Metrics:           metrics,
				Auth:              serverAuth(cfg),
				Ready: func() error {
					if !index.Status().Ready() {
						return errors.New("index mirror not synced yet")
					}
					return archives.Ping(context.Background())
				},
				Logger: log,
			})
			if cfg.Server.AuthEnabled() && tlsConfig == nil {
				log.Warn().Msg("client credentials travel unencrypted: set server.cert_file and key_file, or put a TLS-terminating proxy in front")
			}
			log.Info().Str("base_url", cfg.Server.BaseURL).Str("root", cfg.Root).Bool("offline", cfg.Server.Offline).
				Bool("tls", tlsConfig != nil).Bool("auth", cfg.Server.AuthEnabled()).
				Msg("starting; point clients at it with MOONCAKES_REGISTRY=" + cfg.Server.BaseURL)
			return srv.Serve(c.Context, ln)
		},
	}
}

func updateCommand() *cli.Command {
	return &cli.Command{
		Name:  "update",
		Usage: "point moon clients at this registry",
		Description: "Prints the MOONCAKES_REGISTRY line for server.base_url and, if moon is on PATH,\n" +
			"runs `moon update` with it. --write-config writes $MOON_HOME/config.json\n" +
			"(default ~/.moon/config.json), keeping a backup of an existing file; --reset\n" +
			"restores that backup.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "base-url", Usage: "URL clients use to reach the registry (server.base_url)"},
			&cli.BoolFlag{Name: "write-config", Usage: "write $MOON_HOME/config.json pointing at the registry"},
			&cli.BoolFlag{Name: "reset", Usage: "restore the config.json that --write-config replaced"},
			&cli.BoolFlag{Name: "force", Usage: "with --write-config: replace an unreadable or malformed config.json (it is backed up)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cli.Exit("update takes no arguments", 2)
			}
			path, err := config.MoonConfigPath(os.Getenv)
			if err != nil {
				return err
			}
			if c.Bool("reset") {
				if c.Bool("write-config") {
					return cli.Exit("--reset and --write-config exclude each other", 2)
				}
				what, err := config.ResetMoonConfig(path)
				if err != nil {
					return err
				}
				fmt.Fprintln(c.App.Writer, what)
				return nil
			}
			cfg, _, err := setup(c, overrides(c, map[string]string{"base-url": "server.base_url"}))
			if err != nil {
				return err
			}
			base := cfg.Server.BaseURL
			fmt.Fprintf(c.App.Writer, "export MOONCAKES_REGISTRY=%s\n", base)
			if c.Bool("write-config") {
				backup, err := config.WriteMoonConfig(path, base, c.Bool("force"))
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "wrote %s\n", path)
				if backup != "" {
					fmt.Fprintf(c.App.Writer, "backup of the previous file: %s (undo with: moonbit-registry update --reset)\n", backup)
				}
			}
			if config.MoonConfigOverrides(path, base) {
				return cli.Exit(fmt.Sprintf("%s exists and points moon elsewhere; moon ignores MOONCAKES_REGISTRY while it does. "+
					"Run with --write-config to point it here (the file is backed up), or remove it", path), 1)
			}
			moon, err := exec.LookPath("moon")
			if err != nil {
				fmt.Fprintln(c.App.Writer, "moon is not on PATH; run `moon update` with the variable above set")
				return nil
			}
			cmd := exec.CommandContext(c.Context, moon, "update")
			cmd.Env = append(os.Environ(), "MOONCAKES_REGISTRY="+base)
			cmd.Stdout, cmd.Stderr = c.App.Writer, c.App.ErrWriter
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("moon update: %w", err)
			}
			return nil
		},
	}
}

// serverAuth turns the configured credentials into the server's.
func serverAuth(cfg config.Config) proxy.Auth {
	tokens, users := cfg.Server.Credentials()
	return proxy.Auth{TokenDigests: tokens, Users: users}
}

func authCommand() *cli.Command {
	return &cli.Command{
		Name:  "auth",
		Usage: "make credentials for [server] auth_tokens and auth_users",
		Description: "The configuration stores only digests: a token's SHA-256, a password's bcrypt\n" +
			"hash. Secrets are read from standard input (without echo on a terminal).",
		Subcommands: []*cli.Command{
			{
				Name:  "new-token",
				Usage: "print a new random bearer token and its auth_tokens entry",
				Action: func(c *cli.Context) error {
					token := config.NewToken()
					fmt.Fprintf(c.App.Writer, "token: %s\nauth_tokens entry: %q\n", token, config.HashToken(token))
					return nil
				},
			},
			{
				Name:  "hash-token",
				Usage: "read a bearer token on standard input, print its auth_tokens entry",
				Action: func(c *cli.Context) error {
					token, err := readSecret(c, "token: ")
					if err != nil {
						return cli.Exit(err.Error(), 2)
					}
					fmt.Fprintln(c.App.Writer, config.HashToken(token))
					return nil
				},
			},
			{
				Name:  "hash-password",
				Usage: "read a password on standard input, print the auth_users entry name:bcrypt-hash",
				Flags: []cli.Flag{&cli.StringFlag{Name: "user", Required: true, Usage: "user name (no colon)"}},
				Action: func(c *cli.Context) error {
					user := c.String("user")
					if user == "" || strings.Contains(user, ":") {
						return cli.Exit("--user must be a non-empty name without a colon", 2)
					}
					pass, err := readSecret(c, "password for "+user+": ")
					if err != nil {
						return cli.Exit(err.Error(), 2)
					}
					hash, err := config.HashPassword(pass)
					if err != nil {
						return cli.Exit(err.Error(), 2)
					}
					entry := user + ":" + hash
					if _, _, err := config.ParseAuthUser(entry); err != nil {
						return cli.Exit("--user: "+err.Error(), 2)
					}
					fmt.Fprintln(c.App.Writer, entry)
					return nil
				},
			},
		},
	}
}

// readSecret reads a token or password from standard input: prompted and
// not echoed on a terminal, else the first line.
func readSecret(c *cli.Context, prompt string) (string, error) {
	if f, ok := c.App.Reader.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(c.App.ErrWriter, prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.App.ErrWriter)
		if err != nil {
			return "", err
		}
		return config.ReadSecret(strings.NewReader(string(b)))
	}
	return config.ReadSecret(c.App.Reader)
}

func syncCommand() *cli.Command {
	return &cli.Command{
		Name:  "sync",
		Usage: "bring the local index mirror up to date once and print what changed",
		Action: func(c *cli.Context) error {
			cfg, log, err := setup(c, nil)
			if err != nil {
				return err
			}
			index, _, err := openRegistry(cfg, cacheUse{}, log)
			if err != nil {
				return err
			}
			defer index.Close()
			ch, err := index.Sync(c.Context)
			if err != nil {
				return fmt.Errorf("index sync from %s: %w", cfg.Upstream.IndexURL, err)
			}
			w := c.App.Writer
			switch {
			case ch.Initial:
				mods, _ := index.Modules(c.Context)
				fmt.Fprintf(w, "cloned the index at %s: %d modules\n", short(ch.To), len(mods))
			case ch.Empty():
				fmt.Fprintf(w, "index up to date at %s\n", short(ch.To))
			default:
				if ch.Rewritten {
					fmt.Fprintln(w, "upstream rewrote the index history; clients will re-clone")
				}
				fmt.Fprintf(w, "index %s -> %s: %d modules changed, %d versions added, %d changed, %d removed\n",
					short(ch.From), short(ch.To), len(ch.Modules), len(ch.Added), len(ch.Changed), len(ch.Removed))
				for _, v := range ch.Added {
					fmt.Fprintf(w, "added %s@%s\n", v.Module, v.Version)
				}
				for _, v := range ch.Changed {
					fmt.Fprintf(w, "changed %s@%s\n", v.Module, v.Version)
				}
				for _, v := range ch.Removed {
					fmt.Fprintf(w, "removed %s@%s\n", v.Module, v.Version)
				}
			}
			return nil
		},
	}
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

func mirrorCommand() *cli.Command {
	return &cli.Command{
		Name:      "mirror",
		Usage:     "pre-warm the cache for offline use",
		ArgsUsage: "[PATTERN...]",
		Description: "Patterns: owner/name (every version), owner/name@version, owner/* (every module\n" +
			"of an owner, nested ones too), * (everything; needs --all). Without patterns,\n" +
			"[mirror] packages from the config. Dependencies are followed the way moon\n" +
			"resolves them unless --strict. Exits 0 only when every selected archive is\n" +
			"cached and verified.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "strict", Usage: "exactly what the patterns match, no dependencies"},
			&cli.BoolFlag{Name: "latest", Usage: "only the newest non-yanked version of each matched module"},
			&cli.BoolFlag{Name: "all", Usage: "allow the pattern * (the whole index)"},
			&cli.StringFlag{Name: "from", Usage: "mirror what the project in this moon.mod.json needs", TakesFile: true},
			&cli.BoolFlag{Name: "offline", Usage: "do not sync the index first; use the local mirror as it is"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would be fetched and exit"},
			&cli.IntFlag{Name: "concurrency", Usage: "parallel downloads (mirror.concurrency)"},
		},
		Action: func(c *cli.Context) error {
			flags := overrides(c, map[string]string{"concurrency": "mirror.concurrency"})
			cfg, log, err := setup(c, flags)
			if err != nil {
				return err
			}
			patterns := c.Args().Slice()
			from := c.String("from")
			if from != "" && len(patterns) > 0 {
				return cli.Exit("give either --from or patterns, not both", 2)
			}
			if from == "" && len(patterns) == 0 {
				patterns = cfg.Mirror.Packages
				if len(patterns) == 0 {
					return cli.Exit("nothing to mirror: give patterns (e.g. moonbitlang/x), --from moon.mod.json, or set [mirror] packages", 2)
				}
			}
			// This process's own fetch cap must not undercut --concurrency.
			cfg.Cache.MaxConcurrentFetches = max(cfg.Cache.MaxConcurrentFetches, cfg.Mirror.Concurrency)
			index, archives, err := openRegistry(cfg, cacheUse{fetch: true, evict: !c.Bool("dry-run")}, log)
			if err != nil {
				return err
			}
			defer index.Close()
			if !c.Bool("offline") {
				if _, err := index.Sync(c.Context); err != nil {
					return fmt.Errorf("index sync from %s failed (use --offline to use the local mirror as it is): %w", cfg.Upstream.IndexURL, err)
				}
			}
			var sel indexsync.Selection
			if from != "" {
				deps, err := readProjectDeps(from)
				if err != nil {
					return cli.Exit(err.Error(), 2)
				}
				sel, err = indexsync.SelectDeps(c.Context, index, deps)
				if err != nil {
					return err
				}
			} else {
				sel, err = selectPatterns(c.Context, index, patterns, indexsync.SelectOptions{
					Strict: c.Bool("strict"), Latest: c.Bool("latest"), All: c.Bool("all"),
				})
				if err != nil {
					return err
				}
			}
			return runMirror(c, archives, sel, cfg.Mirror.Concurrency, c.Bool("dry-run"))
		},
	}
}

// runMirror fetches a selection and prints the summary; the exit code says
// whether everything selected is now cached and verified.
func runMirror(c *cli.Context, archives *cache.Cache, sel indexsync.Selection, concurrency int, dryRun bool) error {
	w := c.App.Writer
	unresolved := 0
	for _, s := range sel.Skipped {
		kind := "skipped"
		if s.Unresolved {
			kind = "unresolved"
			unresolved++
		}
		fmt.Fprintf(w, "%s: %s (required by %s): %s\n", kind, s.Module, s.From, s.Reason)
	}
	mvs := sel.Archives()
	if dryRun {
		for _, mv := range mvs {
			state := "to fetch"
			if archives.Cached(c.Context, mv) {
				state = "cached"
			}
			fmt.Fprintf(w, "%s\t%s\n", mv, state)
		}
		fmt.Fprintf(w, "%d archives selected\n", len(mvs))
		return nil
	}
	progress, done := newProgress(c.App.ErrWriter, len(mvs))
	res := archives.EnsureAll(c.Context, mvs, concurrency, progress)
	done()
	fmt.Fprintf(w, "selected %d, already cached %d, fetched %d (%s), failed %d\n",
		res.Selected, res.Cached, res.Fetched, humanBytes(res.Bytes), len(res.Failed))
	for _, f := range res.Failed {
		fmt.Fprintf(w, "failed: %s: %v\n", f.Archive, f.Err)
	}
	if len(res.Failed) > 0 || unresolved > 0 {
		return cli.Exit(fmt.Sprintf("mirror incomplete: %d archives failed, %d dependencies unresolved", len(res.Failed), unresolved), 1)
	}
	return nil
}

// newProgress shows a progress bar on a terminal and plain log lines
// otherwise. done finishes the bar.
func newProgress(w io.Writer, total int) (func(cache.BatchEvent), func()) {
	f, ok := w.(*os.File)
	if !ok || !isatty.IsTerminal(f.Fd()) {
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
			fmt.Fprintf(w, "[%d/%d] %s %s %s\n", n, total, ev.Archive, humanBytes(ev.Bytes), state)
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
	var bytes int64
	return func(ev cache.BatchEvent) {
			if ev.Outcome == cache.OutcomeMiss {
				bytes += ev.Bytes
			}
			bar.Describe("mirroring, " + humanBytes(bytes) + " fetched")
			bar.Add(1)
		}, func() {
			bar.Finish()
		}
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// selectPatterns resolves mirror/verify patterns; a pattern that is
// malformed or matches nothing is a usage error (exit 2).
func selectPatterns(ctx context.Context, index *indexsync.Mirror, patterns []string, opts indexsync.SelectOptions) (indexsync.Selection, error) {
	sel, err := indexsync.Select(ctx, index, patterns, opts)
	if errors.Is(err, indexsync.ErrBadPattern) || errors.Is(err, indexsync.ErrNoMatch) {
		return sel, cli.Exit(err.Error(), 2)
	}
	return sel, err
}

// readProjectDeps reads the deps of a project's moon.mod.json.
func readProjectDeps(path string) (map[string]indexsync.Dep, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	var mod struct {
		Deps map[string]indexsync.Dep `json:"deps"`
	}
	if err := json.Unmarshal(data, &mod); err != nil {
		return nil, fmt.Errorf("--from %s: not a valid moon.mod.json: %w", path, err)
	}
	return mod.Deps, nil
}

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "re-hash cached archives against the index",
		ArgsUsage: "[PATTERN...]",
		Description: "Without patterns, checks every cached archive: mismatched (bytes do not match the\n" +
			"index checksum), orphaned (not in the index) and unreadable files. With patterns\n" +
			"(as for mirror, dependencies included unless --strict), also reports selected\n" +
			"archives that are missing. Exits non-zero when anything is wrong.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "strict", Usage: "with patterns: exactly what they match, no dependencies"},
			&cli.BoolFlag{Name: "all", Usage: "allow the pattern *"},
			&cli.BoolFlag{Name: "purge", Usage: "delete mismatched, orphaned and unreadable archives"},
		},
		Action: func(c *cli.Context) error {
			cfg, log, err := setup(c, nil)
			if err != nil {
				return err
			}
			index, archives, err := openRegistry(cfg, cacheUse{}, log)
			if err != nil {
				return err
			}
			defer index.Close()
			var expected []module.Version
			if c.NArg() > 0 {
				sel, err := selectPatterns(c.Context, index, c.Args().Slice(), indexsync.SelectOptions{Strict: c.Bool("strict"), All: c.Bool("all")})
				if err != nil {
					return err
				}
				expected = sel.Archives()
			}
			res, err := archives.Verify(c.Context, expected, c.Bool("purge"))
			if err != nil {
				return err
			}
			w := c.App.Writer
			for _, p := range res.Problems {
				purged := ""
				if p.Purged {
					purged = " (purged)"
				}
				fmt.Fprintf(w, "%s: %s: %s%s\n", p.Kind, p.Archive, p.Detail, purged)
			}
			fmt.Fprintf(w, "checked %d archives, %d problems\n", res.Checked, len(res.Problems))
			if len(res.Problems) > 0 {
				return cli.Exit("verify found problems", 1)
			}
			return nil
		},
	}
}

// cacheUse says how a command uses the archive cache.
type cacheUse struct {
	fetch   bool // may fetch from upstream; false: cached archives only
	evict   bool // enforce cache.max_size (commands that only read or report must not delete)
	onFetch func(cache.FetchResult)
}

// openRegistry opens the index mirror (it may not have synced yet) and the
// archive cache over it. A sync that changes a published version's line
// drops that version's cached archive if it no longer matches the index.
func openRegistry(cfg config.Config, use cacheUse, log zerolog.Logger) (*indexsync.Mirror, *cache.Cache, error) {
	var archives *cache.Cache // set below, before any sync can run
	index, err := indexsync.New(indexsync.Options{
		Dir:         cfg.Index.Dir,
		UpstreamURL: cfg.Upstream.IndexURL,
		Branch:      cfg.Index.Branch,
		Interval:    cfg.Index.SyncInterval.D(),
		GitTimeout:  cfg.Index.GitTimeout.D(),
		OnChange:    func(ch indexsync.Changes) { dropChanged(archives, ch, log) },
		Logger:      log,
	})
	if err != nil {
		return nil, nil, err
	}
	archives, err = openCache(cfg, index, use, log)
	if err != nil {
		return nil, nil, err
	}
	return index, archives, nil
}

// dropChanged re-verifies the cached archives of versions whose index line
// changed and deletes those that no longer match their checksum, so a
// republished checksum is never answered with the old bytes.
func dropChanged(archives *cache.Cache, ch indexsync.Changes, log zerolog.Logger) {
	if len(ch.Changed) == 0 {
		return
	}
	mvs := indexsync.Selection{Versions: ch.Changed}.Archives()
	res, err := archives.Verify(context.Background(), mvs, true)
	if err != nil {
		log.Error().Err(err).Msg("re-verifying archives whose index entry changed")
		return
	}
	for _, p := range res.Problems {
		if p.Purged {
			log.Warn().Str("archive", p.Archive.String()).Str("problem", p.Kind).Str("detail", p.Detail).
				Msg("index entry changed: dropped the cached archive; it is fetched again on demand")
		}
	}
}

// openCache opens the archive store and the fetch pipeline over it.
func openCache(cfg config.Config, index cache.Index, use cacheUse, log zerolog.Logger) (*cache.Cache, error) {
	log = log.With().Str("component", "cache").Logger()
	maxBytes := int64(0)
	if use.evict {
		maxBytes = int64(cfg.Cache.MaxSize)
	}
	archives, err := disk.New(disk.Options{Root: cfg.Cache.Dir, MaxBytes: maxBytes, Logger: log})
	if err != nil {
		return nil, err
	}
	var fetcher cache.Fetcher // nil: offline
	if use.fetch {
		retries := cfg.Upstream.Retries
		if retries == 0 {
			retries = -1 // the fetcher reads 0 as "default"; the config means none
		}
		fetcher, err = upstream.NewFetcher(upstream.FetcherOptions{
			DownloadURL: cfg.Upstream.DownloadURL,
			UserAgent:   cfg.Upstream.UserAgent,
			Timeout:     cfg.Upstream.Timeout.D(),
			Retries:     retries,
			Logger:      log,
		})
		if err != nil {
			return nil, err
		}
	}
	return cache.New(cache.Options{
		Store:                archives,
		Index:                index,
		Fetcher:              fetcher,
		MaxConcurrentFetches: cfg.Cache.MaxConcurrentFetches,
		OnFetch:              use.onFetch,
		Logger:               log,
	})
}

// openPassthrough builds the handler for symbols, assets and API calls over
// the on-disk HTTP cache.
func openPassthrough(cfg config.Config, offline bool, log zerolog.Logger) (http.Handler, error) {
	log = log.With().Str("component", "passthrough").Logger()
	var next http.RoundTripper // nil: the network
	if offline {
		next = upstream.OfflineTransport{}
	}
	responses, err := disk.NewResponseCache(cfg.Cache.HTTPDir, log)
	if err != nil {
		return nil, err
	}
	return proxy.NewPassthrough(proxy.PassthroughOptions{
		DownloadURL: cfg.Upstream.DownloadURL,
		APIURL:      cfg.Upstream.APIURL,
		Transport:   upstream.NewCachingTransport(responses, next),
		UserAgent:   cfg.Upstream.UserAgent,
		Timeout:     cfg.Upstream.Timeout.D(),
		Logger:      log,
	})
}

// overrides turns the flags the user set into config overrides; flags left
// at their zero value do not override the file or environment.
func overrides(c *cli.Context, keys map[string]string) []config.Override {
	var out []config.Override
	for flag, key := range keys {
		if c.IsSet(flag) {
			out = append(out, config.Override{Key: key, Value: c.String(flag), Name: "--" + flag})
		}
	}
	return out
}

// setup loads the configuration and builds the logger every command uses.
func setup(c *cli.Context, flags []config.Override) (config.Config, zerolog.Logger, error) {
	log, err := newLogger(c.App.ErrWriter, c.String("log-level"), c.String("log-format"))
	if err != nil {
		return config.Config{}, log, cli.Exit(err.Error(), 2)
	}
	cfg, err := config.Load(config.LoadOptions{
		Root:  c.String("dir"),
		File:  c.String("config"),
		Env:   os.Environ(),
		Flags: flags,
	})
	if err != nil {
		return cfg, log, cli.Exit(err.Error(), 2)
	}
	return cfg, log, nil
}

func newLogger(w io.Writer, level, format string) (zerolog.Logger, error) {
	if w == nil {
		w = os.Stderr
	}
	lvl, err := zerolog.ParseLevel(strings.ToLower(level))
	if err != nil || level == "" {
		return zerolog.Nop(), fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	switch format {
	case "":
		if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
		}
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	case "json":
	default:
		return zerolog.Nop(), fmt.Errorf("--log-format %q: want json or console", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}
