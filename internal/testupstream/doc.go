// Package testupstream runs a local stand-in for the mooncakes.io registry,
// for the proxy's end-to-end tests and benchmarks.
//
// It serves, on 127.0.0.1 only:
//   - the package index as a git repository over smart HTTP at /git/index,
//     built from a copy of the index snapshot in testdata/ and committed
//     deterministically on branch main (shallow clones and pulls work);
//   - deterministic zip archives at /user/<owner>/<rest>/<version>.zip for
//     the module versions chosen in [Options], with the served index's
//     checksum fields rewritten to those zips' SHA-256;
//   - /symbols.zip with an ETag, /assets/..., and a small API: /api/v0/search
//     (a bare JSON array), /api/v0/modules/<name>[@<v>] and
//     /api/v0/manifest/<name>[@<v>] in the shape moon view reads, and
//     /api/v0/user/<owner>.
//
// An [Upstream] owns the server: its URLs, request counts per path, and
// Down and Up to stop and resume serving. Tests drive its parts through its
// fields: u.Index ([Index]) publishes new versions while it runs and
// rewrites the index history as a force-push would; u.Downloads
// ([Downloads]) holds the served zips, symbols and assets; u.Faults
// ([Faults]) injects errors, hangs and cut or wrong bodies, globally or
// for a path prefix.
//
// Typical use in a test:
//
//	u := testupstream.Start(t, testupstream.Options{
//		Archives: []testupstream.ModuleVersion{
//			{Module: "moonbitlang/x", Version: "0.4.6"},
//			testupstream.EveryVersion("moonbitlang/lex/runtime"),
//		},
//	})
//	// point the proxy at u.IndexURL() and u.DownloadURL(), then:
//	u.Faults.FailWith(503, testupstream.OnPrefix(testupstream.PrefixArchives), testupstream.Times(1))
//	// ... exercise the proxy ...
//	if n := u.Count("/user/moonbitlang/x/0.4.6.zip"); n != 2 { ... }
//
// The served index is a bare repository; run git clients against it with
// [Index.GitEnv] so the user's git config stays out of the way.
package testupstream
