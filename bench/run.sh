#!/usr/bin/env bash
# Reproducible benchmarks of the registry binary, on loopback only.
#
#   bench/run.sh                 # hit (vs nginx) and miss
#   bench/run.sh speed           # every speed goal side by side, one table
#   bench/run.sh hit             # cache hits: ours vs nginx on the same files
#   bench/run.sh miss            # 100 concurrent requests for one missing archive
#   bench/run.sh go              # the Go benchmark (BenchmarkArchiveHit)
#   bench/run.sh --install [...] # first apt-get install wrk and nginx
#
# hit: starts the test upstream (e2e/upstream) with one archive padded to
# SIZE bytes and a registry on a fresh root ("ours", default settings: one
# access-log line a request, to its log file), warms its cache with one
# request, then serves that very file (same /user/<owner>/<rest>/<version>.zip
# path) from four more servers: nginx on the store directory
# (bench/nginx-static.conf: worker_processes auto, sendfile, access_log off),
# deploy/nginx-front.conf as it is in front of ours (hits from the store,
# misses to ours), bench/gostatic (plain net/http: os.Open and
# http.ServeContent, nothing else; what a Go server gets without any work of
# its own) and, with BASELINE=<binary>, a second registry running that
# binary (say, one built from an older commit). Then ROUNDS times: wrk on
# each, each round starting one server later, so load noise from other
# processes hits all of them. It prints each run, the means, the ratios the
# speed goals name (ours / go-static, nginx-front / nginx), the CPU time
# each server spent per request, the peak RSS (VmHWM, reset after the
# warm-up) and how many requests reached ours during nginx-front's runs.
#
# speed: the e2e Go benchmarks BenchmarkArchiveMiss10MiB (first byte and
# whole archive of a 10 MiB miss vs straight from upstream),
# BenchmarkMirrorAll (mirror --all of every snapshot version vs upstream
# serving them) and BenchmarkIndexFreshness (a version published upstream
# until a client pulling through us sees it), each also against BASELINE
# when given, then hit (above, with BASELINE too), and a summary table of
# every ratio beside its goal, with date and machine: the README's
# Benchmarks table is this table.
#
# miss: bench/miss (go run ./bench/miss -h) fires MISS_N requests at once
# for one archive a fresh registry does not have, once per upstream delay in
# MISS_DELAYS, and prints the wall time, the number of full 200 answers, the
# requests the upstream got for that archive and the registry's peak RSS.
#
# Environment: SIZE (bytes, default 102400), THREADS (2), CONNS (64),
# DURATION (10s), ROUNDS (4), MISS_N (100), MISS_DELAYS ("0 200ms"),
# BENCHTIME (go, 5s), NGINX (path of nginx), BASELINE (hit), KEEP=1 keeps the work
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
	hit | miss | go | speed) modes+=("$a") ;;
	wrk) modes+=(hit) ;; # the old name
	-h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "usage: $0 [--install] [speed|hit|miss|go]..." >&2; exit 2 ;;
	esac
done
[ ${#modes[@]} -gt 0 ] || modes=(hit miss)

# The Go benchmarks run in e2e/: the baseline's path must not be relative.
if [ -n "${BASELINE:-}" ]; then
	[ -x "$BASELINE" ] && [ -f "$BASELINE" ] || { echo "BASELINE=$BASELINE is not an executable file" >&2; exit 2; }
	BASELINE=$(realpath "$BASELINE")
fi

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

# free_port: a loopback port nothing listens on right now, below the
# kernel's ephemeral range (where wrk's and our own outgoing connections
# take ports that cannot be bound, though nothing listens on them).
free_port() {
	local p low high from=20000 span=10000
	read -r low high </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || { low=32768 high=60999; }
	if [ "$low" -gt 11000 ]; then
		from=10000 span=$((low - 10000))
	elif [ "$high" -lt 64000 ]; then
		from=$((high + 1)) span=$((65000 - high))
	fi
	for _ in $(seq 1 100); do
		p=$((from + RANDOM % span))
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

# start_registry NAME LEVEL UPSTREAM_BASE [BINARY]: a registry (the one
# built from this tree unless BINARY is given) on a fresh root $work/NAME;
# sets REG_PID and REG_URL. Its log (stdout and stderr) goes to
# $work/NAME.log, never to the terminal.
start_registry() {
	local name=$1 level=$2 base=$3 bin=${4:-$work/moonbit-registry} port
	port=$(free_port)
	MOONBIT_REGISTRY_UPSTREAM_INDEX_URL="$base/git/index" \
		MOONBIT_REGISTRY_UPSTREAM_DOWNLOAD_URL="$base" \
		MOONBIT_REGISTRY_UPSTREAM_API_URL="$base" \
		"$bin" --dir "$work/$name" --log-format json --log-level "$level" \
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

# access_lines LOG: how many requests a registry has logged so far (its
# access log is buffered: flushed at least once a second).
access_lines() {
	sleep 1.2
	grep -c '"message":"request"' "$1" || true
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

# start_nginx NAME CONF: runs nginx with CONF (its `listen 8080;` moved to
# a free port, pid, temporary and log files under $work/NAME); sets NGX_PID
# and NGX_URL.
start_nginx() {
	local name=$1 conf=$2 port prefix="$work/$1"
	port=$(free_port)
	mkdir -p "$prefix/tmp"
	# The user directive only makes sense when started as root: workers
	# keep the caller's identity, so they can read the private work dir.
	{
		[ "$(id -u)" = 0 ] && echo "user $(id -un) $(id -gn);"
		echo "daemon off;"
		echo "pid $prefix/nginx.pid;"
		sed -e "s|^\([[:space:]]*\)listen 8080;|\1listen 127.0.0.1:$port;|" \
			-e "s|^http {|http {\n\tclient_body_temp_path $prefix/tmp/body;\n\tproxy_temp_path $prefix/tmp/proxy;\n\tfastcgi_temp_path $prefix/tmp/fastcgi;\n\tuwsgi_temp_path $prefix/tmp/uwsgi;\n\tscgi_temp_path $prefix/tmp/scgi;|" \
			"$conf"
	} >"$prefix/nginx.conf"
	grep -q "listen 127.0.0.1:$port;" "$prefix/nginx.conf" || { echo "$conf has no 'listen 8080;'" >&2; return 1; }
	"$NGINX" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" >"$prefix/out" 2>&1 &
	NGX_PID=$!
	pids+=("$NGX_PID")
	NGX_URL="http://127.0.0.1:$port"
	# Its master listens before its workers start: wait for an answer,
	# then for all the workers (worker_processes auto: one per CPU).
	wait_http "$NGX_PID" "$NGX_URL$ARCHIVE_PATH" || { cat "$prefix/out" "$prefix/error.log" >&2; return 1; }
	NGX_WORKERS=""
	for _ in $(seq 1 100); do
		NGX_WORKERS=$(pgrep -P "$NGX_PID" | tr '\n' ' ' || true)
		[ "$(echo "$NGX_WORKERS" | wc -w)" -ge "$(nproc)" ] && return 0
		sleep 0.1
	done
	echo "nginx started $(echo "$NGX_WORKERS" | wc -w) workers, want $(nproc)" >&2
	return 1
}

# hit_ratios RESULTS: the ratios of req/s means the issue's goals name.
hit_ratios() {
	awk '{ s[$1] += $2; n[$1]++ }
	END {
		for (k in s) m[k] = s[k] / n[k]
		printf "ratio ours / go-static: %.2f\n", m["ours"] / m["go-static"]
		printf "ratio ours / nginx: %.2f\n", m["ours"] / m["nginx"]
		printf "ratio nginx-front / nginx: %.2f\n", m["nginx-front"] / m["nginx"]
		if ("baseline" in m) {
			printf "ratio baseline / go-static: %.2f\n", m["baseline"] / m["go-static"]
			printf "ratio baseline / nginx: %.2f\n", m["baseline"] / m["nginx"]
		}
	}' "$1"
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

	local -A url procs
	local servers=(ours)
	start_registry ours info "$base"
	url[ours]=$REG_URL procs[ours]=$REG_PID
	if [ -n "${BASELINE:-}" ]; then
		start_registry baseline info "$base" "$BASELINE"
		url[baseline]=$REG_URL procs[baseline]=$REG_PID
		servers+=(baseline)
	fi

	# Warm the caches with the one-segment URL moon clients send.
	local s got sum
	for s in "${servers[@]}"; do
		got=$(curl -fsS -A mooncake/0.1.0 -o /dev/null -w '%{size_download}' "${url[$s]}/user/${MODULE//\//%2F}%2F$VERSION.zip")
		[ "$got" = "$SIZE" ] || { echo "warm-up of ${url[$s]} got $got bytes, want $SIZE" >&2; return 1; }
	done
	local store="$work/ours/data/packages"
	local file="$store/$MODULE/$VERSION.zip"
	[ -f "$file" ] || { echo "no cached file at $file" >&2; return 1; }

	sed -e "s|@ROOT@|$store|g" bench/nginx-static.conf >"$work/nginx-static.conf"
	start_nginx nginx "$work/nginx-static.conf"
	url[nginx]=$NGX_URL procs[nginx]=$NGX_WORKERS

	# deploy/nginx-front.conf as it is, in front of ours, on ours's store.
	sed -e "s|server 127.0.0.1:8081;|server ${url[ours]#http://};|" \
		-e "s|alias /var/lib/moonbit-registry/data/packages/;|alias $store/;|" \
		deploy/nginx-front.conf >"$work/nginx-front.conf"
	start_nginx nginx-front "$work/nginx-front.conf"
	url[nginx-front]=$NGX_URL procs[nginx-front]=$NGX_WORKERS

	local gport
	gport=$(free_port)
	"$work/gostatic" -root "$store" -listen "127.0.0.1:$gport" >"$work/gostatic.out" 2>&1 &
	procs[go-static]=$!
	pids+=("${procs[go-static]}")
	url[go-static]="http://127.0.0.1:$gport"
	wait_http "${procs[go-static]}" "${url[go-static]}$ARCHIVE_PATH" || { cat "$work/gostatic.out" >&2; return 1; }
	servers+=(go-static nginx nginx-front)

	# Same bytes from all of them, through the plain-slash path wrk uses.
	local want
	want=$(sha256sum <"$file" | cut -d' ' -f1)
	for s in "${servers[@]}"; do
		sum=$(curl -fsS -A mooncake/0.1.0 "${url[$s]}$ARCHIVE_PATH" | sha256sum | cut -d' ' -f1)
		[ "$sum" = "$want" ] || { echo "$s ${url[$s]}$ARCHIVE_PATH: sha256 $sum, want $want" >&2; return 1; }
	done
	# nginx-front must serve every hit itself: ours sees none of its runs.
	local front_leaks=0 before

	local p
	for s in "${servers[@]}"; do
		for p in ${procs[$s]}; do reset_hwm "$p"; done
	done

	echo "== cache hits, $SIZE-byte archive, $ROUNDS rounds of: ${servers[*]}"
	echo "   $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs; $(lscpu | sed -n 's/^Model name: *//p'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "   each run: wrk -t$THREADS -c$CONNS -d$DURATION --latency -H '$UA' URL"
	# Each round starts one server later than the previous one, so none is
	# always first (right after a pause) or always after the same one.
	local r i k n=${#servers[@]}
	for r in $(seq 0 $((ROUNDS - 1))); do
		for i in $(seq 0 $((n - 1))); do
			k=${servers[$(((r + i) % n))]}
			[ "$k" != nginx-front ] || before=$(access_lines "$work/ours.log")
			# shellcheck disable=SC2086
			run_wrk "$k" "${url[$k]}$ARCHIVE_PATH" ${procs[$k]}
			[ "$k" != nginx-front ] || front_leaks=$((front_leaks + $(access_lines "$work/ours.log") - before))
		done
	done

	echo
	echo "== summary: $SIZE-byte archive, wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds, load average now $(cut -d' ' -f1-3 /proc/loadavg)"
	echo
	echo "| server | req/s (each run) | req/s (mean) | p50 ms (mean) | p99 ms (mean) | server CPU µs/req | peak RSS |"
	echo "| --- | --- | --- | --- | --- | --- | --- |"
	local rss
	for s in "${servers[@]}"; do
		rss=""
		for p in ${procs[$s]}; do rss+="$(($(hwm_kib "$p") / 1024)) + "; done
		rss="${rss% + } MiB"
		awk -v l="$s" -v rss="$rss" '$1 == l {
			n++; rps += $2; p50 += $3; p99 += $4; cpu += $5
			each = each (each == "" ? "" : ", ") sprintf("%.0f", $2) }
		END { printf "| %s | %s | %.0f | %.2f | %.2f | %.0f | %s |\n", l, each, rps / n, p50 / n, p99 / n, cpu / n, rss }' "$work/results"
	done
	echo
	hit_ratios "$work/results"
	echo "requests that reached ours during nginx-front's runs: $front_leaks (it serves hits from the store)"
	echo "nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), workers: $(echo "${procs[nginx]}" | wc -w) (static), $(echo "${procs[nginx-front]}" | wc -w) (front)"
	cleanup_servers
}

# cleanup_servers stops what a mode started (the work directory stays).
cleanup_servers() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
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

# go_bench NAME BENCHTIME BINARY: runs one e2e Go benchmark against the
# registry BINARY and prints its log lines and metrics; the output is kept
# in $work/go-NAME[-baseline].txt. The e2e test binary is built once, so
# no side's run comes right after a build's writes.
go_bench() {
	local name=$1 benchtime=$2 bin=$3 out="$work/go-$1"
	[ "$bin" = "$work/moonbit-registry" ] || out+="-baseline"
	out+=".txt"
	[ -x "$work/e2e.test" ] || go test -c -o "$work/e2e.test" ./e2e/
	(cd e2e && MOONBIT_REGISTRY_E2E_BINARY=$bin "$work/e2e.test" -test.run '^$' -test.bench "^$name\$" \
		-test.benchtime "$benchtime" -test.timeout 30m) >"$out" 2>&1 || { cat "$out" >&2; return 1; }
	grep -E "^(Benchmark|    [a-z_]+_test.go)" "$out" | sed 's/^ */   /'
}

# metric FILE UNIT: the value a Go benchmark reported with UNIT.
metric() { awk -v u="$2" '/^Benchmark/ { for (i = 3; i < NF; i++) if ($(i + 1) == u) print $i }' "$1" | tail -1; }

# run_speed: every row of the speed goals side by side, each as a ratio
# from one run (hit: wrk; misses, mirror and freshness: the e2e Go
# benchmarks), ours and with BASELINE=<binary> the baseline's, then one
# summary table.
run_speed() {
	need go curl wrk nginx sha256sum git
	build
	local machine
	machine="$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(lscpu | sed -n 's/^Model name: *//p')), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg)"
	local sides=(ours)
	[ -n "${BASELINE:-}" ] && sides+=(baseline)
	# The Go benchmarks first, by benchmark, then by side, so each side's
	# run comes after the same kind of work: run after the two minutes of
	# wrk, the first one's misses took half as long again, even after a
	# sync and a pause.
	go test -c -o "$work/e2e.test" ./e2e/
	sync
	# Whatever benchmark ran first was slower by a third (alone, in
	# alternation, both sides are equal): one run of it first, not counted.
	(cd e2e && MOONBIT_REGISTRY_E2E_BINARY=$work/moonbit-registry "$work/e2e.test" -test.run '^$' \
		-test.bench '^BenchmarkArchiveMiss10MiB$' -test.benchtime 1x) >"$work/go-warm-up.txt" 2>&1 ||
		{ cat "$work/go-warm-up.txt" >&2; return 1; }
	local side bin bench what
	for bench in BenchmarkArchiveMiss10MiB:3x BenchmarkMirrorAll:3x BenchmarkIndexFreshness:1x; do
		case "${bench%%:*}" in
		BenchmarkArchiveMiss10MiB) what="miss of a 10 MiB archive vs straight from upstream" ;;
		BenchmarkMirrorAll) what="mirror --all vs upstream serving the same archives" ;;
		BenchmarkIndexFreshness) what="a version published upstream, seen by a client pulling through us" ;;
		esac
		for side in "${sides[@]}"; do
			bin=$work/moonbit-registry
			[ "$side" = baseline ] && bin=$BASELINE
			# ext4 finds free inodes slowly for about 30 s after many
			# files were deleted (the previous mirror run's roots).
			[ "${bench%%:*}" != BenchmarkMirrorAll ] || sleep 35
			echo
			echo "== $side: $what (${bench%%:*})"
			go_bench "${bench%%:*}" "${bench##*:}" "$bin"
		done
	done
	echo
	run_hit
	speed_summary "$machine"
}

# speed_summary MACHINE: the summary table of run_speed, from the results
# and benchmark outputs in $work.
speed_summary() {
	local machine=$1 g="$work/go" r="$work/results"
	hitratio() { awk -v a="$1" -v b="$2" '{ s[$1] += $2; n[$1]++ } END { if (n[a] && n[b]) printf "%.2f", s[a] / n[a] / (s[b] / n[b]); else printf "-" }' "$r"; }
	col() { # col SIDE SUFFIX: one side's figures, |-separated
		local f="$g-BenchmarkArchiveMiss10MiB$2.txt" m="$g-BenchmarkMirrorAll$2.txt" i="$g-BenchmarkIndexFreshness$2.txt"
		echo "$(hitratio "$1" go-static)|$(metric "$f" first-byte-ratio)|$(metric "$f" total-ratio)|$(metric "$m" ratio-to-upstream)|$(metric "$i" worst-s)|$(metric "$i" looks/min)"
	}
	local now base=""
	now=$(col ours "")
	[ -n "${BASELINE:-}" ] && base=$(col baseline -baseline)
	echo
	echo "== summary: $machine"
	echo
	if [ -n "$base" ]; then
		echo "| path | baseline | now | goal |"
		echo "| --- | --- | --- | --- |"
	else
		echo "| path | now | goal |"
		echo "| --- | --- | --- |"
	fi
	local i=1 label unit goal
	cell() { awk -v v="$1" -v u="$2" 'BEGIN { if (v == "" || v == "-") print "-"; else printf "%.2f%s", v, u }'; }
	while IFS='|' read -r label unit goal; do
		if [ -n "$base" ]; then
			echo "| $label | $(cell "$(echo "$base" | cut -d'|' -f$i)" "$unit") | $(cell "$(echo "$now" | cut -d'|' -f$i)" "$unit") | $goal |"
		else
			echo "| $label | $(cell "$(echo "$now" | cut -d'|' -f$i)" "$unit") | $goal |"
		fi
		i=$((i + 1))
	done <<'ROWS'
cache hit, req/s vs bare net/http (bench/gostatic)|x|>= 0.95x
miss of 10 MiB, first byte vs direct|x|<= 2x
miss of 10 MiB, whole archive vs direct|x|<= 1.3x
mirror --all (6,548 archives) vs upstream's own time|x|<= 2x
published upstream to a client's pull through us, worst of 3| s|<= 15 s
upstream tip checks meanwhile|/min|bounded (check_interval 10 s: at most 6/min)
ROWS
	echo "| nginx-front (deploy/nginx-front.conf) vs nginx on the store, req/s | $([ -n "$base" ] && echo "- | ")$(hitratio nginx-front nginx)x | >= 0.95x |"
	# Not a goal: how far mirror is from what storing the same files
	# durably costs this disk alone (BenchmarkMirrorAll's disk floor).
	local fb="" fn
	fn=$(metric "$g-BenchmarkMirrorAll.txt" ratio-to-disk-floor)
	[ -n "$base" ] && fb="$(cell "$(metric "$g-BenchmarkMirrorAll-baseline.txt" ratio-to-disk-floor)" x) | "
	echo "| mirror --all vs this disk's floor (the same files written, fsynced, renamed; nothing fetched) | $fb$(cell "$fn" x) | - |"
	echo
	echo "(hit: wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds, $SIZE-byte archive, ratio of req/s means; the other rows: medians; figures above)"
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
	speed) run_speed ;;
	esac
done
