"""What a service costs to keep: the proportional set size (PSS, shared pages divided
among the processes that share them) of each node of examples/hello, per process, read
from /proc/<pid>/smaps_rollup once the service is RUNNING and has answered requests.

    .venv/bin/python -m bench.memory [--markdown docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import httpx

from bench import report
from bench.failover import Bench


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def process_name(pid: int) -> str:
    """A short name: the Ray component a process is (its command line says)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(a.decode(errors="replace") for a in argv if a)
    if argv[1:3] == [b"-S", b"-c"]:  # headway's node supervisor (its source is its argument)
        return "headway supervisor"
    if text.startswith("ray-dashboard-"):  # a dashboard module (its process title)
        return "dashboard " + text.split()[0].removeprefix("ray-dashboard-").rsplit("-", 1)[0]
    if "multiprocessing.forkserver" in text:
        return "dashboard forkserver"
    for key, name in (
        ("gcs_server", "gcs_server"),
        ("raylet", "raylet"),
        ("dashboard/agent.py", "dashboard agent"),
        ("runtime_env/agent/main.py", "runtime_env agent"),
        ("dashboard.py", "dashboard"),
        ("log_monitor.py", "log monitor"),
        ("monitor.py", "autoscaler monitor"),
        ("ray.util.client.server", "Ray Client server"),
        ("ray start", "ray start"),
        ("ServeController", "Serve controller"),
        ("ProxyActor", "Serve proxy"),
        ("ServeReplica", "Serve replica"),
        ("SubprocessModule", "dashboard module"),
    ):
        if key in text:
            return name
    return Path(argv[0].decode(errors="replace")).name or "?"


def measure(b: Bench) -> dict[str, dict]:
    out = {}
    for node in b.record()["nodes"]:
        pids = b.node_pids(node["name"])
        by_name: Counter[str] = Counter()
        for pid in pids:
            by_name[process_name(pid)] += pss_kb(pid)
        replicas = by_name.get("Serve replica", 0)
        out[node["name"]] = {
            "processes": len(pids),
            "pss_mb": round(sum(by_name.values()) / 1024),
            "before_replicas_mb": round((sum(by_name.values()) - replicas) / 1024),
            "by_process_mb": {k: round(v / 1024) for k, v in by_name.most_common()},
        }
    return out


def markdown(result: dict[str, dict]) -> str:
    lines = [
        report.header("examples/hello RUNNING (1 head, 2 workers, one replica each), PSS from smaps_rollup"),
        "",
        "| node | processes | PSS MB | without its replicas | largest |",
        "|---|---|---|---|---|",
    ]
    for name, r in result.items():
        top = ", ".join(f"{k} {v}" for k, v in list(r["by_process_mb"].items())[:6])
        lines.append(f"| {name} | {r['processes']} | **{r['pss_mb']}** | {r['before_replicas_mb']} | {top} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--markdown", help="rewrite the memory section of this file (docs/benchmarks.md)")
    args = ap.parse_args()
    b = Bench()
    try:
        b.deploy()
        st = json.loads(b.hw("status", b.name, "--json").stdout)
        auth = {"Authorization": f"Bearer {b.hw('token', b.name).stdout.strip()}"}
        for _ in range(50):
            httpx.get(st["endpoint"] + "/", headers=auth, timeout=10)
        time.sleep(5)
        result = measure(b)
    finally:
        b.close()
    report.publish(markdown(result), args.markdown, "memory")


if __name__ == "__main__":
    main()
