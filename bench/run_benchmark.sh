#!/usr/bin/env bash
# heavyread benchmark suite (`make bench`).
#
# Starts a private local stack (its own redis-server on a free port, the
# writer, readers, nginx, the axum + Redis baseline and the syscall floor),
# seeds it, runs every measurement of the suite, and writes
# bench/benchmark-report.md with SVG plots in bench/plots/ and raw results
# (JSON, git-ignored) in bench/out/results/.
#
# The run holds a CPU latency request (CPU_DMA_LATENCY below), as low-latency
# deployments do, for every server and baseline alike; the report records it
# and one propagation run without it.
#
# Redis runs with appendonly yes. Before each propagation rate and each
# writer run, the tools have it rewrite its AOF and wait (--redis-url), so
# its automatic rewrite does not start by chance inside a measured run; each
# run records the rewrites that still overlapped it.
#
#   bench/run_benchmark.sh           full run (about 10 minutes on 2 CPUs)
#   bench/run_benchmark.sh --smoke   tiny sizes, about a minute; fails unless
#                                    every step produced numbers (CI)
#   STEPS=bounded bench/run_benchmark.sh --smoke   one step (and the setup) only
#
# Settings (environment; full-run defaults, smoke defaults in brackets):
#   STEPS="read propagation writes memory bounded"   steps to run: read (sections
#                             1-3 and 7), propagation (4), writes (8), memory (5-6),
#                             bounded (9, issue 8); report --check judges only these
#   N=100000 [2000]           posts seeded for the read runs
#   BIG_N=1000000 [5000]      posts for the memory and cold-start runs
#   BODY_LEN=350              mean JSON body size in bytes
#   DURATION=10 [2]           measured seconds per wrk run
#   WARMUP=2 [1]              unmeasured seconds before each wrk run
#   CONNECTIONS=64            wrk connections
#   PIPELINE_DEPTH=16         requests per write in the pipelined runs
#   HOT_IDS=64                posts the reader's hot-set runs read (ids drawn
#                             from the first HOT_IDS only: every lookup hits the
#                             CPU caches), beside its runs over all N
#   HOT_ROUNDS=3 [1]          rounds of HOT_SECS=4 [1] s runs, the reader over
#                             all N posts and over the hot set and the syscall
#                             floor, back to back in alternating order: the
#                             report takes the reader's CPU above the floor and
#                             the share of it that is cache misses from their
#                             median differences
#   LOAD_SHARE=0.8            share of each server's maximum rate offered by
#                             the open-loop latency runs (section 2b)
#   PROP_RATES="1000 5000 10000"   propagation write rates (writes/s)
#   PROP_SECS=10 [1]          seconds per propagation rate
#   PROP_TRACK_RATE=1000      above this many writes/s, track only a sample of
#                             writes to the readers (polling costs CPU too)
#   CPU_DMA_LATENCY=0         CPU latency request (µs, PM QoS through
#                             /dev/cpu_dma_latency) held for the whole run, so
#                             idle CPUs poll instead of halting (a halt on a VM
#                             is an exit to the hypervisor); off: none held.
#                             Needs root; without it, none is held.
#   PROP_IDLE_RATE=5000       one more propagation run at this rate with the
#                             request released, for comparison (empty: none)
#   BW_REQUESTS=200000 [5000] requests per bandwidth run
#   WRITE_SECS=5 [1]          seconds of /create
#   BULK_N=100000 [5000]      posts in the /bulk throughput run
#   COLD_RUNS=3 [1]           reader cold starts timed
#   BOUNDED_N=N [30000]       posts of the bounded-memory step (its own prefix);
#                             10% of their accounted bytes must reach the
#                             reader's 1 MiB minimum budget
#   ZIPF_S=0.99               Zipf skew of the bounded-memory load
#   HIT_ROUNDS=5 [1]          rounds of the CPU-per-hit comparison (median of
#                             the rounds' bounded ÷ unbounded ratios)
#   SERVER_CPU=0 CLIENT_CPU=1 CPUs for the pinned runs
#   SKIP_BUILD=1              use the binaries already in target/release
#   READER_BIN, WRITER_BIN    other reader / writer binaries (default: target/release)
#   KEEP=1                    keep the temporary folder (logs, static files)
#   RESULTS, REPORT, PLOTS    where results, the report and the plots go
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

SMOKE=0
for arg in "$@"; do
    case "$arg" in
        --smoke) SMOKE=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.."
ROOT=$PWD

if [ "$SMOKE" = 1 ]; then
    : "${N:=2000}" "${BIG_N:=5000}" "${DURATION:=2}" "${WARMUP:=1}" "${PROP_SECS:=1}"
    : "${BW_REQUESTS:=5000}" "${WRITE_SECS:=1}" "${BULK_N:=5000}" "${COLD_RUNS:=1}"
    : "${BOUNDED_N:=30000}" "${HIT_ROUNDS:=1}" "${HOT_ROUNDS:=1}" "${HOT_SECS:=1}"
else
    : "${N:=100000}" "${BIG_N:=1000000}" "${DURATION:=10}" "${WARMUP:=2}" "${PROP_SECS:=10}"
    : "${BW_REQUESTS:=200000}" "${WRITE_SECS:=5}" "${BULK_N:=100000}" "${COLD_RUNS:=3}"
    : "${BOUNDED_N:=$N}" "${HIT_ROUNDS:=5}" "${HOT_ROUNDS:=3}" "${HOT_SECS:=4}"
fi
: "${ZIPF_S:=0.99}"
ALL_STEPS="read propagation writes memory bounded"
: "${STEPS:=$ALL_STEPS}"
for st in $STEPS; do
    case " $ALL_STEPS " in
        *" $st "*) ;;
        *) echo "STEPS: unknown step $st (steps: $ALL_STEPS)" >&2; exit 2 ;;
    esac
done
# step NAME: whether NAME is one of STEPS.
step() { case " $STEPS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
: "${BODY_LEN:=350}" "${CONNECTIONS:=64}" "${PIPELINE_DEPTH:=16}" "${HOT_IDS:=64}" "${PROP_RATES:=1000 5000 10000}"
: "${PROP_TRACK_RATE:=1000}" "${LOAD_SHARE:=0.8}"
# A hot set larger than the posts seeded would ask for posts that do not exist.
[ "$HOT_IDS" -gt "$N" ] && HOT_IDS=$N
: "${CPU_DMA_LATENCY=0}" "${PROP_IDLE_RATE=5000}"
case "$CPU_DMA_LATENCY" in
    off | '') CPU_DMA_LATENCY=off ;;
    *[!0-9]*) echo "CPU_DMA_LATENCY: a number of µs or off, not $CPU_DMA_LATENCY" >&2; exit 2 ;;
esac
: "${SERVER_CPU:=0}" "${CLIENT_CPU:=1}"

# nginx keeps one open file per cached post, and every server here one per
# connection: raise the open-file limit (root may go past the hard limit).
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# Where the hard limit cannot be raised (a container without CAP_SYS_RESOURCE),
# nginx's file cache must fit under it, with room for connections.
NOFILE=$(ulimit -n)

WORK=$(mktemp -d /tmp/heavyread-bench.XXXXXX)
chmod 755 "$WORK"
LOGS=$WORK/logs
mkdir -p "$LOGS"
if [ "$SMOKE" = 1 ]; then
    : "${RESULTS:=$WORK/results}" "${REPORT:=$WORK/benchmark-report.md}" "${PLOTS:=$WORK/plots}"
else
    : "${RESULTS:=$ROOT/bench/out/results}" "${REPORT:=$ROOT/bench/benchmark-report.md}" "${PLOTS:=$ROOT/bench/plots}"
fi
mkdir -p "$RESULTS" "$PLOTS"
rm -f "$RESULTS"/*.json "$RESULTS"/settings.txt

BIN=$ROOT/target/release
BENCH=$BIN/heavyread-bench
READER=${READER_BIN:-$BIN/heavyread-reader}
WRITER=${WRITER_BIN:-$BIN/heavyread-writer}
WRK_DIR=$ROOT/bench/wrk
NCPU=$(nproc)

# ---- process bookkeeping: everything started here is stopped on exit ----
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[i]}" 2>/dev/null || true
    done
    for ((i = 0; i < 50; i++)); do
        local alive=0 p
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    if [ "$rc" != 0 ] || [ "${KEEP:-0}" = 1 ]; then
        echo "logs and files kept in $WORK" >&2
        if [ "$rc" != 0 ]; then
            for f in "$LOGS"/*.log; do
                [ -s "$f" ] && { echo "--- tail of $f" >&2; tail -n 15 "$f" >&2; }
            done
        fi
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: runs CMD in the background, logs to $LOGS/NAME.log, sets PID.
start() {
    local name=$1
    shift
    "$@" >"$LOGS/$name.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
}

# stop PID: SIGTERM, wait up to 10 s, then SIGKILL; forgets the pid.
stop() {
    local pid=$1 i rest=()
    for i in "${PIDS[@]}"; do [ "$i" != "$pid" ] && rest+=("$i"); done
    PIDS=("${rest[@]}")
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# wait_http URL [SECONDS]: until URL answers 2xx.
wait_http() {
    local url=$1 limit=${2:-60} t=0
    until curl -sf -o /dev/null "$url"; do
        sleep 0.05
        t=$((t + 1))
        if [ "$t" -gt $((limit * 20)) ]; then
            echo "timed out waiting for $url" >&2
            return 1
        fi
    done
}

free_port() { "$BENCH" free-port; }
section() { printf '\n== %s\n' "$*"; }

# wrk_run LABEL SERVER_TEXT ADDR SCRIPT PINNED(yes|no) THREADS PIPELINE PID... -- ENV...
wrk_run() {
    local label=$1 text=$2 addr=$3 script=$4 pinned=$5 threads=$6 pipeline=$7
    shift 7
    local args=(wrk --label "$label" --server "$text" --addr "$addr" --script "$WRK_DIR/$script"
        --connections "$CONNECTIONS" --threads "$threads" --secs "$DURATION" --warmup "$WARMUP"
        --pipeline "$pipeline" --json "$RESULTS/$label.json"
        --env "HR_IDS=$N" --env "HR_DEPTH=$PIPELINE_DEPTH")
    [ "$pinned" = yes ] && args+=(--cpus "$CLIENT_CPU")
    while [ $# -gt 0 ] && [ "$1" != -- ]; do args+=(--pid "$1"); shift; done
    [ $# -gt 0 ] && shift
    local e
    for e in "$@"; do args+=(--env "$e"); done
    "$BENCH" "${args[@]}"
}

# Files nginx's open_file_cache may hold: every cached file holds a
# descriptor, so the cache stays under half the open-file limit.
nginx_cache_max() {
    local max=$((N + 1000))
    [ "$max" -gt $((NOFILE / 2)) ] && max=$((NOFILE / 2))
    echo "$max"
}

# nginx_start NAME WORKERS PINNED(yes|no): nginx serving $WORK/static; sets PID and ADDR.
nginx_start() {
    local name=$1 workers=$2 pinned=$3 dir=$WORK/$1 port
    port=$(free_port)
    mkdir -p "$dir/tmp"
    local affinity="" user="" cache_max
    cache_max=$(nginx_cache_max)
    [ "$pinned" = yes ] && affinity="worker_cpu_affinity $((1 << SERVER_CPU));"
    [ "$(id -u)" = 0 ] && user="user $(id -un) $(id -gn);"
    cat >"$dir/nginx.conf" <<EOF
# The static-file baseline: the same bodies as the readers, as files.
$user
worker_processes $workers;
worker_rlimit_nofile $NOFILE;
$affinity
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    # Bodies are ~350 bytes: one writev per answer beats writev + sendfile, and
    # tcp_nopush (TCP_CORK) would hold pipelined answers until the client's
    # delayed ACK (40 ms).
    sendfile off;
    tcp_nopush off;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 1000000000;
    open_file_cache max=$cache_max inactive=600s;
    open_file_cache_valid 600s;
    open_file_cache_min_uses 1;
    open_file_cache_errors on;
    default_type application/json;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server {
        listen 127.0.0.1:$port backlog=4096;
        root $WORK/static;
        location = /post {
            if (\$arg_id !~ "^[A-Za-z0-9._~-]{1,128}\$") { return 400; }
            add_header Cache-Control no-cache;
            try_files /posts/\$arg_id.json =404;
        }
        location = /ready { return 200 "ok\n"; }
    }
}
EOF
    if [ "$pinned" = yes ]; then
        start "$name" taskset -c "$SERVER_CPU" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
    else
        start "$name" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
    fi
    ADDR=127.0.0.1:$port
    wait_http "http://$ADDR/ready"
    # nginx is the same content: check one body byte for byte against Redis's copy.
    cmp -s <(curl -sf "http://$ADDR/post?id=post-0") "$WORK/static/posts/post-0.json" \
        || { echo "nginx does not serve the exported body" >&2; return 1; }
}

# reader_start NAME CPUS(or "") ARGS...: sets PID and ADDR.
reader_start() {
    local name=$1 cpus=$2 port
    shift 2
    port=$(free_port)
    ADDR=127.0.0.1:$port
    if [ -n "$cpus" ]; then
        start "$name" env RUST_LOG=warn taskset -c "$cpus" "$READER" --listen "$ADDR" --redis-url "$REDIS_URL" "$@"
    else
        start "$name" env RUST_LOG=warn "$READER" --listen "$ADDR" --redis-url "$REDIS_URL" "$@"
    fi
    wait_http "http://$ADDR/ready" 120
}

# axum_start NAME WORKERS CPUS(or ""): sets PID and ADDR.
axum_start() {
    local name=$1 workers=$2 cpus=$3 port
    port=$(free_port)
    ADDR=127.0.0.1:$port
    local cmd=("$BENCH" baseline-axum --listen "$ADDR" --redis-url "$REDIS_URL" --workers "$workers")
    if [ -n "$cpus" ]; then
        start "$name" taskset -c "$cpus" "${cmd[@]}"
    else
        start "$name" "${cmd[@]}"
    fi
    wait_http "http://$ADDR/ready"
}

# floor_start NAME CPUS: the syscall floor (one fixed answer to every request
# head, one recv and one send per read), pinned to CPUS; sets PID and ADDR.
floor_start() {
    local name=$1 cpus=$2 port
    port=$(free_port)
    ADDR=127.0.0.1:$port
    start "$name" taskset -c "$cpus" "$BENCH" floor --listen "$ADDR" --body-len "$BODY_LEN"
    # It answers any request, /ready too.
    wait_http "http://$ADDR/ready"
}

# hold_cpu_latency / release_cpu_latency: a process holding /dev/cpu_dma_latency
# open with CPU_DMA_LATENCY written keeps idle CPUs in states no slower to
# leave than that; the kernel drops the request when the file closes. The
# holder ends within a second of this script, however it ends.
QOS_PID=
hold_cpu_latency() {
    [ "$CPU_DMA_LATENCY" = off ] && return 0
    if ! [ -w /dev/cpu_dma_latency ]; then
        echo "note: /dev/cpu_dma_latency is not writable (root only): no CPU latency request held" >&2
        return 0
    fi
    local parent=$$
    (
        exec 3>/dev/cpu_dma_latency
        # The kernel reads a write of exactly 4 bytes as a binary s32 and
        # anything else as hex text: 8 hex digits are never 4 bytes.
        printf '%08x\n' "$CPU_DMA_LATENCY" >&3
        while kill -0 "$parent" 2>/dev/null; do sleep 1 3>&-; done
    ) &
    QOS_PID=$!
    PIDS+=("$QOS_PID")
    sleep 0.2
}
release_cpu_latency() {
    [ -n "$QOS_PID" ] && stop "$QOS_PID"
    QOS_PID=
}

ALL_CPUS=0-$((NCPU - 1))
pin_redis() { taskset -a -p -c "$1" "$REDIS_PID" >/dev/null; }

# ---------------------------------------------------------------- setup
section "setup ($([ "$SMOKE" = 1 ] && echo smoke || echo full) run; work folder $WORK)"
ops/install-deps.sh bench
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    # One package per invocation, as in the Makefile: built together, cargo
    # would unify features and link the writer's tokio into the reader.
    for pkg in heavyread-reader heavyread-writer heavyread-bench; do
        cargo build --release --locked -p "$pkg"
    done
fi
if [ "$NCPU" -lt 2 ]; then
    echo "note: $NCPU CPU: server and wrk share it in the pinned runs" >&2
    SERVER_CPU=0 CLIENT_CPU=0
fi

RESULTS_REL=${RESULTS#"$ROOT"/}
hold_cpu_latency
cat >"$RESULTS/settings.txt" <<EOF
MODE=$([ "$SMOKE" = 1 ] && echo smoke || echo full)
N=$N
BIG_N=$BIG_N
BODY_LEN=$BODY_LEN
DURATION=$DURATION
WARMUP=$WARMUP
CONNECTIONS=$CONNECTIONS
PIPELINE_DEPTH=$PIPELINE_DEPTH
HOT_IDS=$HOT_IDS
HOT_ROUNDS=$HOT_ROUNDS
HOT_SECS=$HOT_SECS
PROP_RATES=$PROP_RATES
LOAD_SHARE=$LOAD_SHARE
PROP_SECS=$PROP_SECS
PROP_TRACK_RATE=$PROP_TRACK_RATE
BW_REQUESTS=$BW_REQUESTS
WRITE_SECS=$WRITE_SECS
BULK_N=$BULK_N
COLD_RUNS=$COLD_RUNS
BOUNDED_N=$BOUNDED_N
ZIPF_S=$ZIPF_S
HIT_ROUNDS=$HIT_ROUNDS
STEPS=$STEPS
SERVER_CPU=$SERVER_CPU
CLIENT_CPU=$CLIENT_CPU
NOFILE=$NOFILE
NGINX_FILE_CACHE=$(nginx_cache_max)
CPU_DMA_LATENCY=$([ -n "$QOS_PID" ] && echo "$CPU_DMA_LATENCY µs, held for the whole run (released for the comparison run at PROP_IDLE_RATE)" || echo "none held")
PROP_IDLE_RATE=${PROP_IDLE_RATE:-none}
REDIS=appendonly yes, appendfsync everysec, save off, otherwise defaults; AOF rewritten (BGREWRITEAOF, waited for) before each propagation rate and each writer run
RESULTS=$RESULTS_REL
EOF
"$BENCH" machine --json "$RESULTS/run.json"

REDIS_PORT=$(free_port)
REDIS_URL=redis://127.0.0.1:$REDIS_PORT
mkdir -p "$WORK/redis"
start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/redis" \
    --save "" --appendonly yes --appendfsync everysec --daemonize no
REDIS_PID=$PID
for _ in $(seq 200); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
redis-cli -p "$REDIS_PORT" ping >/dev/null

WRITER_PORT=$(free_port)
WRITER_ADDR=127.0.0.1:$WRITER_PORT
start writer env RUST_LOG=warn HEAVYREAD_WRITER_LISTEN="$WRITER_ADDR" HEAVYREAD_REDIS_URL="$REDIS_URL" "$WRITER"
WRITER_PID=$PID
wait_http "http://$WRITER_ADDR/ready"

section "seed: $N posts through /bulk"
"$BENCH" seed --writer "$WRITER_ADDR" --posts "$N" --body-len "$BODY_LEN" --json "$RESULTS/seed.json"

if step read; then
"$BENCH" export --redis-url "$REDIS_URL" --dir "$WORK/static" --json "$RESULTS/export.json"

# ---------------------------------------------------------------- 1-2. reads, 1 core
section "1-2. reads, server pinned to CPU $SERVER_CPU, wrk pinned to CPU $CLIENT_CPU, $CONNECTIONS connections"
reader_start reader-1 "$SERVER_CPU" --cores 1
R1_PID=$PID R1_ADDR=$ADDR
wrk_run read-reader-1 "heavyread-reader, 1 executor pinned to CPU $SERVER_CPU" "$R1_ADDR" random.lua yes 1 1 "$R1_PID"
# The same reader and load over a hot set: what the lookups' cache misses cost is the difference.
wrk_run read-reader-hot "heavyread-reader, 1 executor pinned to CPU $SERVER_CPU, ids from the first $HOT_IDS posts" \
    "$R1_ADDR" random.lua yes 1 1 "$R1_PID" -- "HR_IDS=$HOT_IDS"
# The syscall floor runs beside the reader from here on: the rounds below
# pair them.
floor_start floor-1 "$SERVER_CPU"
FLOOR_ADDR=$ADDR FLOOR_PID=$PID
# hot_rounds MODE SCRIPT PIPELINE: HOT_ROUNDS rounds of short runs back to
# back, the order reversed every other round (all hot floor, floor hot all,
# ...): the first reader over all N posts and over the hot set, and the
# syscall floor: split-MODE-{all,hot,floor}-ROUND.json. The report takes
# the reader's cost of cache misses (all - hot) and above the floor
# (all - floor) from each round's own runs, minutes closer than the
# single runs are.
hot_rounds() {
    local mode=$1 script=$2 pipeline=$3 i which order
    for i in $(seq "$HOT_ROUNDS"); do
        order="all hot floor"
        [ $((i % 2)) = 0 ] && order="floor hot all"
        for which in $order; do
            if [ "$which" = floor ]; then
                DURATION=$HOT_SECS WARMUP=1 wrk_run "split-$mode-floor-$i" \
                    "syscall floor, pinned to CPU $SERVER_CPU" \
                    "$FLOOR_ADDR" "$script" yes 1 "$pipeline" "$FLOOR_PID"
                continue
            fi
            local ids=$N
            [ "$which" = hot ] && ids=$HOT_IDS
            DURATION=$HOT_SECS WARMUP=1 wrk_run "split-$mode-$which-$i" \
                "heavyread-reader, 1 executor pinned to CPU $SERVER_CPU, ids from the first $ids posts" \
                "$R1_ADDR" "$script" yes 1 "$pipeline" "$R1_PID" -- "HR_IDS=$ids"
        done
    done
}
hot_rounds read random.lua 1

nginx_start nginx-1 1 yes
NGINX_PID=$PID
wrk_run read-nginx-1 "nginx, 1 worker pinned to CPU $SERVER_CPU, static files" "$ADDR" random.lua yes 1 1 "$NGINX_PID"
NGINX1_ADDR=$ADDR NGINX1_PID=$NGINX_PID

wrk_run read-floor-1 "syscall floor: one fixed answer, one recv and one send per read, pinned to CPU $SERVER_CPU" "$FLOOR_ADDR" random.lua yes 1 1 "$FLOOR_PID"

pin_redis "$SERVER_CPU"
axum_start axum-1 1 "$SERVER_CPU"
AXUM1_ADDR=$ADDR AXUM1_PID=$PID
wrk_run read-axum-1 "axum (1 worker) + redis-server, both pinned to CPU $SERVER_CPU" "$AXUM1_ADDR" random.lua yes 1 1 "$AXUM1_PID" "$REDIS_PID"

# ---------------------------------------------------------------- 2b. latency at 80% of the maximum rate
section "2b. open-loop reads at $LOAD_SHARE of each server's maximum (1 core)"
# openloop_run LABEL TEXT ADDR MAX_FROM PID...: fixed-rate reads, latency from when each was due.
openloop_run() {
    local label=$1 text=$2 addr=$3 max_from=$4
    shift 4
    local args=(openloop --label "$label" --server "$text" --addr "$addr" --ids "$N"
        --max-from "$RESULTS/$max_from.json" --share "$LOAD_SHARE" --connections "$CONNECTIONS"
        --secs "$DURATION" --warmup "$WARMUP" --json "$RESULTS/$label.json")
    local p
    for p in "$@"; do args+=(--pid "$p"); done
    taskset -c "$CLIENT_CPU" "$BENCH" "${args[@]}"
}
openloop_run load-reader "heavyread-reader, 1 executor pinned to CPU $SERVER_CPU" "$R1_ADDR" read-reader-1 "$R1_PID"
openloop_run load-nginx "nginx, 1 worker pinned to CPU $SERVER_CPU" "$NGINX1_ADDR" read-nginx-1 "$NGINX1_PID"

# ---------------------------------------------------------------- 3. pipelined
section "3. pipelined reads, depth $PIPELINE_DEPTH (same pinning)"
wrk_run pipe-reader "heavyread-reader, 1 executor pinned to CPU $SERVER_CPU" "$R1_ADDR" pipeline.lua yes 1 "$PIPELINE_DEPTH" "$R1_PID"
wrk_run pipe-reader-hot "heavyread-reader, 1 executor pinned to CPU $SERVER_CPU, ids from the first $HOT_IDS posts" \
    "$R1_ADDR" pipeline.lua yes 1 "$PIPELINE_DEPTH" "$R1_PID" -- "HR_IDS=$HOT_IDS"
hot_rounds pipe pipeline.lua "$PIPELINE_DEPTH"
wrk_run pipe-nginx "nginx, 1 worker pinned to CPU $SERVER_CPU" "$NGINX1_ADDR" pipeline.lua yes 1 "$PIPELINE_DEPTH" "$NGINX1_PID"
wrk_run pipe-floor "syscall floor, pinned to CPU $SERVER_CPU" "$FLOOR_ADDR" pipeline.lua yes 1 "$PIPELINE_DEPTH" "$FLOOR_PID"
wrk_run pipe-axum "axum (1 worker) + redis-server, pinned to CPU $SERVER_CPU" "$AXUM1_ADDR" pipeline.lua yes 1 "$PIPELINE_DEPTH" "$AXUM1_PID" "$REDIS_PID"
stop "$AXUM1_PID"
stop "$FLOOR_PID"
stop "$NGINX1_PID"
pin_redis "$ALL_CPUS"

# ---------------------------------------------------------------- 7. bandwidth
section "7. bandwidth: 0% and 80% revalidations, and wrk with 80%"
"$BENCH" bandwidth --addr "$R1_ADDR" --requests "$BW_REQUESTS" --revalidate 0 --ids "$N" \
    --etags "$WORK/static/etags.txt" --json "$RESULTS/bandwidth-0.json"
"$BENCH" bandwidth --addr "$R1_ADDR" --requests "$BW_REQUESTS" --revalidate 0.8 --ids "$N" \
    --etags "$WORK/static/etags.txt" --json "$RESULTS/bandwidth-80.json"
wrk_run reval-reader "heavyread-reader, 1 executor pinned to CPU $SERVER_CPU" "$R1_ADDR" revalidate.lua yes 1 1 "$R1_PID" \
    -- "HR_ETAGS=$WORK/static/etags.txt" "HR_REVALIDATE=0.8"
stop "$R1_PID"

# ---------------------------------------------------------------- 1-2. reads, 2 cores
section "1-2. reads on all CPUs, unpinned, wrk with 2 threads"
reader_start reader-2 "" --cores 2
wrk_run read-reader-2 "heavyread-reader, 2 executors" "$ADDR" random.lua no 2 1 "$PID"
stop "$PID"
nginx_start nginx-2 2 no
wrk_run read-nginx-2 "nginx, 2 workers" "$ADDR" random.lua no 2 1 "$PID"
stop "$PID"
axum_start axum-2 2 ""
wrk_run read-axum-2 "axum (2 workers) + redis-server" "$ADDR" random.lua no 2 1 "$PID" "$REDIS_PID"
stop "$PID"
fi # step read

# ---------------------------------------------------------------- 4. propagation
if step propagation; then
section "4. propagation to 3 readers at $PROP_RATES writes/s"
# One executor each, spread over the CPUs (reader i on CPU (i-1) mod NCPU).
PROP_READERS=()
PROP_PIDS=()
for i in 1 2 3; do
    reader_start "prop-reader-$i" "$(((i - 1) % NCPU))" --cores 1
    PROP_READERS+=(--reader "$ADDR")
    PROP_PIDS+=("$PID")
done
# prop_run RATE FILE: one propagation run to $RESULTS/FILE.
prop_run() {
    local rate=$1 every
    every=$(( rate > PROP_TRACK_RATE ? (rate + PROP_TRACK_RATE - 1) / PROP_TRACK_RATE : 1 ))
    "$BENCH" propagation --writer "$WRITER_ADDR" "${PROP_READERS[@]}" --rate "$rate" --secs "$PROP_SECS" \
        --track-every "$every" --body-len "$BODY_LEN" --redis-url "$REDIS_URL" \
        --json "$RESULTS/$2"
}
for rate in $PROP_RATES; do
    prop_run "$rate" "propagation-$rate.json"
done
if [ -n "$QOS_PID" ] && [ -n "$PROP_IDLE_RATE" ]; then
    release_cpu_latency
    echo "-- $PROP_IDLE_RATE writes/s once more, with no CPU latency request held"
    prop_run "$PROP_IDLE_RATE" "propagation-$PROP_IDLE_RATE-idle.json"
    hold_cpu_latency
fi
for p in "${PROP_PIDS[@]}"; do stop "$p"; done
fi # step propagation

# ---------------------------------------------------------------- 8. writer
if step writes; then
section "8. writer: /create with 64 clients, then /bulk of $BULK_N posts"
"$BENCH" writes --writer "$WRITER_ADDR" --clients 64 --secs "$WRITE_SECS" --bulk "$BULK_N" \
    --body-len "$BODY_LEN" --pid "$WRITER_PID" --pid "$REDIS_PID" --redis-url "$REDIS_URL" \
    --json "$RESULTS/writes.json"
fi # step writes

# ---------------------------------------------------------------- 5-6. memory, cold start
if step memory; then
section "5. memory per reader at $BIG_N posts; 6. cold start"
BIG_PORT=$(free_port)
BIG_ADDR=127.0.0.1:$BIG_PORT
start writer-big env RUST_LOG=warn HEAVYREAD_WRITER_LISTEN="$BIG_ADDR" HEAVYREAD_REDIS_URL="$REDIS_URL" \
    HEAVYREAD_PREFIX=hr-big "$WRITER"
BIG_PID=$PID
wait_http "http://$BIG_ADDR/ready"
"$BENCH" memory --redis-url "$REDIS_URL" --prefix hr-big --reader-bin "$READER" \
    --reader-arg=--cores --reader-arg=1 --reader-log "$LOGS/memory-reader.log" \
    --writer "$BIG_ADDR" --posts "$BIG_N" --body-len "$BODY_LEN" --json "$RESULTS/memory.json"
stop "$BIG_PID"
"$BENCH" coldstart --redis-url "$REDIS_URL" --prefix hr-big --reader-bin "$READER" \
    --reader-arg=--cores --reader-arg=1 --reader-log "$LOGS/coldstart-reader.log" \
    --expect "$BIG_N" --runs "$COLD_RUNS" --json "$RESULTS/coldstart.json"
fi # step memory

# ---------------------------------------------------------------- 9. bounded memory
# Its own prefix, seeded with the same generator (post-0 .. post-(BOUNDED_N-1),
# the same bodies as the read set), so it holds exactly the posts the Zipf load
# asks for whatever ran before. A failure here still lets the report be written
# (and `report --check` then fails on the missing step).
BOUNDED_FAILED=0
if step bounded; then
section "9. bounded memory (issue 8): Zipf s=$ZIPF_S over $BOUNDED_N posts, unbounded and at 50% and 10% budgets; CPU per hit"
BOUNDED_PORT=$(free_port)
BOUNDED_ADDR=127.0.0.1:$BOUNDED_PORT
start writer-bounded env RUST_LOG=warn HEAVYREAD_WRITER_LISTEN="$BOUNDED_ADDR" HEAVYREAD_REDIS_URL="$REDIS_URL" \
    HEAVYREAD_PREFIX=hr-bounded "$WRITER"
BOUNDED_WRITER_PID=$PID
wait_http "http://$BOUNDED_ADDR/ready"
"$BENCH" seed --writer "$BOUNDED_ADDR" --posts "$BOUNDED_N" --body-len "$BODY_LEN" --no-progress
stop "$BOUNDED_WRITER_PID"
"$BENCH" bounded --redis-url "$REDIS_URL" --prefix hr-bounded --reader-bin "$READER" \
    --reader-arg=--cores --reader-arg=1 --reader-log "$LOGS/bounded-reader.log" \
    --server-cpus "$SERVER_CPU" --cpus "$CLIENT_CPU" --redis-pid "$REDIS_PID" --wrk-dir "$WRK_DIR" \
    --ids "$BOUNDED_N" --zipf-s "$ZIPF_S" --hit-rounds "$HIT_ROUNDS" --connections "$CONNECTIONS" \
    --secs "$DURATION" --warmup "$WARMUP" --json "$RESULTS/bounded.json" || BOUNDED_FAILED=1
fi # step bounded

# ---------------------------------------------------------------- report
section "report"
rc=0
"$BENCH" report --results "$RESULTS" --out "$REPORT" --plots "$PLOTS" --check --steps "$STEPS" || rc=$?
if [ "$BOUNDED_FAILED" = 1 ]; then
    echo "the bounded-memory step (9) failed: see its message above" >&2
    rc=1
fi
exit "$rc"
