package main

import (
	"os"

	"github.com/urfave/cli/v2"

	"moonbit-registry/app"
	"moonbit-registry/private"
)

// serverFlag sends a private-module change to a running registry instead
// of the registry root.
var serverFlag = &cli.StringFlag{
	Name:  "server",
	Usage: "the `URL` of a running registry to send it to (token in " + app.TokenEnv + "); default: the registry root (--dir) itself",
}

func publishTarget(c *cli.Context) app.PublishTarget {
	return app.PublishTarget{Server: c.String("server"), Token: os.Getenv(app.TokenEnv)}
}

func publishCommand() *cli.Command {
	return &cli.Command{
		Name:      "publish",
		Usage:     "publish a private module (its owner must be in [private] owners)",
		ArgsUsage: "PATH",
		Description: "PATH is a zip made by `moon package`, or a module directory (with moon.mod or\n" +
			"moon.mod.json) whose _build/publish/<owner>-<name>-<version>.zip is taken (moon\n" +
			"package is run when it is missing and moon is installed). Name, version and\n" +
			"dependencies come from the archive's moon.mod (or moon.mod.json). Publishing a\n" +
			"version again succeeds only with\n" +
			"the same bytes. Without --server it writes to the registry root, which a running\n" +
			"server there serves at once.",
		Flags: []cli.Flag{serverFlag},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cli.Exit("publish takes one PATH (a zip or a module directory)", 2)
			}
			cfg, log, err := setup(c, nil)
			if err != nil {
				return err
			}
			return app.Publish(c.Context, cfg, log, publishTarget(c), c.Args().First(), c.App.Writer)
		},
	}
}

func deprecateCommand() *cli.Command {
	return &cli.Command{
		Name:        "deprecate",
		Usage:       "mark a published private module version deprecated (or take it back)",
		ArgsUsage:   "OWNER/NAME@VERSION",
		Description: "The version stays installable: moon's resolver can still select it.",
		Flags: []cli.Flag{
			serverFlag,
			&cli.StringFlag{Name: "reason", Usage: "why, shown to users (required unless --undo)"},
			&cli.BoolFlag{Name: "undo", Usage: "remove the deprecation"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cli.Exit("deprecate takes one OWNER/NAME@VERSION", 2)
			}
			reason := c.String("reason")
			switch {
			case c.Bool("undo") && reason != "":
				return cli.Exit("--undo takes no --reason", 2)
			case !c.Bool("undo") && reason == "":
				return cli.Exit("deprecate needs --reason (or --undo)", 2)
			}
			cfg, log, err := setup(c, nil)
			if err != nil {
				return err
			}
			return app.Mark(c.Context, cfg, log, publishTarget(c), c.Args().First(), private.Mark{Deprecated: &reason}, c.App.Writer)
		},
	}
}

func yankCommand() *cli.Command {
	return &cli.Command{
		Name:      "yank",
		Usage:     "mark a published private module version yanked (or take it back)",
		ArgsUsage: "OWNER/NAME@VERSION",
		Description: "Nothing is deleted: the archive stays, so builds that locked the version keep\n" +
			"working.",
		Flags: []cli.Flag{serverFlag, &cli.BoolFlag{Name: "undo", Usage: "remove the yank"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cli.Exit("yank takes one OWNER/NAME@VERSION", 2)
			}
			cfg, log, err := setup(c, nil)
			if err != nil {
				return err
			}
			yanked := !c.Bool("undo")
			return app.Mark(c.Context, cfg, log, publishTarget(c), c.Args().First(), private.Mark{Yanked: &yanked}, c.App.Writer)
		},
	}
}
