package indexsync

import (
	"bytes"

	"moonbit-registry/manifest"

	"github.com/rs/zerolog"
)

// parseIndex parses a module's .index file. Versions come oldest first in
// order of first appearance (the file is append-only, oldest first); a later
// line for the same version replaces the earlier one in place. Lines that
// are not JSON objects or carry no valid semver version are skipped with a
// warning, as the moon client would be unable to use them.
func parseIndex(mod string, data []byte, log zerolog.Logger) []manifest.Entry {
	var out []manifest.Entry
	pos := map[string]int{}
	for n, line := range bytes.Split(data, []byte{'\n'}) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		v, err := manifest.ParseLine(mod, line)
		if err != nil {
			log.Warn().Str("module", mod).Int("line", n+1).Err(err).Msg("skipping malformed index line")
			continue
		}
		if i, ok := pos[v.Version]; ok {
			out[i] = v
			continue
		}
		pos[v.Version] = len(out)
		out = append(out, v)
	}
	return out
}
