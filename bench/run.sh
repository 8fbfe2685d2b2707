#!/usr/bin/env bash
# Reproducible benchmarks of the registry binary, on loopback only.
#
#   bench/run.sh                 # hit (vs nginx) and miss
#   bench/run.sh hit             # cache hits: ours vs nginx on the same files
#   bench/run.sh miss            # 100 concurrent requests for one missing archive
#   bench/run.sh go              # the Go benchmark (BenchmarkArchiveHit)
#   bench/run.sh --install [...] # first apt-get install wrk and nginx
#
# hit: starts the test upstream (e2e/upstream) with one archive padded to
# SIZE bytes, two registries on fresh roots (one logging at info, so one
# access-log line a request goes to its log file, one at --log-level warn,
# which logs nothing per request), warms both caches with one request, then
# starts nginx (bench/nginx.conf.tmpl: worker_processes auto, sendfile,
# access_log off) on the first registry's data/packages, so it serves the
# very same file at the same /user/<owner>/<rest>/<version>.zip path, and
# bench/gostatic on the same directory (plain net/http: os.Open and
# http.ServeContent, nothing else; what a Go server gets without any work of
# its own). Then ROUNDS times: wrk on each of ours (info), ours (warn),
# go-static and nginx with the same parameters, each round starting one
# server later (4 rounds: each server once in each position), so load noise
# from other processes hits all of them. It prints each run, the means, the
# ratios to nginx, the CPU time each server spent per request, and the peak
# RSS (VmHWM, reset after the warm-up) of both registries, go-static and
# every nginx worker.
#
# miss: bench/miss (go run ./bench/miss -h) fires MISS_N requests at once
# for one archive a fresh registry does not have, once per upstream delay in
# MISS_DELAYS, and prints the wall time, the number of full 200 answers, the
# requests the upstream got for that archive and the registry's peak RSS.
#
# Environment: SIZE (bytes, default 102400), THREADS (2), CONNS (64),
# DURATION (10s), ROUNDS (4), MISS_N (100), MISS_DELAYS ("0 200ms"),
# BENCHTIME (go, 5s), NGINX (path of nginx), KEEP=1 keeps the work
# directory (logs, configs) and prints its path.
set -euo pipefail

cd "$(dirname "$0")/.."
SIZE=${SIZE:-102400}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-4}
MISS_N=${MISS_N:-100}
MISS_DELAYS=${MISS_DELAYS:-"0 200ms"}
BENCHTIME=${BENCHTIME:-5s}
UA='User-Agent: mooncake/0.1.0'
MODULE=moonbitlang/x
VERSION=0.4.6
ARCHIVE_PATH="/user/$MODULE/$VERSION.zip"

install=0
modes=()
for a in "$@"; do
	case "$a" in
	--install) install=1 ;;
	hit | miss | go) modes+=("$a") ;;
	wrk) modes+=(hit) ;; # the old name
	-h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "usage: $0 [--install] [hit|miss|go]..." >&2; exit 2 ;;
	esac
done
[ ${#modes[@]} -gt 0 ] || modes=(hit miss)

if [ "$install" = 1 ]; then
	sudo=""
	[ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y wrk nginx curl
fi

NGINX=${NGINX:-$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)}

# need TOOL...: says what is missing and how to get it, then fails.
need() {
	local missing=()
	for t in "$@"; do
		case "$t" in
		nginx) [ -n "$NGINX" ] && [ -x "$NGINX" ] || missing+=(nginx) ;;
		*) command -v "$t" >/dev/null || missing+=("$t") ;;
		esac
	done
	if [ ${#missing[@]} -gt 0 ]; then
		echo "missing: ${missing[*]} (run '$0 --install' or apt-get install -y ${missing[*]})" >&2
		exit 1
	fi
}

pids=()
work=""
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	pids=()
	if [ -n "$work" ]; then
		if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

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

# wait_http PID URL: waits up to 120s for URL to answer 2xx while PID lives.
wait_http() {
	for _ in $(seq 1 1200); do
		kill -0 "$1" 2>/dev/null || { echo "process $1 exited before $2 answered" >&2; return 1; }
		curl -fsS -o /dev/null "$2" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "timed out waiting for $2" >&2
	return 1
}

# free_port: a loopback port nothing listens on right now.
free_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	echo "no free port found" >&2
	return 1
}

build() {
	if [ -z "$work" ]; then
		work=$(mktemp -d "${TMPDIR:-/tmp}/moonbit-bench.XXXXXX")
		# nginx workers may run as another user; they need to reach the store.
		chmod 755 "$work"
	fi
	[ -x "$work/moonbit-registry" ] || go build -o "$work/moonbit-registry" .
}

# start_registry NAME LEVEL UPSTREAM_BASE: a registry on a fresh root
# $work/NAME; sets REG_PID and REG_URL. Its log (stdout and stderr) goes to
# $work/NAME.log, never to the terminal.
start_registry() {
	local name=$1 level=$2 base=$3 port
	port=$(free_port)
	MOONBIT_REGISTRY_UPSTREAM_INDEX_URL="$base/git/index" \
		MOONBIT_REGISTRY_UPSTREAM_DOWNLOAD_URL="$base" \
		MOONBIT_REGISTRY_UPSTREAM_API_URL="$base" \
		"$work/moonbit-registry" --dir "$work/$name" --log-format json --log-level "$level" \
		serve --listen "127.0.0.1:$port" >"$work/$name.log" 2>&1 &
	REG_PID=$!
	pids+=("$REG_PID")
	REG_URL="http://127.0.0.1:$port"
	wait_http "$REG_PID" "$REG_URL/readyz" || { cat "$work/$name.log" >&2; return 1; }
}

# cpu_ticks PID...: user+system clock ticks used so far by the processes.
cpu_ticks() {
	local t=0 p f
	for p in "$@"; do
		# Fields 14 and 15 of /proc/PID/stat, counted after the ")" that
		# ends the command name.
		f=$(sed 's/^.*) //' "/proc/$p/stat")
		t=$((t + $(echo "$f" | awk '{print $12 + $13}')))
	done
	echo "$t"
}

hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
reset_hwm() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || echo "(cannot reset the peak RSS of $1; lifetime peak reported)" >&2; }

# to_ms VALUE: wrk's "812.00us" / "2.81ms" / "1.02s" in milliseconds.
to_ms() {
	awk -v v="$1" 'BEGIN {
		if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
		else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
		else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
		else { printf "%s", v } }'
}

# run_wrk LABEL URL PID...: one wrk run; appends "LABEL rps p50 p99 cpu_us_per_req"
# to $work/results, prints them and keeps wrk's output in $work/wrk-N-LABEL.txt.
# The CPU figure is the user+system time the server PIDs used during the run.
run_wrk() {
	local label=$1 url=$2
	shift 2
	local hz before after out rps p50 p99 reqs cpu
	hz=$(getconf CLK_TCK)
	before=$(cpu_ticks "$@")
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "$UA" "$url")
	after=$(cpu_ticks "$@")
	local n
	n=$(($(wc -l <"$work/results") + 1))
	echo "$out" >"$work/wrk-$n-$label.txt"
	if echo "$out" | grep -q -e 'Non-2xx' -e 'Socket errors'; then
		echo "$out" >&2
		echo "$label: wrk saw errors (above); the figures are not valid" >&2
		return 1
	fi
	rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
	reqs=$(echo "$out" | awk '/requests in/ {print $1}')
	p50=$(to_ms "$(echo "$out" | awk '$1 == "50%" {print $2}')")
	p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")
	cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
	echo "$label $rps $p50 $p99 $cpu" >>"$work/results"
	printf '   %-10s %8.0f req/s  p50 %7.2f ms  p99 %7.2f ms  %5.1f µs CPU/req  (%s)\n' "$label" "$rps" "$p50" "$p99" "$cpu" "$url"
}

run_hit() {
	need go curl wrk nginx sha256sum
	build
	go build -o "$work/upstream" ./e2e/upstream
	go build -o "$work/gostatic" ./bench/gostatic
	: >"$work/results"

	"$work/upstream" -archives "$MODULE@$VERSION" -archive-size "$SIZE" >"$work/upstream.out" 2>&1 &
	local up=$!
	pids+=("$up")
	wait_for "$work/upstream.out" '^archives'
	local base
	base=$(awk '$1 == "base" {print $2}' "$work/upstream.out")

	start_registry info info "$base"
	local info_pid=$REG_PID info_url=$REG_URL
	start_registry warn warn "$base"
	local warn_pid=$REG_PID warn_url=$REG_URL

	# Warm both caches with the one-segment URL moon clients send.
	local u sum
	for u in "$info_url" "$warn_url"; do
		got=$(curl -fsS -A mooncake/0.1.0 -o /dev/null -w '%{size_download}' "$u/user/${MODULE//\//%2F}%2F$VERSION.zip")
		[ "$got" = "$SIZE" ] || { echo "warm-up of $u got $got bytes, want $SIZE" >&2; return 1; }
	done
	local file="$work/info/data/packages/$MODULE/$VERSION.zip"
	[ -f "$file" ] || { echo "no cached file at $file" >&2; return 1; }

	local nport nprefix="$work/nginx"
	nport=$(free_port)
	mkdir -p "$nprefix/tmp"
	sed -e "s|@PREFIX@|$nprefix|g" -e "s|@LISTEN@|127.0.0.1:$nport|g" \
		-e "s|@ROOT@|$work/info/data/packages|g" -e "s|@USER@|$(id -un) $(id -gn)|g" \
		bench/nginx.conf.tmpl >"$nprefix/nginx.conf"
	# The user directive only makes sense when started as root.
	[ "$(id -u)" = 0 ] || sed -i '/^user /d' "$nprefix/nginx.conf"
	"$NGINX" -p "$nprefix" -c "$nprefix/nginx.conf" -e "$nprefix/error.log" >"$nprefix/out" 2>&1 &
	local ngx=$!
	pids+=("$ngx")
	local nginx_url="http://127.0.0.1:$nport"
	wait_http "$ngx" "$nginx_url$ARCHIVE_PATH" || { cat "$nprefix/out" "$nprefix/error.log" >&2; return 1; }
	local workers
	workers=$(pgrep -P "$ngx" | tr '\n' ' ')

	local gport
	gport=$(free_port)
	"$work/gostatic" -root "$work/info/data/packages" -listen "127.0.0.1:$gport" >"$work/gostatic.out" 2>&1 &
	local gs=$!
	pids+=("$gs")
	local gostatic_url="http://127.0.0.1:$gport"
	wait_http "$gs" "$gostatic_url$ARCHIVE_PATH" || { cat "$work/gostatic.out" >&2; return 1; }

	# Same bytes from all of them, through the plain-slash path wrk uses.
	local want
	want=$(sha256sum <"$file" | cut -d' ' -f1)
	for u in "$info_url" "$warn_url" "$gostatic_url" "$nginx_url"; do
		sum=$(curl -fsS -A mooncake/0.1.0 "$u$ARCHIVE_PATH" | sha256sum | cut -d' ' -f1)
		[ "$sum" = "$want" ] || { echo "$u$ARCHIVE_PATH: sha256 $sum, want $want" >&2; return 1; }
	done

	local p
	for p in "$info_pid" "$warn_pid" "$gs" $workers; do reset_hwm "$p"; done
	local log_before
	log_before=$(wc -c <"$work/info.log")

	echo "== cache hits, $SIZE-byte archive, $ROUNDS rounds of: ours (info log), ours (--log-level warn), go-static, nginx"
	echo "   $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs; $(lscpu | sed -n 's/^Model name: *//p'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "   each run: wrk -t$THREADS -c$CONNS -d$DURATION --latency -H '$UA' URL"
	# Each round starts one server later than the previous one, so none is
	# always first (right after a pause) or always after the same one.
	local r i k
	local order=(ours-info ours-warn go-static nginx)
	for r in $(seq 0 $((ROUNDS - 1))); do
		for i in 0 1 2 3; do
			k=${order[$(((r + i) % 4))]}
			case "$k" in
			ours-info) run_wrk ours-info "$info_url$ARCHIVE_PATH" "$info_pid" ;;
			ours-warn) run_wrk ours-warn "$warn_url$ARCHIVE_PATH" "$warn_pid" ;;
			go-static) run_wrk go-static "$gostatic_url$ARCHIVE_PATH" "$gs" ;;
			# shellcheck disable=SC2086
			nginx) run_wrk nginx "$nginx_url$ARCHIVE_PATH" $workers ;;
			esac
		done
	done
	local log_bytes=$(($(wc -c <"$work/info.log") - log_before))
	local access_lines
	access_lines=$(grep -c '"message":"request"' "$work/info.log" || true)

	echo
	echo "== summary: $SIZE-byte archive, wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds, load average now $(cut -d' ' -f1-3 /proc/loadavg)"
	echo
	echo "| server | req/s (each run) | req/s (mean) | p50 ms (mean) | p99 ms (mean) | server CPU µs/req | peak RSS |"
	echo "| --- | --- | --- | --- | --- | --- | --- |"
	local nginx_rss=""
	for p in $workers; do nginx_rss+="$(($(hwm_kib "$p") / 1024)) + "; done
	nginx_rss="${nginx_rss% + } MiB (per worker)"
	local label rss
	for label in ours-info ours-warn go-static nginx; do
		case "$label" in
		ours-info) rss="$(($(hwm_kib "$info_pid") / 1024)) MiB" ;;
		ours-warn) rss="$(($(hwm_kib "$warn_pid") / 1024)) MiB" ;;
		go-static) rss="$(($(hwm_kib "$gs") / 1024)) MiB" ;;
		nginx) rss=$nginx_rss ;;
		esac
		awk -v l="$label" -v rss="$rss" '$1 == l {
			n++; rps += $2; p50 += $3; p99 += $4; cpu += $5
			each = each (each == "" ? "" : ", ") sprintf("%.0f", $2) }
		END { printf "| %s | %s | %.0f | %.2f | %.2f | %.0f | %s |\n", l, each, rps / n, p50 / n, p99 / n, cpu / n, rss }' "$work/results"
	done
	echo
	awk '{ s[$1] += $2; n[$1]++ }
	END {
		ni = s["nginx"] / n["nginx"]
		printf "ratio to nginx (req/s means): ours %.2f (info log), ours %.2f (--log-level warn), go-static %.2f\n", s["ours-info"] / n["ours-info"] / ni, s["ours-warn"] / n["ours-warn"] / ni, s["go-static"] / n["go-static"] / ni
	}' "$work/results"
	echo "access log: $access_lines request lines, $((log_bytes / 1024)) KiB written to $work/info.log during the runs"
	echo "nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), workers: $(echo "$workers" | wc -w)"

	kill "$ngx" "$gs" "$info_pid" "$warn_pid" "$up" 2>/dev/null || true
	for p in "$ngx" "$gs" "$info_pid" "$warn_pid" "$up"; do wait "$p" 2>/dev/null || true; done
	pids=()
}

run_miss() {
	need go
	build
	go build -o "$work/miss" ./bench/miss
	local d
	for d in $MISS_DELAYS; do
		echo "== $MISS_N concurrent requests for one missing $SIZE-byte archive, upstream delay $d (fresh registry)"
		"$work/miss" -registry "$work/moonbit-registry" -n "$MISS_N" -size "$SIZE" -delay "$d" \
			-log "$work/miss-$d.log" -timeout 2m | sed 's/^/   /'
	done
}

run_go() {
	need go
	echo "== go test -run '^\$' -bench BenchmarkArchiveHit -benchtime $BENCHTIME ./e2e/"
	go test -run '^$' -bench BenchmarkArchiveHit -benchtime "$BENCHTIME" ./e2e/ 2>&1 | grep -v '^ *{'
}

for m in "${modes[@]}"; do
	case "$m" in
	hit) run_hit ;;
	miss) run_miss ;;
	go) run_go ;;
	esac
done
