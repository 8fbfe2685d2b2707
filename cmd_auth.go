package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"moonbit-registry/config"
)

func authCommand() *cli.Command {
	return &cli.Command{
		Name:  "auth",
		Usage: "make credentials for [server] auth_tokens, publish_tokens and auth_users",
		Description: "The configuration stores only digests: a token's SHA-256, a password's bcrypt\n" +
			"hash. Secrets are read from standard input (without echo on a terminal).",
		Subcommands: []*cli.Command{
			{
				Name:  "new-token",
				Usage: "print a new random bearer token and its auth_tokens (or, with --publish, publish_tokens) entry",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "publish", Usage: "a token that may publish private modules: its entry goes in publish_tokens"}},
				Action: func(c *cli.Context) error {
					token := config.NewToken()
					key := "auth_tokens"
					if c.Bool("publish") {
						key = "publish_tokens"
					}
					fmt.Fprintf(c.App.Writer, "token: %s\n%s entry: %q\n", token, key, config.HashToken(token))
					return nil
				},
			},
			{
				Name:  "hash-token",
				Usage: "read a bearer token on standard input, print its auth_tokens entry",
				Action: func(c *cli.Context) error {
					token, err := readSecret(c, "token: ")
					if err != nil {
						return cli.Exit(err.Error(), 2)
					}
					fmt.Fprintln(c.App.Writer, config.HashToken(token))
					return nil
				},
			},
			{
				Name:  "hash-password",
				Usage: "read a password on standard input, print the auth_users entry name:bcrypt-hash",
				// Not Required: urfave/cli's missing-flag error is no usage
				// error (exit 1); the check below makes it one (exit 2).
				Flags: []cli.Flag{&cli.StringFlag{Name: "user", Usage: "user name (no colon; required)"}},
				Action: func(c *cli.Context) error {
					user := c.String("user")
					if user == "" || strings.Contains(user, ":") {
						return cli.Exit("--user must be a non-empty name without a colon", 2)
					}
					pass, err := readSecret(c, "password for "+user+": ")
					if err != nil {
						return cli.Exit(err.Error(), 2)
					}
					hash, err := config.HashPassword(pass)
					if err != nil {
						return cli.Exit(err.Error(), 2)
					}
					entry := user + ":" + hash
					if _, _, err := config.ParseAuthUser(entry); err != nil {
						return cli.Exit("--user: "+err.Error(), 2)
					}
					fmt.Fprintln(c.App.Writer, entry)
					return nil
				},
			},
		},
	}
}

// readSecret reads a token or password from standard input: prompted and
// not echoed on a terminal, else the first line.
func readSecret(c *cli.Context, prompt string) (string, error) {
	if f, ok := c.App.Reader.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(c.App.ErrWriter, prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.App.ErrWriter)
		if err != nil {
			return "", err
		}
		return config.ReadSecret(strings.NewReader(string(b)))
	}
	return config.ReadSecret(c.App.Reader)
}
