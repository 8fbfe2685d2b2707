// Command moonbit-registry is a caching pull-through proxy and offline mirror
// for the MoonBit package registry (mooncakes.io). This file only wires the
// command line to the packages that do the work.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"moonbit-registry/config"
	"moonbit-registry/proxy"
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
			updateCommand(),
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
			ln, err := net.Listen("tcp", cfg.Server.Listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", cfg.Server.Listen, err)
			}
			srv := proxy.New(proxy.Options{
				ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout.D(),
				ReadTimeout:       cfg.Server.ReadTimeout.D(),
				WriteTimeout:      cfg.Server.WriteTimeout.D(),
				IdleTimeout:       cfg.Server.IdleTimeout.D(),
				ShutdownTimeout:   cfg.Server.ShutdownTimeout.D(),
				IndexDir:          cfg.Index.Dir,
				Logger:            log,
			})
			log.Info().Str("base_url", cfg.Server.BaseURL).Str("root", cfg.Root).Bool("offline", cfg.Server.Offline).
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
	file := c.String("config")
	if file != "" && !filepath.IsAbs(file) {
		file, _ = filepath.Abs(file)
	}
	cfg, err := config.Load(config.LoadOptions{
		Root:  c.String("dir"),
		File:  file,
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
