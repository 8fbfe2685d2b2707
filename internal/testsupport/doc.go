// Package testsupport holds the helpers the tests of several packages
// share, written once: a log sink for concurrent writers, git run in
// isolation, a self-signed certificate, a walk over index files and the
// rule for a missing test tool (fail in CI, skip elsewhere). Only
// tests (and the test upstream) import it.
package testsupport
