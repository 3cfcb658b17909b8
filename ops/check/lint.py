"""Static checks of the ops/ files, and the metric-name cross-check.

  lint.py compose COMPOSE.json   the normalized compose model (`config --format json`)
  lint.py apisix                 ops/apisix/{config,apisix}.yaml and `make scale` rendering
  lint.py prometheus             the compose scrape config's reader targets and `make scale` rendering
  lint.py grafana                dashboards and provisioning
  lint.py seccomp                the reader's seccomp profile
  lint.py systemd                the units' settings (syntax is systemd-analyze's job)
  lint.py metrics READER.txt WRITER.txt
                                 every metric the dashboards and rules use is in the scrapes

Each prints what it checked; the exit status is 1 on the first failure.
Needs PyYAML.
"""
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

OPS = Path(__file__).resolve().parent.parent


class Fail(Exception):
    pass


def need(cond, msg):
    if not cond:
        raise Fail(msg)


# --- compose -------------------------------------------------------------

def host_ports(svc):
    return [p for p in svc.get("ports") or [] if p.get("published")]


def compose(path):
    m = json.load(open(path))
    s = m["services"]
    want = {"redis", "writer", "reader", "reader-direct", "apisix", "prometheus", "grafana"}
    need(want <= set(s), f"services {sorted(want - set(s))} missing")

    cmd = " ".join(s["redis"].get("command") or [])
    need("--appendonly yes" in cmd and "--appendfsync everysec" in cmd, f"redis without AOF everysec: {cmd}")
    need(s["redis"].get("healthcheck", {}).get("test"), "redis has no healthcheck")

    def published(name):
        return sorted(int(p["published"]) for p in host_ports(s[name]))

    need(published("writer") == [8080], f"writer host ports {published('writer')}, want [8080]")
    need(not host_ports(s["reader"]), "reader publishes a host port: --scale would collide")
    need((s["reader"].get("deploy") or {}).get("replicas") == 3, "reader is not 3 replicas")
    need(published("reader-direct") == [8081], f"reader-direct host ports {published('reader-direct')}")
    need(published("apisix") == [9080, 9091], f"apisix host ports {published('apisix')}")
    need(published("prometheus") == [9090], "prometheus not on 9090")
    need(published("grafana") == [3000], "grafana not on 3000")
    env = s["grafana"].get("environment") or {}
    need(env.get("GF_SECURITY_ADMIN_USER") == "admin" and env.get("GF_SECURITY_ADMIN_PASSWORD") == "admin",
         "grafana is not admin/admin")
    need(s["apisix"].get("environment", {}).get("APISIX_STAND_ALONE") == "true", "apisix not stand-alone")
    # ops/scale.sh replaces readers.json by a rename: only a folder mount sees the new file.
    mounts = {v.get("target"): v for v in s["prometheus"].get("volumes") or [] if v.get("type") == "bind"}
    tgt = mounts.get("/etc/prometheus/targets")
    need(tgt and Path(tgt["source"]) == OPS / "prometheus/targets",
         "prometheus does not mount the ops/prometheus/targets folder at /etc/prometheus/targets")

    for name in ("reader", "reader-direct"):
        r = s[name]
        mem = (r.get("ulimits") or {}).get("memlock") or {}
        need(mem.get("soft") == -1 and mem.get("hard") == -1, f"{name}: memlock ulimit not unlimited: {mem}")
        opts = r.get("security_opt") or []
        sec = [o for o in opts if o.startswith("seccomp")]
        need(sec, f"{name}: no seccomp profile")
        prof = sec[0].split("=", 1)[1] if "=" in sec[0] else sec[0].split(":", 1)[1]
        # Compose reads the profile relative to the project directory (ops/).
        need((OPS / prof).is_file(), f"{name}: seccomp profile {prof} not found under ops/")
        need("heavyread-reader" in " ".join(r.get("command") or []), f"{name} does not run the reader")
        envr = r.get("environment") or {}
        need(envr.get("HEAVYREAD_LISTEN", "").endswith(":8081"), f"{name}: HEAVYREAD_LISTEN {envr.get('HEAVYREAD_LISTEN')}")
    need("heavyread-writer" in " ".join(s["writer"].get("command") or []), "writer does not run the writer")

    for name in ("writer", "reader", "reader-direct"):
        b = s[name].get("build") or {}
        need(b.get("dockerfile") == "ops/Dockerfile", f"{name} is not built from ops/Dockerfile")
    # The profile volumes and config files compose mounts must exist.
    for name, svc in s.items():
        for v in svc.get("volumes") or []:
            if v.get("type") == "bind":
                need(Path(v["source"]).exists(), f"{name}: bind source {v['source']} missing")

    df = (OPS / "Dockerfile").read_text()
    need("--locked" in df, "Dockerfile builds without --locked")
    need(re.search(r"^FROM .* AS build", df, re.M) and df.count("\nFROM ") + df.startswith("FROM ") >= 2,
         "Dockerfile is not multi-stage")
    need(re.search(r"^USER (?!root|0\b)", df, re.M), "Dockerfile runtime user is root")
    need("slim" in df, "Dockerfile does not use a slim base")
    print("compose: services, ports, replicas, memlock, seccomp, AOF, Prometheus targets mount, Dockerfile: ok")


# --- apisix ---------------------------------------------------------------

def check_routes(text, where, nodes=None):
    need(text.rstrip("\n").splitlines()[-1].strip() == "#END", f"{where} does not end with #END")
    doc = yaml.safe_load(text)
    routes = doc.get("routes") or []
    need(routes, f"{where}: no routes")
    ups = {u["id"]: u for u in doc.get("upstreams") or []}
    for r in routes:
        uris = r.get("uris") or [r.get("uri")]
        need(uris == ["/post"], f"{where}: route {r.get('id')} serves {uris}, only /post may be routed")
        methods = r.get("methods")
        need(methods and set(methods) <= {"GET", "HEAD"}, f"{where}: route {r.get('id')} methods {methods}")
        plugins = r.get("plugins") or {}
        need("request-id" in plugins, f"{where}: route {r.get('id')} lacks request-id")
        need("prometheus" in plugins or any("prometheus" in (g.get("plugins") or {}) for g in doc.get("global_rules") or []),
             f"{where}: prometheus plugin not enabled")
        up = r.get("upstream") or ups.get(r.get("upstream_id"))
        need(up, f"{where}: route {r.get('id')} has no upstream")
        need(up.get("type") == "roundrobin", f"{where}: upstream not roundrobin")
        need((up.get("retries") or 0) >= 1, f"{where}: upstream without retries")
        checks = up.get("checks") or {}
        active = checks.get("active") or {}
        need(active.get("http_path") == "/ready", f"{where}: active health check path {active.get('http_path')}, want /ready")
        need(200 in ((active.get("healthy") or {}).get("http_statuses") or [200]), f"{where}: 200 is not healthy")
        need(503 in ((active.get("unhealthy") or {}).get("http_statuses") or []), f"{where}: 503 from /ready is not unhealthy")
        need(checks.get("passive"), f"{where}: no passive health check")
        ns = up.get("nodes") or []
        if isinstance(ns, dict):
            ns = [{"host": k.rsplit(":", 1)[0], "port": int(k.rsplit(":", 1)[1])} for k in ns]
        need(ns, f"{where}: upstream has no nodes")
        for node in ns:
            need(node.get("port") == 8081, f"{where}: node {node} not on the readers' port 8081")
            need(node.get("host") != "writer", f"{where}: the writer is a node")
        if nodes is not None:
            want = [f"heavyread-reader-{i}" for i in range(1, nodes + 1)]
            need([n["host"] for n in ns] == want, f"{where}: nodes {[n['host'] for n in ns]}, want {want}")
    return doc


def apisix():
    cfg = yaml.safe_load((OPS / "apisix/config.yaml").read_text())
    dep = cfg.get("deployment") or {}
    need(dep.get("role") == "data_plane", "config.yaml: role is not data_plane")
    need((dep.get("role_data_plane") or {}).get("config_provider") == "yaml", "config.yaml: config_provider is not yaml")
    need({"request-id", "prometheus"} <= set(cfg.get("plugins") or []), "config.yaml: request-id/prometheus not enabled")
    prom = (cfg.get("plugin_attr") or {}).get("prometheus") or {}
    need((prom.get("export_addr") or {}).get("port") == 9091, "config.yaml: prometheus not exported on 9091")
    need((cfg.get("apisix") or {}).get("node_listen") in (9080, [9080], None), "config.yaml: gateway not on 9080")

    path = OPS / "apisix/apisix.yaml"
    check_routes(path.read_text(), "apisix.yaml", nodes=3)
    scale = OPS / "scale.sh"
    three = subprocess.run([str(scale), "--render", "3"], capture_output=True, text=True, check=True).stdout
    need(three == path.read_text(), "apisix.yaml is not what `make scale N=3` writes (run it, or fix the file)")
    five = subprocess.run([str(scale), "--render", "5"], capture_output=True, text=True, check=True).stdout
    check_routes(five, "apisix.yaml for N=5", nodes=5)
    scale_files_in_a_copy()
    print("apisix: stand-alone yaml provider, #END, only GET/HEAD /post, roundrobin, retries, "
          "active /ready + passive checks, request-id, prometheus on 9091, scale rendering, "
          "scale.sh --files 5 then 3 on a copy: ok")


def scale_files_in_a_copy():
    """`make start` and `make scale` write both lists with `scale.sh --files`:
    run it on a copy of the files it touches, to 5 readers and back to 3."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for rel in ("scale.sh", "apisix/apisix.yaml", "prometheus/targets/readers.json"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(OPS / rel, root / rel)
        for n in (5, 3):
            r = subprocess.run([str(root / "scale.sh"), "--files", str(n)], capture_output=True, text=True)
            need(r.returncode == 0, f"scale.sh --files {n} exited {r.returncode}: {r.stderr.strip()}")
            check_routes((root / "apisix/apisix.yaml").read_text(), f"apisix.yaml after --files {n}", nodes=n)
            reader_targets((root / "prometheus/targets/readers.json").read_text(),
                           f"readers.json after --files {n}", n)
        need((root / "apisix/apisix.yaml").read_text() == (OPS / "apisix/apisix.yaml").read_text(),
             "scale.sh --files 3 does not give back the committed apisix.yaml")
        left = [p.name for p in (root / "prometheus/targets").iterdir() if p.name != "readers.json"]
        need(not left, f"scale.sh --files left files behind: {left}")


# --- prometheus -----------------------------------------------------------

def reader_targets(text, where, n):
    want = [f"heavyread-reader-{i}:8081" for i in range(1, n + 1)]
    groups = json.loads(text)
    got = [t for g in groups for t in g.get("targets") or []]
    need(got == want, f"{where}: targets {got}, want {want}")


def prometheus():
    cfg = yaml.safe_load((OPS / "prometheus/prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    need({"reader", "reader-direct", "writer", "apisix", "prometheus"} <= set(jobs), f"jobs {sorted(jobs)}")
    # Docker DNS drops a dead container: a discovered replica would vanish
    # instead of showing up == 0, so no reader job may be discovered that way.
    for name, j in jobs.items():
        need(not j.get("dns_sd_configs"), f"prometheus.yml: job {name} uses DNS discovery")
    sd = jobs["reader"].get("file_sd_configs") or []
    need(len(sd) == 1 and sd[0].get("files") == ["targets/readers.json"],
         f"prometheus.yml: job reader does not read targets/readers.json: {sd}")
    need(not jobs["reader"].get("static_configs"), "prometheus.yml: job reader has static targets besides the file")

    path = OPS / "prometheus/targets/readers.json"
    reader_targets(path.read_text(), "readers.json", 3)
    scale = OPS / "scale.sh"
    three = subprocess.run([str(scale), "--render-targets", "3"], capture_output=True, text=True, check=True).stdout
    need(three == path.read_text(), "readers.json is not what `make scale N=3` writes (run it, or fix the file)")
    for n in (1, 5):
        out = subprocess.run([str(scale), "--render-targets", str(n)], capture_output=True, text=True, check=True).stdout
        reader_targets(out, f"readers.json for N={n}", n)
        routes = subprocess.run([str(scale), "--render", str(n)], capture_output=True, text=True, check=True).stdout
        nodes = [u["nodes"] for u in yaml.safe_load(routes)["upstreams"]][0]
        need([f"{x['host']}:{x['port']}" for x in nodes] == [t for g in json.loads(out) for t in g["targets"]],
             f"N={n}: the gateway's nodes and Prometheus's reader targets differ")

    # Only the gateway's readers count for "no reader is up".
    rules = yaml.safe_load((OPS / "prometheus/rules/heavyread.yml").read_text())
    alerts = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    expr = alerts.get("HeavyreadNoReaderUp", "")
    need('job="reader"' in expr and "reader-direct" not in expr,
         f"HeavyreadNoReaderUp must count only the gateway's readers (job=\"reader\"): {expr}")
    print("prometheus: reader job from targets/readers.json (no DNS discovery), readers.json is the N=3 rendering, "
          "nodes and targets agree for N=1, 3, 5, NoReaderUp counts the gateway's readers only: ok")


# --- grafana --------------------------------------------------------------

def walk(x):
    if isinstance(x, dict):
        yield x
        for v in x.values():
            yield from walk(v)
    elif isinstance(x, list):
        for v in x:
            yield from walk(v)


def dashboards():
    return {p.name: json.loads(p.read_text()) for p in sorted((OPS / "grafana/dashboards").glob("*.json"))}


def grafana():
    ds = yaml.safe_load((OPS / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {d["uid"] for d in ds["datasources"]}
    need(len(uids) == 1, f"datasource uids {uids}")
    uid = uids.pop()
    prov = yaml.safe_load((OPS / "grafana/provisioning/dashboards/heavyread.yml").read_text())
    need(prov["providers"][0]["options"]["path"] == "/etc/grafana/dashboards",
         "dashboard provider path differs from the compose mount")
    boards = dashboards()
    need({"heavyread.json", "apisix.json"} <= set(boards), f"dashboards: {sorted(boards)}")
    for name, b in boards.items():
        ids = [p["id"] for p in b["panels"]]
        need(len(ids) == len(set(ids)), f"{name}: duplicate panel ids")
        for o in walk(b):
            d = o.get("datasource")
            if isinstance(d, dict):
                need(d.get("uid") == uid, f"{name}: datasource uid {d.get('uid')} is not the provisioned {uid}")
        need(all(t.get("expr") for p in b["panels"] if p["type"] != "row" for t in p.get("targets", [])),
             f"{name}: a target has no expr")
    titles = " | ".join(p["title"] for p in boards["heavyread.json"]["panels"]).lower()
    for want in ["reads/s per reader", "p50 / p99", "304 share", "propagation", "versions behind",
                 "resyncs", "reconnects", "store entries", "store bytes", "writer requests", "writer errors", "gateway"]:
        need(want in titles, f"heavyread dashboard has no panel about {want!r}")
    print(f"grafana: datasource uid {uid} pinned and used everywhere, {len(boards)} dashboards, panels present: ok")


# --- seccomp --------------------------------------------------------------

def seccomp():
    p = json.loads((OPS / "seccomp/heavyread-reader.json").read_text())
    need(p["defaultAction"] == "SCMP_ACT_ERRNO", "default action is not ERRNO")
    allowed = {n for r in p["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args") and not r.get("includes")
               for n in r["names"]}
    need({"io_uring_setup", "io_uring_enter", "io_uring_register"} <= allowed, "io_uring is not allowed")
    for dangerous in ["mount", "umount2", "unshare", "setns", "bpf", "perf_event_open", "ptrace", "kexec_load",
                      "init_module", "reboot", "add_key", "keyctl", "open_by_handle_at", "swapon", "settimeofday"]:
        need(dangerous not in allowed and not any(dangerous in r["names"] for r in p["syscalls"]
                                                 if r["action"] == "SCMP_ACT_ALLOW"),
             f"{dangerous} is allowed")
    print("seccomp: deny by default, io_uring_setup/enter/register allowed, admin syscalls denied: ok")


# --- systemd --------------------------------------------------------------

def systemd():
    for unit in ("heavyread-reader.service", "heavyread-writer.service"):
        text = (OPS / "systemd" / unit).read_text()
        kv = {}
        for line in text.splitlines():
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                kv.setdefault(k.strip(), []).append(v.strip())
        need(kv.get("User", ["root"])[0] not in ("root", "0"), f"{unit} runs as root")
        need(kv.get("EnvironmentFile"), f"{unit} has no EnvironmentFile")
        need(kv.get("Restart", [""])[0] in ("always", "on-failure"), f"{unit} has no restart policy")
        need(kv.get("NoNewPrivileges") == ["yes"], f"{unit} lacks NoNewPrivileges")
        need((OPS / "systemd" / Path(kv["EnvironmentFile"][0]).name).is_file(),
             f"{unit}: no example {Path(kv['EnvironmentFile'][0]).name} in ops/systemd")
        if "reader" in unit:
            need(kv.get("LimitMEMLOCK"), f"{unit} has no LimitMEMLOCK")
            allow = " ".join(v for v in kv.get("SystemCallFilter", []) if not v.startswith("~"))
            for s in ("io_uring_setup", "io_uring_enter", "io_uring_register"):
                need(s in allow, f"{unit}: {s} not explicitly allowed")
            deny = " ".join(v for v in kv.get("SystemCallFilter", []) if v.startswith("~"))
            need("@resources" not in deny, f"{unit}: denying @resources breaks core pinning")
    print("systemd: non-root, env files, restart, NoNewPrivileges, LimitMEMLOCK, io_uring allowed: ok")


# --- metric names ---------------------------------------------------------

FUNCS = {"sum", "min", "max", "avg", "count", "by", "without", "rate", "irate", "increase", "histogram_quantile",
         "clamp_min", "clamp_max", "scalar", "absent", "offset", "or", "and", "unless", "on", "ignoring",
         "group_left", "group_right", "min_over_time", "max_over_time", "avg_over_time", "time", "vector", "bool"}
# APISIX's own metrics cannot be scraped here (no APISIX); these are the
# names its prometheus plugin documents.
APISIX_DOCUMENTED = {"apisix_http_status", "apisix_http_latency_bucket", "apisix_http_latency_count",
                     "apisix_http_latency_sum", "apisix_bandwidth", "apisix_nginx_http_current_connections",
                     "apisix_http_requests_total", "apisix_upstream_status", "apisix_node_info",
                     "apisix_nginx_metric_errors_total", "apisix_etcd_reachable"}


def names_in(expr):
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)     # string literals
    e = re.sub(r"\{[^}]*\}", "", e)                   # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                  # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\boffset\s+\w+", "", e)
    toks = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", e)
    return {t for t in toks if t not in FUNCS and not re.fullmatch(r"\d+\w*", t)
            and (t.startswith(("heavyread_", "apisix_")) or ":" in t or t == "up")}


def scraped(path):
    out = set()
    for line in Path(path).read_text().splitlines():
        if line and not line.startswith("#"):
            out.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return out


def metrics(reader, writer):
    rules = yaml.safe_load((OPS / "prometheus/rules/heavyread.yml").read_text())
    recorded, used = set(), {}
    for g in rules["groups"]:
        for r in g["rules"]:
            if "record" in r:
                recorded.add(r["record"])
            for n in names_in(r["expr"]):
                used.setdefault(n, set()).add(f"rule {r.get('record') or r.get('alert')}")
    for name, b in dashboards().items():
        for p in b["panels"]:
            for t in p.get("targets", []):
                for n in names_in(t["expr"]):
                    used.setdefault(n, set()).add(f"{name}: {p['title']}")
    have = scraped(reader) | scraped(writer)
    missing, apisix_names, checked = [], set(), 0
    for n, where in sorted(used.items()):
        if n == "up":
            continue
        if ":" in n:
            if n not in recorded:
                missing.append(f"{n} (recording rule not defined; used by {sorted(where)[0]})")
            continue
        if n.startswith("apisix_"):
            apisix_names.add(n)
            if n not in APISIX_DOCUMENTED:
                missing.append(f"{n} (not an APISIX metric; used by {sorted(where)[0]})")
            continue
        checked += 1
        if n not in have:
            missing.append(f"{n} (not in the live /metrics of reader or writer; used by {', '.join(sorted(where)[:2])})")
    need(not missing, "metric names used but not exported:\n    " + "\n    ".join(missing))
    print(f"metrics: {checked} heavyread metric names used by dashboards/rules all exist in live scrapes; "
          f"{len(recorded)} recording rules defined; {len(apisix_names)} APISIX names checked against its docs only")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    try:
        {"compose": compose, "apisix": apisix, "prometheus": prometheus, "grafana": grafana, "seccomp": seccomp,
         "systemd": systemd, "metrics": metrics}[cmd](*args)
    except Fail as e:
        print(f"{cmd}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
