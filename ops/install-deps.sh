#!/usr/bin/env bash
# Installs the Debian packages heavyread needs on this machine, or prints the
# exact command when not run as root. Usage: ops/install-deps.sh test|demo|bench
set -euo pipefail

need=()
want() { # want <command> <debian package>
    command -v "$1" >/dev/null 2>&1 || need+=("$2")
}
# ops/check.sh makes a Python venv for its compose and YAML checks; Debian's
# own python3 needs python3-venv for that (ensurepip is split out of it).
want_venv() {
    command -v python3 >/dev/null 2>&1 && python3 -c 'import ensurepip, venv' >/dev/null 2>&1 ||
        need+=(python3 python3-venv)
}
# ops/check.sh runs the reader and writer under the shipped seccomp filters
# through libseccomp's binding for Debian's /usr/bin/python3.
want_seccomp() {
    [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import seccomp' >/dev/null 2>&1 ||
        need+=(python3 python3-seccomp)
}

case "${1:-test}" in
    test)  want redis-server redis-server; want promtool prometheus; want wrk wrk; want nginx nginx; want ip iproute2
           want curl curl; want_venv; want_seccomp ;;
    demo)  want redis-server redis-server; want prometheus prometheus; want curl curl ;;
    bench) want redis-server redis-server; want wrk wrk; want nginx nginx; want curl curl ;;
    *) echo "usage: $0 test|demo|bench" >&2; exit 2 ;;
esac

# Rust toolchain pieces are checked, not installed: they come with the machine.
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
# De-duplicate package names.
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
if [ "$(id -u)" -eq 0 ]; then
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # Debian's packages start (and enable) their services; the project runs
    # its own instances, on the same ports for Prometheus and Redis's default.
    # Only the services of packages installed just now are stopped: a Redis,
    # Prometheus or nginx that was already here is the machine owner's.
    for svc in redis-server prometheus nginx; do
        printf '%s\n' "${need[@]}" | grep -qx "$svc" || continue
        if command -v systemctl >/dev/null 2>&1; then systemctl disable "$svc" >/dev/null 2>&1 || true; fi
        if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
    done
else
    echo "missing packages: ${need[*]}" >&2
    echo "run as root:  sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
    exit 1
fi
