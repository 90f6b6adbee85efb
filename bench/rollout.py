"""Rollout benchmark: examples/hello answering "v1" rolled out to "v2" (a new cluster
behind the same endpoint) under open-loop load through the endpoint, no client retries.

    .venv/bin/python -m bench.rollout [--rate 100] [--interval 15] [--surge 100] [--markdown docs/benchmarks.md]

It prints, per step: the weight headway set, the share of v2 answers the clients saw, the
requests and failures, and p50/p99 latency per version; and the total time from the
deploy command to the old cluster gone, with the store keys before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field

import aiohttp

from bench import report
from bench.failover import Bench, LoadGen, Sample, _pct
from headway.store import cloud, storage


@dataclass
class VersionedLoad(LoadGen):
    """LoadGen that keeps, for each answer, the version that gave it (hello's greeting)."""

    versions: list[tuple[float, str, float]] = field(default_factory=list)  # (sent at, version, latency s)

    async def _one(self, s: aiohttp.ClientSession) -> None:
        at, t = time.time(), time.perf_counter()
        version, ok = "", False
        try:
            async with s.get(self.url, headers=self.headers) as r:
                body = await r.read()
                ok = r.status == 200
                if ok:
                    version = json.loads(body).get("message", "").split(" ", 1)[0]
        except (TimeoutError, aiohttp.ClientError, ValueError):
            ok = False
        latency = time.perf_counter() - t
        self.samples.append(Sample(at, latency, ok))
        if ok:
            self.versions.append((at, version, latency))


def service_keys(b: Bench) -> int:
    """Store keys of every cluster of the service (the old and the new namespace)."""
    os.environ["HEADWAY_HOME"] = b.home
    client = storage.connect(cloud.store_address(cloud.load()), 3)
    try:
        return sum(1 for _ in client.scan_iter(match=f"RAYhw-{b.name}*"))
    finally:
        client.close()


def _ms(values: list[float]) -> str:
    return "–" if not values else f"{1000 * _pct(values, 50):.0f} / {1000 * _pct(values, 99):.0f}"


def step_rows(load: VersionedLoad, steps: list[dict], end: float) -> list[dict]:
    rows = []
    for step, nxt in zip(steps, [*steps[1:], None], strict=True):
        start, stop = step["at"], nxt["at"] if nxt else end
        got = [v for v in load.versions if start <= v[0] < stop]
        sent = [s for s in load.samples if start <= s.at < stop]
        v1 = [lat for _, ver, lat in got if ver == "v1"]
        v2 = [lat for _, ver, lat in got if ver == "v2"]
        rows.append(
            {
                "percent": step["details"]["percent"],
                "held_s": round(stop - start, 1),
                "v2_share": round(len(v2) / len(got), 3) if got else None,
                "requests": len(sent),
                "failed": sum(1 for s in sent if not s.ok),
                "v1_ms": _ms(v1),
                "v2_ms": _ms(v2),
                "judged": step["details"].get("reason", ""),
            }
        )
    return rows


def markdown(rows: list[dict], total: dict, rate: float, interval: float, surge: int) -> str:
    lines = [
        report.header(
            f"examples/hello v1 → v2 as a rollout under {rate:g} requests/s (no client retries), "
            f"steps 10/25/50/100 % held {interval:g} s, max_surge_percent {surge}"
        ),
        "",
        "| step (weight set) | held | v2's share of answers | requests | failed | p50 / p99 ms v1 | p50 / p99 ms v2 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        share = "–" if r["v2_share"] is None else f"{r['v2_share']:.1%}"
        lines.append(
            f"| {r['percent']} % | {r['held_s']} s | {share} | {r['requests']:,} | {r['failed']} "
            f"| {r['v1_ms']} | {r['v2_ms']} |"
        )
    lines += [
        "",
        f"Deploy command to the new cluster at 0 %: {total['to_started_s']} s; to 100 %: {total['to_full_s']} s; "
        f"to the old cluster removed: **{total['to_done_s']} s**. **{total['failed']} of {total['requests']:,} "
        f"requests failed.** Store keys of the service (both clusters) before → during → after: {total['keys']}.",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--interval", type=float, default=15.0, help="seconds each step is held")
    ap.add_argument("--surge", type=int, default=100, help="max_surge_percent")
    ap.add_argument("--markdown", help="rewrite the rollout section of this file (docs/benchmarks.md)")
    args = ap.parse_args()
    b = Bench(name="rollout")
    rollout = {"steps_percent": [10, 25, 50, 100], "step_interval_s": args.interval}

    def greeting(word: str):
        def edit(data: dict) -> None:
            data["applications"][0]["args"]["greeting"] = word
            data["rollout"] = rollout

        return edit

    try:
        b.deploy(edit=greeting("v1"))
        st = json.loads(b.hw("status", b.name, "--json").stdout)
        auth = {"Authorization": f"Bearer {b.hw('token', b.name).stdout.strip()}"}
        keys = [service_keys(b)]
        load = VersionedLoad(st["endpoint"] + "/", auth, args.rate)
        load.start()
        time.sleep(5)
        t0 = time.time()
        b.deploy(edit=greeting("v2"), rollout_strategy="rollout", max_surge_percent=args.surge)
        started = time.time()
        keys.append(service_keys(b))
        done = b.wait_event(t0, "rollout_completed", timeout=600)
        time.sleep(5)
        load.stop()
        end = time.time()
        if done is None:
            raise SystemExit("the rollout did not complete")
        events = b.events_after(t0)
        steps = [e for e in events if e["kind"] == "rollout_step"]
        full = next(e["at"] for e in steps if e["details"]["percent"] == 100)
        keys.append(service_keys(b))
        rows = step_rows(load, steps, done["at"])
        sent = [s for s in load.samples if s.at >= t0]
        total = {
            "to_started_s": round(started - t0, 1),
            "to_full_s": round(full - t0, 1),
            "to_done_s": round(done["at"] - t0, 1),
            "requests": len(sent),
            "failed": sum(1 for s in sent if not s.ok),
            "keys": " → ".join(map(str, keys)),
        }
        after = [v for v in load.versions if done["at"] + 1 <= v[0] < end]
        total["after"] = f"{sum(1 for v in after if v[1] == 'v2')} of {len(after)} answers v2 after the end"
        print(json.dumps({"steps": rows, "total": total}, indent=2))
    finally:
        b.close()
    table = markdown(rows, total, args.rate, args.interval, args.surge)
    print(table)
    if args.markdown:
        report.write_section(args.markdown, "rollout", table)


if __name__ == "__main__":
    main()
