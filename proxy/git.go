package proxy

import (
	"net/http"

	"github.com/rs/zerolog"
)

// newGitHandler serves the index mirror at /git/index over git smart HTTP.
// Placeholder until the git http-backend handler lands.
func newGitHandler(repoDir string, log zerolog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "index not served yet", http.StatusNotImplemented)
	})
}
