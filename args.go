package main

// Where arguments go: global flags after the command, flags after
// patterns.

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"moonbit-registry/app"
)

// patternArgs are a command's pattern arguments. The command line parser
// stops at the first of them, so a flag after a pattern would be taken as
// a pattern: that is a usage error saying where flags go.
func patternArgs(c *cli.Context) ([]string, error) {
	args := c.Args().Slice()
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			return nil, app.UsageError{Err: fmt.Errorf("%q comes after a pattern: flags go before patterns (%s %s PATTERN...)", a, c.Command.HelpName, a)}
		}
	}
	return args, nil
}

// globalFlagNames are the app-level flags that take a value.
func globalFlagNames(a *cli.App) map[string]bool {
	out := map[string]bool{}
	for _, f := range a.Flags {
		if _, ok := f.(*cli.StringFlag); ok {
			for _, n := range f.Names() {
				out[n] = true
			}
		}
	}
	return out
}

// hoistGlobalFlags moves global flags given after the command (e.g.
// "mirror --dir /srv/registry x") in front of it, where the command line
// parser looks for them; everything after "--" stays as it is.
func hoistGlobalFlags(args []string, globals map[string]bool) []string {
	if len(args) < 2 {
		return args
	}
	// The command is the first argument that is not a global flag or its value.
	cmd := -1
	for i := 1; i < len(args); i++ {
		name, hasValue := flagName(args[i])
		switch {
		case args[i] == "--":
			return args
		case globals[name]:
			if !hasValue {
				i++ // its value
			}
		case strings.HasPrefix(args[i], "-"):
			// a global bool flag (--help, --version)
		default:
			cmd = i
		}
		if cmd >= 0 {
			break
		}
	}
	if cmd < 0 {
		return args
	}
	var hoisted, rest []string
	for i := cmd + 1; i < len(args); i++ {
		if args[i] == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		name, hasValue := flagName(args[i])
		if globals[name] {
			hoisted = append(hoisted, args[i])
			if !hasValue && i+1 < len(args) {
				i++
				hoisted = append(hoisted, args[i])
			}
			continue
		}
		rest = append(rest, args[i])
	}
	out := append([]string{}, args[:cmd]...)
	out = append(out, hoisted...)
	out = append(out, args[cmd])
	return append(out, rest...)
}

// flagName is "dir" for "--dir", "-dir" or "--dir=x"; hasValue says the
// value came with it.
func flagName(arg string) (name string, hasValue bool) {
	if !strings.HasPrefix(arg, "-") {
		return "", false
	}
	name = strings.TrimLeft(arg, "-")
	if n, _, ok := strings.Cut(name, "="); ok {
		return n, true
	}
	return name, false
}
