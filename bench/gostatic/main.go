// Command gostatic is the plain Go baseline in bench/run.sh: bare
// net/http serving a directory with nothing but os.Open and
// http.ServeContent per request (sendfile, no logging, no index lookup, no
// middleware). The gap between it and the registry is the registry's own
// per-request work; the gap between it and nginx is net/http's and the Go
// runtime's.
//
//	go run ./bench/gostatic -root DIR -listen 127.0.0.1:PORT
//
// /user/<path> serves DIR/<path>; only GET and HEAD of regular files.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

func main() {
	root := flag.String("root", "", "directory to serve under /user/ (required)")
	listen := flag.String("listen", "127.0.0.1:0", "listen address (loopback only)")
	flag.Parse()
	if err := run(*root, *listen); err != nil {
		fmt.Fprintln(os.Stderr, "gostatic:", err)
		os.Exit(1)
	}
}

func run(root, listen string) error {
	if root == "" || flag.NArg() > 0 {
		return errors.New("usage: gostatic -root DIR [-listen 127.0.0.1:PORT]")
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("listen address %q is not a loopback IP", listen)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\n", ln.Addr())
	srv := &http.Server{Handler: handler(root)}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; srv.Close() }()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func handler(root string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rel, ok := strings.CutPrefix(path.Clean(r.URL.Path), "/user/")
		if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			http.NotFound(w, r)
			return
		}
		f, err := os.Open(filepath.Join(root, filepath.FromSlash(rel)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/zip")
		http.ServeContent(w, r, "", fi.ModTime(), f)
	})
}
