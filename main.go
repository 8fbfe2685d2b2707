// Command moonbit-registry is a caching pull-through proxy, offline mirror
// and registry for MoonBit packages (mooncakes.io). This package only turns
// the command line into calls of package app, one file per command.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"syscall"

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

// setupLogTo is setup with the log written to w (which stands for the
// error output: console format when that is a terminal).
func setupLogTo(c *cli.Context, flags []config.Override, w io.Writer) (config.Config, zerolog.Logger, error) {
	log, err := newLogger(w, isTerminal(c.App.ErrWriter), c.String("log-level"), c.String("log-format"))
	if err != nil {
		return config.Config{}, log, cli.Exit(err.Error(), 2)
	}
	// A mistyped --dir must not read as an empty registry, nor have data/
	// created in it: only init makes a registry root.
	switch fi, err := os.Stat(c.String("dir")); {
	case errors.Is(err, fs.ErrNotExist):
		return config.Config{}, log, fmt.Errorf("registry root %s does not exist (moonbit-registry init %s creates one)", c.String("dir"), shellQuote(c.String("dir")))
	case err != nil:
		return config.Config{}, log, fmt.Errorf("registry root: %w", err)
	case !fi.IsDir():
		return config.Config{}, log, fmt.Errorf("registry root %s is not a directory", c.String("dir"))
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
