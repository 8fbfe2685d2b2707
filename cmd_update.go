package main

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/urfave/cli/v2"

	"moonbit-registry/config"
)

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
