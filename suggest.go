package main

// Suggestions for a mistyped command. urfave/cli has its own
// (cli.SuggestCommand), but it always names the closest command however
// far it is ("frobnicate" would get one), and its unknown-command path
// exits 3; this one suggests only close matches and is a usage error.

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"moonbit-registry/app"
)

// unknownSubcommand answers a command that groups subcommands (auth) when
// it is given none or one it does not have: a usage error (exit 2), where
// urfave/cli's default would look for a help topic and exit 3.
func unknownSubcommand(c *cli.Context) error {
	if c.NArg() == 0 {
		return cli.ShowSubcommandHelp(c)
	}
	return app.UsageError{Err: fmt.Errorf("unknown command %q%s (see %s --help)", c.Args().First(), didYouMean(c.Args().First(), c.Command.Subcommands), c.Command.HelpName)}
}

// didYouMean suggests the command closest to name (a typo of up to two
// letters, or a prefix), as ", did you mean \"serve\"?"; "" for none.
func didYouMean(name string, cmds []*cli.Command) string {
	best, bestDist := "", 3
	for _, c := range cmds {
		for _, n := range c.Names() {
			d := editDistance(name, n)
			if strings.HasPrefix(n, name) && len(name) >= 2 {
				d = min(d, 1)
			}
			if d < bestDist {
				best, bestDist = n, d
			}
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(", did you mean %q?", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
