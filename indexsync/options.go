package indexsync

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"moonbit-registry/module"
)

// Defaults for the zero values of Options.
const (
	DefaultBranch             = "main"
	DefaultInterval           = 5 * time.Minute
	DefaultGitTimeout         = 2 * time.Minute
	DefaultRefreshMinInterval = 10 * time.Second
	// DefaultStaleAfterIntervals: a mirror whose syncs have failed for
	// this many intervals is no longer ready.
	DefaultStaleAfterIntervals = 3
)

// localBranch is the branch clients fetch ("git pull origin main"), whatever
// the upstream branch is called.
const localBranch = "main"

// Options configures a Mirror.
type Options struct {
	// Dir is where the mirror repository lives (e.g. data/index). Its
	// parent must exist or be creatable; a first clone is built in a
	// temporary directory beside it and renamed into place.
	Dir string
	// UpstreamURL is the index repository to follow, e.g.
	// https://mooncakes.io/git/index.
	UpstreamURL string
	// UpstreamHeader, if set, is sent with every request to upstream
	// ("Authorization: Bearer ..."); it never appears in logs or errors.
	UpstreamHeader string
	// Branch is the upstream branch to follow; default "main". Locally the
	// branch is always "main".
	Branch string
	// Interval is how often Run syncs; default 5m.
	Interval time.Duration
	// GitTimeout bounds each git command; default 2m.
	GitTimeout time.Duration
	// RefreshMinInterval is the least time between two syncs triggered by
	// RequestRefresh; default 10s.
	RefreshMinInterval time.Duration
	// StaleAfter is how long syncs may keep failing (while Run runs)
	// before Ready reports the mirror stale; default 3 × Interval.
	StaleAfter time.Duration
	// CheckInterval: a client's index request may make the mirror look at
	// upstream's tip (and sync when it moved) when upstream was last looked
	// at longer ago than this; 0 disables it (see Freshen). The config's
	// index.check_interval.
	CheckInterval time.Duration
	// OnChange, if set, is called after every sync that moved main, with
	// what changed (e.g. to drop cached archives whose checksum changed).
	// It runs in the sync and should be quick.
	OnChange func(Changes)
	// OnUpstream, if set, is told of every contact with the upstream
	// index (its fetches and tip checks; not [Options.Sources]): when it
	// began and its error (nil when upstream answered). It should be
	// quick.
	OnUpstream func(at time.Time, err error)
	// Fleet, if set, makes this mirror one of several replicas serving the
	// same index (see Fleet); nil is a mirror on its own.
	Fleet Fleet
	// Sources are further indexes, each the one the served index takes
	// its owners' modules from (upstream's of those owners are not
	// served). With any, main is built here, as with an Overlay.
	Sources []Source
	// Overlay, if set, makes the served index upstream's plus the
	// overlay's files, without the reserved owners' upstream files,
	// in commits built here (see Overlay); nil serves upstream's own.
	Overlay Overlay
	Logger  zerolog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, errors.New("indexsync: Options.Dir is required")
	}
	if o.UpstreamURL == "" {
		return o, errors.New("indexsync: Options.UpstreamURL is required")
	}
	abs, err := filepath.Abs(o.Dir)
	if err != nil {
		return o, err
	}
	o.Dir = abs
	if o.Branch == "" {
		o.Branch = DefaultBranch
	}
	names := map[string]bool{}
	for _, s := range o.Sources {
		if err := module.ValidateSourceName(s.Name); err != nil {
			return o, fmt.Errorf("indexsync: source name %q: %w", s.Name, err)
		}
		if names[s.Name] {
			return o, fmt.Errorf("indexsync: source name %q given twice", s.Name)
		}
		names[s.Name] = true
		if s.URL == "" || strings.HasPrefix(s.URL, "-") {
			return o, fmt.Errorf("indexsync: source %s: bad URL %q", s.Name, s.URL)
		}
		if len(s.Owners) == 0 {
			return o, fmt.Errorf("indexsync: source %s serves no owners", s.Name)
		}
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.GitTimeout <= 0 {
		o.GitTimeout = DefaultGitTimeout
	}
	if o.RefreshMinInterval <= 0 {
		o.RefreshMinInterval = DefaultRefreshMinInterval
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = DefaultStaleAfterIntervals * o.Interval
	}
	return o, nil
}

// Source is an index some owners' modules come from instead of upstream.
type Source struct {
	// Name identifies it (letters, digits, '-' and '_'): a hidden ref and
	// the composed commits' messages name it.
	Name string
	// URL is its index repository; its branch "main" is followed.
	URL string
	// Owners are the owners it serves.
	Owners []string
	// Header, if set, is sent with every request to it.
	Header string
}
