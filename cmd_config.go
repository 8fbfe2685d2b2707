package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
)

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "print the effective configuration and where each value came from",
		Description: "Every key as registry.toml would hold it, after the file, the environment\n" +
			"(MOONBIT_REGISTRY_<SECTION>_<KEY>) and this command's flags have been applied, each\n" +
			"with its source: default, <file> line N, environment NAME or flag --name.",
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cli.Exit("config takes no arguments", 2)
			}
			cfg, _, err := setup(c, nil)
			if err != nil {
				return err
			}
			if cfg.File != "" {
				fmt.Fprintf(c.App.Writer, "# file: %s\n", cfg.File)
			} else {
				fmt.Fprintf(c.App.Writer, "# no registry.toml in %s: defaults, then the environment\n", cfg.Root)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
			for _, s := range cfg.Settings() {
				fmt.Fprintf(tw, "%s = %s\t# %s\n", s.Key, s.Value, s.Source)
			}
			return tw.Flush()
		},
	}
}
