"""What a dependency costs a worker replacement: the same service (examples/hello, 2
workers) without and with a package Ray does not ship, a worker SIGKILLed several times
each, timed from the kill to the new host joined and to every replica placed again.

    .venv/bin/python -m bench.deps                       # plotly (and what it needs)
    .venv/bin/python -m bench.deps --requirement scikit-learn --kills 5 --json deps.json

The package is resolved once on the control host at deploy; a replacement only unpacks
it on the new host (Ray's runtime_env agent), so the difference is that unpacking.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import zipfile
from pathlib import Path

from bench import report
from bench.failover import Bench


def _package(b: Bench) -> tuple[float, float]:
    """(zip MiB, unpacked MiB) of the service's shipped package."""
    (pkg,) = (Path(b.home) / "services" / b.name / "pkg").glob("deps-*.zip")
    with zipfile.ZipFile(pkg) as zf:
        unpacked = sum(i.file_size for i in zf.infolist())
    return pkg.stat().st_size / 2**20, unpacked / 2**20


def _replace(b: Bench, kills: int) -> list[tuple[float, float]]:
    """(kill → host joined, kill → replicas placed) for each kill of worker-1."""
    out = []
    for _ in range(kills):
        t = time.time()
        b.signal_node("worker-1", 9)
        joined = b.wait_event(t, "worker_replaced")
        placed = b.wait_event(t, "replicas_placed")
        if joined is None or placed is None:
            raise RuntimeError(f"worker-1 was not replaced within the wait; events: {b.events_after(t)}")
        out.append((joined["at"] - t, placed["at"] - t))
        time.sleep(3)  # let the proxies settle before the next kill
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requirement", default="plotly", help="the dependency (any pip requirement)")
    ap.add_argument("--kills", type=int, default=3, help="worker kills per variant")
    ap.add_argument("--json", dest="json_path", help="also write the rows here")
    ap.add_argument("--markdown", help="rewrite the dependency section of this file (docs/benchmarks.md)")
    args = ap.parse_args()
    b = Bench()
    rows = []
    try:
        b.deploy()
        rows.append({"variant": "without", "times": _replace(b, args.kills), "zip_mib": 0.0, "unpacked_mib": 0.0})
        t = time.monotonic()
        b.deploy(requirements=[args.requirement])  # an update: resolved and packaged here, once
        print(f"update with {args.requirement}: {time.monotonic() - t:.1f} s (resolve, package, apply)")
        zip_mib, unpacked_mib = _package(b)
        rows.append(
            {
                "variant": f"with {args.requirement}",
                "times": _replace(b, args.kills),
                "zip_mib": zip_mib,
                "unpacked_mib": unpacked_mib,
            }
        )
    finally:
        b.close()
    table = _table(rows)
    print("\n" + table)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(rows, indent=2))
    if args.markdown:
        what = (
            f"examples/hello (2 workers) without and with `{args.requirement}` in `requirements`, worker-1 "
            f"SIGKILLed {args.kills} times each, seconds from the kill"
        )
        report.write_section(args.markdown, "deps", report.header(what) + "\n" + table)


def _table(rows: list[dict]) -> str:
    lines = [
        "| variant | package (zip / unpacked) | host joined (median) | replicas placed (median) | placed, each kill |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        joined = statistics.median(j for j, _ in r["times"])
        placed = [p for _, p in r["times"]]
        size = f"{r['zip_mib']:.1f} / {r['unpacked_mib']:.1f} MiB" if r["zip_mib"] else "–"
        lines.append(
            f"| {r['variant']} | {size} | {joined:.1f} | {statistics.median(placed):.1f} | "
            + ", ".join(f"{p:.1f}" for p in placed)
            + " |"
        )
    base, dep = (statistics.median(p for _, p in r["times"]) for r in rows)
    lines.append(f"\nReplicas placed again, with the dependency / without: **{dep / base:.2f}x**.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
