// Package human formats figures for people: byte counts in binary units.
package human

import "fmt"

// Bytes writes n in binary units ("1.5 MiB"); a negative n is "not counted".
func Bytes(n int64) string {
	switch {
	case n < 0:
		return "not counted"
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
