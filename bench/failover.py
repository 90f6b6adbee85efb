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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx

from bench import report
from headway.cluster.local_provider import free_ports
from headway.state import db, records
from headway.store import cloud, storage
from headway.system import procs

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
    json_body: dict | None = None  # POST this instead of a GET
    ramp_s: float = 0.0  # the rate rises linearly from 0 to ``rate`` over this long
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
                delay = t0 + self._due(n) - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(self._one(s))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    def _due(self, n: int) -> float:
        """When the n-th request is sent: n/rate, or on the ramp (N(t) = rate t^2 / 2 ramp_s)."""
        if self.ramp_s <= 0:
            return n / self.rate
        if n <= self.rate * self.ramp_s / 2:
            return (2 * n * self.ramp_s / self.rate) ** 0.5
        return n / self.rate + self.ramp_s / 2

    async def _one(self, s: aiohttp.ClientSession) -> None:
        at = time.time()
        t = time.perf_counter()
        try:
            call = (
                s.post(self.url, headers=self.headers, json=self.json_body)
                if self.json_body
                else s.get(self.url, headers=self.headers)
            )
            async with call as r:
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
        # A control plane of its own on a free port: the benchmark runs beside a live one.
        self.env.update(
            HEADWAY_HOME=self.home,
            HEADWAY_TMP="/tmp/hwfo",
            HEADWAY_BRIDGE="hwfobr0",
            HEADWAY_SUBNET="10.213.251.0/24",
            HEADWAY_API_PORT=str(free_ports(1, set())[0]),
        )

    def hw(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([HEADWAY, *args], env=self.env, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise RuntimeError(
                f"headway {' '.join(args)} exited {done.returncode}: {(done.stderr or done.stdout).strip()[-1500:]}"
            )
        return done

    def deploy(self, example: str = "hello", edit: Callable[[dict], None] | None = None, **overrides) -> None:
        """examples/<example> deployed under this benchmark's name, ``edit`` applied to its YAML."""
        import yaml

        data = yaml.safe_load((ROOT / f"examples/{example}/service.yaml").read_text())
        data["working_dir"] = str(ROOT / f"examples/{example}/app")
        data["name"] = self.name
        data.update(overrides)
        if edit:
            edit(data)
        spec = Path(self.home) / "spec.yaml"
        spec.write_text(yaml.safe_dump(data))
        self.hw("deploy", "-f", str(spec))

    def record(self) -> dict:
        rec = records.load(self.name, Path(self.home))
        if rec is None:
            raise RuntimeError(f"service {self.name} has no record in {self.home}")
        return rec.model_dump(mode="json")

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

    def ray_nodes(self) -> list[dict]:
        """Ray's whole node table (ALIVE and DEAD), from the head's dashboard."""
        rec = self.record()
        head = next(n for n in rec["nodes"] if n["role"] == "head")
        url = f"http://{head['ip']}:{head['ports']['dashboard']}/api/v0/nodes"
        os.environ["HEADWAY_HOME"] = self.home  # headway's modules read the state dir from here
        auth = {"Authorization": f"Bearer {db.get_token(records.ray_token_scope(self.name))}"}  # Ray's own token
        try:
            body = httpx.get(url, params={"limit": 10000}, headers=auth, timeout=10).json()
        except (httpx.HTTPError, ValueError):
            return []
        return body.get("data", {}).get("result", {}).get("result", [])

    def store_usage(self) -> tuple[int, int, int]:
        """(keys, bytes, hash fields) of the service's GCS namespace in the managed store."""
        tables = self.store_tables().values()
        return len(tables), sum(b for _, b in tables), sum(f for f, _ in tables)

    def store_tables(self) -> dict[str, tuple[int, int]]:
        """Per GCS table of the service's namespace (``RAY<ns>@NODE`` → ``NODE``): (hash fields,
        bytes by ``MEMORY USAGE``)."""
        os.environ["HEADWAY_HOME"] = self.home  # headway's modules read the state dir from here
        client = storage.connect(cloud.store_address(cloud.load()), 3)
        try:
            out = {}
            for key in storage.namespace_keys(client, self.record()["namespace"]):
                name = key.decode(errors="replace")
                fields = client.hlen(key) if client.type(key) == b"hash" else 0
                out[name.rsplit("@", 1)[-1]] = (fields, client.memory_usage(key, samples=0) or 0)
            return out
        finally:
            client.close()

    def leak_snapshot(self) -> dict:
        """What could leak across failovers: store keys/bytes, Ray nodes, processes, hosts."""
        rec = self.record()
        keys, used, fields = self.store_usage()
        nodes = self.ray_nodes()
        alive = [n for n in nodes if n["state"] == "ALIVE"]
        known = {n["node_id"] for n in rec["nodes"] if n.get("node_id")}
        markers = {n["marker"] for n in rec["nodes"]} | {f"{rec['cluster_id']}/ingress"}
        pids = procs.pids_with_marker(rec["cluster_id"])
        stray = [p for p in pids if _marker_of(p) not in markers]
        ours = set(pids) | {self.controller_pid() or -1}
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
        tmp = Path("/tmp/hwfo")
        return {
            "store_keys": keys,
            "store_bytes": used,
            "store_fields": fields,
            "ray_nodes_alive": len(alive),
            "ray_heads_alive": sum(1 for n in alive if n.get("is_head_node")),
            "ray_nodes_dead": len(nodes) - len(alive),
            "alive_not_in_record": sum(1 for n in alive if n["node_id"] not in known),
            "record_nodes": len(rec["nodes"]),
            "processes": len(pids),
            "stray_processes": len(stray),
            "zombies": len(_zombies_of(ours)),
            "netns": sum(1 for line in netns if line.startswith(f"hw-{self.name}.")),
            "temp_dirs": len(list(tmp.iterdir())) if tmp.exists() else 0,
        }

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


def _marker_of(pid: int) -> str | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    prefix = procs.MARKER_VAR.encode() + b"="
    return next((e[len(prefix) :].decode() for e in env if e.startswith(prefix)), None)


def _zombies_of(parents: set[int]) -> list[int]:
    """Zombie processes whose parent is one of ours: children nobody reaped."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if stat[0] == "Z" and int(stat[1]) in parents:
            out.append(int(entry))
    return out


# -- faults --------------------------------------------------------------------------------
def _kill_head(b: Bench) -> None:
    b.signal_node("head", signal.SIGKILL)


FREEZE_S = 30


def _freeze_head(b: Bench):
    pids = b.node_pids("head")
    frozen_at = time.time()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)

    def thaw() -> None:
        time.sleep(FREEZE_S)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    threading.Thread(target=thaw, daemon=True).start()

    def split_brain_check() -> dict:
        """After the thaw: none of the frozen processes may run again, one head is ALIVE."""
        time.sleep(max(0.0, frozen_at + FREEZE_S + 5 - time.time()))
        resumed = [p for p in pids if procs.alive(p)]
        nodes = b.ray_nodes()
        alive_heads = [n for n in nodes if n["state"] == "ALIVE" and n.get("is_head_node")]
        return {
            "frozen_pids": len(pids),
            "resumed_after_thaw": len(resumed),
            "alive_heads_after_thaw": len(alive_heads),
            "split_brain": bool(resumed) or len(alive_heads) != 1,
        }

    return split_brain_check


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


class UpdateProbe:
    """An operator retrying an update (the same spec again, every second) from the fault
    on: how often is it refused (exit 3), and when has an update been applied again?"""

    def __init__(self, b: Bench, fault_at: float):
        self.b, self.fault_at = b, fault_at
        self.refused = 0
        self.accepted_s: float | None = None  # start of the first accepted attempt
        self.applied_s: float | None = None  # when that update had been applied
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        spec = str(Path(self.b.home) / "spec.yaml")
        while time.time() - self.fault_at < 240:
            started = time.time()
            r = self.b.hw("deploy", "-f", spec, check=False)
            if r.returncode == 0:
                self.accepted_s = round(started - self.fault_at, 2)
                self.applied_s = round(time.time() - self.fault_at, 2)
                return
            if r.returncode != 3:
                self.error = (r.stderr or r.stdout).strip()[-300:]
                return
            self.refused += 1
            time.sleep(1)

    def join(self) -> None:
        self._thread.join(timeout=300)


def plot(path: str, title: str, samples: list[Sample], fault_at: float, marks: dict[str, float | None]) -> None:
    """Latency (each request) and failures per second over time, fault and recovery steps marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    ok = [s for s in samples if s.ok]
    ax1.scatter([s.at - fault_at for s in ok], [1000 * s.latency for s in ok], s=2)
    ax1.set_yscale("log")
    ax1.set_ylabel("latency ms (answered)")
    t0 = int(min((s.at for s in samples), default=fault_at) - fault_at)
    t1 = int(max((s.at for s in samples), default=fault_at) - fault_at) + 1
    secs = list(range(t0, t1))
    failed = [sum(1 for s in samples if not s.ok and int(s.at - fault_at) == t) for t in secs]
    ax2.bar(secs, failed, width=1.0, color="tab:red")
    ax2.set_ylabel("failed requests / s")
    ax2.set_xlabel("seconds since the fault")
    for name, at in {"fault": 0.0, **marks}.items():
        if at is not None:
            for ax in (ax1, ax2):
                ax.axvline(at, color="k" if name == "fault" else "tab:green", linestyle="--", linewidth=0.8)
            ax1.annotate(name, (at, 1), xycoords=("data", "axes fraction"), rotation=90, va="top", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_scenario(
    b: Bench,
    scenario: str,
    rate: float,
    settle_s: float = 10,
    probe_update: bool = True,
    png: str | None = None,
    path: str = "/",
    json_body: dict | None = None,
) -> dict:
    fault, kind = SCENARIOS[scenario]
    st = json.loads(b.hw("status", b.name, "--json").stdout)
    token = b.hw("token", b.name).stdout.strip()
    load = LoadGen(st["endpoint"] + path, {"Authorization": f"Bearer {token}"}, rate, json_body=json_body)
    if rate > 0:  # rate 0: the fault without load
        load.start()
    time.sleep(settle_s)
    fault_at = time.time()
    post_check = fault(b)
    probe = UpdateProbe(b, fault_at) if probe_update and kind == "head" else None
    if kind == "head":
        lost = b.wait_event(fault_at - 1, "state", "HEAD_RECOVERING")
        # RUNNING after the loss: an update the probe got accepted before the head was
        # seen dead (the store scenario: the GCS exits seconds after the primary) ends
        # in a RUNNING of its own.
        done = b.wait_event(lost["at"] if lost else fault_at, "state", "RUNNING")
    else:
        lost = b.wait_event(fault_at, "worker_lost")
        done = b.wait_event(fault_at, "replicas_placed")
    recovered_at = done["at"] if done else time.time()
    if probe:
        probe.join()
    checked = post_check() if post_check else {}
    time.sleep(settle_s)
    if rate > 0:
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
        "update_applied_s": probe.applied_s if probe else None,
        **checked,
    }
    if probe:
        row |= {"update_refusals": probe.refused, "update_accepted_s": probe.accepted_s, "update_error": probe.error}
    row["success_pct"] = round(100 * (1 - row["failed"] / max(1, row["sent"])), 3)
    table = json.loads(b.hw("status", b.name, "--json").stdout)
    row["state_after"] = table["state"]
    if png:
        marks = {k: row[k] for k in ("detect_s", "new_head_s", "workers_back_s", "running_s", "update_applied_s")}
        plot(png, f"{scenario}: {row['sent']} sent, {row['failed']} failed", samples, fault_at, marks)
    return row


LEAK_KEYS = (
    "store_keys",
    "store_fields",
    "store_bytes",
    "ray_nodes_alive",
    "ray_heads_alive",
    "ray_nodes_dead",
    "alive_not_in_record",
    "processes",
    "stray_processes",
    "zombies",
    "netns",
    "temp_dirs",
)


def run_kill_series(b: Bench, rate: float, kills: int) -> dict:
    """``kills`` head SIGKILLs in a row, each after the last recovery; a leak snapshot after each."""
    base = b.leak_snapshot()
    print("kill | sent failed running_s | " + " ".join(LEAK_KEYS), flush=True)
    print("   0 |                       | " + " ".join(str(base[k]) for k in LEAK_KEYS), flush=True)
    rows, snaps = [], [base]
    for i in range(1, kills + 1):
        row = run_scenario(b, "head-kill", rate, settle_s=4, probe_update=False)
        snap = b.leak_snapshot()
        rows.append(row)
        snaps.append(snap)
        print(
            f"{i:4d} | {row['sent']:5d} {row['failed']:4d} {row['running_s']} | "
            + " ".join(str(snap[k]) for k in LEAK_KEYS),
            flush=True,
        )
    return summarize_series(rows, snaps)


def summarize_series(rows: list[dict], snaps: list[dict]) -> dict:
    """The verdicts: pure, over the per-kill rows and the snapshots (index 0 = before any kill)."""
    running = [r["running_s"] for r in rows if r["running_s"] is not None]
    first, last = snaps[1] if len(snaps) > 1 else snaps[0], snaps[-1]
    per_kill_bytes = (last["store_bytes"] - first["store_bytes"]) / max(1, len(snaps) - 2)
    leaks = {
        "store_keys_grew": last["store_keys"] > first["store_keys"],
        "duplicate_or_unknown_nodes": any(s["ray_heads_alive"] != 1 or s["alive_not_in_record"] for s in snaps),
        "alive_nodes_changed": any(s["ray_nodes_alive"] != snaps[0]["ray_nodes_alive"] for s in snaps),
        "stray_processes": max(s["stray_processes"] for s in snaps),
        "zombies": max(s["zombies"] for s in snaps),
        "netns_grew": last["netns"] > snaps[0]["netns"],
        "temp_dirs_grew": last["temp_dirs"] > snaps[0]["temp_dirs"] + 1,
    }
    return {
        "scenario": f"head-kill-x{len(rows)}",
        "sent": sum(r["sent"] for r in rows),
        "failed": sum(r["failed"] for r in rows),
        "success_pct": round(100 * (1 - sum(r["failed"] for r in rows) / max(1, sum(r["sent"] for r in rows))), 3),
        "recovered": len(running),
        "running_s": round(statistics.median(running), 2) if running else None,
        "running_s_max": max(running) if running else None,
        "store_bytes_first_last": [first["store_bytes"], last["store_bytes"]],
        "store_bytes_per_kill": round(per_kill_bytes),
        "store_keys_first_last": [first["store_keys"], last["store_keys"]],
        "ray_nodes_dead_last": last["ray_nodes_dead"],
        "processes_min_max": [min(s["processes"] for s in snaps), max(s["processes"] for s in snaps)],
        "leaks": leaks,
        "leak_free": not any(leaks.values()),
        "snapshots": snaps,
    }


def run_baseline(scenario: str, rate: float, outage_s: float = 90) -> dict:
    """Ray on its own (bare Ray, its own settings; headway reserves the ones it tunes, so a
    service cannot be given Ray's defaults): the head killed and left dead."""
    from bench import floor

    return floor.baseline(rate, outage_s, gcs_ft=BASELINES[scenario])


#: Baseline → with the GCS in a store (True) or in memory (False).
BASELINES = {"baseline-ft-no-headway": True, "baseline-no-ft": False}


def print_rows(rows: list[dict]) -> None:
    cols = (
        "scenario",
        "sent",
        "failed",
        "success_pct",
        "detect_s",
        "new_head_s",
        "workers_back_s",
        "running_s",
        "update_applied_s",
    )
    print("\n" + " | ".join(cols) + " | p50/p99/max ms before | during | after")
    for r in rows:
        lat = " | ".join(
            "{p50_ms}/{p99_ms}/{max_ms}".format(**r[w]) if w in r else "-" for w in ("before", "during", "after")
        )
        print(" | ".join(str(r.get(c)) for c in cols) + " | " + lat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--scenario",
        default="head-kill",
        help=f"one of {', '.join(SCENARIOS)}, head-kill-xN (N kills in a row, leak checks), "
        f"{', '.join(BASELINES)}; or all; or floor (bare Ray with a perfect supervisor, and headway's head kill "
        "as ratios to it: bench.floor)",
    )
    ap.add_argument("--rate", type=float, default=100.0, help="requests per second through the endpoint")
    ap.add_argument("--repeat", type=int, default=1, help="run the scenario this many times in a row")
    ap.add_argument("--json", dest="json_path", help="also write the rows here")
    ap.add_argument("--png", help="also plot each scenario: PATH, or PATH-<scenario>.png for several")
    ap.add_argument("--markdown", help="rewrite the failover section of this file (docs/benchmarks.md)")
    args = ap.parse_args()
    if args.scenario == "floor":  # Ray's own floor and headway's head kill as ratios to it
        from bench import floor

        result = floor.compare(args.repeat if args.repeat > 1 else 3, args.rate)
        print(floor.markdown(result, args.repeat if args.repeat > 1 else 3))
        return
    names = [*SCENARIOS, "head-kill-x30", *BASELINES] if args.scenario == "all" else [args.scenario]
    rows: list[dict] = []
    for scenario in names:
        b = Bench()  # (a baseline runs bare Ray of its own; this one stays empty)
        try:
            if scenario not in BASELINES:
                b.deploy()
            for i in range(args.repeat):
                print(f"{scenario} #{i + 1} ...", flush=True)
                if scenario in BASELINES:
                    row = run_baseline(scenario, args.rate)
                elif scenario.startswith("head-kill-x"):
                    row = run_kill_series(b, args.rate, int(scenario.removeprefix("head-kill-x")))
                else:
                    png = args.png
                    if png and len(names) > 1:
                        png = f"{Path(png).with_suffix('')}-{scenario}.png"
                    row = run_scenario(b, scenario, args.rate, png=png)
                rows.append(row)
                print_rows([row])
                _save(rows, args)  # after every scenario: a later one that crashes loses nothing
        finally:
            b.close()
    print_rows(rows)


def _save(rows: list[dict], args: argparse.Namespace) -> None:
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(rows, indent=2))
    if args.markdown:
        report.write_section(args.markdown, "failover", report.failover_markdown(rows, args.rate))


if __name__ == "__main__":
    main()
