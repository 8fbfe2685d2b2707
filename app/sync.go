package app

import (
	"context"
	"fmt"
	"io"

	"github.com/rs/zerolog"

	"moonbit-registry/config"
)

// Sync brings the index mirror up to date once and writes what changed to
// out.
func Sync(ctx context.Context, cfg config.Config, log zerolog.Logger, out io.Writer) error {
	r, err := openIndex(cfg, Use{}, log)
	if err != nil {
		return err
	}
	defer r.Close()
	ch, err := r.Index.Sync(ctx)
	if err != nil {
		return fmt.Errorf("index sync from %s: %w", cfg.Upstream.IndexURL, err)
	}
	switch {
	case ch.Initial:
		mods, _ := r.Index.Modules(ctx)
		fmt.Fprintf(out, "cloned the index at %s: %d modules\n", short(ch.To), len(mods))
	case ch.Empty():
		fmt.Fprintf(out, "index up to date at %s\n", short(ch.To))
	default:
		if ch.Rewritten {
			fmt.Fprintln(out, "upstream rewrote the index history; clients will re-clone")
		}
		fmt.Fprintf(out, "index %s -> %s: %d modules changed, %d versions added, %d changed, %d removed\n",
			short(ch.From), short(ch.To), len(ch.Modules), len(ch.Added), len(ch.Changed), len(ch.Removed))
		for _, v := range ch.Added {
			fmt.Fprintf(out, "added %s\n", v.Archive())
		}
		for _, v := range ch.Changed {
			fmt.Fprintf(out, "changed %s\n", v.Archive())
		}
		for _, v := range ch.Removed {
			fmt.Fprintf(out, "removed %s\n", v.Archive())
		}
	}
	return nil
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}
