#!/usr/bin/python3
"""Runs a command under a seccomp filter, to check that the reader (io_uring
and all) starts under the filters ops/ ships, without Docker or systemd.

  seccomp_exec.py docker PROFILE.json -- CMD...   Docker/OCI JSON profile
  seccomp_exec.py systemd UNIT.service -- CMD...  the unit's SystemCallFilter=

Uses libseccomp's Python binding (Debian: python3-seccomp, for
/usr/bin/python3). For the Docker profile, rules limited to other
architectures or to capabilities are resolved the way Docker resolves them
for this machine's architecture and a container with no capabilities. For
a unit, syscall groups are expanded with `systemd-analyze syscall-filter`.
Names the kernel/libseccomp does not know are skipped, as runc and systemd do.
"""
import errno
import json
import os
import platform
import subprocess
import sys

import seccomp

ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
OPS = {"SCMP_CMP_EQ": seccomp.EQ, "SCMP_CMP_NE": seccomp.NE, "SCMP_CMP_LT": seccomp.LT,
       "SCMP_CMP_LE": seccomp.LE, "SCMP_CMP_GT": seccomp.GT, "SCMP_CMP_GE": seccomp.GE,
       "SCMP_CMP_MASKED_EQ": seccomp.MASKED_EQ}


def add(f, action, name, *args):
    try:
        f.add_rule(action, name, *args)
    except (RuntimeError, ValueError, OSError):
        pass  # unknown on this architecture


def applies(rule):
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if inc.get("arches") and ARCH not in inc["arches"]:
        return False
    if inc.get("caps") or inc.get("minKernel"):
        return False  # the container has no capabilities
    if exc.get("arches") and ARCH in exc["arches"]:
        return False
    return True


def action_of(name, errno_ret=None):
    if name == "SCMP_ACT_ALLOW":
        return seccomp.ALLOW
    if name == "SCMP_ACT_ERRNO":
        return seccomp.ERRNO(errno_ret if errno_ret is not None else errno.EPERM)
    raise SystemExit(f"unsupported action {name}")


def docker(path):
    p = json.load(open(path))
    f = seccomp.SyscallFilter(action_of(p["defaultAction"], p.get("defaultErrnoRet")))
    for r in p["syscalls"]:
        if not applies(r):
            continue
        act = action_of(r["action"], r.get("errnoRet"))
        args = []
        for a in r.get("args") or []:
            op = OPS[a["op"]]
            if op == seccomp.MASKED_EQ:
                args.append(seccomp.Arg(a["index"], op, a["value"], a.get("valueTwo", 0)))
            else:
                args.append(seccomp.Arg(a["index"], op, a["value"]))
        for n in r["names"]:
            add(f, act, n, *args)
    return f


def expand(token, seen=None):
    if not token.startswith("@"):
        return {token}
    out = subprocess.run(["systemd-analyze", "syscall-filter", token], check=True,
                         capture_output=True, text=True).stdout.split()
    names = set()
    for t in out:
        if t == token or t.startswith("#") or t.startswith("("):
            continue
        names |= expand(t) if t.startswith("@") else {t}
    return names


def systemd(path):
    allow, deny = set(), set()
    err = errno.EPERM
    for line in open(path):
        line = line.strip()
        if line.startswith("SystemCallFilter="):
            v = line.split("=", 1)[1]
            if v.startswith("~"):
                for t in v[1:].split():
                    deny |= expand(t)
            else:
                for t in v.split():
                    allow |= expand(t)
        elif line.startswith("SystemCallErrorNumber="):
            err = getattr(errno, line.split("=", 1)[1])
    f = seccomp.SyscallFilter(seccomp.ERRNO(err))
    for n in sorted(allow - deny):
        add(f, seccomp.ALLOW, n)
    return f


def main():
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        raise SystemExit(__doc__)
    kind, path, cmd = sys.argv[1], sys.argv[2], sys.argv[4:]
    f = {"docker": docker, "systemd": systemd}[kind](path)
    f.load()  # sets no_new_privs too
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
