package indexsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// lockPath is a file beside the mirror that every process syncing it (a
// server, a `sync` or `mirror` command) holds while it runs git: two
// checkouts of the same work tree at once would leave it in a mix of both.
func lockPath(dir string) string {
	return filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+".sync.lock")
}

// lockSync takes the cross-process sync lock of the mirror at dir, waiting
// (politely, by polling) until it is free or ctx ends. The returned func
// releases it.
func lockSync(ctx context.Context, dir string, log zerolog.Logger) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("sync lock: %w", err)
	}
	f, err := os.OpenFile(lockPath(dir), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("sync lock: %w", err)
	}
	logged := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("sync lock %s: %w", lockPath(dir), err)
		}
		if !logged {
			log.Info().Str("lock", lockPath(dir)).Msg("another process is syncing this index mirror; waiting for it")
			logged = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the sync lock: %w", context.Cause(ctx))
		case <-time.After(100 * time.Millisecond):
		}
	}
}
