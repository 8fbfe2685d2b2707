// Command upstream runs the test upstream (package testupstream) on its own,
// for trying the proxy or a moon client by hand:
//
//	go run ./e2e/upstream -listen 127.0.0.1:8081 -archives moonbitlang/x,moonbitlang/core@0.1.0
//
// It prints the base, index and download URLs and serves until SIGINT or
// SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"moonbit-registry/internal/testupstream"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		os.Exit(1)
	}
}

func run() error {
	var opts testupstream.Options
	var archives string
	flag.StringVar(&opts.Listen, "listen", "127.0.0.1:0", "listen address (loopback only)")
	flag.StringVar(&archives, "archives", "", "comma-separated module[@version] list to build archives for; no @version means every version")
	flag.BoolVar(&opts.AllArchives, "all-archives", false, "build archives for every version in the index")
	flag.IntVar(&opts.ArchiveSize, "archive-size", 0, "pad every archive to this many bytes")
	flag.StringVar(&opts.IndexSource, "index-source", "", "index tree to serve (default: testdata/mooncakes-index at the repository root)")
	flag.StringVar(&opts.WorkDir, "workdir", "", "work directory, kept afterwards (default: a temporary one, removed on exit)")
	flag.BoolVar(&opts.RequireUserAgent, "require-user-agent", false, "answer 403 to requests without a User-Agent")
	verbose := flag.Bool("v", false, "log diagnostics to stderr")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", flag.Args())
	}
	for _, s := range strings.Split(archives, ",") {
		if strings.TrimSpace(s) == "" {
			continue
		}
		mv, err := testupstream.ParseModuleVersion(s)
		if err != nil {
			return err
		}
		opts.Archives = append(opts.Archives, mv)
	}
	if *verbose {
		opts.Logf = func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, format+"\n", args...)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	u, err := testupstream.New(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Printf("base     %s\n", u.URL())
	fmt.Printf("index    %s\n", u.IndexURL())
	fmt.Printf("download %s\n", u.DownloadURL())
	fmt.Printf("archives %d\n", len(u.Downloads.Archives()))
	<-ctx.Done()
	return u.Close()
}
