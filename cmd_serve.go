package main

import (
	"github.com/urfave/cli/v2"

	"moonbit-registry/app"
	"moonbit-registry/config"
	"moonbit-registry/internal/logbuf"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the proxy: index over git smart HTTP, archives from the cache",
		Flags: []cli.Flag{
			// Unset flags leave the configuration's values; the help shows
			// those keys' defaults.
			&cli.StringFlag{Name: "listen", Usage: "address to listen on (server.listen)", DefaultText: config.Defaults().Server.Listen},
			&cli.StringFlag{Name: "base-url", Usage: "URL clients use to reach this server (server.base_url)", DefaultText: "http://<listen>"},
			&cli.BoolFlag{Name: "offline", Usage: "never contact upstream (server.offline)", DefaultText: "server.offline, false unless set"},
		},
		Action: func(c *cli.Context) error {
			cfg, log, err := setup(c, overrides(c, map[string]string{
				"listen": "server.listen", "base-url": "server.base_url", "offline": "server.offline",
			}))
			if err != nil {
				return err
			}
			// The access log, a line per request, is buffered: written at
			// least every second, and in full when the server stops.
			buffered := logbuf.New(c.App.ErrWriter)
			defer buffered.Close()
			access, err := newLogger(buffered, isTerminal(c.App.ErrWriter), c.String("log-level"), c.String("log-format"))
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			return app.Serve(c.Context, cfg, log, access)
		},
	}
}
