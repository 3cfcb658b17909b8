#!/usr/bin/env bash
# Scales the compose readers and rewrites the two lists that name them: the
# gateway's node list and Prometheus's reader targets.
#
#   ops/scale.sh N                   scale `reader` to N replicas, point APISIX and Prometheus at them
#   ops/scale.sh --files N           rewrite both lists for N readers, leave the containers alone
#                                    (`make start` runs this before `up --scale reader=N`)
#   ops/scale.sh --render N          print ops/apisix/apisix.yaml for N readers (no change)
#   ops/scale.sh --render-targets N  print ops/prometheus/targets/readers.json for N readers
#
# Why lists: APISIX resolves each node name through Docker's DNS, which
# answers with a 600 s TTL, and a bare service name resolves to one address;
# listing heavyread-reader-1..N makes every replica a node at once. Prometheus
# scrapes the same names from a file: Docker drops a stopped or crash-looping
# container from its DNS, so a replica found through DNS would vanish from the
# targets instead of showing up == 0 (and HeavyreadReaderDown would never
# fire); a fixed name that no longer resolves is a failed scrape.
#
# APISIX re-reads apisix.yaml by itself. That file is rewritten in place (same
# inode) because compose bind-mounts that one file; the "#END" last line tells
# APISIX the file is complete. The targets file is replaced by a rename: its
# folder is mounted, and Prometheus re-reads the file when it changes.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
routes="$here/apisix/apisix.yaml"
targets="$here/prometheus/targets/readers.json"
project=heavyread
port=8081

render() { # render N < apisix.yaml > new
    awk -v n="$1" -v project="$project" -v port="$port" '
        /# BEGIN nodes/ { print; indent = substr($0, 1, index($0, "#") - 1)
            for (i = 1; i <= n; i++) {
                printf "%s- host: %s-reader-%d\n%s  port: %d\n%s  weight: 1\n", indent, project, i, indent, port, indent
            }
            skipping = 1; next }
        /# END nodes/ { skipping = 0 }
        !skipping { print }
    ' "$routes"
}

render_targets() { # render_targets N > readers.json (Prometheus file_sd)
    local i sep
    printf '[\n  {\n    "targets": [\n'
    for ((i = 1; i <= $1; i++)); do
        sep=,
        [ "$i" -lt "$1" ] || sep=
        printf '      "%s-reader-%d:%d"%s\n' "$project" "$i" "$port" "$sep"
    done
    printf '    ]\n  }\n]\n'
}

usage() { echo "usage: $0 [--files | --render | --render-targets] N   (N = number of readers, 1..64)" >&2; exit 2; }

mode=scale
case "${1:-}" in
    --files) mode=files; shift ;;
    --render) mode=render; shift ;;
    --render-targets) mode=render-targets; shift ;;
esac
n=${1:-}
if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 64 ]; then usage; fi
if ! grep -q '# BEGIN nodes' "$routes" || ! grep -q '# END nodes' "$routes"; then
    echo "$routes has no '# BEGIN nodes' / '# END nodes' markers" >&2
    exit 1
fi

write_lists() {
    local tmp
    tmp=$(mktemp)
    render "$n" >"$tmp"
    tail -n 1 "$tmp" | grep -qx '#END' || { rm -f "$tmp"; echo "rendered file lost its #END line" >&2; exit 1; }
    cat "$tmp" >"$routes" # in place: the container sees the same inode
    rm -f "$tmp"
    # Same folder, hidden name: the rename is atomic and Prometheus never
    # reads a half-written file (it only reads readers.json).
    tmp=$(mktemp "$(dirname "$targets")/.readers.json.XXXXXX")
    # An interrupted run leaves no hidden file in the repository. The trap
    # names the file itself: it may run after this function (and its
    # local) is gone.
    # shellcheck disable=SC2064
    trap "rm -f '$tmp'" EXIT
    render_targets "$n" >"$tmp"
    chmod 644 "$tmp"
    mv -f "$tmp" "$targets"
    trap - EXIT
    echo "gateway and Prometheus: $n reader(s), heavyread-reader-1..$n (ops/apisix/apisix.yaml, ops/prometheus/targets/readers.json)"
}

case $mode in
    render) render "$n"; exit 0 ;;
    render-targets) render_targets "$n"; exit 0 ;;
    files) write_lists; exit 0 ;;
esac

if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
else
    echo "docker compose is not installed" >&2; exit 1
fi
compose+=(-f "$here/docker-compose.yml")

current=$("${compose[@]}" ps -q reader 2>/dev/null | wc -l)
if [ "$n" -ge "$current" ]; then
    # Grow: start the replicas first, then route to them and scrape them.
    "${compose[@]}" up -d --no-deps --no-recreate --scale "reader=$n" reader
    write_lists
else
    # Shrink: stop routing and scraping first, give APISIX a moment to
    # reload, then stop the replicas (a removed target raises no alert).
    write_lists
    sleep 2
    "${compose[@]}" up -d --no-deps --no-recreate --scale "reader=$n" reader
fi
