package main

import (
	"github.com/urfave/cli/v2"

	"moonbit-registry/app"
	"moonbit-registry/resolve"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "re-hash cached archives against the index",
		ArgsUsage: "[PATTERN...]",
		Description: "Without patterns, checks every cached archive: mismatched (bytes do not match the\n" +
			"index checksum), orphaned (not in the index), unreadable, and unverifiable (the\n" +
			"index line is malformed). With patterns (as for mirror, dependencies included\n" +
			"unless --strict), also reports selected archives that are missing. Exits non-zero\n" +
			"when anything is wrong.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "strict", Usage: "with patterns: exactly what they match, no dependencies"},
			&cli.BoolFlag{Name: "all", Usage: "allow the pattern *"},
			&cli.BoolFlag{Name: "purge", Usage: "delete mismatched, orphaned and unreadable archives"},
		},
		Action: func(c *cli.Context) error {
			patterns, err := patternArgs(c)
			if err != nil {
				return err
			}
			cfg, log, err := setup(c, nil)
			if err != nil {
				return err
			}
			return app.Verify(c.Context, cfg, log, app.VerifyRequest{
				Patterns: patterns,
				Select:   resolve.SelectOptions{Strict: c.Bool("strict"), All: c.Bool("all")},
				Purge:    c.Bool("purge"),
			}, c.App.Writer)
		},
	}
}
