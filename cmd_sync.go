package main

import (
	"github.com/urfave/cli/v2"

	"moonbit-registry/app"
)

func syncCommand() *cli.Command {
	return &cli.Command{
		Name:  "sync",
		Usage: "bring the local index mirror up to date once and print what changed",
		Action: func(c *cli.Context) error {
			cfg, log, err := setup(c, nil)
			if err != nil {
				return err
			}
			return app.Sync(c.Context, cfg, log, c.App.Writer)
		},
	}
}
