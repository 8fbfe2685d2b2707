package app

import (
	"context"
	"fmt"
	"io"

	"github.com/rs/zerolog"

	"moonbit-registry/config"
	"moonbit-registry/module"
	"moonbit-registry/resolve"
)

// VerifyRequest is what `verify` was asked to check.
type VerifyRequest struct {
	// Patterns select what must be there (dependencies included unless
	// Select.Strict); none checks every stored archive.
	Patterns []string
	Select   resolve.SelectOptions
	Purge    bool // delete mismatched, orphaned and unreadable archives
}

// Verify re-hashes stored archives against the index and writes one line
// per problem and a summary to out; problems make it an ErrIncomplete. It
// never fetches and never evicts.
func Verify(ctx context.Context, cfg config.Config, log zerolog.Logger, req VerifyRequest, out io.Writer) error {
	r, err := Open(cfg, Use{}, log)
	if err != nil {
		return err
	}
	defer r.Close()
	var expected []module.Version
	if len(req.Patterns) > 0 {
		sel, err := r.selectPatterns(ctx, req.Patterns, req.Select)
		if err != nil {
			return err
		}
		expected = sel.Archives()
	}
	res, err := r.Archives.Verify(ctx, expected, req.Purge)
	if err != nil {
		return err
	}
	for _, p := range res.Problems {
		purged := ""
		if p.Purged {
			purged = " (purged)"
		}
		fmt.Fprintf(out, "%s: %s: %s%s\n", p.Kind, p.Archive, p.Detail, purged)
	}
	fmt.Fprintf(out, "checked %d archives, %d problems\n", res.Checked, len(res.Problems))
	if len(res.Problems) > 0 {
		return ErrIncomplete{"verify found problems"}
	}
	return nil
}
