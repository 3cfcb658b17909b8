#!/usr/bin/env bash
# Helpers for the compose stack (ops/docker-compose.yml), behind the Makefile:
#
#   ops/compose.sh health       every service's health, through its host port
#   ops/compose.sh test-write   a write through the writer, read back through the
#                               gateway (several readers), a 304, and reader-direct
#   ops/compose.sh bench        seed posts, then wrk through the gateway and direct
#
# Environment: HEAVYREAD_HOST (default 127.0.0.1), HEAVYREAD_WRITE_TOKEN,
# BENCH_IDS (posts to seed, 10000), BENCH_DURATION (30s), BENCH_CONNECTIONS (64),
# BENCH_THREADS (2).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
host=${HEAVYREAD_HOST:-127.0.0.1}
writer=http://$host:8080
gateway=http://$host:9080
direct=http://$host:8081
auth=()
if [ -n "${HEAVYREAD_WRITE_TOKEN:-}" ]; then auth=(-H "Authorization: Bearer $HEAVYREAD_WRITE_TOKEN"); fi

if docker compose version >/dev/null 2>&1; then
    compose=(docker compose -f "$repo/ops/docker-compose.yml")
else
    compose=(docker-compose -f "$repo/ops/docker-compose.yml")
fi

code() { curl -s -o /dev/null -m 3 -w '%{http_code}' "$@" || true; }

health() {
    "${compose[@]}" ps --format 'table {{.Name}}\t{{.State}}\t{{.Health}}' 2>/dev/null || true
    echo
    local bad=0 name url want got
    while IFS='|' read -r name url want; do
        got=$(code "$url")
        if [ "$got" = "$want" ]; then
            printf '  ok    %-28s %s\n' "$name" "$url"
        else
            printf '  FAIL  %-28s %s (HTTP %s, want %s)\n' "$name" "$url" "${got:-none}" "$want"
            bad=1
        fi
    done <<EOF
writer /ready|$writer/ready|200
reader-direct /ready|$direct/ready|200
gateway (unknown post: 404)|$gateway/post?id=health-check-no-such-post|404
gateway metrics|http://$host:9091/apisix/prometheus/metrics|200
prometheus /-/ready|http://$host:9090/-/ready|200
grafana /api/health|http://$host:3000/api/health|200
EOF
    if command -v python3 >/dev/null 2>&1; then
        echo
        echo "  Prometheus targets:"
        curl -s -m 3 "http://$host:9090/api/v1/targets" | python3 -c '
import json, sys
try:
    for t in json.load(sys.stdin)["data"]["activeTargets"]:
        print("    %-14s %-24s %s %s" % (t["labels"]["job"], t["labels"]["instance"], t["health"], t.get("lastError", "")))
except Exception as e:
    print("    (Prometheus not answering: %s)" % e)
' || true
    fi
    return $bad
}

test_write() {
    local id body created etag h _
    id=test-write-$(date +%s)
    body='{"id":"'$id'","title":"test-write","content":"written through the writer, read through the gateway","author":"make test-write"}'
    echo "POST $writer/create"
    created=$(curl -sS -m 5 -X POST "$writer/create" "${auth[@]}" -H 'Content-Type: application/json' -d "$body")
    echo "  $created"
    etag=$(grep -o '[0-9a-f]\{32\}' <<<"$created" | head -1 || true)
    [ -n "$etag" ] || { echo "the write failed" >&2; exit 1; }
    echo "GET $gateway/post?id=$id (round robin over the readers)"
    for _ in 1 2 3 4; do
        h=$(curl -sS -m 3 -D - -o /dev/null "$gateway/post?id=$id" | tr -d '\r') ||
            { echo "the gateway does not answer on $gateway (make start?)" >&2; exit 1; }
        printf '  %s  ETag: %s  X-Request-Id: %s\n' "$(head -1 <<<"$h")" \
            "$(sed -n 's/^[Ee][Tt][Aa][Gg]: //p' <<<"$h")" "$(sed -n 's/^[Xx]-[Rr]equest-[Ii][Dd]: //p' <<<"$h")"
    done
    echo "GET with If-None-Match: \"$etag\" → $(code -H "If-None-Match: \"$etag\"" "$gateway/post?id=$id")"
    echo "GET $direct/post?id=$id → $(code "$direct/post?id=$id")"
    echo "POST $gateway/create (not routed) → $(code -X POST "$gateway/create")"
    echo "GET $gateway/metrics (not routed) → $(code "$gateway/metrics")"
}

bench() {
    command -v wrk >/dev/null 2>&1 || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
    local ids=${BENCH_IDS:-10000} dur=${BENCH_DURATION:-30s} conns=${BENCH_CONNECTIONS:-64} threads=${BENCH_THREADS:-2}
    echo "seeding $ids posts (post-0 .. post-$((ids - 1))) through $writer/bulk"
    awk -v n="$ids" 'BEGIN { for (i = 0; i < n; i++)
        printf "{\"id\":\"post-%d\",\"title\":\"Post %d\",\"content\":\"Body of post %d, served from memory.\",\"author\":\"bench\"}\n", i, i, i }' |
        curl -sS -m 300 -X POST "$writer/bulk" "${auth[@]}" -H 'Content-Type: application/x-ndjson' --data-binary @- | head -c 300
    echo
    sleep 1
    local target
    for target in "$gateway" "$direct"; do
        echo
        echo "wrk -t$threads -c$conns -d$dur $target  (bench/wrk/random.lua, HR_IDS=$ids)"
        HR_IDS=$ids wrk -t"$threads" -c"$conns" -d"$dur" --latency -s "$repo/bench/wrk/random.lua" "$target"
    done
    echo
    echo "These numbers include Docker's networking and, on one host, the load generator"
    echo "competing for CPU; see bench/ for pinned, baselined measurements."
}

case "${1:-}" in
    health) health ;;
    test-write) test_write ;;
    bench) bench ;;
    *) echo "usage: $0 health|test-write|bench" >&2; exit 2 ;;
esac
