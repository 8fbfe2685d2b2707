package app

import (
	"runtime/debug"
	"testing"
)

func TestVersionOf(t *testing.T) {
	vcs := func(version string, settings ...string) *debug.BuildInfo {
		info := &debug.BuildInfo{Main: debug.Module{Path: "moonbit-registry", Version: version}}
		for i := 0; i+1 < len(settings); i += 2 {
			info.Settings = append(info.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return info
	}
	const rev = "918dc0c1a2b3c4d5e6f708192a3b4c5d6e7f8091"
	for _, tt := range []struct {
		name  string
		stamp string
		info  *debug.BuildInfo
		want  string
	}{
		{"release stamp wins", "v1.2.3", vcs("v0.9.0", "vcs.revision", rev), "v1.2.3"},
		{"no build information", "", nil, "unknown"},
		{"tagged module version", "", vcs("v1.4.0"), "v1.4.0"},
		{"plain go build, clean", "", vcs("v0.0.0-20261207231000-918dc0c1a2b3", "vcs.revision", rev, "vcs.time", "2026-12-07T23:10:00Z", "vcs.modified", "false"),
			"devel 918dc0c1a2b3 2026-12-07T23:10:00Z"},
		{"plain go build, uncommitted changes", "", vcs("v0.0.0-20261207231000-918dc0c1a2b3+dirty", "vcs.revision", rev, "vcs.time", "2026-12-07T23:10:00Z", "vcs.modified", "true"),
			"devel 918dc0c1a2b3-dirty 2026-12-07T23:10:00Z"},
		{"pseudo-version after a tag", "", vcs("v1.4.1-0.20261207231000-918dc0c1a2b3", "vcs.revision", rev), "devel 918dc0c1a2b3"},
		{"no VCS information (-buildvcs=false)", "", vcs("(devel)"), "devel"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := versionOf(tt.stamp, tt.info); got != tt.want {
				t.Errorf("versionOf = %q, want %q", got, tt.want)
			}
		})
	}
}
