"""Benchmark: requests/s and latency through a service's ingress vs. directly at one
worker's Serve proxy, in the same run, and the ratio between them.

    .venv/bin/python bench/ingress.py                 # deploys examples/hello in a private
                                                      # state dir, measures, removes it all
    .venv/bin/python bench/ingress.py --service NAME  # measures a running service

The same closed-loop client (asyncio + aiohttp, N concurrent requests) drives both
targets, alternating short rounds so that the machine's noise hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench import report
from headway.state import records

ROOT = Path(__file__).resolve().parents[1]
HEADWAY = str(Path(sys.executable).parent / "headway")


async def _round(url: str, headers: dict[str, str], concurrency: int, seconds: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    failed = 0
    deadline = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal failed
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                async with session.get(url, headers=headers) as r:
                    await r.read()
                    ok = r.status == 200
            except aiohttp.ClientError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t)
            else:
                failed += 1

    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    return latencies, failed


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) >= 2 else float("nan")


def measure(targets: dict[str, tuple[str, dict[str, str]]], concurrency: int, seconds: float, rounds: int) -> dict:
    results: dict[str, dict] = {k: {"lat": [], "failed": 0, "time": 0.0} for k in targets}
    for _ in range(rounds):
        for name, (url, headers) in targets.items():
            lat, failed = asyncio.run(_round(url, headers, concurrency, seconds / rounds))
            results[name]["lat"] += lat
            results[name]["failed"] += failed
            results[name]["time"] += seconds / rounds
    out = {}
    for name, r in results.items():
        out[name] = {
            "requests": len(r["lat"]),
            "failed": r["failed"],
            "rps": len(r["lat"]) / r["time"],
            "p50_ms": 1000 * _pct(r["lat"], 50),
            "p99_ms": 1000 * _pct(r["lat"], 99),
        }
    return out


def _headway(env: dict[str, str], *args: str) -> str:
    return subprocess.run([HEADWAY, *args], env=env, check=True, capture_output=True, text=True).stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--service", help="a running service (default: deploy examples/hello privately)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0, help="per target, in total")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--markdown", help="rewrite the ingress section of this file (docs/benchmarks.md)")
    args = ap.parse_args()

    env = dict(os.environ)
    own_home = None
    name = args.service
    try:
        if name is None:
            own_home = tempfile.mkdtemp(prefix="hwbench-")
            env.update(
                HEADWAY_HOME=own_home,
                HEADWAY_TMP="/tmp/hwbench",
                HEADWAY_BRIDGE="hwbench0",
                HEADWAY_SUBNET="10.213.250.0/24",
            )
            name = "hello"
            print("deploying examples/hello in a private state dir ...", flush=True)
            spec = str(ROOT / "examples/hello/service.yaml")
            subprocess.run([HEADWAY, "deploy", "-f", spec], env=env, check=True, stdout=subprocess.DEVNULL)
        st = json.loads(_headway(env, "status", name, "--json"))
        headers = {}
        if st["token_required"]:
            headers["Authorization"] = "Bearer " + _headway(env, "token", name).strip()
        if "HEADWAY_HOME" in env:
            os.environ["HEADWAY_HOME"] = env["HEADWAY_HOME"]  # the record is read from that state dir
        rec = records.load(name)
        workers = rec.workers
        targets = {
            "ingress": (st["endpoint"] + "/", headers),
            # From this (the ingress) host only: every other host is refused by the nodes' packet filter.
            "direct (one worker proxy)": (rec.proxy_url(workers[0]) + "/", {}),
        }
        print(
            f"{args.concurrency} concurrent clients, {args.seconds:.0f} s per target in {args.rounds} "
            "alternating rounds",
            flush=True,
        )
        res = measure(targets, args.concurrency, args.seconds, args.rounds)
        lines = [f"{'target':<28}{'requests':>10}{'failed':>8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}"]
        for t, r in res.items():
            lines.append(
                f"{t:<28}{r['requests']:>10}{r['failed']:>8}{r['rps']:>10.1f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}"
            )
        ing, direct = res["ingress"], res["direct (one worker proxy)"]
        lines.append(
            f"\ningress / direct: req/s x{ing['rps'] / direct['rps']:.2f}, "
            f"p50 x{ing['p50_ms'] / direct['p50_ms']:.2f}, p99 x{ing['p99_ms'] / direct['p99_ms']:.2f}"
            f"  (the ingress spreads over {len(workers)} workers; direct hits one)"
        )
        print("\n" + "\n".join(lines))
        if args.markdown:
            what = (
                f"{args.concurrency} concurrent clients, {args.seconds:.0f} s per target in {args.rounds} "
                "alternating rounds; client, HAProxy and Ray share the cores"
            )
            report.write_section(args.markdown, "ingress", report.header(what) + "\n```\n" + "\n".join(lines) + "\n```")
    finally:
        if own_home:
            subprocess.run([HEADWAY, "cloud", "teardown", "--force"], env=env, stdout=subprocess.DEVNULL)
            shutil.rmtree(own_home, ignore_errors=True)
            shutil.rmtree("/tmp/hwbench", ignore_errors=True)


if __name__ == "__main__":
    main()
