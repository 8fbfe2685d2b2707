// Command moonbit-registry is a caching pull-through proxy, offline mirror
// and registry for MoonBit packages (mooncakes.io). This package only turns
// the command line into calls of package app, one file per command.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"moonbit-registry/app"
	"moonbit-registry/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := newApp()
	if err := a.RunContext(ctx, hoistGlobalFlags(os.Args, globalFlagNames(a))); err != nil {
		fmt.Fprintln(os.Stderr, "moonbit-registry:", err)
		os.Exit(exitCode(err))
	}
}

func newApp() *cli.App {
	a := &cli.App{
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
			statusCommand(),
			configCommand(),
			mirrorCommand(),
			verifyCommand(),
			updateCommand(),
			publishCommand(),
			deprecateCommand(),
			yankCommand(),
			authCommand(),
			completionCommand(),
		},
		Version:              app.Version(),
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		OnUsageError:         usageError,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return app.UsageError{Err: fmt.Errorf("unknown command %q%s (see moonbit-registry --help)", c.Args().First(), didYouMean(c.Args().First(), c.App.Commands))}
			}
			return cli.ShowAppHelp(c)
		},
	}
	var all func([]*cli.Command)
	all = func(cmds []*cli.Command) {
		for _, c := range cmds {
			c.OnUsageError = usageError
			if len(c.Subcommands) > 0 && c.Action == nil {
				c.Action = unknownSubcommand
			}
			all(c.Subcommands)
		}
	}
	all(a.Commands)
	return a
}

// unknownSubcommand answers a command that groups subcommands (auth) when
// it is given none or one it does not have: a usage error (exit 2), where
// urfave/cli's default would look for a help topic and exit 3.
func unknownSubcommand(c *cli.Context) error {
	if c.NArg() == 0 {
		return cli.ShowSubcommandHelp(c)
	}
	return app.UsageError{Err: fmt.Errorf("unknown command %q%s (see %s --help)", c.Args().First(), didYouMean(c.Args().First(), c.Command.Subcommands), c.Command.HelpName)}
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
	return setupLogTo(c, flags, c.App.ErrWriter)
}

// patternArgs are a command's pattern arguments. The command line parser
// stops at the first of them, so a flag after a pattern would be taken as
// a pattern: that is a usage error saying where flags go.
func patternArgs(c *cli.Context) ([]string, error) {
	args := c.Args().Slice()
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			return nil, app.UsageError{Err: fmt.Errorf("%q comes after a pattern: flags go before patterns (%s %s PATTERN...)", a, c.Command.HelpName, a)}
		}
	}
	return args, nil
}

// setupLogTo is setup with the log written to w (which stands for the
// error output: console format when that is a terminal).
func setupLogTo(c *cli.Context, flags []config.Override, w io.Writer) (config.Config, zerolog.Logger, error) {
	log, err := newLogger(w, isTerminal(c.App.ErrWriter), c.String("log-level"), c.String("log-format"))
	if err != nil {
		return config.Config{}, log, cli.Exit(err.Error(), 2)
	}
	// A mistyped --dir must not read as an empty registry, nor have data/
	// created in it: only init makes a registry root.
	if fi, err := os.Stat(c.String("dir")); err != nil || !fi.IsDir() {
		return config.Config{}, log, fmt.Errorf("registry root %s does not exist or is not a directory (moonbit-registry init %s creates one)", c.String("dir"), shellQuote(c.String("dir")))
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

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}

func newLogger(w io.Writer, terminal bool, level, format string) (zerolog.Logger, error) {
	if w == nil {
		w = os.Stderr
	}
	lvl, err := zerolog.ParseLevel(strings.ToLower(level))
	if err != nil || level == "" {
		return zerolog.Nop(), fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	switch format {
	case "":
		if terminal {
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

// didYouMean suggests the command closest to name (a typo of up to two
// letters, or a prefix), as ", did you mean \"serve\"?"; "" for none.
func didYouMean(name string, cmds []*cli.Command) string {
	best, bestDist := "", 3
	for _, c := range cmds {
		for _, n := range c.Names() {
			d := editDistance(name, n)
			if strings.HasPrefix(n, name) && len(name) >= 2 {
				d = min(d, 1)
			}
			if d < bestDist {
				best, bestDist = n, d
			}
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(", did you mean %q?", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// globalFlagNames are the app-level flags that take a value.
func globalFlagNames(a *cli.App) map[string]bool {
	out := map[string]bool{}
	for _, f := range a.Flags {
		if _, ok := f.(*cli.StringFlag); ok {
			for _, n := range f.Names() {
				out[n] = true
			}
		}
	}
	return out
}

// hoistGlobalFlags moves global flags given after the command (e.g.
// "mirror --dir /srv/registry x") in front of it, where the command line
// parser looks for them; everything after "--" stays as it is.
func hoistGlobalFlags(args []string, globals map[string]bool) []string {
	if len(args) < 2 {
		return args
	}
	// The command is the first argument that is not a global flag or its value.
	cmd := -1
	for i := 1; i < len(args); i++ {
		name, hasValue := flagName(args[i])
		switch {
		case args[i] == "--":
			return args
		case globals[name]:
			if !hasValue {
				i++ // its value
			}
		case strings.HasPrefix(args[i], "-"):
			// a global bool flag (--help, --version)
		default:
			cmd = i
		}
		if cmd >= 0 {
			break
		}
	}
	if cmd < 0 {
		return args
	}
	var hoisted, rest []string
	for i := cmd + 1; i < len(args); i++ {
		if args[i] == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		name, hasValue := flagName(args[i])
		if globals[name] {
			hoisted = append(hoisted, args[i])
			if !hasValue && i+1 < len(args) {
				i++
				hoisted = append(hoisted, args[i])
			}
			continue
		}
		rest = append(rest, args[i])
	}
	out := append([]string{}, args[:cmd]...)
	out = append(out, hoisted...)
	out = append(out, args[cmd])
	return append(out, rest...)
}

// flagName is "dir" for "--dir", "-dir" or "--dir=x"; hasValue says the
// value came with it.
func flagName(arg string) (name string, hasValue bool) {
	if !strings.HasPrefix(arg, "-") {
		return "", false
	}
	name = strings.TrimLeft(arg, "-")
	if n, _, ok := strings.Cut(name, "="); ok {
		return n, true
	}
	return name, false
}
