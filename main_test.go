package main

import (
	"slices"
	"strings"
	"testing"
)

func TestHoistGlobalFlags(t *testing.T) {
	globals := globalFlagNames(newApp())
	for _, tt := range []struct{ in, want string }{
		{"r mirror --dir /srv x", "r --dir /srv mirror x"},
		{"r mirror --dir=/srv --strict x", "r --dir=/srv mirror --strict x"},
		{"r --log-level warn sync --config c.toml", "r --log-level warn --config c.toml sync"},
		{"r --dir a serve --listen 127.0.0.1:1", "r --dir a serve --listen 127.0.0.1:1"},
		{"r mirror -- --dir x", "r mirror -- --dir x"},
		{"r --version", "r --version"},
		{"r", "r"},
		{"r status --dir", "r --dir status"},
	} {
		got := hoistGlobalFlags(strings.Fields(tt.in), globals)
		if !slices.Equal(got, strings.Fields(tt.want)) {
			t.Errorf("%q -> %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDidYouMean(t *testing.T) {
	cmds := newApp().Commands
	for _, tt := range []struct{ in, want string }{
		{"sevre", "serve"}, {"mirorr", "mirror"}, {"stat", "status"}, {"updat", "update"}, {"xyzzy", ""},
	} {
		got := didYouMean(tt.in, cmds)
		if tt.want == "" && got != "" || tt.want != "" && !strings.Contains(got, `"`+tt.want+`"`) {
			t.Errorf("didYouMean(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
