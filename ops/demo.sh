#!/usr/bin/env bash
# The local heavyread stack without Docker: a private redis-server, the
# writer, three readers and Prometheus, all on 127.0.0.1.
#
#   ops/demo.sh run    start, show a write reaching every reader, stay up until
#                      Ctrl-C (or `ops/demo.sh down` elsewhere), then stop   (make demo)
#   ops/demo.sh up     start and return (non-interactive)                  (make demo-up)
#   ops/demo.sh tour   the create / ETag / 304 walk-through on a running stack
#   ops/demo.sh down   stop everything `up` started; checks nothing is left (make demo-down, demo-stop)
#   ops/demo.sh status what is running
#
# Ports: redis 6399, writer 8080, readers 8081-8083, Prometheus 9090. Data,
# logs and pid files live in .demo/ (ignored by git). Environment:
#   HEAVYREAD_DEMO_DIR    state folder (default <repo>/.demo)
#   HEAVYREAD_DEMO_BUILD  0 to use the release binaries as they are
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
demo=${HEAVYREAD_DEMO_DIR:-$repo/.demo}
run_dir=$demo/run
log_dir=$demo/logs
bin=${CARGO_TARGET_DIR:-$repo/target}/release
host=127.0.0.1
redis_port=6399
writer_port=8080
reader_ports=(8081 8082 8083)
prom_port=9090
# Stop order: readers first (they only read), Prometheus, the writer, Redis last.
services=(reader-8081 reader-8082 reader-8083 prometheus writer redis)

if [ -t 1 ]; then b=$'\e[1m' g=$'\e[32m' y=$'\e[33m' r=$'\e[31m' n=$'\e[0m'; else b='' g='' y='' r='' n=''; fi
say() { printf '%s==>%s %s\n' "$b" "$n" "$*"; }
warn() { printf '%swarning:%s %s\n' "$y" "$n" "$*" >&2; }
die() { printf '%serror:%s %s\n' "$r" "$n" "$*" >&2; exit 1; }

# --- processes --------------------------------------------------------------

alive() { # a zombie (exited, not yet reaped by its new parent) counts as gone
    local state
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

starttime() { # the kernel's start time of a process: with the pid, it names one process for good
    local stat
    stat=$(<"/proc/$1/stat") 2>/dev/null || return 1
    stat=${stat##*) }
    # shellcheck disable=SC2086 # split the fields on purpose
    set -- $stat
    echo "${20}"
}

pid_of() { # prints the pid of a demo service if it is alive and still the process we started
    local f=$run_dir/$1.pid pid started
    [ -f "$f" ] || return 1
    read -r pid started <"$f" || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    # Guard against pid reuse: same pid and same start time (which survives exec).
    [ "$(starttime "$pid")" = "$started" ] || return 1
    echo "$pid"
}

start() { # start NAME LOG CMD... : detached (own session), output to LOG
    local name=$1 log=$2 pid
    shift 2
    setsid "$@" >"$log" 2>&1 </dev/null &
    pid=$!
    echo "$pid $(starttime "$pid")" >"$run_dir/$name.pid"
}

port_of() { # port_of SERVICE
    case $1 in
        redis) echo "$redis_port" ;;
        writer) echo "$writer_port" ;;
        prometheus) echo "$prom_port" ;;
        reader-*) echo "${1#reader-}" ;;
    esac
}

stop_all() {
    local name pid waited stopped=()
    # Tells a running `ops/demo.sh run` that this stop is deliberate.
    if [ -d "$run_dir" ]; then touch "$run_dir/stopped"; fi
    for name in "${services[@]}"; do
        pid=$(pid_of "$name") || { rm -f "$run_dir/$name.pid"; continue; }
        kill -TERM "$pid" 2>/dev/null || true
        waited=0
        while alive "$pid" && [ $waited -lt 150 ]; do sleep 0.1; waited=$((waited + 1)); done
        if alive "$pid"; then
            warn "$name (pid $pid) ignored SIGTERM for 15 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
        fi
        rm -f "$run_dir/$name.pid"
        stopped+=("$name")
        echo "stopped $name (pid $pid)"
    done
    [ ${#stopped[@]} -gt 0 ] || { echo "nothing was running"; return 0; }
    # Nothing of ours may be left: every stopped service's port must be free.
    local left=()
    for name in "${stopped[@]}"; do
        if port_busy "$(port_of "$name")"; then left+=("$name:$(port_of "$name")"); fi
    done
    [ ${#left[@]} -eq 0 ] || die "still listening after stop: ${left[*]}"
}

port_busy() { (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null; }

who_listens() {
    if command -v ss >/dev/null 2>&1; then
        ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\("[^"]*"\).*/\1/p' | head -1
    fi
}

http_code() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$@" || true; }

wait_for() { # wait_for SERVICE SECONDS COMMAND... : until COMMAND succeeds; fails early if SERVICE died
    local name=$1 secs=$2 i=0
    shift 2
    until "$@"; do
        pid_of "$name" >/dev/null || return 1
        i=$((i + 1))
        [ $i -le $((secs * 10)) ] || return 1
        sleep 0.1
    done
}

ready() { [ "$(http_code "http://$host:$1/ready")" = 200 ]; }

# --- up ---------------------------------------------------------------------

install_deps() {
    # Installs redis-server, prometheus and curl with apt when root; otherwise
    # prints the command. Prometheus is optional for the demo, Redis is not.
    if ! "$repo/ops/install-deps.sh" demo; then
        if ! command -v redis-server >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
            die "redis-server and curl are needed (see the command above)"
        fi
        warn "continuing without Prometheus"
    fi
}

build() {
    if [ "${HEAVYREAD_DEMO_BUILD:-1}" = 0 ]; then
        if [ ! -x "$bin/heavyread-reader" ] || [ ! -x "$bin/heavyread-writer" ]; then
            die "no release binaries in $bin (build: make build)"
        fi
        return
    fi
    say "building release binaries (cargo build --release --locked)"
    # One package per invocation, so the reader is built without tokio.
    (cd "$repo" && cargo build --release --locked -p heavyread-reader && cargo build --release --locked -p heavyread-writer)
}

check_ports() {
    local p busy=()
    for p in $redis_port $writer_port "${reader_ports[@]}"; do
        if port_busy "$p"; then busy+=("$p"); fi
    done
    # Prometheus is optional: another one on its port (Debian's package
    # starts its own service) means the demo runs without its own.
    if port_busy "$prom_port"; then
        prom_busy=1
        warn "port $prom_port on $host is in use$(w=$(who_listens "$prom_port"); [ -n "$w" ] && echo " by $w"): continuing without the demo's Prometheus"
    fi
    if [ ${#busy[@]} -gt 0 ]; then
        for p in "${busy[@]}"; do
            printf '%serror:%s port %s on %s is in use%s\n' "$r" "$n" "$p" "$host" \
                "$(w=$(who_listens "$p"); [ -n "$w" ] && echo " by $w")" >&2
        done
        die "the demo needs ports $redis_port, $writer_port and ${reader_ports[*]} free (a demo already running? make demo-down)"
    fi
}

up() {
    for name in "${services[@]}"; do
        if pid_of "$name" >/dev/null; then die "the demo is already running ($name); stop it with: make demo-down"; fi
    done
    install_deps
    build
    check_ports
    mkdir -p "$run_dir" "$log_dir" "$demo/redis" "$demo/prometheus"
    rm -f "$run_dir/stopped"
    # From here on, a failure (or Ctrl-C) stops whatever was started.
    trap 'warn "the demo did not start; stopping what was started (logs: $log_dir)"; stop_all >/dev/null 2>&1 || true' EXIT
    trap 'echo; exit 130' INT TERM

    say "redis-server on $host:$redis_port (data in ${demo#"$repo"/}/redis, AOF everysec)"
    start redis "$log_dir/redis.log" \
        redis-server --bind "$host" --port "$redis_port" --dir "$demo/redis" \
        --appendonly yes --appendfsync everysec --save "" --protected-mode yes --daemonize no
    wait_for redis 10 bash -c "[ \"\$(redis-cli -h $host -p $redis_port ping 2>/dev/null)\" = PONG ]" \
        || die "redis-server did not answer PING (log: $log_dir/redis.log)"

    local redis_url="redis://$host:$redis_port"
    say "writer on http://$host:$writer_port"
    start writer "$log_dir/writer.log" \
        env HEAVYREAD_WRITER_LISTEN="$host:$writer_port" HEAVYREAD_REDIS_URL="$redis_url" \
        "$bin/heavyread-writer"
    wait_for writer 15 ready "$writer_port" || die "the writer is not ready; the end of $log_dir/writer.log:
$(tail -n 5 "$log_dir/writer.log")"

    # Locked memory is shared by all of this user's readers: keep the demo's
    # footprint small (two executors and 64 KiB of io buffers per reader; the
    # readers only do network I/O, which does not use those buffers).
    local cores=$(( $(nproc) < 2 ? $(nproc) : 2 ))
    local p
    for p in "${reader_ports[@]}"; do
        say "reader on http://$host:$p"
        start "reader-$p" "$log_dir/reader-$p.log" \
            env HEAVYREAD_LISTEN="$host:$p" HEAVYREAD_REDIS_URL="$redis_url" \
            HEAVYREAD_CORES="$cores" HEAVYREAD_IO_MEMORY=64KiB HEAVYREAD_MAX_CONNECTIONS_PER_CORE=4096 NO_COLOR=1 \
            "$bin/heavyread-reader"
    done
    for p in "${reader_ports[@]}"; do
        wait_for "reader-$p" 15 ready "$p" || die "reader $p is not ready; the end of $log_dir/reader-$p.log:
$(tail -n 5 "$log_dir/reader-$p.log")"
    done

    if [ -z "${prom_busy:-}" ] && command -v prometheus >/dev/null 2>&1; then
        say "Prometheus on http://$host:$prom_port (rules: ops/prometheus/rules)"
        start prometheus "$log_dir/prometheus.log" \
            prometheus --config.file="$repo/ops/prometheus/prometheus-demo.yml" \
            --storage.tsdb.path="$demo/prometheus" --storage.tsdb.retention.time=1d \
            --web.listen-address="$host:$prom_port"
        wait_for prometheus 20 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://$host:$prom_port/-/ready)\" = 200 ]" \
            || die "Prometheus is not ready (log: $log_dir/prometheus.log)"
    fi
    trap - EXIT INT TERM
    say "${g}the demo stack is up${n} (logs in ${log_dir#"$repo"/})"
}

# --- tour -------------------------------------------------------------------

tour() {
    local id=hello-heavyread body created etag p i code headers
    body='{"id":"'$id'","title":"Hello, heavyread","content":"Written once through the writer, served from memory by every reader.","author":"make demo"}'
    say "create a post through the writer"
    echo "  \$ curl -X POST http://$host:$writer_port/create -H 'Content-Type: application/json' -d '$body'"
    created=$(curl -sS -m 5 -X POST "http://$host:$writer_port/create" -H 'Content-Type: application/json' -d "$body")
    echo "  $created"
    # {"id":..,"version":..,"etag":"\"<md5>\""} -> "<md5>"
    etag=$(grep -o '[0-9a-f]\{32\}' <<<"$created" | head -1 || true)
    [ -n "$etag" ] || die "the writer did not answer with an etag: $created"
    etag="\"$etag\""

    say "the same post on each reader, with its ETag"
    for p in "${reader_ports[@]}"; do
        i=0
        until [ "$(http_code "http://$host:$p/post?id=$id")" = 200 ]; do
            i=$((i + 1)); [ $i -lt 50 ] || die "reader $p does not serve $id"
            sleep 0.1
        done
        headers=$(curl -sS -m 2 -D - -o /dev/null "http://$host:$p/post?id=$id" | tr -d '\r')
        printf '  reader :%s  %s  ETag: %s\n' "$p" "$(head -1 <<<"$headers")" \
            "$(sed -n 's/^[Ee][Tt][Aa][Gg]: //p' <<<"$headers")"
        grep -qi "^etag: $etag\$" <<<"$headers" || die "reader $p serves another ETag than $etag"
    done
    echo "  body: $(curl -sS -m 2 "http://$host:${reader_ports[0]}/post?id=$id")"

    say "revalidate with If-None-Match: 304, no body"
    echo "  \$ curl -i -H 'If-None-Match: $etag' 'http://$host:${reader_ports[1]}/post?id=$id'"
    code=$(http_code -H "If-None-Match: $etag" "http://$host:${reader_ports[1]}/post?id=$id")
    echo "  HTTP $code"
    [ "$code" = 304 ] || die "expected 304, got $code"
}

urls() {
    cat <<EOF

${b}heavyread demo${n}
  writer       http://$host:$writer_port     (POST /create, DELETE /post?id=, POST /bulk, /metrics)
  readers      http://$host:${reader_ports[0]}  http://$host:${reader_ports[1]}  http://$host:${reader_ports[2]}   (GET /post?id=, /ready, /metrics)
EOF
    if pid_of prometheus >/dev/null; then
        echo "  prometheus   http://$host:$prom_port     (alerts: http://$host:$prom_port/alerts)"
    fi
    cat <<EOF
  redis        redis-cli -p $redis_port

Try:
  curl -X POST http://$host:$writer_port/create -H 'Content-Type: application/json' \\
       -d '{"id":"p1","title":"First","content":"Hi","author":"me"}'
  curl -i 'http://$host:${reader_ports[2]}/post?id=p1'
  curl -i -H 'If-None-Match: "<etag from above>"' 'http://$host:${reader_ports[0]}/post?id=p1'
  curl -X DELETE 'http://$host:$writer_port/post?id=p1'
  printf '%s\n' '{"id":"a","title":"A","content":"a","author":"x"}' '{"id":"b","title":"B","content":"b","author":"x"}' |
       curl -X POST http://$host:$writer_port/bulk -H 'Content-Type: application/x-ndjson' --data-binary @-
  curl -s http://$host:${reader_ports[0]}/metrics | grep heavyread_sync_

Logs: ${log_dir}
EOF
}

status() {
    local name pid
    for name in "${services[@]}"; do
        if pid=$(pid_of "$name"); then echo "$name: running (pid $pid)"; else echo "$name: stopped"; fi
    done
}

all_alive() {
    local name
    for name in "${services[@]}"; do
        [ -f "$run_dir/$name.pid" ] || continue
        pid_of "$name" >/dev/null || return 1
    done
    [ -f "$run_dir/writer.pid" ]
}

run() {
    up
    trap 'echo; say "stopping"; stop_all; exit 0' INT TERM
    tour
    urls
    say "up until Ctrl-C (or: make demo-stop)"
    while all_alive && [ ! -e "$run_dir/stopped" ]; do sleep 1; done
    echo
    if [ -e "$run_dir/stopped" ]; then
        # `make demo-stop` is stopping everything; wait for it to finish.
        local i=0
        while compgen -G "$run_dir/*.pid" >/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
        say "stopped (make demo-stop)"
    else
        say "a demo process stopped; stopping the rest"
        stop_all
    fi
}

case "${1:-run}" in
    run) run ;;
    up) up; urls ;;
    tour) tour ;;
    down | stop) stop_all ;;
    status) status ;;
    *) echo "usage: $0 run|up|tour|down|status" >&2; exit 2 ;;
esac
