package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/urfave/cli/v2"

	"moonbit-registry/config"
)

func updateCommand() *cli.Command {
	return &cli.Command{
		Name:  "update",
		Usage: "point moon clients at this registry",
		Description: "Prints the MOONCAKES_REGISTRY line for server.base_url and, if moon is on PATH,\n" +
			"runs `moon update` with it. --write-config writes $MOON_HOME/config.json\n" +
			"(default ~/.moon/config.json) with every key pointing at the registry, in the\n" +
			"form the installed moon reads (`moon version` built 2026-08-28 or later: split;\n" +
			"older, or no moon on PATH: legacy, which every client reads), keeping a backup\n" +
			"of an existing file; --reset restores exactly what was there before (removes\n" +
			"the file if there was none).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "base-url", Usage: "URL clients use to reach the registry (server.base_url)", DefaultText: "server.base_url"},
			&cli.BoolFlag{Name: "write-config", Usage: "write $MOON_HOME/config.json pointing at the registry"},
			&cli.StringFlag{Name: "format", Usage: "with --write-config, `FORMAT` legacy ({registry, index, symbols}) or split ({api, index, download, symbols}); default: what the installed moon reads"},
			&cli.BoolFlag{Name: "reset", Usage: "restore the config.json that --write-config replaced"},
			&cli.BoolFlag{Name: "force", Usage: "with --write-config: replace an unreadable or malformed config.json (it is backed up)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cli.Exit("update takes no arguments", 2)
			}
			if c.IsSet("format") && !c.Bool("write-config") {
				return cli.Exit("--format needs --write-config", 2)
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
			moon, lookErr := exec.LookPath("moon")
			fmt.Fprintf(c.App.Writer, "export MOONCAKES_REGISTRY=%s\n", base)
			if c.Bool("write-config") {
				format, why, err := configFormat(c, moon, lookErr)
				if err != nil {
					return err
				}
				backup, err := config.WriteMoonConfig(path, base, format, c.Bool("force"))
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "wrote %s in the %s form (%s)\n", path, format, why)
				if backup != "" {
					fmt.Fprintf(c.App.Writer, "backup of the previous file: %s (undo with: moonbit-registry update --reset)\n", backup)
				}
			}
			if why := config.MoonConfigMismatch(path, base); why != "" {
				return cli.Exit(fmt.Sprintf("%s points moon elsewhere (%s); moon ignores MOONCAKES_REGISTRY while it exists. "+
					"Run with --write-config to point it here (the file is backed up), or remove it", path, why), 1)
			}
			if lookErr != nil {
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

// configFormat is --format, or else the form the installed moon reads, and
// why.
func configFormat(c *cli.Context, moon string, lookErr error) (config.MoonConfigFormat, string, error) {
	if c.IsSet("format") {
		f, err := config.ParseMoonConfigFormat(c.String("format"))
		if err != nil {
			return "", "", cli.Exit(err.Error(), 2)
		}
		return f, "--format", nil
	}
	if lookErr != nil {
		return config.MoonFormatLegacy, "moon is not on PATH: the legacy form, which every client reads", nil
	}
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, moon, "version").Output()
	if err != nil {
		return config.MoonFormatLegacy, fmt.Sprintf("`moon version` failed (%v): the legacy form, which every client reads", err), nil
	}
	f, why := config.MoonFormatFor(string(out))
	return f, why, nil
}
