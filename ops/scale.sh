#!/usr/bin/env bash
# Scales the compose readers and rewrites the gateway's node list.
#
#   ops/scale.sh N            scale `reader` to N replicas and point APISIX at them
#   ops/scale.sh --render N   print ops/apisix/apisix.yaml for N readers (no change)
#
# Why rewrite: APISIX resolves each node name through Docker's DNS, which
# answers with a 600 s TTL, and a bare service name resolves to one address;
# listing heavyread-reader-1..N makes every replica a node at once. APISIX
# re-reads apisix.yaml by itself. The file is rewritten in place (same inode)
# because compose bind-mounts that one file; the "#END" last line tells
# APISIX the file is complete.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
routes="$here/apisix/apisix.yaml"
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

usage() { echo "usage: $0 [--render] N   (N = number of readers, 1..64)" >&2; exit 2; }

only_render=0
if [ "${1:-}" = "--render" ]; then only_render=1; shift; fi
n=${1:-}
if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 64 ]; then usage; fi
if ! grep -q '# BEGIN nodes' "$routes" || ! grep -q '# END nodes' "$routes"; then
    echo "$routes has no '# BEGIN nodes' / '# END nodes' markers" >&2
    exit 1
fi

if [ "$only_render" = 1 ]; then
    render "$n"
    exit 0
fi

if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
else
    echo "docker compose is not installed" >&2; exit 1
fi
compose+=(-f "$here/docker-compose.yml")

write_routes() {
    local tmp
    tmp=$(mktemp)
    render "$n" >"$tmp"
    tail -n 1 "$tmp" | grep -qx '#END' || { rm -f "$tmp"; echo "rendered file lost its #END line" >&2; exit 1; }
    cat "$tmp" >"$routes" # in place: the container sees the same inode
    rm -f "$tmp"
    echo "gateway: $n reader node(s) in ops/apisix/apisix.yaml"
}

current=$("${compose[@]}" ps -q reader 2>/dev/null | wc -l)
if [ "$n" -ge "$current" ]; then
    # Grow: start the replicas first, then route to them.
    "${compose[@]}" up -d --no-deps --no-recreate --scale "reader=$n" reader
    write_routes
else
    # Shrink: stop routing first, give APISIX a moment to reload, then stop replicas.
    write_routes
    sleep 2
    "${compose[@]}" up -d --no-deps --no-recreate --scale "reader=$n" reader
fi
