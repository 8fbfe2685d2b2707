package proxy

import (
	"net/http"

	"github.com/rs/zerolog"
)

// newArchiveHandler serves /user/... archives from the cache.
// Placeholder until the archive cache lands.
func newArchiveHandler(log zerolog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "archives not served yet", http.StatusNotImplemented)
	})
}
