#!/usr/bin/env bash
# Builds or installs what the tests run besides Go and git, each pinned and
# cached outside the clone by version, so a second run costs nothing:
#   versitygw, a real S3 server, built from the Go module proxy into
#   ${XDG_CACHE_HOME:-~/.cache}/moonbit-registry/tools/versitygw-<version>/
#   (the version is internal/testsupport.VersitygwVersion; a test checks the
#   two agree). About 10 minutes the first time on 2 cores.
set -euo pipefail

VERSITYGW_VERSION="v1.8.0"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/moonbit-registry/tools"
dir="$cache/versitygw-$VERSITYGW_VERSION"
if [ ! -x "$dir/versitygw" ]; then
  echo "building versitygw $VERSITYGW_VERSION into $dir (once)" >&2
  mkdir -p "$dir.tmp"
  # Its own module versions, not ours: GOFLAGS cleared of -mod settings.
  GOFLAGS= GOBIN="$dir.tmp" go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
fi
