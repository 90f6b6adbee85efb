"""Autoscaling benchmark: load ramps up and down through the endpoint of examples/autoscale
(each request holds a replica 0.2 s; Serve keeps 2 in flight per replica, 1-4 replicas;
one 1-CPU node per replica, the group between 1 and 3 nodes), in cycles.

    .venv/bin/python -m bench.autoscale --cycles 10 [--markdown docs/benchmarks.md]

Per cycle: open-loop load rising linearly to ``--high`` requests/s over ``--ramp`` seconds
and held until the group has grown to its max_nodes and the new replicas serve, then
``--low`` requests/s until it is back to min_nodes. It prints: time from the ramp's start
to headway's scale-up decision, to the nodes joined and to the replicas serving; time from
the load's drop to the last node gone; requests, failures and p50/p99 latency per phase;
and the service's GCS bytes in the store after each phase, hence the bytes each scale
event leaves behind. And nodes and replicas over time, as a text chart.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

from bench import report
from bench.failover import Bench, LoadGen, _window

STEP_S = 2.0


class Watch:
    """The service's worker count and running replicas, every ``STEP_S``."""

    def __init__(self, b: Bench):
        self.b = b
        self.rows: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            st = json.loads(self.b.hw("status", self.b.name, "--json", check=False).stdout or "{}")
            workers = sum(1 for n in st.get("nodes", []) if n["role"] == "worker")
            replicas = sum(d.get("running", 0) for a in st.get("applications", []) for d in a["replicas"].values())
            self.rows.append((time.time(), workers, replicas))
            self._stop.wait(STEP_S)

    def last(self) -> tuple[int, int]:
        return self.rows[-1][1:] if self.rows else (0, 0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _wait(cond, timeout: float) -> float | None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return time.time()
        time.sleep(0.5)
    return None


def _first(b: Bench, kind: str, after: float) -> float | None:
    return next((e["at"] for e in b.events_after(after) if e["kind"] == kind), None)


def run_cycle(
    b: Bench, w: Watch, url: str, auth: dict[str, str], high: float, low: float, top: int, ramp_s: float
) -> dict:
    load = LoadGen(url, auth, high, ramp_s=ramp_s)
    t0 = time.time()
    load.start()
    grown = _wait(lambda: w.last() == (top, top) and time.time() - w.rows[-1][0] < STEP_S + 1, 300)
    time.sleep(3)
    load.stop()
    up = _window(load.samples, t0, time.time())
    used_up = b.store_usage()[1]
    light = LoadGen(url, auth, low)
    t1 = time.time()
    light.start()
    shrunk = _wait(lambda: w.last()[0] == 1, 400)
    light.stop()
    down = _window(light.samples, t1, time.time())
    events = b.events_after(t0)
    return {
        "to_decision_s": round((_first(b, "scale_up", t0) or t0) - t0, 1),
        "to_nodes_joined_s": round(max((e["at"] for e in events if e["kind"] == "scale_up_done"), default=t0) - t0, 1),
        "to_replicas_serving_s": round(grown - t0, 1) if grown else None,
        "to_min_again_s": round(shrunk - t1, 1) if shrunk else None,
        "scale_events": sum(1 for e in events if e["kind"] in ("scale_up", "scale_down")),
        "nodes_added": sum(len(e["details"].get("nodes", [])) for e in events if e["kind"] == "scale_up"),
        "nodes_removed": sum(len(e["details"].get("nodes", [])) for e in events if e["kind"] == "scale_down"),
        "up": up,
        "down": down,
        "store_bytes_after_up": used_up,
        "store_bytes_after_down": b.store_usage()[1],
    }


def chart(rows: list[tuple[float, int, int]], width: int = 100) -> str:
    """Nodes and replicas over time, one text line each (a digit per time step)."""
    if not rows:
        return ""
    step = max(1, len(rows) // width)
    pick = rows[::step]
    span = pick[-1][0] - pick[0][0]
    return "\n".join(
        [
            "```",
            "workers  " + "".join(str(r[1]) for r in pick),
            "replicas " + "".join(str(r[2]) for r in pick),
            f"         one column every {span / max(1, len(pick) - 1):.0f} s, {span / 60:.0f} min in all",
            "```",
        ]
    )


def markdown(
    cycles: list[dict], rows: list[tuple[float, int, int]], high: float, low: float, ramp_s: float, base: int
) -> str:
    def med(key: str) -> str:
        vals = sorted(c[key] for c in cycles if c[key] is not None)
        return f"{vals[len(vals) // 2]}" if vals else "–"

    failed = sum(c["up"]["failed"] + c["down"]["failed"] for c in cycles)
    total = sum(c["up"]["requests"] + c["down"]["requests"] for c in cycles)
    events = sum(c["scale_events"] for c in cycles)
    grew = cycles[-1]["store_bytes_after_down"] - base
    lines = [
        report.header(
            f"examples/autoscale, {len(cycles)} cycles: the rate rising to {high:g} req/s over {ramp_s:g} s "
            f"and held until 3 nodes serve, then {low:g} req/s until 1 node is left"
        ),
        "",
        "| cycle | ramp → scale-up decided | → nodes joined | → replicas serving | drop → back to 1 node "
        "| requests (failed) | p50 / p99 ms at the top | store bytes after up / down |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, c in enumerate(cycles, 1):
        lines.append(
            f"| {i} | {c['to_decision_s']} s | {c['to_nodes_joined_s']} s | {c['to_replicas_serving_s']} s "
            f"| {c['to_min_again_s']} s | {c['up']['requests'] + c['down']['requests']} "
            f"({c['up']['failed'] + c['down']['failed']}) | {c['up']['p50_ms']} / {c['up']['p99_ms']} "
            f"| {c['store_bytes_after_up']:,} / {c['store_bytes_after_down']:,} |"
        )
    lines += [
        "",
        f"Medians: scale-up decided {med('to_decision_s')} s after the ramp, replicas serving after "
        f"{med('to_replicas_serving_s')} s, back to one node {med('to_min_again_s')} s after the drop. "
        f"**{failed} of {total:,} requests failed.** The service's GCS data grew from {base:,} to "
        f"{cycles[-1]['store_bytes_after_down']:,} bytes over {events} scale events: "
        f"**{grew / max(1, events):,.0f} bytes per event**.",
        "",
        chart(rows),
    ]
    return "\n".join(lines)


def growth(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], cycles: int) -> str:
    """Which GCS tables grew over the run, per cycle."""
    lines = ["| GCS table | entries before → after | bytes before → after | bytes per cycle |", "|---|---|---|---|"]
    for name in sorted(set(before) | set(after), key=lambda n: -(after.get(n, (0, 0))[1] - before.get(n, (0, 0))[1])):
        (e0, b0), (e1, b1) = before.get(name, (0, 0)), after.get(name, (0, 0))
        if b1 != b0 or e1 != e0:
            lines.append(f"| {name} | {e0} → {e1} | {b0:,} → {b1:,} | {(b1 - b0) / max(1, cycles):,.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--high", type=float, default=40.0, help="requests/s of the ramp")
    ap.add_argument("--low", type=float, default=2.0, help="requests/s after the drop")
    ap.add_argument("--ramp", type=float, default=60.0, help="seconds the rate takes to rise from 0 to --high")
    ap.add_argument("--idle-timeout", type=float, default=10.0, help="the service's idle_timeout_s")
    ap.add_argument("--markdown", help="rewrite the autoscale section of this file (docs/benchmarks.md)")
    args = ap.parse_args()
    b = Bench(name="autoscale")
    cycles: list[dict] = []
    w, base = None, 0
    tables_before: dict[str, tuple[int, int]] = {}
    tables_after: dict[str, tuple[int, int]] = {}
    try:

        def faster(data: dict) -> None:  # quicker cycles than the example's production-like delays
            data["compute_config"]["idle_timeout_s"] = args.idle_timeout
            data["applications"][0]["deployments"][0]["autoscaling_config"]["downscale_delay_s"] = 5

        b.deploy(example="autoscale", edit=faster)
        st = json.loads(b.hw("status", b.name, "--json").stdout)
        auth = {"Authorization": f"Bearer {b.hw('token', b.name).stdout.strip()}"}
        base = b.store_usage()[1]
        tables_before = b.store_tables()
        w = Watch(b)
        for i in range(args.cycles):
            c = run_cycle(b, w, st["endpoint"] + "/", auth, args.high, args.low, top=3, ramp_s=args.ramp)
            cycles.append(c)
            print(f"cycle {i + 1}: {json.dumps(c)}", flush=True)
        try:
            tables_after = b.store_tables()
        except Exception as exc:  # noqa: BLE001 - the cycles' figures are kept without this reading
            print(f"reading the GCS tables failed: {exc}")
    finally:
        if w:
            w.stop()
        b.close()
    if not cycles:
        raise SystemExit("no cycle completed")
    table = markdown(cycles, w.rows if w else [], args.high, args.low, args.ramp, base)
    table += "\n\n" + growth(tables_before, tables_after, len(cycles))
    print(table)
    if args.markdown:
        report.write_section(args.markdown, "autoscale", table)


if __name__ == "__main__":
    main()
