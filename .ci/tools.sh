#!/usr/bin/env bash
# Builds or installs what the tests run besides Go and git, each pinned and
# cached outside the clone by version, so a second run costs nothing:
#   versitygw, a real S3 server, built from the Go module proxy into
#   ${XDG_CACHE_HOME:-~/.cache}/moonbit-registry/tools/versitygw-<version>/
#   (the version is internal/testsupport.VersitygwVersion; a test checks the
#   two agree). About 10 minutes the first time on 2 cores.
#   nginx and chromium, from Debian's packages (needs root), for the fleet
#   and browser tests.
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

# apt_install CMD PACKAGE: installs Debian's PACKAGE unless CMD is there.
apt_install() {
  if command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; then
    return
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "$1 is missing: install Debian's $2 package (apt-get install $2) as root" >&2
    exit 1
  fi
  echo "installing $2 (once)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "$2"
}

# The fleet tests' balancer (deploy/nginx-balancer.conf) and the browser
# tests' headless Chromium.
apt_install nginx nginx
apt_install chromium chromium
