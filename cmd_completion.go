package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// bashCompletion asks the binary itself for the words that can come next
// (urfave/cli answers --generate-bash-completion with commands, or with a
// command's flags). urfave/cli v2 ships such a script only as a file of its
// own repository, not in the binary, hence this one.
const bashCompletion = `# bash completion for moonbit-registry; load with:
#   source <(moonbit-registry completion bash)
_moonbit_registry_complete() {
	local cur="${COMP_WORDS[COMP_CWORD]}" words
	local args=("${COMP_WORDS[@]:1:$((COMP_CWORD-1))}")
	# A word starting with - asks for the command's flags.
	if [[ $cur == -* ]]; then args+=("$cur"); fi
	words=$("${COMP_WORDS[0]}" "${args[@]}" --generate-bash-completion 2>/dev/null)
	COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _moonbit_registry_complete moonbit-registry
`

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash)",
		ArgsUsage: "bash",
		Description: "Add to ~/.bashrc:\n" +
			"  source <(moonbit-registry completion bash)",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 || c.Args().First() != "bash" {
				return cli.Exit("completion takes one argument: bash", 2)
			}
			fmt.Fprint(c.App.Writer, bashCompletion)
			return nil
		},
	}
}
