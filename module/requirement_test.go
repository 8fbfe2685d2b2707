package module

import "testing"

func TestRequirementMatchesLikeCargoCaret(t *testing.T) {
	tests := []struct {
		req, version string
		want         bool
	}{
		{"1.2.3", "1.2.3", true},
		{"1.2.3", "1.9.0", true},
		{"1.2.3", "2.0.0", false},
		{"1.2.3", "1.2.2", false},
		{"^1.2.3", "1.2.4", true},
		{"0.2.3", "0.2.9", true},
		{"0.2.3", "0.3.0", false},
		{"0.2.3", "0.2.2", false},
		{"0.0.3", "0.0.3", true},
		{"0.0.3", "0.0.4", false},
		{"^0.0.4", "0.0.4", true},
		{"0.16", "0.16.0", true},
		{"0.16", "0.16.7", true},
		{"0.16", "0.17.0", false},
		{"1", "1.9.9", true},
		{"1", "2.0.0", false},
		{"*", "3.1.4", true},
		{"*", "3.1.4-alpha", false},
		{"", "0.0.1", true},
		// Prereleases only match a requirement naming the same triple.
		{"0.2.0-alpha-1", "0.2.0-alpha-1", true},
		{"0.2.0-alpha-1", "0.2.0-alpha-2", true},
		{"0.2.0-alpha-2", "0.2.0-alpha-1", false},
		{"0.2.0-alpha-1", "0.2.0", true},
		{"0.2.0-alpha-1", "0.2.1", true},
		{"0.2.0-alpha-1", "0.2.1-alpha-1", false},
		{"0.1.0", "0.1.1-beta", false},
		{"1.2.3", "1.2.3+build", true},
		{"1.2.3", "not-a-version", false},
	}
	for _, tt := range tests {
		r, err := ParseRequirement(tt.req)
		if err != nil {
			t.Errorf("ParseRequirement(%q): %v", tt.req, err)
			continue
		}
		if got := r.Matches(tt.version); got != tt.want {
			t.Errorf("%q matches %q = %v, want %v", tt.req, tt.version, got, tt.want)
		}
	}
}

func TestRequirementRejectsWhatMoonRejects(t *testing.T) {
	for _, req := range []string{">=1.0.0", "~1.2", "=1.0.0", "1.0.0, <2", "1.x", "1.2.3.4", "1.2-alpha", "^", "abc"} {
		if _, err := ParseRequirement(req); err == nil {
			t.Errorf("ParseRequirement(%q) succeeded, want an error", req)
		}
	}
}
