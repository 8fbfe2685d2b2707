package main

import (
	"errors"
	"fmt"
	"os/exec"

	"github.com/urfave/cli/v2"

	"moonbit-registry/app"
)

// exitCode is 2 for usage errors, 1 for every other failure: never the
// status of a program we ran (git's 128), which says nothing to a caller.
func exitCode(err error) int {
	var usage app.UsageError
	var program *exec.ExitError
	var exit cli.ExitCoder // cli.Exit of this package's commands
	switch {
	case errors.As(err, &usage):
		return 2
	case errors.As(err, &program):
		return 1
	case errors.As(err, &exit) && exit.ExitCode() != 0:
		return exit.ExitCode()
	}
	return 1
}

// usageError makes a flag the command line cannot parse a usage error
// (exit 2), with a pointer to the help instead of the whole of it.
func usageError(c *cli.Context, err error, _ bool) error {
	return app.UsageError{Err: fmt.Errorf("%w (see %s --help)", err, c.Command.HelpName)}
}
