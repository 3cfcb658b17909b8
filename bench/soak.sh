#!/usr/bin/env bash
# heavyread soak test (not a benchmark: it passes or fails).
#
# Starts a private local stack (its own redis-server on a free port, the
# writer, one reader with one executor pinned to SERVER_CPU), seeds it,
# measures the reader's maximum read rate with a short wrk run (or takes
# --rate), then for the soak duration reads at READ_SHARE of that maximum
# (wrk pinned to CLIENT_CPU) while writing WRITE_RATE posts/s through the
# writer's /create. RSS and open descriptors of the reader and the writer are
# sampled every SAMPLE_EVERY seconds; the first and the last minute are
# compared.
#
#   bench/soak.sh                 10 minutes
#   bench/soak.sh --minutes 30
#   bench/soak.sh --seconds 60    the CI version
#   bench/soak.sh --rate 50000    read at 50,000/s instead of measuring
#
# Fails (exit 1) on any error (a socket error, a timeout or a status >= 400,
# on reads or writes), on a write rate more than RATE_SLACK_PCT under its
# target, on a reader not converged to Redis at the end, or when from the
# first to the last window:
#   reads/s, taken to the first window's machine speed, and raised by what
#   the CPU that other processes took from the reader or from wrk explains
#   (below):
#         last-window rate * wrk_cost_last / wrk_cost_first * excuse
#             < first-window rate * (1 - READ_DROP_PCT/100)
#         excuse = max(1, used_first / left_last) over the reader's CPU and
#         wrk's: the share of its CPU a side used in the first window, over
#         the share left to it in the last
#   reader CPU per read, relative to wrk's (the same reads, made by wrk):
#         (reader_cost_last / wrk_cost_last) / (reader_cost_first / wrk_cost_first) > 1 + COST_DRIFT_PCT/100
#   RSS:  last-window max > first-window max * (1 + RSS_TOLERANCE_PCT/100) + RSS_TOLERANCE_KIB
#   fds:  last-window max > first-window max + FD_TOLERANCE
# and when the load was not heavy: the reader's share of its CPU over the
# soak under READ_FLOOR_PCT of READ_SHARE times its share in the maximum-rate
# run (with --rate, reads over the whole soak under READ_FLOOR_PCT of that
# rate). Reads are judged against themselves, with the
# reading wrk's CPU time per request as the yardstick of the machine's speed,
# because this VM's speed changes under sustained load, on both CPUs and for
# every process: over the 68 s of a `--seconds 60` soak, reads have run at
# 60% to 119% of the target set from a 5-s run a minute earlier (the reader
# meanwhile busy 56-74% of its CPU over the soak); within one
# soak, 10-s intervals have read from 33k to 44k/s while the CPU per read of
# the reader and of wrk rose and fell together (their ratio within 0.73-0.80,
# wrk's CPU share within 0.89-0.94), and one CI soak read 26% less in its
# last 20 s than in its first. Checked by hand: a busy loop sharing
# SERVER_CPU with the reader from the 20th second on failed the rate when
# it was taken to the machine's speed only (25% under the first window at
# the same speed, while six soaks without it stayed within 7%), and the
# reader traced by strace from then on fails all three read checks (its CPU
# per read x1.43 relative to wrk's). Other processes on the machine are no
# fault of the reader: when they (or the VM's host) left a side less of its
# CPU in the last window than it used in the first, the rate is raised by
# that ratio, never more, and never lowered. What is left to a side is its
# own CPU time plus its CPU's idle time, from /proc/stat; with one CPU for
# both, the two sides' time together. Checked by hand, from 25 s into the
# samples on: a busy loop on SERVER_CPU passes (the reader used 73% of its
# CPU in the first window, 46% was left to it in the last: 79k/s taken to
# 125k/s against 112k/s), one on CLIENT_CPU passes (wrk 93%, then 49%: 69k/s
# to 124k/s against 124k/s), and the reader stopped 20 ms in every 100 ms
# (SIGSTOP, SIGCONT) fails (119k/s, then 96k/s, nothing excused), as it
# waits with its CPU idle.
# The windows are one minute each, or a third of the run when it is shorter
# than three minutes. Sampling starts after WARMUP seconds of load.
#
# Settings (environment, defaults in brackets):
#   N [20000]                 posts seeded; reads and writes pick ids among them
#   BODY_LEN [350]            mean JSON body size of the seeded posts
#   READ_SHARE [0.8]          share of the measured maximum read rate
#   WRITE_RATE [1000]         writes/s through /create
#   MEASURE_SECS [5]          seconds of the maximum-rate wrk run
#   WARMUP [10; 5 with --seconds < 180]  unmeasured seconds of load first
#   SAMPLE_EVERY [10]         seconds between RSS/descriptor samples
#   RSS_TOLERANCE_PCT [10]  RSS_TOLERANCE_KIB [8192]  FD_TOLERANCE [8]
#   RATE_SLACK_PCT [10]       allowed shortfall of the write rate
#   READ_DROP_PCT [15]        allowed drop of the last window's read rate against
#                             the first's, at the same machine speed (and less what
#                             other processes took explains)
#   COST_DRIFT_PCT [20]       allowed growth of the reader's CPU per read relative to wrk's
#   READ_FLOOR_PCT [60]       the reader's CPU share over the soak, in % of READ_SHARE times its
#                             share in the maximum-rate run, at least (with --rate: reads over
#                             the whole soak, in % of that rate)
#   SERVER_CPU [0] CLIENT_CPU [1]  one CPU number each: the reader's, wrk's
#   SKIP_BUILD=1              use the binaries already in target/release
#   KEEP=1                    keep the work folder (logs, samples, wrk output)
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

SECS=600
RATE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) SECS=$(( ${2:?--minutes needs a number} * 60 )); shift 2 ;;
        --seconds) SECS=${2:?--seconds needs a number}; shift 2 ;;
        --rate) RATE=${2:?--rate needs a number}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
done
case "$SECS" in ''|*[!0-9]*) echo "--seconds/--minutes must be a whole number" >&2; exit 2 ;; esac
[ "$SECS" -ge 30 ] || { echo "a soak shorter than 30 s says nothing: use --seconds 30 or more" >&2; exit 2; }

cd "$(dirname "$0")/.."
ROOT=$PWD

: "${N:=20000}" "${BODY_LEN:=350}" "${READ_SHARE:=0.8}" "${WRITE_RATE:=1000}" "${MEASURE_SECS:=5}"
: "${SAMPLE_EVERY:=10}" "${RSS_TOLERANCE_PCT:=10}" "${RSS_TOLERANCE_KIB:=8192}" "${FD_TOLERANCE:=8}"
: "${RATE_SLACK_PCT:=10}" "${READ_DROP_PCT:=15}" "${COST_DRIFT_PCT:=20}" "${READ_FLOOR_PCT:=60}" "${SERVER_CPU:=0}" "${CLIENT_CPU:=1}"
if [ "$SECS" -lt 180 ]; then : "${WARMUP:=5}"; else : "${WARMUP:=10}"; fi
WINDOW=$(( SECS < 180 ? SECS / 3 : 60 ))

for tool in wrk redis-server redis-cli curl taskset awk; do
    command -v "$tool" >/dev/null || { echo "soak: $tool is missing (ops/install-deps.sh bench installs it)" >&2; exit 2; }
done
NCPU=$(nproc)
if [ "$NCPU" -lt 2 ]; then SERVER_CPU=0 CLIENT_CPU=0; fi
for cpu in "$SERVER_CPU" "$CLIENT_CPU"; do
    [[ $cpu =~ ^(0|[1-9][0-9]*)$ ]] && grep -q "^cpu$cpu " /proc/stat \
        || { echo "soak: SERVER_CPU and CLIENT_CPU are one CPU number each, of a CPU in /proc/stat (got '$cpu')" >&2; exit 2; }
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

BIN=$ROOT/target/release
BENCH=$BIN/heavyread-bench
READER=$BIN/heavyread-reader
WRITER=$BIN/heavyread-writer
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    # One package per invocation, as in the Makefile: built together, cargo
    # would unify features and link the writer's tokio into the reader.
    for pkg in heavyread-reader heavyread-writer heavyread-bench; do
        cargo build --release --locked -p "$pkg"
    done
fi

WORK=$(mktemp -d /tmp/heavyread-soak.XXXXXX)
LOGS=$WORK/logs
mkdir -p "$LOGS"

# ---- process bookkeeping (as in run_benchmark.sh): everything started here is stopped on exit
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local i p
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[i]}" 2>/dev/null || true; done
    for ((i = 0; i < 50; i++)); do
        local alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    if [ "$rc" != 0 ] || [ "${KEEP:-0}" = 1 ]; then
        echo "soak: logs, samples and wrk output kept in $WORK" >&2
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

# wait_http URL [SECONDS]: until URL answers 2xx.
wait_http() {
    local url=$1 limit=${2:-60} t=0
    until curl -sf --max-time 5 -o /dev/null "$url"; do
        sleep 0.05
        t=$((t + 1))
        [ "$t" -le $((limit * 20)) ] || { echo "soak: timed out waiting for $url" >&2; return 1; }
    done
}

# CPU time of a process so far (user + system, clock ticks): fields 14 and 15
# of /proc/PID/stat, counted after the command name's closing parenthesis.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
HZ=$(getconf CLK_TCK)
# Ticks of one CPU so far, from /proc/stat: "total free", total without
# guest time (which user time already holds), free: idle and iowait.
# Interrupt and softirq time (the kernel's work on the reads' packets) is
# not free: where the kernel charges it by the tick, as here, a tick taken
# while the reader ran counts in the reader's system time too; a kernel
# that accounts it apart (IRQ_TIME_ACCOUNTING) counts it with the other
# processes'.
cpu_line_ticks() { # cpu_line_ticks CPU
    awk -v c="cpu$1" '$1 == c { printf "%.0f\t%.0f", $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $5 + $6 }' /proc/stat
}

# calc EXPR: awk arithmetic (parenthesised: a bare `>` in printf would redirect).
calc() { awk "BEGIN { printf \"%s\", ($*) }"; }

# ---------------------------------------------------------------- stack
echo "== soak: ${SECS}s at ${READ_SHARE} of the max read rate + ${WRITE_RATE} writes/s (work folder $WORK)"
REDIS_PORT=$("$BENCH" free-port)
REDIS_URL=redis://127.0.0.1:$REDIS_PORT
mkdir -p "$WORK/redis"
start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/redis" \
    --save "" --appendonly yes --appendfsync everysec --daemonize no
for _ in $(seq 200); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
redis-cli -p "$REDIS_PORT" ping >/dev/null

WRITER_ADDR=127.0.0.1:$("$BENCH" free-port)
start writer env RUST_LOG=warn HEAVYREAD_WRITER_LISTEN="$WRITER_ADDR" HEAVYREAD_REDIS_URL="$REDIS_URL" "$WRITER"
WRITER_PID=$PID
wait_http "http://$WRITER_ADDR/ready"
"$BENCH" seed --writer "$WRITER_ADDR" --posts "$N" --body-len "$BODY_LEN" --no-progress >"$LOGS/seed.out"

READER_ADDR=127.0.0.1:$("$BENCH" free-port)
start reader env RUST_LOG=warn taskset -c "$SERVER_CPU" "$READER" --listen "$READER_ADDR" \
    --redis-url "$REDIS_URL" --cores 1
READER_PID=$PID
wait_http "http://$READER_ADDR/ready" 120

# ---------------------------------------------------------------- load scripts
# Paced wrk scripts: every connection waits delay() ms after each answer;
# a fractional HR_DELAY_MS is met on average (floor or ceil at random).
cat >"$WORK/paced.lua" <<EOF
dofile("$ROOT/bench/wrk/common.lua")
local pause = tonumber(os.getenv("HR_DELAY_MS") or "0")
function init(args)
  hr.seed()
end
function delay()
  local base = math.floor(pause)
  if math.random() < pause - base then return base + 1 end
  return base
end
EOF
cat "$WORK/paced.lua" - >"$WORK/read.lua" <<'EOF'
function request()
  return wrk.format("GET", "/post?id=" .. hr.random_id())
end
EOF
cat "$WORK/paced.lua" - >"$WORK/write.lua" <<'EOF'
local n = 0
local filler = string.rep("soak ", 60)
function request()
  n = n + 1
  local id = hr.random_id()
  local body = string.format(
    '{"id":"%s","title":"soak %d","content":"%s%d","author":"soak"}', id, n, filler, n)
  return wrk.format("POST", "/create", { ["Content-Type"] = "application/json" }, body)
end
EOF

# wrk_paced OUT SECS CPU|"" SCRIPT CONNS DELAY_MS ADDR &: wrk in the background
# (always call it with `&`: it execs, so $! is wrk itself), output to OUT.
wrk_paced() {
    local out=$1 secs=$2 cpu=$3 script=$4 conns=$5 pause=$6 addr=$7
    local cmd=(wrk -t1 "-c$conns" "-d${secs}s" --timeout 2s -s "$script" "http://$addr/")
    if [ -n "$cpu" ]; then cmd=(taskset -c "$cpu" "${cmd[@]}"); fi
    HR_IDS=$N HR_DELAY_MS=$pause exec "${cmd[@]}" >"$out" 2>&1
}

# summary FILE: "requests seconds errors" from the HR_SUMMARY line.
summary() {
    awk '/^HR_SUMMARY/ {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        found = 1
    }
    END {
        if (!found) exit 1
        printf "%d %.3f %d\n", v["requests"], v["duration_us"] / 1e6,
            v["connect"] + v["read"] + v["write"] + v["status"] + v["timeout"]
    }' "$1"
}

rate_of() {
    local req secs _errors
    read -r req secs _errors < <(summary "$1") || return 1
    calc "$req / $secs"
}

# ---------------------------------------------------------------- maximum, then pacing
if [ -z "$RATE" ]; then
    ticks0=$(cpu_ticks "$READER_PID") clock0=$(date +%s.%N)
    wrk_paced "$WORK/max.out" "$MEASURE_SECS" "$CLIENT_CPU" "$ROOT/bench/wrk/random.lua" 64 0 "$READER_ADDR" &
    wait $!
    # The reader's share of a CPU at the maximum (wrk's start and end inside the span).
    MAX_BUSY_PCT=$(calc "int(($(cpu_ticks "$READER_PID") - $ticks0) * 100 / $HZ / ($(date +%s.%N) - $clock0))")
    MAX=$(rate_of "$WORK/max.out") || { cat "$WORK/max.out" >&2; exit 1; }
    READ_TARGET=$(calc "int($MAX * $READ_SHARE)")
    echo "maximum read rate: $(calc "int($MAX)")/s (wrk, 64 connections, ${MEASURE_SECS}s, reader on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU; the reader busy ${MAX_BUSY_PCT}% of its CPU)"
else
    READ_TARGET=$RATE
fi
# Connections: reads ~1.5 ms per request cycle at the target; writes 32, so
# that at 1,000/s each waits ~30 ms between writes and a write's latency (1-2
# ms here) is a small part of its cycle: with 8, the latency's drift over a
# 10-minute soak slowed the writes from the calibrated 1,000/s to 919/s.
R_CONNS=$(calc "int($READ_TARGET * 1.5 / 1000) + 8")
W_CONNS=32
R_LAT=0.15 W_LAT=0.5
R_DELAY=$(calc "($R_CONNS * 1000 / $READ_TARGET - $R_LAT > 0) ? $R_CONNS * 1000 / $READ_TARGET - $R_LAT : 0")
W_DELAY=$(calc "($W_CONNS * 1000 / $WRITE_RATE - $W_LAT > 0) ? $W_CONNS * 1000 / $WRITE_RATE - $W_LAT : 0")
# Three short runs of both loads together correct the delays for the real latency.
for round in 1 2 3; do
    wrk_paced "$WORK/cal-read-$round.out" 3 "$CLIENT_CPU" "$WORK/read.lua" "$R_CONNS" "$R_DELAY" "$READER_ADDR" &
    RP=$!
    wrk_paced "$WORK/cal-write-$round.out" 3 "" "$WORK/write.lua" "$W_CONNS" "$W_DELAY" "$WRITER_ADDR" &
    wait $!
    wait "$RP"
    R_GOT=$(rate_of "$WORK/cal-read-$round.out") || { cat "$WORK/cal-read-$round.out" >&2; exit 1; }
    W_GOT=$(rate_of "$WORK/cal-write-$round.out") || { cat "$WORK/cal-write-$round.out" >&2; exit 1; }
    printf 'pacing %d: reads %s/s (target %s, %s conns, delay %.3f ms), writes %s/s (target %s, delay %.3f ms)\n' \
        "$round" "$(calc "int($R_GOT)")" "$READ_TARGET" "$R_CONNS" "$R_DELAY" "$(calc "int($W_GOT)")" "$WRITE_RATE" "$W_DELAY"
    # cycle = conns / rate = delay + latency: solve for the latency, then the delay.
    R_LAT=$(calc "($R_CONNS * 1000 / $R_GOT - $R_DELAY > 0) ? $R_CONNS * 1000 / $R_GOT - $R_DELAY : 0")
    W_LAT=$(calc "($W_CONNS * 1000 / $W_GOT - $W_DELAY > 0) ? $W_CONNS * 1000 / $W_GOT - $W_DELAY : 0")
    R_DELAY=$(calc "($R_CONNS * 1000 / $READ_TARGET - $R_LAT > 0) ? $R_CONNS * 1000 / $READ_TARGET - $R_LAT : 0")
    W_DELAY=$(calc "($W_CONNS * 1000 / $WRITE_RATE - $W_LAT > 0) ? $W_CONNS * 1000 / $WRITE_RATE - $W_LAT : 0")
    if [ "$(calc "$R_DELAY == 0")" = 1 ]; then R_CONNS=$(calc "int($R_CONNS * 1.5)"); fi
done

# ---------------------------------------------------------------- soak
# Load runs 3 s past the last sample, so that sample is taken under load.
TOTAL=$((WARMUP + SECS + 3))
echo "soak: ${TOTAL}s of load (${WARMUP}s warm-up), sampling every ${SAMPLE_EVERY}s"
wrk_paced "$WORK/soak-read.out" "$TOTAL" "$CLIENT_CPU" "$WORK/read.lua" "$R_CONNS" "$R_DELAY" "$READER_ADDR" &
READ_WRK=$!
PIDS+=("$READ_WRK")
wrk_paced "$WORK/soak-write.out" "$TOTAL" "" "$WORK/write.lua" "$W_CONNS" "$W_DELAY" "$WRITER_ADDR" &
WRITE_WRK=$!
PIDS+=("$WRITE_WRK")

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# Requests the reader answered so far (every route and status).
served() {
    curl -sf --max-time 5 "http://$READER_ADDR/metrics" |
        awk '$1 ~ /^heavyread_reader_requests_total([{]|$)/ { s += $2; n++ } END { if (n) printf "%.0f", s }'
}
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
# The reader's /ready status (000 when it did not answer within 5 s).
ready_code() { curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://$READER_ADDR/ready" || true; }
# A counter of the reader's /metrics (empty when missing).
reader_metric() { # reader_metric NAME
    curl -sf --max-time 5 "http://$READER_ADDR/metrics" | awk -v m="$1" '$1 == m { printf "%.0f", $2 }'
}
NOT_READY=0

sleep "$WARMUP"
SAMPLES=$WORK/samples.tsv
printf 't\treader_rss_kib\treader_fds\twriter_rss_kib\twriter_fds\treader_requests\tclock\treader_cpu_ticks\twrk_cpu_ticks\tserver_cpu_ticks\tserver_cpu_free\tclient_cpu_ticks\tclient_cpu_free\n' >"$SAMPLES"
t0=$(date +%s)
t=0
while :; do
    for p in "$READER_PID" "$WRITER_PID"; do
        kill -0 "$p" 2>/dev/null || { echo "soak: process $p died" >&2; exit 1; }
    done
    # A gateway routes away from a reader that is not ready: under this load
    # it must stay ready (its sync keeps up) throughout.
    code=$(ready_code)
    if [ "$code" != 200 ]; then
        NOT_READY=$((NOT_READY + 1))
        echo "soak: t=${t}s the reader's /ready answered $code" >&2
    fi
    printf '%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$(rss_kib "$READER_PID")" "$(fds "$READER_PID")" \
        "$(rss_kib "$WRITER_PID")" "$(fds "$WRITER_PID")" "$(served)" "$(date +%s.%N)" \
        "$(cpu_ticks "$READER_PID")" "$(cpu_ticks "$READ_WRK")" "$(cpu_line_ticks "$SERVER_CPU")" "$(cpu_line_ticks "$CLIENT_CPU")" >>"$SAMPLES"
    [ "$t" -ge "$SECS" ] && break
    next=$((t + SAMPLE_EVERY))
    [ "$next" -gt "$SECS" ] && next=$SECS
    sleep $((t0 + next - $(date +%s) > 0 ? t0 + next - $(date +%s) : 0))
    t=$next
done
wait "$READ_WRK" || true
wait "$WRITE_WRK" || true

# ---------------------------------------------------------------- verdict
# Reads in the first and the last window, from the reader's own request count
# and the CPU time of the reader and of the reading wrk (the same requests,
# answered on SERVER_CPU and made on CLIENT_CPU of the same machine).
read_window() { # read_window FROM TO: "requests/s reader_us/req wrk_us/req used_r used_w left_r left_w" between the first and the last sample in FROM <= t <= TO
    # used_r, used_w: the share of SERVER_CPU the reader used, of CLIENT_CPU
    # wrk did (the whole process pinned there); left_r, left_w: the share of
    # it left to them, their own time plus the CPU's free time (the rest went
    # to other processes or was stolen by the VM's host). With one CPU for
    # both, their time together, for each.
    awk -F '\t' -v a="$1" -v b="$2" -v hz="$HZ" -v same=$((SERVER_CPU == CLIENT_CPU)) '
        function share(own, total) { return own > total ? 1 : own / total }
        NR > 1 && $1 >= a && $1 <= b && $6 != "" && $8 != "" && $9 != "" && $13 != "" {
            if (!n++) { r0 = $6; c0 = $7; s0 = $8; w0 = $9; st0 = $10; sf0 = $11; ct0 = $12; cf0 = $13 }
            r1 = $6; c1 = $7; s1 = $8; w1 = $9; st1 = $10; sf1 = $11; ct1 = $12; cf1 = $13
        }
        END {
            if (n < 2 || c1 <= c0 || r1 <= r0 || s1 <= s0 || w1 <= w0 || st1 <= st0 || ct1 <= ct0) exit 1
            own_r = s1 - s0; own_w = w1 - w0
            if (same) own_r = own_w = own_r + own_w
            printf "%d %.3f %.3f %.6f %.6f %.6f %.6f\n", (r1 - r0) / (c1 - c0), (s1 - s0) * 1e6 / hz / (r1 - r0),
                (w1 - w0) * 1e6 / hz / (r1 - r0), share(own_r, st1 - st0), share(own_w, ct1 - ct0),
                share(own_r + sf1 - sf0, st1 - st0), share(own_w + cf1 - cf0, ct1 - ct0)
        }' "$SAMPLES"
}

FAIL=0
fail() { echo "FAIL: $*"; FAIL=1; }

read -r R_REQ R_SECS R_ERR < <(summary "$WORK/soak-read.out") || { cat "$WORK/soak-read.out"; exit 1; }
read -r W_REQ W_SECS W_ERR < <(summary "$WORK/soak-write.out") || { cat "$WORK/soak-write.out"; exit 1; }
R_RATE=$(calc "int($R_REQ / $R_SECS)")
W_RATE=$(calc "int($W_REQ / $W_SECS)")
echo
# The reader's share of a CPU over all the samples (the sync thread's
# included): its reads per second times its CPU per read.
read -r RATE_ALL COST_ALL _ < <(read_window 0 "$SECS") \
    || { echo "soak: too few samples" >&2; exit 1; }
BUSY_PCT=$(calc "int($RATE_ALL * $COST_ALL / 1e4)")
if [ -z "$RATE" ]; then
    BUSY_MIN=$(calc "int($MAX_BUSY_PCT * $READ_SHARE * $READ_FLOOR_PCT / 100)")
    echo "reads:  $R_REQ in ${R_SECS}s = $R_RATE/s (target $READ_TARGET/s), errors $R_ERR; the reader busy ${BUSY_PCT}% of a CPU (at least ${BUSY_MIN}%)"
else
    echo "reads:  $R_REQ in ${R_SECS}s = $R_RATE/s (target $READ_TARGET/s, at least ${READ_FLOOR_PCT}%), errors $R_ERR; the reader busy ${BUSY_PCT}% of a CPU"
fi
echo "writes: $W_REQ in ${W_SECS}s = $W_RATE/s (target $WRITE_RATE/s), errors $W_ERR"
[ "$R_ERR" = 0 ] || fail "$R_ERR read errors: $(grep -E 'Socket errors|Non-2xx' "$WORK/soak-read.out" | tr '\n' ' ')"
[ "$W_ERR" = 0 ] || fail "$W_ERR write errors: $(grep -E 'Socket errors|Non-2xx' "$WORK/soak-write.out" | tr '\n' ' ')"
if [ -z "$RATE" ]; then
    [ "$BUSY_PCT" -ge "$BUSY_MIN" ] \
        || fail "the reader was busy ${BUSY_PCT}% of a CPU, under ${READ_FLOOR_PCT}% of ${READ_SHARE} times its ${MAX_BUSY_PCT}% at the maximum: the load was not heavy"
else
    [ "$(calc "$R_RATE >= $READ_TARGET * $READ_FLOOR_PCT / 100")" = 1 ] || fail "reads ran at $R_RATE/s, under ${READ_FLOOR_PCT}% of $READ_TARGET/s"
fi
[ "$(calc "$W_RATE >= $WRITE_RATE * (1 - $RATE_SLACK_PCT / 100)")" = 1 ] || fail "writes ran at $W_RATE/s, under $WRITE_RATE/s - ${RATE_SLACK_PCT}%"

# The reader converged to Redis (every write applied) and is ready.
for _ in $(seq 100); do
    # Read again each time: a write wrk left in flight may still land.
    REDIS_VERSION=$(redis-cli -p "$REDIS_PORT" get '{hr}:version')
    APPLIED=$(reader_metric heavyread_sync_last_applied_version)
    [ "$APPLIED" = "$REDIS_VERSION" ] && break
    sleep 0.1
done
ENTRIES=$(reader_metric heavyread_reader_store_entries)
HLEN=$(redis-cli -p "$REDIS_PORT" hlen '{hr}:posts')
echo "reader: applied version $APPLIED of $REDIS_VERSION, $ENTRIES posts of $HLEN"
[ "$APPLIED" = "$REDIS_VERSION" ] || fail "the reader applied version $APPLIED, Redis is at $REDIS_VERSION"
[ "$ENTRIES" = "$HLEN" ] || fail "the reader holds $ENTRIES posts, Redis $HLEN"
curl -sf --max-time 5 -o /dev/null "http://$READER_ADDR/ready" || fail "the reader is not ready after the soak"
curl -sf --max-time 5 -o /dev/null "http://$WRITER_ADDR/ready" || fail "the writer is not ready after the soak"
[ "$NOT_READY" = 0 ] || fail "the reader was not ready in $NOT_READY of the samples"
# No fault is injected: the subscription never drops, and the only full
# resync is the start's.
RECONNECTS=$(reader_metric heavyread_sync_reconnects_total)
RESYNCS=$(reader_metric heavyread_sync_full_resyncs_total)
echo "reader: ready in every sample, $RECONNECTS reconnects, $RESYNCS full resyncs"
[ "$RECONNECTS" = 0 ] || fail "the reader's subscription reconnected $RECONNECTS times"
[ "$RESYNCS" = 1 ] || fail "the reader made $RESYNCS full resyncs (1 expected, at start)"

# First and last window: max RSS and descriptors.
window() { # window COLUMN FROM TO: max of COLUMN over samples with FROM <= t <= TO
    awk -v c="$1" -v a="$2" -v b="$3" 'NR > 1 && $1 >= a && $1 <= b && $c > m { m = $c } END { print m + 0 }' "$SAMPLES"
}
read -r RATE1 COST1 WCOST1 USED_R1 USED_W1 _ _ < <(read_window 0 "$WINDOW") \
    || { echo "soak: too few samples in the first window" >&2; exit 1; }
read -r RATE2 COST2 WCOST2 _ _ LEFT_R2 LEFT_W2 < <(read_window $((SECS - WINDOW)) "$SECS") \
    || { echo "soak: too few samples in the last window" >&2; exit 1; }
# This VM's speed changes by a third within a minute (both CPUs, every
# process: the reads' rate follows it). The client's CPU per request is the
# yardstick: the reader's cost is judged relative to it, and the last
# window's rate is taken back to the first window's speed. Other processes
# (the writes' wrk, the writer, Redis, whatever else the machine runs) and
# the VM's host take a share of the CPUs that changes: a CI soak read 22%
# less in its last 20 s than in its first at the same speed while the
# reader's CPU per read, relative to wrk's, stayed within 2.3%. When a side
# had less of its CPU left in the last window than it used in the first,
# it could not have done the first window's work: the rate is raised by
# that ratio (the larger of the two sides'), and by no more. A reader that
# waits instead of working leaves its CPU idle, which is left to it: its
# slower rate is not excused.
EXCUSE=$(awk -v ur="$USED_R1" -v lr="$LEFT_R2" -v uw="$USED_W1" -v lw="$LEFT_W2" 'BEGIN {
    e = 1
    if (lr > 0 && ur / lr > e) e = ur / lr
    if (lw > 0 && uw / lw > e) e = uw / lw
    printf "%.3f", e
}')
DRIFT=$(calc "sprintf(\"%.3f\", ($COST2 / $WCOST2) / ($COST1 / $WCOST1))")
RATE2_AT1=$(calc "int($RATE2 * $WCOST2 / $WCOST1 * $EXCUSE)")
echo "read rate: first ${WINDOW}s $RATE1/s, last ${WINDOW}s $RATE2/s ($RATE2_AT1/s at the first window's speed, x$EXCUSE for the CPU other processes took)"
printf 'CPU per read: reader %.2f then %.2f µs, wrk %.2f then %.2f µs: the reader'"'"'s relative to wrk'"'"'s x%.3f\n' \
    "$COST1" "$COST2" "$WCOST1" "$WCOST2" "$DRIFT"
printf 'its CPU: the reader used %.1f%% then %.1f%% left, wrk %.1f%% then %.1f%% left\n' \
    "$(calc "$USED_R1 * 100")" "$(calc "$LEFT_R2 * 100")" "$(calc "$USED_W1 * 100")" "$(calc "$LEFT_W2 * 100")"
[ "$(calc "$RATE2_AT1 >= $RATE1 * (1 - $READ_DROP_PCT / 100)")" = 1 ] \
    || fail "reads slowed from $RATE1/s in the first window to $RATE2_AT1/s in the last at the same machine speed, less what other processes took (more than ${READ_DROP_PCT}%)"
[ "$(calc "$DRIFT <= 1 + $COST_DRIFT_PCT / 100")" = 1 ] \
    || fail "the reader's CPU per read grew from $COST1 to $COST2 µs while wrk's went from $WCOST1 to $WCOST2 µs (x$DRIFT relative to it, more than ${COST_DRIFT_PCT}%)"

echo
printf '%-7s %-28s %-28s %s\n' "" "first ${WINDOW}s (max)" "last ${WINDOW}s (max)" "growth"
for who in reader:2:3 writer:4:5; do
    IFS=: read -r name rc fc <<<"$who"
    r1=$(window "$rc" 0 "$WINDOW")
    r2=$(window "$rc" $((SECS - WINDOW)) "$SECS")
    f1=$(window "$fc" 0 "$WINDOW")
    f2=$(window "$fc" $((SECS - WINDOW)) "$SECS")
    printf '%-7s RSS %8.1f MiB, %4d fds    RSS %8.1f MiB, %4d fds    RSS %+.1f%%, fds %+d\n' "$name" \
        "$(calc "$r1 / 1024")" "$f1" "$(calc "$r2 / 1024")" "$f2" "$(calc "($r2 - $r1) * 100 / $r1")" $((f2 - f1))
    [ "$(calc "$r2 <= $r1 * (1 + $RSS_TOLERANCE_PCT / 100) + $RSS_TOLERANCE_KIB")" = 1 ] \
        || fail "$name RSS grew from $r1 KiB to $r2 KiB (tolerance ${RSS_TOLERANCE_PCT}% + ${RSS_TOLERANCE_KIB} KiB)"
    [ "$f2" -le $((f1 + FD_TOLERANCE)) ] || fail "$name descriptors grew from $f1 to $f2 (tolerance $FD_TOLERANCE)"
done
echo
echo "samples (t s, reader RSS KiB, reader fds, writer RSS KiB, writer fds, reader requests, clock, reader and wrk CPU ticks, the reader's and wrk's CPU's ticks and free ticks):"
column -t "$SAMPLES" 2>/dev/null || cat "$SAMPLES"
echo
if [ "$FAIL" = 0 ]; then
    echo "soak: PASS"
else
    echo "soak: FAIL"
    exit 1
fi
