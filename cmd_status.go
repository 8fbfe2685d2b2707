package main

import (
	"os"

	"github.com/urfave/cli/v2"

	"moonbit-registry/app"
	"moonbit-registry/web"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the index, the store and the traffic of a registry",
		Description: "Without --server, reads the registry root (--dir): the index mirror's commit\n" +
			"and last fetch, and the store's size. With --server URL, asks the running server\n" +
			"(/-/status.json; MOONBIT_REGISTRY_TOKEN is sent as a bearer token), which also\n" +
			"tells the last sync's error and the last hour's traffic.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON (index.commit, index.age_seconds, store.archives, store.bytes, ...)"},
			&cli.StringFlag{Name: "server", Usage: "ask the registry running at this `URL`"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cli.Exit("status takes no arguments", 2)
			}
			var st web.Status
			var err error
			if server := c.String("server"); server != "" {
				st, err = app.ServerStatus(c.Context, server, os.Getenv(app.TokenEnv))
			} else {
				cfg, _, serr := setup(c, nil)
				if serr != nil {
					return serr
				}
				st, err = app.LocalStatus(c.Context, cfg)
			}
			if err != nil {
				return err
			}
			return app.WriteStatus(c.App.Writer, st, c.Bool("json"))
		},
	}
}
