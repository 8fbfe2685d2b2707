package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"moonbit-registry/config"
)

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
			fmt.Fprintf(c.App.Writer, "next: moonbit-registry --dir %s serve\n"+
				"then, where moon runs: export MOONCAKES_REGISTRY=%s (or moonbit-registry update --write-config)\n",
				shellQuote(dir), "http://"+config.Defaults().Server.Listen)
			return nil
		},
	}
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
