"""Failover benchmark: steady load through the ingress, one fault, what clients saw.

    .venv/bin/python -m bench.failover --scenario head-kill
    .venv/bin/python -m bench.failover --scenario all --json results.json
    .venv/bin/python -m bench.failover --scenario baseline-ft-no-headway

It deploys examples/hello (2 workers) in a private state dir, sends requests at a fixed
rate (open loop: a request is sent every 1/rate s whatever the previous ones do) through
the service endpoint, injects the fault by PID, waits for the recovery, and prints per
scenario: requests sent, failed, success %; p50/p99/max latency before, during and after
the fault; and the time from the fault to detection, to a new head, to the workers
re-registered and to RUNNING (when updates are accepted again). Faults are injected
the way a test would, from the state dir's records, not through `headway chaos`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from headway import procs

ROOT = Path(__file__).resolve().parents[1]
HEADWAY = str(Path(sys.executable).parent / "headway")


@dataclass
class Sample:
    at: float
    latency: float
    ok: bool


@dataclass
class LoadGen:
    """Open-loop load at ``rate`` requests/s in a background thread."""

    url: str
    headers: dict[str, str]
    rate: float
    timeout_s: float = 10.0
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout_s + 5)

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=200)) as s:
            tasks: set[asyncio.Task] = set()
            t0 = time.monotonic()
            n = 0
            while not self._stop.is_set():
                n += 1
                delay = t0 + n / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(self._one(s))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, s: aiohttp.ClientSession) -> None:
        at = time.time()
        t = time.perf_counter()
        try:
            async with s.get(self.url, headers=self.headers) as r:
                await r.read()
                ok = r.status == 200
        except (TimeoutError, aiohttp.ClientError):
            ok = False
        self.samples.append(Sample(at, time.perf_counter() - t, ok))


class Bench:
    def __init__(self, name: str = "hello"):
        self.home = tempfile.mkdtemp(prefix="hwfo-")
        self.name = name
        self.env = dict(os.environ)
        self.env.update(HEADWAY_HOME=self.home, HEADWAY_TMP="/tmp/hwfo", HEADWAY_BRIDGE="hwfobr0",
                        HEADWAY_SUBNET="10.213.251.0/24")  # fmt: skip

    def hw(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([HEADWAY, *args], env=self.env, capture_output=True, text=True, check=check)

    def deploy(self, **overrides) -> None:
        import yaml

        data = yaml.safe_load((ROOT / "examples/hello/service.yaml").read_text())
        data["working_dir"] = str(ROOT / "examples/hello/app")
        data.update(overrides)
        spec = Path(self.home) / "spec.yaml"
        spec.write_text(yaml.safe_dump(data))
        self.hw("deploy", "-f", str(spec))

    def record(self) -> dict:
        return json.loads((Path(self.home) / "services" / self.name / "service.json").read_text())

    def node(self, name: str) -> dict:
        return next(n for n in self.record()["nodes"] if n["name"] == name)

    def node_pids(self, name: str) -> list[int]:
        n = self.node(name)
        pids = set(procs.pids_with_marker(n["marker"]))
        if n.get("netns"):
            out = subprocess.run(["ip", "netns", "pids", n["netns"]], capture_output=True, text=True).stdout
            pids |= {int(p) for p in out.split()}
        return sorted(pids)

    def signal_node(self, name: str, sig: int) -> None:
        for pid in self.node_pids(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def controller_pid(self) -> int | None:
        try:
            info = json.loads((Path(self.home) / "controller.json").read_text())
        except (OSError, ValueError):
            return None
        return info["pid"] if procs.same_process(info["pid"], info["started"]) else None

    def events_after(self, t: float) -> list[dict]:
        return [e for e in self.record()["events"] if e["at"] >= t]

    def wait_event(self, t: float, kind: str, state: str | None = None, timeout: float = 240) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events_after(t):
                if e["kind"] == kind and (state is None or e["state"] == state):
                    return e
            time.sleep(0.3)
        return None

    def close(self) -> None:
        pid = self.controller_pid()
        if pid:
            procs.kill_pids([pid])
        self.hw("cloud", "teardown", "--force", check=False)
        shutil.rmtree(self.home, ignore_errors=True)
        shutil.rmtree("/tmp/hwfo", ignore_errors=True)


# -- faults --------------------------------------------------------------------------------
def _kill_head(b: Bench) -> None:
    b.signal_node("head", signal.SIGKILL)


def _freeze_head(b: Bench) -> None:
    pids = b.node_pids("head")
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)

    def thaw() -> None:
        time.sleep(30)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    threading.Thread(target=thaw, daemon=True).start()


def _partition_head(b: Bench) -> None:
    ns = b.node("head")["netns"]
    subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "down"], check=True)


def _kill_gcs(b: Bench) -> None:
    for pid in b.node_pids("head"):
        try:
            if b"gcs_server" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]:
                os.kill(pid, signal.SIGKILL)
        except (OSError, IndexError):
            pass


def _kill_worker(b: Bench) -> None:
    b.signal_node("worker-1", signal.SIGKILL)


def _kill_worker_head_down(b: Bench) -> None:
    _kill_head(b)
    time.sleep(1)
    _kill_worker(b)


def _kill_store_primary(b: Bench) -> None:
    cloud = json.loads((Path(b.home) / "cloud" / "cloud.json").read_text())
    port = int(
        b.hw("cloud", "status", "--json").stdout
        and json.loads(b.hw("cloud", "status", "--json").stdout)["primary_port"]
    )
    pid = next(p["pid"] for p in cloud["store"] if p["port"] == port)
    os.kill(pid, signal.SIGKILL)


def _kill_controller_then_head(b: Bench) -> None:
    pid = b.controller_pid()
    if pid:
        os.kill(pid, signal.SIGKILL)
    time.sleep(1)
    _kill_head(b)

    def restart() -> None:
        time.sleep(20)
        b.hw("controller", "start")

    threading.Thread(target=restart, daemon=True).start()


SCENARIOS = {
    "head-kill": (_kill_head, "head"),
    "head-freeze": (_freeze_head, "head"),
    "head-partition": (_partition_head, "head"),
    "gcs-kill": (_kill_gcs, "head"),
    "worker-kill": (_kill_worker, "worker"),
    "worker-kill-head-down": (_kill_worker_head_down, "head"),
    "store-primary-kill": (_kill_store_primary, "head"),
    "controller-kill": (_kill_controller_then_head, "head"),
}


def _pct(values: list[float], q: int) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100)[q - 1]


def _window(samples: list[Sample], start: float, end: float) -> dict:
    xs = [s for s in samples if start <= s.at < end]
    lat = [s.latency for s in xs if s.ok]
    return {
        "requests": len(xs),
        "failed": sum(1 for s in xs if not s.ok),
        "p50_ms": round(1000 * _pct(lat, 50), 1) if lat else None,
        "p99_ms": round(1000 * _pct(lat, 99), 1) if lat else None,
        "max_ms": round(1000 * max(lat), 1) if lat else None,
    }


def run_scenario(b: Bench, scenario: str, rate: float, settle_s: float = 10) -> dict:
    fault, kind = SCENARIOS[scenario]
    st = json.loads(b.hw("status", b.name, "--json").stdout)
    token = b.hw("token", b.name).stdout.strip()
    load = LoadGen(st["endpoint"] + "/", {"Authorization": f"Bearer {token}"}, rate)
    load.start()
    time.sleep(settle_s)
    fault_at = time.time()
    fault(b)
    if kind == "head":
        lost = b.wait_event(fault_at - 1, "state", "HEAD_RECOVERING")
        done = b.wait_event(fault_at, "state", "RUNNING")
    else:
        lost = b.wait_event(fault_at, "worker_lost")
        done = b.wait_event(fault_at, "replicas_placed")
    recovered_at = done["at"] if done else time.time()
    time.sleep(settle_s)
    load.stop()
    end = time.time()

    def since(kind_: str) -> float | None:
        e = b.wait_event(fault_at, kind_, timeout=0.5)
        return round(e["at"] - fault_at, 2) if e else None

    samples = load.samples
    row = {
        "scenario": scenario,
        "sent": len(samples),
        "failed": sum(1 for s in samples if not s.ok),
        "before": _window(samples, fault_at - settle_s, fault_at),
        "during": _window(samples, fault_at, recovered_at),
        "after": _window(samples, recovered_at, end),
        "detect_s": round(lost["at"] - fault_at, 2) if lost else None,
        "new_head_s": since("new_head_started") if kind == "head" else None,
        "workers_back_s": since("workers_reregistered") if kind == "head" else since("worker_replaced"),
        "running_s": round(recovered_at - fault_at, 2) if done else None,
    }
    row["success_pct"] = round(100 * (1 - row["failed"] / max(1, row["sent"])), 3)
    table = json.loads(b.hw("status", b.name, "--json").stdout)
    row["state_after"] = table["state"]
    return row


def run_baseline(b: Bench, scenario: str, rate: float, outage_s: float = 90) -> dict:
    """The head killed and left dead (no controller), on plain Ray settings."""
    st = json.loads(b.hw("status", b.name, "--json").stdout)
    pid = b.controller_pid()
    if pid:
        procs.kill_pids([pid])
    token = b.hw("token", b.name).stdout.strip()
    load = LoadGen(st["endpoint"] + "/", {"Authorization": f"Bearer {token}"}, rate)
    load.start()
    time.sleep(10)
    fault_at = time.time()
    _kill_head(b)
    time.sleep(outage_s)
    load.stop()
    samples = load.samples
    failed = sum(1 for s in samples if not s.ok)
    first_fail = min((s.at for s in samples if not s.ok), default=None)
    return {
        "scenario": scenario,
        "sent": len(samples),
        "failed": failed,
        "success_pct": round(100 * (1 - failed / max(1, len(samples))), 3),
        "before": _window(samples, fault_at - 10, fault_at),
        "during": _window(samples, fault_at, fault_at + outage_s),
        "first_failure_s": round(first_fail - fault_at, 1) if first_fail else None,
        "running_s": None,
        "note": f"head left dead for {outage_s:.0f} s (no watchdog)",
    }


BASELINES = {
    # GCS FT on, but Ray's default worker timeout (60 s) and nobody to replace the head.
    "baseline-ft-no-headway": {"env_vars": {"RAY_gcs_rpc_server_reconnect_timeout_s": "60"}},
    # No GCS FT at all, and Ray's default worker timeout.
    "baseline-no-ft": {
        "ray_gcs_external_storage_config": {"enable": False},
        "env_vars": {"RAY_gcs_rpc_server_reconnect_timeout_s": "60"},
    },
}


def print_rows(rows: list[dict]) -> None:
    cols = ("scenario", "sent", "failed", "success_pct", "detect_s", "new_head_s", "workers_back_s", "running_s")
    print("\n" + " | ".join(cols) + " | p50/p99/max ms before | during | after")
    for r in rows:
        lat = " | ".join(
            "{p50_ms}/{p99_ms}/{max_ms}".format(**r[w]) if w in r else "-" for w in ("before", "during", "after")
        )
        print(" | ".join(str(r.get(c)) for c in cols) + " | " + lat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="head-kill", help=f"one of {', '.join([*SCENARIOS, *BASELINES])}, or all")
    ap.add_argument("--rate", type=float, default=100.0, help="requests per second through the endpoint")
    ap.add_argument("--repeat", type=int, default=1, help="run the scenario this many times in a row")
    ap.add_argument("--json", dest="json_path", help="also write the rows here")
    args = ap.parse_args()
    names = [*SCENARIOS, *BASELINES] if args.scenario == "all" else [args.scenario]
    rows: list[dict] = []
    for scenario in names:
        b = Bench()
        try:
            b.deploy(**BASELINES.get(scenario, {}))
            for i in range(args.repeat):
                print(f"{scenario} #{i + 1} ...", flush=True)
                row = (
                    run_baseline(b, scenario, args.rate)
                    if scenario in BASELINES
                    else run_scenario(b, scenario, args.rate)
                )
                rows.append(row)
                print_rows([row])
        finally:
            b.close()
    print_rows(rows)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
