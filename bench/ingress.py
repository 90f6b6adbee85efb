"""Benchmark: requests/s and latency through a service's ingress vs. directly at one
worker's Serve proxy, in the same run, and the ratio between them; then the same endpoint
with HTTPS (``endpoint.tls``, applied by a redeploy), over HTTP/1.1 and HTTP/2; then a
service of ``--many`` workers (24): its deploy, the same two rows, and one worker's link
cut under that load (its processes left running, as a host powered off).

    .venv/bin/python bench/ingress.py                 # deploys examples/hello in a private
                                                      # state dir, measures, removes it all
    .venv/bin/python bench/ingress.py --service NAME  # measures a running service (plain only)

The same closed-loop client (asyncio + aiohttp, N concurrent requests) drives the
HTTP/1.1 targets, alternating short rounds so that the machine's noise hits them alike.
aiohttp speaks no HTTP/2: that row and its HTTP/1.1 twin use httpx (with h2, the
``bench`` extra), so the two compare with each other. The direct target is measured in
both phases: each phase's rows are read against it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import httpx
import yaml

from bench import report
from headway.ingress import instances
from headway.state import records
from headway.store import store_tls
from headway.system import netns

ROOT = Path(__file__).resolve().parents[1]
HEADWAY = str(Path(sys.executable).parent / "headway")


@dataclasses.dataclass(frozen=True)
class Target:
    url: str
    headers: dict[str, str]
    ca: str | None = None  # HTTPS: the CA that signed the endpoint's certificate
    client: str = "aiohttp"  # or "httpx/1.1", "httpx/2"


async def _loop(send, concurrency: int, seconds: float) -> tuple[list[float], int]:
    """``concurrency`` closed-loop clients calling ``send()`` (True: a 200) for ``seconds``."""
    latencies: list[float] = []
    failed = 0
    deadline = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal failed
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            if await send():
                latencies.append(time.perf_counter() - start)
            else:
                failed += 1

    await asyncio.gather(*(one() for _ in range(concurrency)))
    return latencies, failed


async def _round(t: Target, concurrency: int, seconds: float) -> tuple[list[float], int]:
    verify = ssl.create_default_context(cafile=t.ca) if t.ca else True
    if t.client == "aiohttp":
        conn = aiohttp.TCPConnector(limit=concurrency, ssl=verify)
        async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=30)) as session:

            async def send() -> bool:
                try:
                    async with session.get(t.url, headers=t.headers) as r:
                        await r.read()
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            return await _loop(send, concurrency, seconds)
    h2 = t.client == "httpx/2"
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(http1=not h2, http2=h2, verify=verify, limits=limits, timeout=30) as client:

        async def send() -> bool:
            try:
                return (await client.get(t.url, headers=t.headers)).status_code == 200
            except httpx.HTTPError:
                return False

        return await _loop(send, concurrency, seconds)


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) >= 2 else float("nan")


def measure(targets: dict[str, Target], concurrency: int, seconds: float, rounds: int) -> dict:
    results: dict[str, dict] = {k: {"lat": [], "failed": 0, "time": 0.0} for k in targets}
    for _ in range(rounds):
        for name, target in targets.items():
            lat, failed = asyncio.run(_round(target, concurrency, seconds / rounds))
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


DIRECT = "direct (one worker proxy)"


def _table(res: dict) -> list[str]:
    lines = [f"{'target':<36}{'requests':>10}{'failed':>8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}"]
    for t, r in res.items():
        lines.append(
            f"{t:<36}{r['requests']:>10}{r['failed']:>8}{r['rps']:>10.1f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}"
        )
    return lines


def _https(env: dict[str, str], name: str, headers: dict[str, str], direct: Target, args) -> list[str]:
    """The same service redeployed with ``endpoint.tls`` (a seamless reload of its
    endpoint), measured over HTTPS with HTTP/1.1 and HTTP/2; the rows next to the plain
    phase's through the direct target, measured again here."""
    home = Path(env["HEADWAY_HOME"])
    made = store_tls.ensure(home / "bench-tls", ["127.0.0.1"])
    spec = home / "hello-tls.yaml"
    data = yaml.safe_load((ROOT / "examples/hello/service.yaml").read_text())
    data["working_dir"] = str(ROOT / "examples/hello/app")
    data["endpoint"] = {"tls": {"cert": made.cert, "key": made.key}}
    spec.write_text(yaml.safe_dump(data))
    print("redeploying with endpoint.tls ...", flush=True)
    subprocess.run([HEADWAY, "deploy", "-f", str(spec)], env=env, check=True, stdout=subprocess.DEVNULL)
    url = json.loads(_headway(env, "status", name, "--json"))["endpoint"] + "/"
    targets = {
        "endpoint HTTPS HTTP/1.1": Target(url, headers, made.ca),
        "endpoint HTTPS HTTP/1.1 (httpx)": Target(url, headers, made.ca, "httpx/1.1"),
        "endpoint HTTPS HTTP/2 (httpx)": Target(url, headers, made.ca, "httpx/2"),
        DIRECT: direct,
    }
    res = measure(targets, args.concurrency, args.seconds, args.rounds)
    h1, d = res["endpoint HTTPS HTTP/1.1"], res[DIRECT]
    x1, x2 = res["endpoint HTTPS HTTP/1.1 (httpx)"], res["endpoint HTTPS HTTP/2 (httpx)"]
    return [
        "with endpoint.tls (the same service, redeployed):",
        *_table(res),
        f"\nHTTPS HTTP/1.1 / direct: req/s x{h1['rps'] / d['rps']:.2f}, p99 x{h1['p99_ms'] / d['p99_ms']:.2f}"
        "  (read against the plain phase's ingress / direct)",
        f"HTTP/2 / HTTP/1.1 over HTTPS (httpx both): req/s x{x2['rps'] / x1['rps']:.2f}, "
        f"p99 x{x2['p99_ms'] / x1['p99_ms']:.2f}",
    ]


def _until(what: str, check, timeout_s: float) -> float:
    """Seconds until ``check()`` holds."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout_s:
            raise RuntimeError(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(0.2)
    return time.monotonic() - t0


def _many(env: dict[str, str], count: int, args) -> list[str]:
    """A service of ``count`` workers, one replica each (Serve runs a proxy only where a
    replica is): deployed, every proxy UP behind the endpoint, measured as above, then one
    worker's link cut under the same load."""
    home = Path(env["HEADWAY_HOME"])
    data = yaml.safe_load((ROOT / "examples/hello/service.yaml").read_text())
    data |= {"name": "many", "working_dir": str(ROOT / "examples/hello/app")}
    data["applications"][0]["deployments"] = [{"name": "Hello", "num_replicas": count, "max_replicas_per_node": 1}]
    data["compute_config"] = {
        "head_node": {"resources": {}},
        "worker_nodes": [{"name": "worker", "resources": {"CPU": 1}, "count": count}],
    }
    spec = home / "many.yaml"
    spec.write_text(yaml.safe_dump(data))
    print(f"deploying a service of {count} workers ...", flush=True)
    t0 = time.monotonic()
    subprocess.run([HEADWAY, "deploy", "-f", str(spec)], env=env, check=True, stdout=subprocess.DEVNULL)
    deployed_s = time.monotonic() - t0
    rec = records.load("many")
    assert rec is not None and rec.ingress is not None
    addrs = {rec.proxy_url(w).removeprefix("http://") for w in rec.workers}
    up_s = deployed_s + _until(f"all {count} UP", lambda: addrs <= instances.up_backends(None, rec.ingress), 180)
    headers = {"Authorization": "Bearer " + _headway(env, "token", "many").strip()}
    endpoint = Target(json.loads(_headway(env, "status", "many", "--json"))["endpoint"] + "/", headers)
    direct = Target(rec.proxy_url(rec.workers[0]) + "/", {})
    res = measure({f"endpoint, {count} workers": endpoint, DIRECT: direct}, args.concurrency, args.seconds, args.rounds)
    victim = rec.workers[count // 2]
    victim_addr = rec.proxy_url(victim).removeprefix("http://")
    box: dict[str, tuple[list[float], int]] = {}
    load = threading.Thread(target=lambda: box.update(cut=asyncio.run(_round(endpoint, args.concurrency, 15.0))))
    load.start()
    time.sleep(3)
    assert victim.netns is not None
    netns.set_link(victim.netns, False)
    try:
        out_s = _until(
            "the cut worker out of rotation", lambda: victim_addr not in instances.up_backends(None, rec.ingress), 10
        )
        load.join()
    finally:
        netns.set_link(victim.netns, True)
    lat, failed = box["cut"]
    e, d = res[f"endpoint, {count} workers"], res[DIRECT]
    return [
        f"a service of {count} workers: deployed in {deployed_s:.0f} s, all {count} UP behind the endpoint "
        f"{up_s:.0f} s after the deploy began",
        *_table(res),
        f"\nendpoint / direct: req/s x{e['rps'] / d['rps']:.2f}, p99 x{e['p99_ms'] / d['p99_ms']:.2f}",
        f"one worker's link cut under that load ({args.concurrency} clients, 15 s): out of rotation in "
        f"{out_s:.2f} s; {len(lat)} answered, {failed} failed, the slowest {max(lat):.2f} s, "
        f"p99 {1000 * _pct(lat, 99):.0f} ms",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--service", help="a running service (default: deploy examples/hello privately)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0, help="per target, in total")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--many", type=int, default=24, help="workers of the last phase's service (0: no such phase)")
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
        direct = Target(rec.proxy_url(workers[0]) + "/", {})  # from this host only: the nodes' filter
        print(
            f"{args.concurrency} concurrent clients, {args.seconds:.0f} s per target in {args.rounds} "
            "alternating rounds",
            flush=True,
        )
        plain = measure(
            {"endpoint HTTP/1.1": Target(st["endpoint"] + "/", headers), DIRECT: direct},
            args.concurrency,
            args.seconds,
            args.rounds,
        )
        lines = _table(plain)
        ing, d = plain["endpoint HTTP/1.1"], plain[DIRECT]
        lines.append(
            f"\ningress / direct: req/s x{ing['rps'] / d['rps']:.2f}, "
            f"p50 x{ing['p50_ms'] / d['p50_ms']:.2f}, p99 x{ing['p99_ms'] / d['p99_ms']:.2f}"
            f"  (the ingress spreads over {len(workers)} workers; direct hits one)"
        )
        if own_home:
            lines += ["", *_https(env, name, headers, direct, args)]
            if args.many:
                subprocess.run([HEADWAY, "terminate", name], env=env, check=True, stdout=subprocess.DEVNULL)
                lines += ["", *_many(env, args.many, args)]
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
