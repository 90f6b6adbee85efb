"""What watching costs: a scrape of ``/metrics`` and of ``/metrics/ray`` (every node's Ray
and Serve metrics through the control plane) with three services of examples/hello under
light load, and the bytes the history (``/api/services/NAME/series``) keeps per service
per hour.

    .venv/bin/python -m bench.observability [--markdown docs/benchmarks.md] [--scrapes N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import report
from bench.failover import Bench, LoadGen
from headway.plan import series
from headway.state import series_store

SERVICES = ("obs-1", "obs-2", "obs-3")


def _scrape(url: str, token: str, n: int) -> dict:
    """``n`` scrapes: wall time of each (ms), the body's bytes and samples (of the last)."""
    times, body = [], ""
    for _ in range(n):
        t = time.perf_counter()
        r = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        times.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
        body = r.text
    samples = sum(len(f.samples) for f in text_string_to_metric_families(body))
    return {
        "min_ms": round(min(times)),
        "median_ms": round(statistics.median(times)),
        "max_ms": round(max(times)),
        "bytes": len(body.encode()),
        "samples": samples,
    }


def measure(b: Bench, scrapes: int, history_points: int) -> dict:
    url = b.hw("api", "url").stdout.strip()
    token = b.hw("api", "token", "--metrics").stdout.strip()
    loads = []
    for name in SERVICES:
        st = json.loads(b.hw("status", name, "--json").stdout)
        auth = {"Authorization": f"Bearer {b.hw('token', name).stdout.strip()}"}
        loads.append(LoadGen(st["endpoint"] + "/", auth, rate=10))
    for load in loads:
        load.start()
    try:
        os.environ["HEADWAY_HOME"] = b.home
        deadline = time.monotonic() + history_points * series.PERIOD_S * 3
        while time.monotonic() < deadline:
            if min(len(series_store.points(n, 0)) for n in SERVICES) >= history_points:
                break
            time.sleep(2)
        points = {n: series_store.points(n, 0) for n in SERVICES}
        per_point = statistics.mean(series_store.size_bytes(n) / max(1, len(points[n])) for n in SERVICES)
        result = {
            "metrics": _scrape(url + "/metrics", token, scrapes),
            "metrics_ray": _scrape(url + "/metrics/ray", token, scrapes),
            "history": {
                "points": min(len(p) for p in points.values()),
                "bytes_per_point": round(per_point),
                "bytes_per_hour": round(per_point * 3600 / series.PERIOD_S),
                "file_bytes": Path(series_store.path(Path(b.home))).stat().st_size,
            },
            "requests_ok": sum(sum(1 for s in load.samples if s.ok) for load in loads),
            "requests_failed": sum(sum(1 for s in load.samples if not s.ok) for load in loads),
        }
    finally:
        for load in loads:
            load.stop()
    return result


def markdown(r: dict) -> str:
    def row(what: str, s: dict) -> str:
        return f"| {what} | {s['min_ms']} / {s['median_ms']} / {s['max_ms']} | {s['bytes']:,} | {s['samples']:,} |"

    h = r["history"]
    return "\n".join(
        [
            report.header(
                "3 services of examples/hello (9 Ray nodes), 10 requests/s on each endpoint "
                f"({r['requests_ok']:,} answered, {r['requests_failed']} failed)"
            ),
            "",
            "| scrape | ms min / median / max | bytes | samples |",
            "|---|---|---|---|",
            row("`/metrics` (headway's)", r["metrics"]),
            row("`/metrics/ray` (every node's Ray and Serve metrics)", r["metrics_ray"]),
            "",
            f"History: {h['bytes_per_point']} bytes per point (its JSON and the counters kept for the next one), "
            f"one point per {series.PERIOD_S:g} s: **{h['bytes_per_hour'] / 1024:.0f} KiB per service per hour**, "
            f"kept {series.RETENTION_S / 3600:g} h (`series.db`, {h['file_bytes'] / 1024:.0f} KiB after "
            f"{h['points']} points of 3 services).",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--markdown", help="rewrite the observability section of this file (docs/benchmarks.md)")
    ap.add_argument("--scrapes", type=int, default=10)
    ap.add_argument("--points", type=int, default=6, help="history points to wait for")
    args = ap.parse_args()
    b = Bench(SERVICES[0])
    try:
        for name in SERVICES:
            b.name = name
            b.deploy()
        result = measure(b, args.scrapes, args.points)
    finally:
        for name in SERVICES:
            b.hw("terminate", name, check=False)
        b.close()
    report.publish(markdown(result), args.markdown, "observability")


if __name__ == "__main__":
    main()
