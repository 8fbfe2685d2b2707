// Package testsupport holds the helpers the tests of several packages
// share, written once: a log sink for concurrent writers, git run in
// isolation, a self-signed certificate and a walk over index files. Only
// tests (and the test upstream) import it.
package testsupport
