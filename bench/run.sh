#!/usr/bin/env bash
# Cache-hit throughput, latency and peak memory of the registry binary.
#
#   bench/run.sh            # Go benchmark, then wrk if it is installed
#   bench/run.sh go         # Go benchmark only
#   bench/run.sh wrk        # wrk only (apt-get install -y wrk)
#
# Environment: BENCHTIME (Go, default 5s), DURATION (wrk, default 10s),
# CONNS (wrk, default 64), SIZES (bytes, default "102400 10485760").
#
# The wrk part starts the test upstream (go run ./e2e/upstream) with one
# archive padded to each size, a registry on a fresh root, warms the cache
# with one request, resets the registry's peak RSS (/proc/PID/clear_refs)
# and runs wrk against the archive's one-segment URL; then it prints wrk's
# requests/s and latency percentiles and the registry's VmHWM.
set -euo pipefail

cd "$(dirname "$0")/.."
mode=${1:-all}
BENCHTIME=${BENCHTIME:-5s}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
SIZES=${SIZES:-"102400 10485760"}

run_go() {
	echo "== go test -run '^\$' -bench BenchmarkArchiveHit -benchtime $BENCHTIME ./e2e/"
	go test -run '^$' -bench BenchmarkArchiveHit -benchtime "$BENCHTIME" ./e2e/ 2>&1 | grep -v '^ *{'
}

pids=()
work=""
cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	[ -n "$work" ] && rm -rf "$work"
}

# wait_for FILE PATTERN: waits up to 120s for PATTERN to appear in FILE.
wait_for() {
	for _ in $(seq 1 1200); do
		if grep -q "$2" "$1" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "timed out waiting for '$2' in $1:" >&2
	cat "$1" >&2
	return 1
}

run_wrk() {
	command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)"; return 1; }
	trap cleanup EXIT
	work=$(mktemp -d)
	go build -o "$work/moonbit-registry" .
	go build -o "$work/upstream" ./e2e/upstream
	for size in $SIZES; do
		"$work/upstream" -archives moonbitlang/x@0.4.6 -archive-size "$size" >"$work/up.out" 2>&1 &
		pids+=($!)
		wait_for "$work/up.out" '^archives'
		base=$(awk '$1 == "base" {print $2}' "$work/up.out")

		root="$work/root-$size"
		MOONBIT_REGISTRY_UPSTREAM_INDEX_URL="$base/git/index" \
			MOONBIT_REGISTRY_UPSTREAM_DOWNLOAD_URL="$base" \
			MOONBIT_REGISTRY_UPSTREAM_API_URL="$base" \
			"$work/moonbit-registry" --dir "$root" --log-format json \
			serve --listen 127.0.0.1:0 >"$work/reg.out" 2>&1 &
		reg=$!
		pids+=($reg)
		wait_for "$work/reg.out" '"message":"listening"'
		addr=$(grep -o '"addr":"[^"]*"' "$work/reg.out" | head -1 | cut -d'"' -f4)
		for _ in $(seq 1 1200); do
			curl -fsS "http://$addr/readyz" >/dev/null 2>&1 && break
			sleep 0.1
		done
		url="http://$addr/user/moonbitlang%2Fx%2F0.4.6.zip"
		got=$(curl -fsS -A mooncake/0.1.0 -o /dev/null -w '%{size_download}' "$url")
		[ "$got" = "$size" ] || { echo "warm-up got $got bytes, want $size" >&2; return 1; }

		echo 5 >"/proc/$reg/clear_refs" 2>/dev/null || echo "(cannot reset VmHWM; lifetime peak below)"
		echo "== wrk -t2 -c$CONNS -d$DURATION --latency -H 'User-Agent: mooncake/0.1.0' $url   # $size bytes"
		wrk -t2 -c"$CONNS" -d"$DURATION" --latency -H 'User-Agent: mooncake/0.1.0' "$url"
		grep VmHWM "/proc/$reg/status"

		kill "$reg"; wait "$reg" 2>/dev/null || true
		kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
		pids=()
	done
}

case "$mode" in
all) run_go; if command -v wrk >/dev/null; then run_wrk; fi ;;
go) run_go ;;
wrk) run_wrk ;;
*) echo "usage: $0 [all|go|wrk]" >&2; exit 2 ;;
esac
