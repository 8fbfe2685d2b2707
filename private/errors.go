package private

import (
	"errors"
	"fmt"
)

// Errors a publish, deprecation or yank is refused with, always wrapped
// with %w: the HTTP endpoint maps them to statuses, the command to exit 1.
var (
	// ErrInvalid: the archive or request is malformed (400).
	ErrInvalid = errors.New("invalid module archive")
	// ErrTooLarge: the archive is over the size cap (413).
	ErrTooLarge = errors.New("module archive too large")
	// ErrNotReserved: the module's owner is not one of [private] owners,
	// so it is not ours to publish (403).
	ErrNotReserved = errors.New("owner not reserved for private modules")
	// ErrConflict: the version exists with other bytes, or is being
	// published by someone else right now (409).
	ErrConflict = errors.New("version already published")
	// ErrUnknown: no private module version by that name (404).
	ErrUnknown = errors.New("no such private module version")
	// ErrReadOnly: this registry takes no changes (offline, read-only)
	// (403).
	ErrReadOnly = errors.New("this registry serves a read-only copy (offline) and takes no private modules; publish on the registry that writes")
	// ErrIndexPending: the change is stored but the served index could
	// not be rebuilt yet (503; doing it again is safe).
	ErrIndexPending = errors.New("index not updated yet")
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
